// Mixed precision: libtorch's CPU autocast from TypeScript (dtypes, gradients, nesting, the
// weight-cast cache), bfloat16 tensors, the precision choice and its fallback, and bf16 runs
// of the trainer (resume exactness, what the run folder records).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as torch from "../src/torch/index.js";
import type { Tensor } from "../src/torch/index.js";
import { atPrecision, createModel } from "../src/models/index.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { readRunConfig, train } from "../src/train/trainer.js";
import { parseConfig } from "../src/train/config.js";
import { defaultDataRoot } from "../src/paths.js";
import { assertAllClose, assertGradcheck, leaf } from "./helpers.js";

const { F } = torch;
const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-precision-"));
after(() => rmSync(work, { recursive: true, force: true }));

const off = { enabled: false, dtype: "bfloat16" };
const values = (t: Tensor): Float32Array => t.float().contiguous().toArray() as Float32Array;

/** Largest |a - b| relative to the largest |b|. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
}

/** Cosine similarity of two vectors. */
function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

describe("autocast", () => {
  test("is off by default; conv2d, linear and matmul run in bfloat16, losses in float32, within bfloat16 rounding", () => {
    torch.tidy(() => {
      assert.deepEqual(torch.autocastState(), off);
      torch.manualSeed(0);
      const x = torch.randn([4, 3, 12, 12]);
      const w = torch.randn([8, 3, 3, 3]).mul(0.2);
      const a = torch.randn([5, 16]);
      const lw = torch.randn([6, 16]).mul(0.2);
      const y = torch.randint(0, 6, [5]);
      const ref = {
        conv: values(F.conv2d(x, w, null, { padding: 1 })),
        linear: values(F.linear(a, lw)),
        matmul: values(a.matmul(lw.t())),
      };
      torch.autocast(() => {
        assert.deepEqual(torch.autocastState(), { enabled: true, dtype: "bfloat16" });
        const conv = F.conv2d(x, w, null, { padding: 1 });
        const linear = F.linear(a, lw);
        const matmul = a.matmul(lw.t());
        for (const [name, t] of Object.entries({ conv, linear, matmul })) assert.equal(t.dtype, "bfloat16", name);
        // bfloat16 keeps 8 bits of mantissa: about 2-3 significant digits.
        assert.ok(relativeError(values(conv), ref.conv) < 0.02, "conv2d within bfloat16 rounding");
        assert.ok(relativeError(values(linear), ref.linear) < 0.02, "linear within bfloat16 rounding");
        assert.ok(relativeError(values(matmul), ref.matmul) < 0.02, "matmul within bfloat16 rounding");
        // Losses are on libtorch's float32 list: bfloat16 logits give a float32 loss.
        const ce = F.crossEntropy(linear, y);
        const mse = F.mseLoss(linear, torch.zerosLike(linear));
        assert.equal(ce.dtype, "float32");
        assert.equal(mse.dtype, "float32");
        assert.ok(Math.abs(ce.item() - F.crossEntropy(F.linear(a, lw).float(), y).item()) < 1e-6);
        // Ops on neither list follow their input: 1.13 keeps softmax on bfloat16 logits in
        // bfloat16, which is why atPrecision hands float32 logits on.
        assert.equal(linear.softmax(1).dtype, "bfloat16");
      });
      assert.deepEqual(torch.autocastState(), off);
    });
  });

  test("gradients reach float32 parameters through the casts, close to float32 gradients", () => {
    torch.tidy(() => {
      torch.manualSeed(1);
      const model = createModel("vgg-fer", { width: 0.25 });
      const x = torch.rand([6, 1, 48, 48]);
      const y = torch.randint(0, 7, [6]);
      const grads = (precision: "bf16" | "fp32"): Map<string, Float32Array> => {
        model.zeroGrad();
        model.eval(); // no dropout: both passes see the same network
        const loss = F.crossEntropy(atPrecision(model, precision).forward(x), y);
        assert.equal(loss.dtype, "float32");
        loss.backward();
        return new Map(model.namedParameters().map(([k, p]) => [k, values(p.grad as Tensor)]));
      };
      const fp32 = grads("fp32");
      const bf16 = grads("bf16");
      for (const [k, p] of model.namedParameters()) assert.equal(p.grad?.dtype, "float32", `${k}'s gradient is float32`);
      // The last layer's gradient is the softmax error times the features (measured with oneDNN's
      // bfloat16: 0.6 % off); the first layer's went back through eight bfloat16 convolutions (16 %
      // off at the largest entry, direction within cosine 0.98). The bars leave room for libtorch's
      // own bfloat16 kernels, which CPUs without AVX-512 run.
      assert.ok(relativeError(bf16.get("classifier.6.weight")!, fp32.get("classifier.6.weight")!) < 0.05);
      assert.ok(cosine(bf16.get("features.0.weight")!, fp32.get("features.0.weight")!) > 0.9);
      model.dispose();
    });
  });

  test("a no-grad forward before a training forward leaves every weight a gradient (one region per forward)", () => {
    // In one autocast region libtorch would reuse the first forward's graph-less weight casts
    // for the second, and the convolution and linear weights would get no gradient.
    torch.tidy(() => {
      torch.manualSeed(4);
      const model = createModel("vgg-fer", { width: 0.25 }).train();
      const net = atPrecision(model, "bf16");
      const x = torch.rand([4, 1, 48, 48]);
      torch.inferenceMode(() => torch.tidy(() => net.forward(x).softmax(1).toArray()));
      torch.noGrad(() => net.forward(x));
      F.crossEntropy(net.forward(x), torch.randint(0, 7, [4])).backward();
      for (const [k, p] of model.namedParameters()) assert.ok(p.grad !== null, `${k} has a gradient`);
      model.dispose();
    });
  });

  test("relu6 and PReLU train in bfloat16 (libtorch's hardtanh backward lacks bfloat16 on CPU)", () => {
    torch.tidy(() => {
      torch.manualSeed(5);
      for (const [name, batchNorm] of [
        ["mobilenetv2", false],
        ["faceres", false],
        ["faceres", true],
        ["mobilefacenet", false],
      ] as const) {
        const model = createModel(name, { batchNorm }).train();
        const logits = atPrecision(model, "bf16").forward(torch.rand([2, 3, 32, 32]));
        F.crossEntropy(logits, torch.randint(0, 7, [2])).backward();
        for (const [k, p] of model.namedParameters())
          assert.ok(p.grad !== null && Number.isFinite(p.grad.norm().item()), `${name}${batchNorm ? " with batch norm" : ""} ${k}`);
        model.dispose();
      }
      // relu6's gradient in bfloat16: 1 strictly inside (0, 6), 0 outside.
      const x = torch.fromArray(Float32Array.from([-1, 0.5, 3, 7]), [4]).requiresGrad_(true);
      F.relu6(x.to("bfloat16")).float().sum().backward();
      assert.deepEqual(Array.from(x.grad!.toArray() as Float32Array), [0, 1, 1, 0]);
    });
  });

  test("BatchNorm's running statistics stay float32 and follow a bf16 training pass", () => {
    torch.tidy(() => {
      torch.manualSeed(2);
      const x = torch.rand([16, 1, 48, 48]);
      const stats = (precision: "bf16" | "fp32"): Float32Array[] => {
        torch.manualSeed(5);
        const model = createModel("vgg-fer", { width: 0.25 }).train();
        atPrecision(model, precision).forward(x);
        const bn = model.namedBuffers().filter(([k]) => k.startsWith("features.4.running_"));
        assert.equal(bn.length, 2);
        for (const [k, b] of bn) assert.equal(b.dtype, "float32", k);
        const out = bn.map(([, b]) => values(b));
        model.dispose();
        return out;
      };
      const fp32 = stats("fp32");
      const bf16 = stats("bf16");
      // The second convolution's BatchNorm, after two bfloat16 convolutions: mean and variance of
      // bfloat16 activations, accumulated in float32.
      for (let k = 0; k < 2; k++) {
        assert.ok(relativeError(bf16[k], fp32[k]) < 0.05, `running ${k === 0 ? "mean" : "var"}: ${relativeError(bf16[k], fp32[k])}`);
        assert.ok(
          bf16[k].some((v, i) => v !== fp32[k][i]),
          "computed from the bfloat16 activations",
        );
      }
    });
  });

  test("nests, restores the previous state after a throwing body, and works as a `using` guard", () => {
    torch.autocast(() => {
      torch.autocast(
        () => {
          assert.equal(torch.autocastState().enabled, false, "an inner region can turn autocast off");
          torch.autocast(() => assert.equal(torch.autocastState().enabled, true));
          assert.equal(torch.autocastState().enabled, false);
        },
        { enabled: false },
      );
      assert.equal(torch.autocastState().enabled, true);
      assert.throws(
        () =>
          torch.autocast(
            () => {
              throw new Error("boom");
            },
            { enabled: false },
          ),
        /boom/,
      );
      assert.equal(torch.autocastState().enabled, true, "restored after the throw");
    });
    assert.deepEqual(torch.autocastState(), off);
    {
      using _guard = torch.autocastScope();
      assert.equal(torch.autocastState().enabled, true);
    }
    assert.deepEqual(torch.autocastState(), off);
    assert.throws(() => torch.autocast(() => Promise.resolve(1)), /must be synchronous/);
    assert.deepEqual(torch.autocastState(), off);
    assert.throws(() => torch.autocast(() => 1, { dtype: "float16" as "bfloat16" }), /must be bfloat16/);
    assert.deepEqual(torch.autocastState(), off);
  });

  test("a region sees weights changed in place since the last one (the cast cache ends with the region)", () => {
    torch.tidy(() => {
      const x = torch.ones([2, 4]);
      const w = torch.ones([3, 4]).requiresGrad_(); // a leaf that requires grad: autocast caches its cast
      const first = torch.autocast(() => F.linear(x, w).sum().item());
      torch.noGrad(() => w.mul_(2)); // as an optimizer step does
      const second = torch.autocast(() => F.linear(x, w).sum().item());
      assert.equal(first, 24);
      assert.equal(second, 48);
    });
  });

  test("gradcheck stays float64: autocast leaves float64 tensors alone", () => {
    torch.tidy(() => {
      torch.manualSeed(3);
      const x = leaf([2, 2, 5, 5]);
      const w = leaf([3, 2, 3, 3]);
      torch.autocast(() => {
        assert.equal(F.conv2d(x, w).dtype, "float64");
        assertGradcheck("conv2d under autocast", (a, b) => F.conv2d(a, b, null, { padding: 1 }), [x, w]);
      });
    });
  });

  test("bfloat16 tensors are created, converted and read back as float32", () => {
    torch.tidy(() => {
      const t = torch.tensor([1, 0.5, -3.25, 1 / 3], { dtype: "bfloat16" });
      assert.equal(t.dtype, "bfloat16");
      const back = t.toArray();
      assert.ok(back instanceof Float32Array);
      assertAllClose(back, [1, 0.5, -3.25, 0.333984375]);
      assert.equal(torch.zeros([2], "bfloat16").to("float32").dtype, "float32");
    });
  });
});

