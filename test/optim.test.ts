/**
 * Optimizers against hand-computed updates (PyTorch 1.13's torch/optim/sgd.py and
 * adam.py / adamw.py, _single_tensor_* formulas), state dict round trips, and the
 * learning-rate schedules.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import { assertAllClose, assertClose } from "./helpers.js";

const { optim } = torch;

const P0 = [1, -2];
const G1 = [0.5, -1];
const G2 = [-0.25, 2];

/** A float64 leaf parameter. */
const param = (v: number[]): torch.Tensor => torch.tensor(v, { dtype: "float64" }).requiresGrad_();

/** Sets a known gradient and runs one optimizer step; returns the parameter's values. */
function stepWith(opt: { step(): void }, p: torch.Tensor, g: number[]): number[] {
  const gt = torch.tensor(g, { dtype: "float64" });
  p.setGrad(gt);
  gt.dispose();
  opt.step();
  return p.toNumbers();
}

interface SgdH {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** PyTorch 1.13 SGD, elementwise in JavaScript doubles. Returns the parameter after each step. */
function sgdReference(p0: number[], grads: number[][], h: SgdH): number[][] {
  const { lr, momentum = 0, dampening = 0, weightDecay = 0, nesterov = false } = h;
  const p = [...p0];
  let buf: number[] | null = null;
  const out: number[][] = [];
  for (const g of grads) {
    let d = g.map((gi, i) => (weightDecay !== 0 ? gi + weightDecay * p[i] : gi));
    if (momentum !== 0) {
      const dp: number[] = d;
      buf = buf === null ? [...dp] : buf.map((b, i) => momentum * b + (1 - dampening) * dp[i]);
      const b: number[] = buf;
      d = nesterov ? dp.map((di, i) => di + momentum * b[i]) : [...b];
    }
    for (let i = 0; i < p.length; i++) p[i] -= lr * d[i];
    out.push([...p]);
  }
  return out;
}

interface AdamH {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
  decoupled?: boolean;
}

/** PyTorch 1.13 Adam / AdamW, elementwise in JavaScript doubles. */
function adamReference(p0: number[], grads: number[][], h: AdamH): number[][] {
  const { lr, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0, amsgrad = false, decoupled = false } = h;
  const [b1, b2] = betas;
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const vmax = p.map(() => 0);
  const out: number[][] = [];
  grads.forEach((g0, k) => {
    const step = k + 1;
    let g = g0;
    if (weightDecay !== 0) {
      if (decoupled) for (let i = 0; i < p.length; i++) p[i] *= 1 - lr * weightDecay;
      else g = g.map((gi, i) => gi + weightDecay * p[i]);
    }
    const bc1 = 1 - b1 ** step;
    const bc2Sqrt = Math.sqrt(1 - b2 ** step);
    for (let i = 0; i < p.length; i++) {
      m[i] = m[i] * b1 + (1 - b1) * g[i];
      v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i];
      vmax[i] = Math.max(vmax[i], v[i]);
      const denom = Math.sqrt(amsgrad ? vmax[i] : v[i]) / bc2Sqrt + eps;
      p[i] -= (lr / bc1) * (m[i] / denom);
    }
    out.push([...p]);
  });
  return out;
}

