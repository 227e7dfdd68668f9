/**
 * nn.Module and the layers: PyTorch state_dict naming, train/eval propagation,
 * BatchNorm statistics, strict loading, parameter counts and default init.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import { SameConv2d, samePadding } from "../src/models/index.js";
import { assertAllClose, assertTensor } from "./helpers.js";

const { nn } = torch;

/** A model nesting Sequentials, like a backbone with a head. */
class Net extends nn.Module {
  readonly features: torch.nn.Sequential;
  readonly head: torch.nn.Linear;
  constructor() {
    super();
    this.features = this.registerModule(
      "features",
      new nn.Sequential(
        new nn.Conv2d(3, 4, 3, { padding: 1, bias: false }),
        new nn.BatchNorm2d(4),
        new nn.ReLU(),
        new nn.Sequential(new nn.Conv2d(4, 4, 3, { groups: 2 }), new nn.Dropout(0.5)),
        new nn.AdaptiveAvgPool2d(1),
        new nn.Flatten(),
      ),
    );
    this.head = this.registerModule("head", new nn.Linear(4, 7));
  }
  forward(x: torch.Tensor): torch.Tensor {
    return torch.tidy(() => this.head.forward(this.features.forward(x)));
  }
}

describe("state_dict naming", () => {
  test("Sequential of Conv2d / BatchNorm2d / Linear uses PyTorch's keys, in PyTorch's order", () => {
    const m = new nn.Sequential(new nn.Conv2d(1, 2, 3), new nn.BatchNorm2d(2), new nn.ReLU(), new nn.Flatten(), new nn.Linear(8, 3));
    assert.deepEqual(
      [...m.stateDict().keys()],
      ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "4.weight", "4.bias"],
    );
    const sd = m.stateDict();
    assert.deepEqual([...(sd.get("0.weight") as torch.Tensor).shape], [2, 1, 3, 3]);
    assert.deepEqual([...(sd.get("4.weight") as torch.Tensor).shape], [3, 8]);
    assert.equal((sd.get("1.num_batches_tracked") as torch.Tensor).dtype, "int64");
    assert.deepEqual([...(sd.get("1.num_batches_tracked") as torch.Tensor).shape], []);
    assert.deepEqual((sd.get("1.running_var") as torch.Tensor).toNumbers(), [1, 1]);
    // Parameters exclude buffers.
    assert.deepEqual(
      m.namedParameters().map(([k]) => k),
      ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"],
    );
    assert.deepEqual(
      m.namedBuffers().map(([k]) => k),
      ["1.running_mean", "1.running_var", "1.num_batches_tracked"],
    );
    m.dispose();
  });

  test("nested modules get dotted prefixes", () => {
    const net = new Net();
    assert.deepEqual(
      [...net.stateDict().keys()],
      [
        "features.0.weight",
        "features.1.weight",
        "features.1.bias",
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
        "features.3.0.weight",
        "features.3.0.bias",
        "head.weight",
        "head.bias",
      ],
    );
    assert.deepEqual(
      net.namedModules().map(([k]) => k),
      [
        "",
        "features",
        "features.0",
        "features.1",
        "features.2",
        "features.3",
        "features.3.0",
        "features.3.1",
        "features.4",
        "features.5",
        "head",
      ],
    );
    assert.deepEqual(
      net.namedChildren().map(([k]) => k),
      ["features", "head"],
    );
    net.dispose();
  });

  test("stateDict returns the module's own tensors (not copies)", () => {
    const l = new nn.Linear(2, 2);
    assert.equal(l.stateDict().get("weight"), l.weight);
    assert.equal(l.parameters()[0], l.weight);
    l.dispose();
  });

  test("BatchNorm2d without affine or running stats registers nothing of those", () => {
    const a = new nn.BatchNorm2d(3, { affine: false });
    assert.deepEqual([...a.stateDict().keys()], ["running_mean", "running_var", "num_batches_tracked"]);
    const b = new nn.BatchNorm2d(3, { trackRunningStats: false });
    assert.deepEqual([...b.stateDict().keys()], ["weight", "bias"]);
    a.dispose();
    b.dispose();
  });
});

