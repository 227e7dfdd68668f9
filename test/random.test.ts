/**
 * Seeded randomness: manualSeed makes every sampler repeat exactly, different
 * seeds differ, the generator state round-trips, and a small seeded training
 * run is bit-identical across repetitions.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import "./helpers.js"; // one intra-op thread, as every test file

const { F, nn, optim } = torch;

/** Draws one sample of every random function, as plain arrays. */
function drawAll(): Record<string, number[]> {
  return torch.tidy(() => ({
    rand: torch.rand([5]).toNumbers(),
    rand64: torch.rand([3], "float64").toNumbers(),
    randn: torch.randn([2, 3]).toNumbers(),
    randint: torch.randint(0, 1000, [6]).toNumbers(),
    randperm: torch.randperm(10).toNumbers(),
    bernoulliP: torch.bernoulli(torch.zeros([16]), 0.5).toNumbers(),
    bernoulliT: torch.bernoulli(torch.full([16], 0.3)).toNumbers(),
    dropout: F.dropout(torch.ones([16]), 0.5, true).toNumbers(),
    dropout2d: F.dropout2d(torch.ones([1, 8, 2, 2]), 0.5, true).toNumbers(),
    multinomial: torch.multinomial(torch.tensor([0.1, 0.2, 0.3, 0.4]), 6, true).toNumbers(),
    uniform_: torch.empty([4]).uniform_(-2, 2).toNumbers(),
    normal_: torch.empty([4]).normal_(3, 0.5).toNumbers(),
  }));
}