describe("SGD", () => {
  const cases: { name: string; h: SgdH; hand: [number[], number[]] }[] = [
    // p1 = p0 - 0.1 g1; p2 = p1 - 0.1 g2
    {
      name: "plain",
      h: { lr: 0.1 },
      hand: [
        [0.95, -1.9],
        [0.975, -2.1],
      ],
    },
    // buf1 = g1; buf2 = 0.9 g1 + g2 = [0.2, 1.1]
    {
      name: "momentum 0.9",
      h: { lr: 0.1, momentum: 0.9 },
      hand: [
        [0.95, -1.9],
        [0.93, -2.01],
      ],
    },
    // the first step ignores dampening: buf2 = 0.9 g1 + 0.5 g2 = [0.325, 0.1]
    {
      name: "momentum 0.9, dampening 0.5",
      h: { lr: 0.1, momentum: 0.9, dampening: 0.5 },
      hand: [
        [0.95, -1.9],
        [0.9175, -1.91],
      ],
    },
    // d1 = g1 + 0.9 g1 = [0.95, -1.9]; buf2 = [0.2, 1.1], d2 = g2 + 0.9 buf2 = [-0.07, 2.99]
    {
      name: "nesterov",
      h: { lr: 0.1, momentum: 0.9, nesterov: true },
      hand: [
        [0.905, -1.81],
        [0.912, -2.109],
      ],
    },
    // d1 = g1 + 0.1 p0 = [0.6, -1.2] -> p1 = [0.94, -1.88]; d2 = g2 + 0.1 p1 = [-0.156, 1.812]
    {
      name: "weight decay 0.1",
      h: { lr: 0.1, weightDecay: 0.1 },
      hand: [
        [0.94, -1.88],
        [0.9556, -2.0612],
      ],
    },
    {
      name: "momentum + nesterov + weight decay",
      h: { lr: 0.05, momentum: 0.8, nesterov: true, weightDecay: 0.01 },
      // d1 = 1.8 (g1 + 0.01 p0) = [0.918, -1.836]; buf2 = 0.8 buf1 + d2, d2 = g2 + 0.01 p1
      hand: [
        [0.9541, -1.9082],
        [0.95942131, -2.05384262],
      ],
    },
  ];
  for (const c of cases) {
    test(`${c.name}: first two steps`, () => {
      const p = param(P0);
      const opt = new optim.SGD([p], c.h);
      const s1 = stepWith(opt, p, G1);
      const s2 = stepWith(opt, p, G2);
      const ref = sgdReference(P0, [G1, G2], c.h);
      assertAllClose(s1, ref[0], 1e-14, 0, "step 1 vs reference");
      assertAllClose(s2, ref[1], 1e-14, 0, "step 2 vs reference");
      assertAllClose(s1, c.hand[0], 1e-12, 0, "step 1 by hand");
      assertAllClose(s2, c.hand[1], 1e-12, 0, "step 2 by hand");
      opt.dispose();
      p.dispose();
    });
  }

  test("a gradient from backward drives the update; parameters without grad are skipped", () =>
    torch.tidy(() => {
      const a = param([3, 4]);
      const b = param([1]);
      const opt = new optim.SGD([a, b], { lr: 0.5 });
      a.mul(a).sum().mul(0.5).backward(); // grad = a
      opt.step();
      assert.deepEqual(a.toNumbers(), [1.5, 2]);
      assert.deepEqual(b.toNumbers(), [1]);
      opt.zeroGrad();
      assert.equal(a.grad, null);
      opt.step(); // no gradients: nothing changes
      assert.deepEqual(a.toNumbers(), [1.5, 2]);
      opt.dispose();
    }));

  test("parameter groups keep their own hyper-parameters", () =>
    torch.tidy(() => {
      const a = param([1]);
      const b = param([1]);
      const opt = new optim.SGD([{ params: [a] }, { params: [b], lr: 1 }], { lr: 0.1 });
      stepWith(opt, a, [1]);
      b.setGrad(torch.tensor([1], { dtype: "float64" }));
      opt.step();
      assertClose(a.toNumbers()[0], 1 - 0.1 - 0.1, 1e-15); // a's grad is still set on the second step
      assertClose(b.toNumbers()[0], 0, 1e-15);
      assert.equal(opt.paramGroups[0].lr, 0.1);
      assert.equal(opt.paramGroups[1].lr, 1);
      assert.equal(opt.paramGroups[1].momentum, 0);
      opt.dispose();
    }));

  test("invalid hyper-parameters throw RangeError", () => {
    const p = param([1]);
    assert.throws(() => new optim.SGD([p], { lr: -1 }), RangeError);
    assert.throws(() => new optim.SGD([p], { lr: 0.1, momentum: -0.5 }), RangeError);
    assert.throws(() => new optim.SGD([p], { lr: 0.1, nesterov: true }), RangeError);
    assert.throws(() => new optim.SGD([p], { lr: 0.1, momentum: 0.9, nesterov: true, dampening: 0.1 }), RangeError);
    p.dispose();
  });
});