describe("train / eval", () => {
  test("train() and eval() propagate to every descendant and return this", () => {
    const net = new Net();
    assert.ok(net.namedModules().every(([, m]) => m.training));
    assert.equal(net.eval(), net);
    assert.ok(net.namedModules().every(([, m]) => !m.training));
    assert.equal(net.train(), net);
    assert.ok(net.namedModules().every(([, m]) => m.training));
    net.train(false);
    assert.ok(net.namedModules().every(([, m]) => !m.training));
    net.dispose();
  });

  test("Dropout is the identity in eval mode and random in training mode", () =>
    torch.tidy(() => {
      const d = new nn.Dropout(0.5);
      const x = torch.ones([64]);
      d.eval();
      assert.deepEqual(d.forward(x).toNumbers(), x.toNumbers());
      d.train();
      torch.manualSeed(0);
      const y = d.forward(x).toNumbers();
      assert.ok(y.some((v) => v === 0) && y.some((v) => v === 2));
      assert.throws(() => new nn.Dropout(1.5), RangeError);
    }));

  test("eval-mode outputs are deterministic for a model with dropout and batchnorm", () =>
    torch.tidy(() => {
      torch.manualSeed(1);
      const net = new Net().eval();
      const x = torch.randn([2, 3, 6, 6]);
      const a = net.forward(x).toNumbers();
      const b = net.forward(x).toNumbers();
      assert.deepEqual(a, b);
      assert.equal(a.length, 14);
      net.dispose();
    }));
});

describe("BatchNorm2d", () => {
  test("training mode updates running stats and num_batches_tracked; eval mode uses running stats", () =>
    torch.tidy(() => {
      const bn = new nn.BatchNorm2d(2);
      // Channel 0: 1, 2, 3, 4 (mean 2.5, unbiased var 5/3); channel 1: 0, 0, 4, 8 (mean 3, unbiased var 44/3).
      const x = torch.tensor([
        [[[1, 2]], [[0, 0]]],
        [[[3, 4]], [[4, 8]]],
      ]);
      bn.forward(x);
      assertTensor(bn.runningMean as torch.Tensor, [2], [0.25, 0.3], 1e-6);
      assertTensor(bn.runningVar as torch.Tensor, [2], [0.9 + 0.1 * (5 / 3), 0.9 + 0.1 * (44 / 3)], 1e-6);
      assert.equal((bn.numBatchesTracked as torch.Tensor).item(), 1);
      bn.forward(x);
      assert.equal((bn.numBatchesTracked as torch.Tensor).item(), 2);
      assertTensor(bn.runningMean as torch.Tensor, [2], [0.9 * 0.25 + 0.25, 0.9 * 0.3 + 0.3], 1e-6);

      bn.eval();
      torch.noGrad(() => {
        (bn.runningMean as torch.Tensor).copy_(torch.tensor([1, -1]));
        (bn.runningVar as torch.Tensor).copy_(torch.tensor([4, 0.25]));
        (bn.weight as torch.Tensor).copy_(torch.tensor([2, 1]));
        (bn.bias as torch.Tensor).copy_(torch.tensor([0, 10]));
      });
      const y = bn.forward(torch.tensor([[[[3, 5]], [[0, -1]]]]));
      const s0 = Math.sqrt(4 + 1e-5);
      const s1 = Math.sqrt(0.25 + 1e-5);
      assertTensor(y, [1, 2, 1, 2], [(2 * 2) / s0, (2 * 4) / s0, 1 / s1 + 10, 0 / s1 + 10], 1e-5);
      // Eval mode leaves the statistics alone.
      assertTensor(bn.runningMean as torch.Tensor, [2], [1, -1], 0);
      assert.equal((bn.numBatchesTracked as torch.Tensor).item(), 2);
      bn.dispose();
    }));

  test("training-mode output is normalised per channel (mean 0, biased variance 1)", () =>
    torch.tidy(() => {
      torch.manualSeed(3);
      const bn = new nn.BatchNorm2d(3);
      const y = bn.forward(torch.randn([4, 3, 5, 5]).mul(3).add(7));
      assertAllClose(y.mean([0, 2, 3]).toNumbers(), [0, 0, 0], 1e-5);
      assertAllClose(y.var([0, 2, 3], false).toNumbers(), [1, 1, 1], 1e-3);
      bn.dispose();
    }));

  test("a custom momentum is used for the running statistics", () =>
    torch.tidy(() => {
      const bn = new nn.BatchNorm2d(1, { momentum: 0.5 });
      bn.forward(torch.tensor([[[[2, 4]]], [[[6, 8]]]]));
      assertTensor(bn.runningMean as torch.Tensor, [1], [2.5], 1e-6);
      bn.dispose();
    }));
});