describe("manualSeed", () => {
  test("the same seed gives identical numbers from every sampler", () => {
    torch.manualSeed(42);
    const a = drawAll();
    torch.manualSeed(42);
    const b = drawAll();
    assert.deepEqual(a, b);
  });

  test("different seeds give different numbers", () => {
    torch.manualSeed(1);
    const a = drawAll();
    torch.manualSeed(2);
    const b = drawAll();
    for (const key of ["rand", "rand64", "randn", "randint", "randperm", "bernoulliP", "bernoulliT", "dropout", "uniform_", "normal_"]) {
      assert.notDeepEqual(a[key], b[key], `${key} repeated across seeds`);
    }
  });

  test("successive draws after one seed differ from each other", () => {
    torch.manualSeed(3);
    const a = drawAll();
    const b = drawAll();
    assert.notDeepEqual(a.rand, b.rand);
    assert.notDeepEqual(a.randn, b.randn);
  });

  test("samples are in range and well formed", () => {
    torch.manualSeed(4);
    const s = drawAll();
    assert.ok(s.rand.every((v) => v >= 0 && v < 1));
    assert.ok(s.randint.every((v) => Number.isInteger(v) && v >= 0 && v < 1000));
    assert.deepEqual(
      [...s.randperm].sort((x, y) => x - y),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert.ok(s.bernoulliP.every((v) => v === 0 || v === 1));
    assert.ok(
      s.dropout.every((v) => v === 0 || v === 2),
      "dropout keeps 1 / (1 - p) = 2 or zeroes",
    );
    assert.ok(s.multinomial.every((v) => Number.isInteger(v) && v >= 0 && v < 4));
    assert.ok(s.uniform_.every((v) => v >= -2 && v < 2));
    // Each channel of dropout2d is all kept (2) or all dropped (0).
    for (let c = 0; c < 8; c++) {
      const ch = s.dropout2d.slice(c * 4, c * 4 + 4);
      assert.ok(ch.every((v) => v === ch[0]) && (ch[0] === 0 || ch[0] === 2), `channel ${c}: ${ch}`);
    }
  });

  test("dropout in eval mode and with p = 0 is the identity and draws nothing", () =>
    torch.tidy(() => {
      torch.manualSeed(5);
      const x = torch.randn([8]);
      assert.deepEqual(F.dropout(x, 0.5, false).toNumbers(), x.toNumbers());
      assert.deepEqual(F.dropout(x, 0, true).toNumbers(), x.toNumbers());
    }));

  test("nn initialisation is seeded", () => {
    torch.manualSeed(6);
    const a = new nn.Linear(4, 3);
    torch.manualSeed(6);
    const b = new nn.Linear(4, 3);
    assert.deepEqual(a.weight.toNumbers(), b.weight.toNumbers());
    assert.deepEqual((a.bias as torch.Tensor).toNumbers(), (b.bias as torch.Tensor).toNumbers());
    a.dispose();
    b.dispose();
  });
});

describe("generator state", () => {
  test("getRngState / setRngState reproduces a sequence", () => {
    torch.manualSeed(7);
    torch.rand([3]).dispose();
    const state = torch.getRngState();
    assert.equal(state.dtype, "uint8");
    const first = drawAll();
    const second = drawAll();
    torch.setRngState(state);
    assert.deepEqual(drawAll(), first);
    assert.deepEqual(drawAll(), second);
    state.dispose();
  });

  test("the state is a copy: drawing does not change a saved state", () => {
    torch.manualSeed(8);
    const s1 = torch.getRngState();
    const bytes = s1.toNumbers();
    torch.rand([100]).dispose();
    assert.deepEqual(s1.toNumbers(), bytes);
    const s2 = torch.getRngState();
    assert.notDeepEqual(s2.toNumbers(), bytes);
    s1.dispose();
    s2.dispose();
  });

  test("a state saved through bytes (as a checkpoint would) restores the sequence", () => {
    torch.manualSeed(9);
    const state = torch.getRngState();
    const bytes = state.toBytes();
    const shape = [...state.shape];
    state.dispose();
    const expected = torch.tidy(() => torch.randn([5]).toNumbers());
    torch.manualSeed(12345); // move elsewhere
    const restored = torch.fromBytes(bytes, shape, "uint8");
    torch.setRngState(restored);
    restored.dispose();
    assert.deepEqual(
      torch.tidy(() => torch.randn([5]).toNumbers()),
      expected,
    );
  });
});

describe("seeded training", () => {
  /** A small CNN + MLP trained for 20 Adam steps on fixed random data; returns the final loss and weights. */
  function trainOnce(seed: number): { loss: number; weights: number[] } {
    torch.manualSeed(seed);
    const model = new nn.Sequential(
      new nn.Conv2d(1, 4, 3, { padding: 1 }),
      new nn.BatchNorm2d(4),
      new nn.ReLU(),
      new nn.Dropout(0.25),
      new nn.AdaptiveAvgPool2d(2),
      new nn.Flatten(),
      new nn.Linear(16, 8),
      new nn.GELU(),
      new nn.Linear(8, 3),
    );
    const opt = new optim.Adam(model.parameters(), { lr: 1e-2 });
    const x = torch.randn([8, 1, 6, 6]);
    const y = torch.randint(0, 3, [8]);
    let loss = NaN;
    for (let step = 0; step < 20; step++) {
      loss = torch.tidy(() => {
        const l = F.crossEntropy(model.forward(x), y, { labelSmoothing: 0.1 });
        opt.zeroGrad();
        l.backward();
        opt.step();
        return l.item();
      });
    }
    const weights = model.parameters().flatMap((p) => p.toNumbers());
    model.dispose();
    opt.dispose();
    x.dispose();
    y.dispose();
    return { loss, weights };
  }

  test("two runs with the same seed give a bit-identical final loss and weights", () => {
    const a = trainOnce(2024);
    const b = trainOnce(2024);
    assert.ok(Number.isFinite(a.loss));
    assert.equal(Object.is(a.loss, b.loss), true, `losses differ: ${a.loss} vs ${b.loss}`);
    assert.deepEqual(a.weights, b.weights);
  });

  test("a different seed gives a different run, and training reduced the loss", () => {
    const a = trainOnce(2024);
    const c = trainOnce(2025);
    assert.notEqual(a.loss, c.loss);
    // The initial loss of a 3-class classifier is near log(3) = 1.0986.
    assert.ok(a.loss < 1.0, `loss after 20 steps: ${a.loss}`);
  });
});