describe("Adam and AdamW", () => {
  test("Adam first step moves each element by about lr (hand-computed)", () => {
    const p = param(P0);
    const opt = new optim.Adam([p], { lr: 0.1 });
    // m = 0.1 g, v = 0.001 g^2; m / (1 - 0.9) / (sqrt(v / (1 - 0.999)) + eps) = g / (|g| + eps)
    const s1 = stepWith(opt, p, G1);
    assertAllClose(s1, [1 - (0.1 * 0.5) / (0.5 + 1e-8), -2 + (0.1 * 1) / (1 + 1e-8)], 1e-15);
    // Step 2, g2 = [-0.25, 2]:
    //   m = 0.9 * 0.05 - 0.025 = 0.02, v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225 (element 0)
    const m0 = 0.9 * 0.05 + 0.1 * -0.25;
    const v0 = 0.999 * 0.001 * 0.25 + 0.001 * 0.0625;
    const expected0 = s1[0] - (0.1 / (1 - 0.81)) * (m0 / (Math.sqrt(v0) / Math.sqrt(1 - 0.999 ** 2) + 1e-8));
    const s2 = stepWith(opt, p, G2);
    assertClose(s2[0], expected0, 1e-14);
    opt.dispose();
    p.dispose();
  });

  const cases: { name: string; make: (p: torch.Tensor) => torch.optim.Adam; h: AdamH }[] = [
    { name: "Adam", make: (p) => new optim.Adam([p], { lr: 0.1 }), h: { lr: 0.1 } },
    {
      name: "Adam with L2 weight decay and custom betas/eps",
      make: (p) => new optim.Adam([p], { lr: 0.05, weightDecay: 0.1, betas: [0.8, 0.95], eps: 1e-3 }),
      h: { lr: 0.05, weightDecay: 0.1, betas: [0.8, 0.95], eps: 1e-3 },
    },
    {
      name: "Adam amsgrad",
      make: (p) => new optim.Adam([p], { lr: 0.1, amsgrad: true, betas: [0.9, 0.99] }),
      h: { lr: 0.1, amsgrad: true, betas: [0.9, 0.99] },
    },
    {
      name: "AdamW default (weight decay 0.01, decoupled)",
      make: (p) => new optim.AdamW([p], { lr: 0.1 }),
      h: { lr: 0.1, weightDecay: 0.01, decoupled: true },
    },
    {
      name: "AdamW without weight decay equals Adam",
      make: (p) => new optim.AdamW([p], { lr: 0.1, weightDecay: 0 }),
      h: { lr: 0.1 },
    },
    {
      name: "AdamW weight decay 0.5 with amsgrad",
      make: (p) => new optim.AdamW([p], { lr: 0.1, weightDecay: 0.5, amsgrad: true, betas: [0.9, 0.99] }),
      h: { lr: 0.1, weightDecay: 0.5, amsgrad: true, betas: [0.9, 0.99], decoupled: true },
    },
  ];
  // Large then small gradients make amsgrad's running max differ from exp_avg_sq.
  const grads = [
    [10, -10, 0.5],
    [0.1, 0.1, -0.5],
  ];
  for (const c of cases) {
    test(`${c.name}: first two steps match the PyTorch 1.13 formulas`, () => {
      const p0 = [1, -2, 0.5];
      const p = param(p0);
      const opt = c.make(p);
      const s1 = stepWith(opt, p, grads[0]);
      const s2 = stepWith(opt, p, grads[1]);
      const ref = adamReference(p0, grads, c.h);
      assertAllClose(s1, ref[0], 1e-13, 0, "step 1");
      assertAllClose(s2, ref[1], 1e-13, 0, "step 2");
      assert.equal(opt.state.get(p)?.step, 2);
      opt.dispose();
      p.dispose();
    });
  }

  test("float32 parameters take one fused pass that agrees with the op-by-op path to float32 rounding", () => {
    // A dense float32 parameter goes through the fused kernel; a strided view (every other
    // column: not dense) through PyTorch's sequence of in-place ops. Same values, same result up
    // to a few ulp, for every variant, over three steps, with channels_last 4-D tensors too.
    torch.tidy(() => {
      torch.manualSeed(7);
      for (const c of cases) {
        for (const shape of [[37], [3, 4, 5, 6]]) {
          const n = shape.reduce((a, b) => a * b, 1);
          const init = torch.randn([n]);
          const d = init
            .clone()
            .view(...shape)
            .contiguous(shape.length === 4 ? "channels_last" : "contiguous")
            .requiresGrad_();
          // The same values every other float of a buffer: a parameter that is not dense.
          const storage = torch.zeros([n, 2]);
          storage.narrow(1, 0, 1).copy_(init.view(n, 1));
          const leafS = storage.narrow(1, 0, 1).view(n).requiresGrad_();
          assert.equal(leafS.isContiguous(), false);
          const optD = c.make(d);
          const optS = c.make(leafS);
          for (let step = 0; step < 3; step++) {
            const g = torch.randn([n]).mul(step === 0 ? 5 : 0.3);
            d.setGrad(g.view(...shape).contiguous(shape.length === 4 ? "channels_last" : "contiguous"));
            leafS.setGrad(g);
            const before = optim.adamFusedUpdates();
            optD.step();
            assert.equal(optim.adamFusedUpdates(), before + 1, "the dense parameter took the fused path");
            optS.step();
            assert.equal(optim.adamFusedUpdates(), before + 1, "the strided one did not");
            const fused = d.contiguous().view(n).toArray() as Float32Array;
            const opByOp = leafS.contiguous().toArray() as Float32Array;
            for (let i = 0; i < n; i++)
              assertClose(fused[i], opByOp[i], 1e-7, 1e-6, `${c.name}, shape [${shape.join(", ")}], step ${step + 1}, element ${i}`);
          }
          optD.dispose();
          optS.dispose();
        }
      }
    });
  });

  test("amsgrad matters: its second step differs from plain Adam's", () => {
    const plain = adamReference([1], [[10], [0.1]], { lr: 0.1, betas: [0.9, 0.99] });
    const ams = adamReference([1], [[10], [0.1]], { lr: 0.1, betas: [0.9, 0.99], amsgrad: true });
    assert.notEqual(plain[1][0], ams[1][0]);
    const p = param([1]);
    const opt = new optim.Adam([p], { lr: 0.1, betas: [0.9, 0.99], amsgrad: true });
    stepWith(opt, p, [10]);
    const s2 = stepWith(opt, p, [0.1]);
    assertClose(s2[0], ams[1][0], 1e-14);
    const st = opt.state.get(p);
    assert.ok(st !== undefined);
    assert.deepEqual(Object.keys(st.buffers).sort(), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    assertClose(st.buffers.max_exp_avg_sq.item(), 0.01 * 100, 1e-12);
    assertClose(st.buffers.exp_avg_sq.item(), 0.99 * 1 + 0.01 * 0.01, 1e-12);
    opt.dispose();
    p.dispose();
  });

  test("AdamW defaults and validation", () => {
    const p = param([1]);
    const w = new optim.AdamW([p]);
    assert.equal(w.paramGroups[0].weightDecay, 0.01);
    assert.equal(w.paramGroups[0].lr, 1e-3);
    assert.deepEqual(w.paramGroups[0].betas, [0.9, 0.999]);
    const a = new optim.Adam([p]);
    assert.equal(a.paramGroups[0].weightDecay, 0);
    assert.throws(() => new optim.Adam([p], { betas: [0.9, 1] }), RangeError);
    assert.throws(() => new optim.Adam([p], { lr: -1 }), RangeError);
    assert.throws(() => new optim.AdamW([p], { weightDecay: -0.1 }), RangeError);
    p.dispose();
  });
});

describe("optimizer state dict", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ferkit-optim-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const makers: { name: string; make: (ps: torch.Tensor[], lr: number) => torch.optim.Optimizer<{ lr: number }> }[] = [
    { name: "SGD momentum nesterov", make: (ps, lr) => new optim.SGD(ps, { lr, momentum: 0.9, nesterov: true, weightDecay: 1e-3 }) },
    { name: "Adam amsgrad", make: (ps, lr) => new optim.Adam(ps, { lr, amsgrad: true, weightDecay: 1e-2 }) },
    { name: "AdamW", make: (ps, lr) => new optim.AdamW(ps, { lr }) },
  ];
  const gradsAt = (k: number): number[][] => [
    [0.3 * k - 1, 0.7, -0.2 * k],
    [1 / (k + 1), -2],
  ];

  for (const { name, make } of makers) {
    test(`${name}: stateDict saved to disk and loaded into a new optimizer gives identical next steps`, () => {
      const pa = [param([1, 2, 3]), param([-1, 0.5])];
      const optA = make(pa, 0.05);
      for (let k = 0; k < 3; k++) {
        pa.forEach((p, i) => p.setGrad(torch.tidy(() => torch.tensor(gradsAt(k)[i], { dtype: "float64" }))));
        optA.step();
      }
      // Save: tensors as safetensors, meta as JSON (what a checkpoint does).
      const sd = optA.stateDict();
      const file = path.join(dir, `${name.replace(/\W+/g, "_")}.safetensors`);
      torch.saveSafetensors(file, sd.tensors);
      const meta = JSON.parse(JSON.stringify(sd.meta)) as typeof sd.meta;
      const loaded = torch.loadSafetensors(file);

      const pb = pa.map((p) => p.detach().clone().requiresGrad_());
      const optB = make(pb, 123); // a different lr, restored by loadStateDict
      optB.loadStateDict({ tensors: loaded.tensors, meta });
      torch.dispose(loaded.tensors); // loadStateDict copied them
      assert.equal(optB.paramGroups[0].lr, 0.05);
      pb.forEach((p, i) => assert.equal(optB.state.get(p)?.step, optA.state.get(pa[i])?.step));

      for (let k = 3; k < 5; k++) {
        for (const [ps, opt] of [
          [pa, optA],
          [pb, optB],
        ] as const) {
          ps.forEach((p, i) => p.setGrad(torch.tidy(() => torch.tensor(gradsAt(k)[i], { dtype: "float64" }))));
          opt.step();
        }
        pa.forEach((p, i) => assert.deepEqual(pb[i].toNumbers(), p.toNumbers(), `step ${k}, param ${i}`));
      }
      optA.dispose();
      optB.dispose();
      for (const p of [...pa, ...pb]) p.dispose();
    });

    test(`${name}: loading its own stateDict is a no-op for the next steps`, () => {
      const pa = [param([1, 2, 3]), param([-1, 0.5])];
      const pb = pa.map((p) => p.detach().clone().requiresGrad_());
      const optA = make(pa, 0.05);
      const optB = make(pb, 0.05);
      for (let k = 0; k < 4; k++) {
        if (k === 2) optB.loadStateDict(optB.stateDict());
        for (const [ps, opt] of [
          [pa, optA],
          [pb, optB],
        ] as const) {
          ps.forEach((p, i) => p.setGrad(torch.tidy(() => torch.tensor(gradsAt(k)[i], { dtype: "float64" }))));
          opt.step();
        }
      }
      pa.forEach((p, i) => assert.deepEqual(pb[i].toNumbers(), p.toNumbers()));
      optA.dispose();
      optB.dispose();
      for (const p of [...pa, ...pb]) p.dispose();
    });
  }

  test("stateDict layout: PyTorch's flattened names and JSON meta", () => {
    const ps = [param([1, 2]), param([3])];
    const opt = new optim.Adam(ps, { lr: 0.01 });
    ps[1].setGrad(torch.tidy(() => torch.tensor([1], { dtype: "float64" })));
    opt.step(); // only parameter 1 has a gradient
    const sd = opt.stateDict();
    assert.equal(sd.meta.type, "Adam");
    assert.deepEqual([...sd.tensors.keys()].sort(), ["state.1.exp_avg", "state.1.exp_avg_sq"]);
    assert.deepEqual(sd.meta.state["1"], { step: 1 });
    assert.deepEqual(sd.meta.param_groups[0].params, [0, 1]);
    assert.equal(sd.meta.param_groups[0].lr, 0.01);
    assert.equal(sd.meta.state["0"]?.step ?? 0, 0);
    opt.dispose();
    for (const p of ps) p.dispose();
  });

  test("loadStateDict rejects another optimizer type, group count or shape", () => {
    const p = param([1, 2]);
    const q = param([1, 2, 3]);
    const sgd = new optim.SGD([p], { lr: 0.1, momentum: 0.9 });
    stepWith(sgd, p, [1, 1]);
    const adam = new optim.Adam([p]);
    assert.throws(() => adam.loadStateDict(sgd.stateDict()), /SGD optimizer given to Adam/);
    const sgdQ = new optim.SGD([q], { lr: 0.1, momentum: 0.9 });
    assert.throws(() => sgdQ.loadStateDict(sgd.stateDict()), /shape/);
    const sgd2 = new optim.SGD([{ params: [p] }, { params: [q] }], { lr: 0.1, momentum: 0.9 });
    assert.throws(() => sgd2.loadStateDict(sgd.stateDict()), /parameter groups/);
    // The failed loads left the current state in place and usable.
    stepWith(sgdQ, q, [1, 1, 1]);
    const before = sgdQ.state.get(q)?.buffers.momentum_buffer.toNumbers();
    assert.throws(() => sgdQ.loadStateDict(sgd.stateDict()), /shape/);
    assert.equal(sgdQ.state.get(q)?.step, 1);
    assert.deepEqual(sgdQ.state.get(q)?.buffers.momentum_buffer.toNumbers(), before);
    stepWith(sgdQ, q, [1, 1, 1]);
    assert.equal(sgdQ.state.get(q)?.step, 2);
    for (const o of [sgd, adam, sgdQ, sgd2]) o.dispose();
    p.dispose();
    q.dispose();
  });

  test("parameters that never had a gradient get no state (as in PyTorch)", () => {
    const live = torch.liveTensors();
    const frozen = param([1, 2, 3]);
    const trained = param([4]);
    for (const opt of [new optim.Adam([frozen, trained]), new optim.SGD([frozen, trained], { lr: 0.1, momentum: 0.9 })]) {
      stepWith(opt, trained, [1]);
      assert.equal(opt.state.has(frozen), false);
      assert.equal(opt.state.has(trained), true);
      assert.deepEqual(Object.keys(opt.stateDict().meta.state), ["1"]);
      opt.dispose();
      trained.setGrad(null);
    }
    frozen.dispose();
    trained.dispose();
    assert.equal(torch.liveTensors(), live);
  });

  test("restored state of a channels_last weight is channels_last, with the saved values", () =>
    torch.tidy(() => {
      const w = torch.keep(torch.randn([4, 3, 2, 2]).contiguous("channels_last"));
      w.requiresGrad_(true);
      const adam = new optim.Adam([w]);
      w.square().sum().backward();
      adam.step();
      const saved = adam.stateDict();
      const again = new optim.Adam([w]);
      again.loadStateDict(saved);
      for (const [name, t] of again.stateDict().tensors) {
        assert.equal(t.isContiguous("channels_last"), true, name);
        assert.deepEqual(t.toNumbers(), (saved.tensors.get(name) as torch.Tensor).toNumbers(), name);
      }
      adam.dispose();
      again.dispose();
      w.dispose();
    }));
});