describe("loadStateDict", () => {
  const make = (): torch.nn.Sequential =>
    new nn.Sequential(new nn.Conv2d(1, 2, 3), new nn.BatchNorm2d(2), new nn.Flatten(), new nn.Linear(2, 3));

  test("copies values in place (the parameter objects stay the same)", () =>
    torch.tidy(() => {
      torch.manualSeed(1);
      const a = make();
      torch.manualSeed(2);
      const b = make();
      const w = b.parameters()[0];
      b.loadStateDict(a.stateDict());
      assert.equal(b.parameters()[0], w);
      for (const [k, t] of a.stateDict()) assert.deepEqual((b.stateDict().get(k) as torch.Tensor).toNumbers(), t.toNumbers(), k);
      assert.equal(w.requiresGrad, true);
      a.dispose();
      b.dispose();
    }));

  test("strict loading names missing and unexpected keys", () =>
    torch.tidy(() => {
      const m = make();
      const sd = new Map(m.stateDict());
      sd.delete("1.running_var");
      sd.delete("3.bias");
      sd.set("3.extra", torch.zeros([1]));
      sd.set("fc.weight", torch.zeros([1]));
      assert.throws(
        () => m.loadStateDict(sd),
        (e: unknown) => {
          assert.ok(e instanceof Error);
          for (const k of ["1.running_var", "3.bias", "3.extra", "fc.weight"])
            assert.ok(e.message.includes(k), `${k} not named in: ${e.message}`);
          assert.match(e.message, /missing keys \[1\.running_var, 3\.bias\]/);
          assert.match(e.message, /unexpected keys \[3\.extra, fc\.weight\]/);
          return true;
        },
      );
      const r = m.loadStateDict(sd, false);
      assert.deepEqual(r.missingKeys, ["1.running_var", "3.bias"]);
      assert.deepEqual(r.unexpectedKeys, ["3.extra", "fc.weight"]);
      m.dispose();
    }));

  test("a shape mismatch names the key and both shapes, strict or not", () =>
    torch.tidy(() => {
      const m = make();
      const sd = new Map(m.stateDict());
      sd.set("3.weight", torch.zeros([3, 5]));
      for (const strict of [true, false]) {
        assert.throws(() => m.loadStateDict(sd, strict), /3\.weight has shape \[3, 5\] in the file but \[3, 2\] in the model/);
      }
      m.dispose();
    }));
});

