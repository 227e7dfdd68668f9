// Distillation: the loss against hand-computed KL divergences and gradients, the teachers' soft
// targets on real FER2013 images (one teacher's flip-averaged probabilities, the ensemble's mean
// at two input sizes, kept in the run folder), and a short real `ferkit train` run.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { assertAllClose, assertClose } from "./helpers.js";
import * as torch from "../src/torch/index.js";
import { distillationLoss, temper, Distill } from "../src/ssl/index.js";
import { parseConfig, ConfigError } from "../src/train/config.js";
import { teacherTargets, TARGETS_FILE } from "../src/train/teachers.js";
import { loadModelFile } from "../src/train/model_file.js";
import { predictProbs } from "../src/eval/evaluate.js";
import { readFer2013Dataset } from "../src/data/fer2013.js";
import { prepareSplit, resolveCacheDir } from "../src/data/prepare.js";
import { defaultDataRoot } from "../src/paths.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";

const work = mkdtempSync(path.join(tmpdir(), "ferkit-distill-"));
after(() => rmSync(work, { recursive: true, force: true }));
const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];

describe("distillation loss", () => {
  test("temper: p^(1/T) renormalised; T = 1 leaves p", () => {
    const p = Float32Array.from([0.5, 0.3, 0.2, 0.1, 0.1, 0.8]);
    assert.equal(temper(p, 3, 1), p);
    const t = temper(p, 3, 2);
    const s = Math.sqrt(0.5) + Math.sqrt(0.3) + Math.sqrt(0.2);
    assertAllClose(t.subarray(0, 3), [Math.sqrt(0.5) / s, Math.sqrt(0.3) / s, Math.sqrt(0.2) / s], 1e-6);
    assertClose(
      t.subarray(3).reduce((a, b) => a + b, 0),
      1,
      1e-6,
    );
  });

  test("T^2 KL(target || softmax(z / T)) and its gradient T (softmax(z / T) - target) / n, by hand", () => {
    const z = [
      [1.0, -0.5, 0.3],
      [0.2, 0.4, -1.1],
    ];
    const target = Float32Array.from([0.7, 0.2, 0.1, 0.0, 0.5, 0.5]);
    for (const T of [1, 3]) {
      const logits = torch.tensor(z).requiresGrad_();
      const loss = distillationLoss(logits, target, T);
      let kl = 0;
      const grad: number[] = [];
      z.forEach((row, i) => {
        const e = row.map((v) => Math.exp(v / T));
        const q = e.map((v) => v / e.reduce((a, b) => a + b, 0));
        row.forEach((_, c) => {
          const t = target[i * 3 + c];
          if (t > 0) kl += t * Math.log(t / q[c]);
          grad.push((T * (q[c] - t)) / z.length);
        });
      });
      assertClose(loss.item(), (T * T * kl) / z.length, 1e-5, 0, `loss at T=${T}`);
      loss.backward();
      assertAllClose(logits.grad?.toArray() as Float32Array, grad, 1e-5, 0, `gradient at T=${T}`);
    }
  });

  test("the step: CE and KL on the labeled batch, KL on the unlabeled weak view, targets' argmax as pseudo-labels", () => {
    const lin = new torch.nn.Linear(4, 3);
    const model = { forward: (x: torch.Tensor) => lin.forward(x.flatten(1)) } as unknown as Parameters<Distill["step"]>[0];
    const labeledTargets = Float32Array.from([0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.2, 0.2, 0.6]);
    const unlabeledTargets = Float32Array.from([0.1, 0.1, 0.8, 0.3, 0.6, 0.1]);
    const d = new Distill(
      { numClasses: 3, labeled: labeledTargets, unlabeled: unlabeledTargets },
      { temperature: 1, alpha: 0.25, lambdaU: 2, labelSmoothing: 0 },
    );
    const x = torch.rand([2, 1, 2, 2]);
    const u = torch.rand([2, 1, 2, 2]);
    const y = torch.tensor([0, 2], { dtype: "int64" });
    const out = d.step(model, { x, y, index: Int32Array.from([0, 2]) }, { weak: [u], strong: [], index: Int32Array.from([1, 0]) });
    const lx = lin.forward(x.flatten(1));
    const lu = lin.forward(u.flatten(1));
    const ce = torch.F.crossEntropy(lx, y).item();
    const kdX = distillationLoss(lx, Float32Array.from([0.8, 0.1, 0.1, 0.2, 0.2, 0.6]), 1).item();
    const kdU = distillationLoss(lu, Float32Array.from([0.3, 0.6, 0.1, 0.1, 0.1, 0.8]), 1).item();
    assertClose(out.loss.item(), 0.75 * ce + 0.25 * kdX + 2 * kdU, 1e-5);
    assertClose(out.logs.loss_u, kdU, 1e-5);
    assert.deepEqual([...(out.pseudo?.label ?? [])], [1, 2]);
    assert.deepEqual([...(out.pseudo?.mask ?? [])], [1, 1]);
  });

  test("config: teachers are required; distill may run without unlabeled images", () => {
    assert.throws(
      () => parseConfig({ algorithm: { name: "distill" } }),
      (e: Error) => e instanceof ConfigError && /algorithm\.teachers/.test(e.message),
    );
    const c = parseConfig({ algorithm: { name: "distill", teachers: ["ferkit-vgg-fer2013"] } });
    assert.deepEqual([c.algorithm.name, c.data.unlabeled.trainSplit, c.data.unlabeled.pools], ["distill", false, []]);
    assert.throws(
      () => parseConfig({ algorithm: { name: "distill", teachers: ["a"], temperature: 0 } }),
      (e: Error) => /algorithm\.temperature/.test(e.message),
    );
  });
});