describe("learning-rate schedules", () => {
  test("LambdaLR sets lr = base_lr * lambda(step) on every group, from construction on", () => {
    const a = param([1]);
    const b = param([1]);
    const opt = new optim.SGD([{ params: [a] }, { params: [b], lr: 1 }], { lr: 0.2 });
    const sched = new optim.LambdaLR(opt, (s) => 0.5 ** s);
    assert.deepEqual(sched.lrs, [0.2, 1]);
    sched.step();
    assert.deepEqual(sched.lrs, [0.1, 0.5]);
    sched.step();
    assert.deepEqual(sched.lrs, [0.05, 0.25]);
    assert.equal(sched.lastStep, 2);
    // The optimizer uses the scheduled lr.
    stepWith(opt, a, [1]);
    assertClose(a.toNumbers()[0], 1 - 0.05, 1e-15);
    // Round trip of the schedule state into a fresh optimizer and schedule.
    const c = param([1]);
    const d = param([1]);
    const opt2 = new optim.SGD([{ params: [c] }, { params: [d], lr: 7 }], { lr: 9 });
    const sched2 = new optim.LambdaLR(opt2, (s) => 0.5 ** s);
    sched2.loadStateDict(JSON.parse(JSON.stringify(sched.stateDict())));
    assert.deepEqual(sched2.lrs, [0.05, 0.25]);
    sched2.step();
    sched.step();
    assert.deepEqual(sched2.lrs, sched.lrs);
    for (const o of [opt, opt2]) o.dispose();
    for (const p of [a, b, c, d]) p.dispose();
  });

  test("cosineWithWarmup values", () => {
    const f = optim.cosineWithWarmup(10, 2);
    // Warm-up: (step + 1) / warmup.
    assertClose(f(0), 0.5, 1e-15);
    assertClose(f(1), 1, 1e-15);
    // Cosine over steps 2..10: progress (step - 2) / 8.
    assertClose(f(2), 1, 1e-15);
    assertClose(f(4), 0.5 * (1 + Math.SQRT1_2), 1e-15);
    assertClose(f(6), 0.5, 1e-15);
    assertClose(f(8), 0.5 * (1 - Math.SQRT1_2), 1e-15);
    assertClose(f(10), 0, 1e-15);
    assertClose(f(25), 0, 1e-15);
    const g = optim.cosineWithWarmup(10, 2, 0.1);
    assertClose(g(6), 0.1 + 0.9 * 0.5, 1e-15);
    assertClose(g(10), 0.1, 1e-15);
    assertClose(g(0), 0.5, 1e-15);
    const h = optim.cosineWithWarmup(4);
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((s) => Number(h(s).toFixed(12))),
      [1, 0.853553390593, 0.5, 0.146446609407, 0],
    );
    // Non-increasing after warm-up.
    for (let s = 2; s < 12; s++) assert.ok(f(s + 1) <= f(s) + 1e-15);
  });

  test("fixmatchCosine values: cos(7 pi k / (16 K))", () => {
    const f = optim.fixmatchCosine(100);
    assertClose(f(0), 1, 1e-15);
    assertClose(f(50), Math.cos((7 * Math.PI) / 32), 1e-15);
    assertClose(f(100), 0.19509032201612825, 1e-12);
    assertClose(f(150), f(100), 1e-15);
    assertClose(optim.constantSchedule()(1000), 1, 0);
  });

  test("LambdaLR with cosineWithWarmup drives an optimizer's lr", () => {
    const p = param([0]);
    const opt = new optim.AdamW([p], { lr: 0.4 });
    const sched = new optim.LambdaLR(opt, optim.cosineWithWarmup(6, 2));
    const lrs: number[] = [];
    for (let s = 0; s < 7; s++) {
      lrs.push(opt.paramGroups[0].lr);
      sched.step();
    }
    assertAllClose(lrs, [0.2, 0.4, 0.4, 0.4 * 0.5 * (1 + Math.SQRT1_2), 0.2, 0.4 * 0.5 * (1 - Math.SQRT1_2), 0], 1e-15);
    opt.dispose();
    p.dispose();
  });
});