describe("layers", () => {
  test("PReLU: x where positive, weight * x elsewhere, one slope per channel, with gradients to both", () =>
    torch.tidy(() => {
      const prelu = new nn.PReLU(2, 0.25);
      assert.deepEqual([...prelu.stateDict().keys()], ["weight"]);
      const x = torch.fromArray(Float32Array.from([-2, 3, -4, 5]), [1, 2, 2, 1]).requiresGrad_(true);
      const y = prelu.forward(x);
      assertAllClose(y.toArray() as Float32Array, [-0.5, 3, -1, 5]);
      y.sum().backward();
      assertAllClose(x.grad!.toArray() as Float32Array, [0.25, 1, 0.25, 1]);
      assertAllClose(prelu.weight.grad!.toArray() as Float32Array, [-2, -4]);
    }));

  test("SameConv2d pads as TensorFlow's SAME: ceil(size / stride) outputs, the odd pixel after", () =>
    torch.tidy(() => {
      const conv = new SameConv2d(1, 1, 3, 2);
      torch.noGrad(() => {
        conv.weight.copy_(torch.ones([1, 1, 3, 3]));
        conv.bias!.zero_();
      });
      // 4x4 of ones: TensorFlow pads 0 before and 1 after, so the first window is all inside.
      const y = conv.forward(torch.ones([1, 1, 4, 4]));
      assert.deepEqual(y.shape, [1, 1, 2, 2]);
      assertAllClose(y.toArray() as Float32Array, [9, 6, 6, 4]);
      assert.deepEqual(conv.forward(torch.ones([1, 1, 5, 5])).shape, [1, 1, 3, 3]);
      assert.deepEqual(samePadding(224, 3, 2), [0, 1]);
      assert.deepEqual(samePadding(7, 7, 1), [3, 3]);
    }));

  test("parameter counts of Conv2d and Linear", () => {
    const cases: [torch.nn.Module, number][] = [
      [new nn.Conv2d(3, 8, 3), 8 * 3 * 9 + 8],
      [new nn.Conv2d(3, 8, [3, 5], { bias: false }), 8 * 3 * 15],
      [new nn.Conv2d(4, 8, 3, { groups: 2 }), 8 * 2 * 9 + 8],
      [new nn.Conv2d(6, 6, 3, { groups: 6 }), 6 * 9 + 6],
      [new nn.Linear(10, 5), 55],
      [new nn.Linear(10, 5, false), 50],
      [new nn.BatchNorm2d(16), 32],
    ];
    for (const [m, n] of cases) {
      assert.equal(m.numParameters(), n);
      m.dispose();
    }
    assert.throws(() => new nn.Conv2d(3, 4, 3, { groups: 2 }), /divisible by groups/);
  });

  test("Conv2d and Linear shapes and options", () =>
    torch.tidy(() => {
      const c = new nn.Conv2d(3, 5, 3, { stride: 2, padding: 1 });
      assert.deepEqual([...c.forward(torch.zeros([2, 3, 8, 7])).shape], [2, 5, 4, 4]);
      const d = new nn.Conv2d(2, 2, 3, { dilation: 2, padding: 2 });
      assert.deepEqual([...d.forward(torch.zeros([1, 2, 6, 6])).shape], [1, 2, 6, 6]);
      const l = new nn.Linear(4, 3);
      assert.deepEqual([...l.forward(torch.zeros([2, 5, 4])).shape], [2, 5, 3]);
      const lin = new nn.Linear(2, 1);
      torch.noGrad(() => {
        lin.weight.copy_(torch.tensor([[2, -1]]));
        (lin.bias as torch.Tensor).fill_(0.5);
      });
      assertTensor(
        lin.forward(
          torch.tensor([
            [1, 1],
            [3, 2],
          ]),
        ),
        [2, 1],
        [1.5, 4.5],
      );
      for (const m of [c, d, l, lin]) m.dispose();
    }));

  test("default init: Linear weight and bias within ±1/sqrt(fan_in), Conv2d within ±1/sqrt(C_in k k)", () => {
    torch.manualSeed(5);
    const l = new nn.Linear(64, 256);
    const lb = 1 / Math.sqrt(64);
    const w = l.weight.toNumbers();
    assert.ok(
      w.every((v) => Math.abs(v) <= lb),
      `max |w| ${Math.max(...w.map(Math.abs))} > ${lb}`,
    );
    // The bound is used, not something much smaller: uniform samples come close to it.
    assert.ok(Math.max(...w.map(Math.abs)) > 0.95 * lb);
    const mean = w.reduce((s, v) => s + v, 0) / w.length;
    const variance = w.reduce((s, v) => s + (v - mean) ** 2, 0) / w.length;
    assert.ok(Math.abs(variance - (lb * lb) / 3) < 0.1 * ((lb * lb) / 3), `variance ${variance} vs U(±b) ${(lb * lb) / 3}`);
    const b = (l.bias as torch.Tensor).toNumbers();
    assert.ok(b.every((v) => Math.abs(v) <= lb));
    assert.ok(Math.max(...b.map(Math.abs)) > 0.8 * lb);

    const c = new nn.Conv2d(4, 32, 3);
    const cb = 1 / Math.sqrt(4 * 9);
    const cw = c.weight.toNumbers();
    assert.ok(cw.every((v) => Math.abs(v) <= cb));
    assert.ok(Math.max(...cw.map(Math.abs)) > 0.95 * cb);
    assert.ok((c.bias as torch.Tensor).toNumbers().every((v) => Math.abs(v) <= cb));

    // Grouped conv: fan_in counts only the channels of one group.
    const g = new nn.Conv2d(8, 8, 3, { groups: 4 });
    const gb = 1 / Math.sqrt(2 * 9);
    assert.ok(g.weight.toNumbers().every((v) => Math.abs(v) <= gb));
    assert.ok(Math.max(...g.weight.toNumbers().map(Math.abs)) > 0.8 * gb);

    const bn = new nn.BatchNorm2d(3);
    assert.deepEqual((bn.weight as torch.Tensor).toNumbers(), [1, 1, 1]);
    assert.deepEqual((bn.bias as torch.Tensor).toNumbers(), [0, 0, 0]);
    for (const m of [l, c, g, bn]) m.dispose();
  });

  test("parameters require grad and live outside any tidy scope", () => {
    const before = torch.liveTensors();
    const l = torch.tidy(() => new nn.Linear(3, 2));
    assert.equal(torch.liveTensors(), before + 2);
    assert.ok(l.parameters().every((p) => p.requiresGrad && !p.isDisposed && p.isLeaf));
    const bn = torch.tidy(() => new nn.BatchNorm2d(2));
    assert.ok(bn.namedBuffers().every(([, b]) => !b.isDisposed && !b.requiresGrad));
    l.dispose();
    bn.dispose();
    assert.equal(torch.liveTensors(), before);
  });

  test("activation and pooling modules match their functions", () =>
    torch.tidy(() => {
      torch.manualSeed(2);
      const x = torch.randn([2, 3, 4, 4]);
      const pairs: [torch.nn.Module, torch.Tensor][] = [
        [new nn.ReLU(), torch.F.relu(x)],
        [new nn.ReLU6(), torch.F.relu6(x)],
        [new nn.LeakyReLU(0.2), torch.F.leakyRelu(x, 0.2)],
        [new nn.SiLU(), torch.F.silu(x)],
        [new nn.GELU(), torch.F.gelu(x)],
        [new nn.MaxPool2d(2), torch.F.maxPool2d(x, 2)],
        [new nn.AvgPool2d(2, { stride: 1 }), torch.F.avgPool2d(x, 2, { stride: 1 })],
        [new nn.AdaptiveAvgPool2d([1, 2]), torch.F.adaptiveAvgPool2d(x, [1, 2])],
        [new nn.Flatten(), x.reshape(2, 48)],
        [new nn.Identity(), x],
      ];
      for (const [m, expected] of pairs) {
        const y = m.forward(x);
        assert.deepEqual([...y.shape], [...expected.shape], m.constructor.name);
        assert.deepEqual(y.toNumbers(), expected.toNumbers(), m.constructor.name);
      }
    }));

  test("ModuleList registers items under indices and has no forward", () => {
    const list = new nn.ModuleList([new nn.Linear(2, 2), new nn.Linear(2, 1)]);
    list.append(new nn.BatchNorm2d(1));
    assert.deepEqual(
      [...list.stateDict().keys()],
      ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var", "2.num_batches_tracked"],
    );
    assert.throws(() => list.forward(), /no forward/);
    list.dispose();
  });

  test("zeroGrad clears every parameter's gradient", () =>
    torch.tidy(() => {
      const m = new nn.Sequential(new nn.Linear(3, 2), new nn.Linear(2, 1));
      m.forward(torch.ones([1, 3]))
        .sum()
        .backward();
      assert.ok(m.parameters().every((p) => p.grad !== null));
      m.zeroGrad();
      assert.ok(m.parameters().every((p) => p.grad === null));
      m.dispose();
    }));
});