/** Runs `fn` (sync or async) with FERKIT_NATIVE_BF16 set to `value`, then restores it. */
async function withEnv<T>(value: string, fn: () => T | Promise<T>): Promise<T> {
  const before = process.env.FERKIT_NATIVE_BF16;
  process.env.FERKIT_NATIVE_BF16 = value;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.FERKIT_NATIVE_BF16;
    else process.env.FERKIT_NATIVE_BF16 = before;
  }
}

describe("precision choice", () => {
  test("auto is bf16 with native bfloat16, fp32 with one line saying why without; fp32 is always fp32", async () => {
    await withEnv("1", () => {
      assert.deepEqual(torch.resolvePrecision("auto"), { precision: "bf16" });
      assert.deepEqual(torch.resolvePrecision("bf16"), { precision: "bf16" });
    });
    await withEnv("0", () => {
      assert.equal(torch.cpuHasNativeBf16(), false);
      const auto = torch.resolvePrecision("auto");
      assert.equal(auto.precision, "fp32");
      assert.match(auto.note ?? "", /no native bfloat16/);
      const bf16 = torch.resolvePrecision("bf16");
      assert.equal(bf16.precision, "fp32");
      assert.match(bf16.note ?? "", /bf16 requested.*running fp32/);
    });
    assert.deepEqual(torch.resolvePrecision("fp32"), { precision: "fp32" });
    const flags = readFileSync("/proc/cpuinfo", "utf8");
    if (process.env.FERKIT_NATIVE_BF16 === undefined)
      assert.equal(torch.cpuHasNativeBf16(), /\b(avx512_bf16|amx_bf16)\b/.test(flags), "detection reads /proc/cpuinfo");
  });

  test("a run folder from before the precision fields reads as fp32", () => {
    const dir = path.join(work, "old-run");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "config.json"), JSON.stringify({ name: "old", train: { steps: 10 } }));
    const c = readRunConfig(dir);
    assert.equal(c.train.precision, "fp32");
    assert.equal(c.eval.precision, "fp32");
    assert.equal(c.train.steps, 10);
  });

  test("config: precision fields default to auto and name their allowed values", () => {
    const c = parseConfig({});
    assert.equal(c.train.precision, "auto");
    assert.equal(c.eval.precision, "auto");
    assert.throws(() => parseConfig({ train: { precision: "fp16" } }), /train\.precision.*"auto"\|"bf16"\|"fp32"/);
  });

  test("`train --precision bf16` on a CPU reported without bfloat16 runs fp32, says so, and records it", () => {
    const cfg = path.join(work, "tiny.json");
    writeFileSync(
      cfg,
      JSON.stringify({
        name: "tiny",
        data: { limits: { train: 200, val: 100, test: 100 } },
        optimizer: { name: "adam", lr: 0.001, weightDecay: 0 },
        train: { steps: 4, batchSize: 8, epochSteps: 4, logEvery: 2 },
      }),
    );
    const out = path.join(work, "fallback");
    const r = spawnSync(
      process.execPath,
      [bin, "train", "--config", cfg, "--out", out, "--precision", "bf16", "--no-progress", "--no-report"],
      {
        encoding: "utf8",
        env: { ...process.env, FERKIT_NATIVE_BF16: "0" },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /precision bf16 requested, but this CPU has no native bfloat16.*running fp32/);
    assert.match(r.stderr, /precision: training fp32, evaluation fp32/);
    const config = JSON.parse(readFileSync(path.join(out, "config.json"), "utf8")) as { train: { precision: string } };
    assert.equal(config.train.precision, "fp32", "the run folder says what ran");
    const metrics = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8")) as { precision: string };
    assert.equal(metrics.precision, "fp32");
  });
});