describe("teachers' soft targets on real FER2013 images", async () => {
  const ds = readFer2013Dataset(path.join(defaultDataRoot(), "fer2013"), { splits: ["PublicTest"] });
  const split = await prepareSplit(ds, "PublicTest", {
    size: 48,
    channels: 1,
    cacheDir: resolveCacheDir(".cache", PACKAGE_ROOT),
    progress: false,
    limit: 64,
    limitSeed: 0,
  });
  const labeled = { images: split.images, shape: split.shape, n: split.n, labels: split.labels };
  const unlabeled = { images: split.images.slice(0, 16 * 48 * 48), shape: split.shape, n: 16 };
  const targets = (teachers: string[], runDir: string, log: (l: string) => void = () => {}) =>
    teacherTargets({ teachers, classes: CLASSES, labeled, unlabeled, runDir, write: true, precision: "fp32", log });

  test("one teacher: its flip-averaged probabilities; two at other input sizes: their mean; kept in the run folder", () => {
    const vgg = targets(["ferkit-vgg-fer2013"], path.join(work, "vgg"));
    const { model } = loadModelFile("ferkit-vgg-fer2013");
    assertAllClose(vgg.labeled, predictProbs(model, split.images, split.shape, { tta: true }), 1e-6);
    assertAllClose(vgg.unlabeled as Float32Array, vgg.labeled.subarray(0, 16 * 7), 1e-6, 0, "the unlabeled images are the first 16");
    model.dispose();
    const res = targets(["ferkit-faceres-fer2013"], path.join(work, "res")); // 96x96: the images resized up
    const lines: string[] = [];
    const both = targets(["ferkit-vgg-fer2013", "ferkit-faceres-fer2013"], path.join(work, "both"), (l) => lines.push(l));
    assertAllClose(
      both.labeled,
      vgg.labeled.map((v, i) => (v + res.labeled[i]) / 2),
      1e-6,
    );
    assert.ok(lines.some((l) => /teacher ferkit-faceres-fer2013: \d+\.\d\d % on the labeled images/.test(l)));
    assert.ok(existsSync(path.join(work, "both", TARGETS_FILE)));
    // Read back from the run folder (a resumed run); other teachers are computed again.
    const again: string[] = [];
    assertAllClose(
      targets(["ferkit-vgg-fer2013", "ferkit-faceres-fer2013"], path.join(work, "both"), (l) => again.push(l)).labeled,
      both.labeled,
      0,
    );
    assert.match(again.join("\n"), /soft targets read from/);
    const other: string[] = [];
    assertAllClose(targets(["ferkit-vgg-fer2013"], path.join(work, "both"), (l) => other.push(l)).labeled, vgg.labeled, 1e-6);
    assert.match(other.join("\n"), /targets of other teachers/);
  });

  test("a teacher with other classes, or one that is not a model, is refused naming algorithm.teachers", () => {
    assert.throws(
      () =>
        teacherTargets({
          teachers: ["ferkit-vgg-fer2013"],
          classes: [...CLASSES].reverse(),
          labeled,
          unlabeled: null,
          runDir: path.join(work, "rev"),
          write: true,
          precision: "fp32",
          log: () => {},
        }),
      (e: Error) =>
        e instanceof ConfigError &&
        /algorithm\.teachers: ferkit-vgg-fer2013 predicts angry, .*the student's classes are neutral/.test(e.message),
    );
    assert.throws(
      () => targets(["no-such-teacher"], path.join(work, "none")),
      (e: Error) => e instanceof ConfigError && /algorithm\.teachers: .*no-such-teacher does not exist/.test(e.message),
    );
  });
});

describe("ferkit train with algorithm distill", () => {
  test("a short real run learns the ensemble's targets and logs the teachers", () => {
    const file = path.join(work, "tiny-distill.json");
    writeFileSync(
      file,
      JSON.stringify({
        name: "tiny-distill",
        data: { limits: { train: 600, val: 200, test: 200 }, unlabeled: { trainSplit: true, limit: 300 } },
        algorithm: { name: "distill", teachers: ["ferkit-vgg-fer2013", "ferkit-faceres-fer2013"], temperature: 2 },
        optimizer: { name: "adam", lr: 0.003, weightDecay: 0 },
        schedule: { name: "cosine", warmupSteps: 5 },
        train: { steps: 60, batchSize: 16, epochSteps: 20, emaDecay: 0.9, logEvery: 5 },
      }),
    );
    const out = path.join(work, "run");
    const r = spawnSync(process.execPath, [bin, "train", "--config", file, "--out", out, "--no-progress", "--no-report"], {
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /distill: the teachers' mean: \d+\.\d\d % on the labeled images/);
    const events = readFileSync(path.join(out, "log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const steps = events.filter((e) => e.event === "step");
    assert.ok(steps.length > 0 && steps.every((e) => Number.isFinite(e.loss_kd) && Number.isFinite(e.loss_u)));
    // Step losses are noisy (batches of 16): the first 10 steps' mean against the last 20 steps'.
    const mean = (xs: Record<string, unknown>[]) => xs.reduce((a, e) => a + (e.loss_kd as number), 0) / xs.length;
    const [first, last] = [mean(steps.slice(0, 2)), mean(steps.slice(-4))];
    assert.ok(last < first, `the KL to the teachers' targets falls: ${first} -> ${last}`);
    assert.ok(existsSync(path.join(out, TARGETS_FILE)) && existsSync(path.join(out, "model.safetensors")));
  });
});