describe("memory format", () => {
  test("toMemoryFormat('channels_last') keeps identities, outputs, gradients and state_dict bytes", () =>
    torch.tidy(() => {
      torch.manualSeed(3);
      const a = new Net();
      const b = new Net();
      b.loadStateDict(a.stateDict());
      const params = b.parameters();
      b.toMemoryFormat("channels_last");
      assert.deepEqual(b.parameters(), params);
      const convWeight = b.features.stateDict().get("0.weight") as torch.Tensor;
      assert.equal(convWeight.isContiguous("channels_last"), true);
      assert.equal(convWeight.isContiguous(), false);
      a.eval();
      b.eval();
      const x = torch.randn([5, 3, 9, 9]);
      assertAllClose(b.forward(x).toNumbers(), a.forward(x).toNumbers(), 1e-5);
      a.forward(x).square().sum().backward();
      b.forward(x).square().sum().backward();
      for (const [i, p] of b.parameters().entries())
        assertAllClose((p.grad as torch.Tensor).toNumbers(), (a.parameters()[i].grad as torch.Tensor).toNumbers(), 1e-4);
      for (const [k, t] of b.stateDict()) assert.deepEqual(t.toBytes(), (a.stateDict().get(k) as torch.Tensor).toBytes(), k);
      b.toMemoryFormat("contiguous");
      assert.equal(convWeight.isContiguous(), true);
      a.dispose();
      b.dispose();
    }));

  test("contiguous('channels_last') needs a 4-D tensor; setData_ needs the same shape and dtype, and no inference-mode data", () =>
    torch.tidy(() => {
      assert.throws(() => torch.zeros([2, 3]).contiguous("channels_last"), /rank 4|4D|dimension/i);
      assert.throws(() => torch.zeros([2, 3]).contiguous("nhwc" as torch.MemoryFormat), TypeError);
      assert.throws(() => torch.zeros([2, 3]).setData_(torch.zeros([3, 2])), /setData_: the new data must have the shape/);
      assert.throws(() => torch.zeros([2, 3]).setData_(torch.zeros([2, 3], "int64")), /setData_/);
      const param = torch.zeros([2, 3]).requiresGrad_();
      const made = torch.inferenceMode(() => torch.ones([2, 3]));
      assert.throws(() => param.setData_(made), /inference mode/);
      assert.deepEqual(param.toNumbers(), [0, 0, 0, 0, 0, 0]);
    }));
});