describe("bf16 training", { skip: torch.cpuHasNativeBf16() ? false : "this CPU has no native bfloat16" }, () => {
  test("a bf16 run stopped midway and resumed ends exactly like an uninterrupted one", async () => {
    const config = parseConfig({
      name: "bf16-resume",
      data: { limits: { train: 400, val: 150, test: 150 } },
      optimizer: { name: "adam", lr: 0.001, weightDecay: 0 },
      schedule: { name: "cosine", warmupSteps: 3 },
      train: { steps: 12, batchSize: 16, epochSteps: 4, emaDecay: 0.9, logEvery: 2, precision: "bf16" },
      eval: { precision: "bf16" },
    });
    const full = path.join(work, "bf16-full");
    const part = path.join(work, "bf16-part");
    const a = await train({ config, runDir: full, dataRoot: defaultDataRoot(), progress: false });
    assert.equal(a.status, "completed");
    assert.equal((await train({ config, runDir: part, dataRoot: defaultDataRoot(), progress: false, stopAfter: 6 })).status, "interrupted");
    // Resumed where bfloat16 is not native (simulated): the run keeps bf16, says so, stays exact.
    const lines: string[] = [];
    const b = await withEnv("0", () =>
      train({ runDir: part, resume: true, dataRoot: defaultDataRoot(), progress: false, log: (l) => lines.push(l) }),
    );
    assert.equal(b.status, "completed");
    assert.equal(b.precision, "bf16");
    assert.ok(
      lines.some((l) => /continues in bf16 to stay exact/.test(l)),
      lines.join("\n"),
    );
    assert.deepEqual(b.test, a.test, "same test metrics");
    assert.deepEqual(b.best, a.best);
    const read = (dir: string) => JSON.parse(readFileSync(path.join(dir, "metrics.json"), "utf8")) as Record<string, unknown>;
    assert.equal(read(full).precision, "bf16");
    assert.equal(read(part).precision, "bf16");
    const events = readFileSync(path.join(part, "log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(events[0].precision, "bf16");
    assert.deepEqual(
      events.filter((e) => e.event === "resume").map((e) => [e.precision, e.eval_precision]),
      [["bf16", "bf16"]],
    );
    // The saved weights are float32 and identical after the resume.
    const wa = torch.loadSafetensors(path.join(full, "model.safetensors"));
    const wb = torch.loadSafetensors(path.join(part, "model.safetensors"));
    for (const [k, t] of wa.tensors) {
      assert.ok(t.dtype === "float32" || t.dtype === "int64", `${k} is ${t.dtype}`);
      assert.deepEqual(t.toArray(), wb.tensors.get(k)!.toArray(), k);
    }
    for (const t of [...wa.tensors.values(), ...wb.tensors.values()]) t.dispose();
  });
});
