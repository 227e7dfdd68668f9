/**
 * The first real run: a tiny CNN trained from scratch on a few FER2013 classes
 * (happy vs surprise by default), evaluated on PublicTest. It exercises the whole
 * engine on real data in about a minute, and is the quick start's main job until the
 * full trainer replaces it.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { readFer2013, type Fer2013Record } from "../data/fer2013.js";
import { decodeGrayBatch } from "../data/image.js";
import { FER2013_CLASSES, fer2013Index } from "../data/labels.js";
import { classificationReport, type ClassificationReport } from "../eval/metrics.js";
import * as torch from "../torch/index.js";
import { atPrecision } from "../models/index.js";

const { nn, F, optim } = torch;

/** Settings of {@link firstRun}. */
export interface FirstRunOptions {
  /** The `fer2013/` folder (with labels.csv). */
  fer2013Dir: string;
  /** FER2013 class names to tell apart (default happy, surprise). */
  classes: string[];
  /** Optimizer steps (default 300). */
  steps: number;
  batchSize: number;
  /** Adam's peak learning rate; it decays to 0 along a cosine over the steps. */
  lr: number;
  seed: number;
  /** CPU threads for libtorch. */
  threads: number;
  /** Forward passes under bfloat16 autocast, or float32 (default: bf16 where the CPU has native bfloat16). */
  precision?: "bf16" | "fp32";
  /** Cap on Training images per class (to keep the run short); Infinity for all. */
  maxPerClass: number;
  /** Folder for `model.safetensors` and `metrics.json`, or null to write nothing. */
  outDir: string | null;
  /** Receives progress lines. */
  log: (line: string) => void;
}

/** Outcome of {@link firstRun}. */
export interface FirstRunResult {
  classes: string[];
  /** PublicTest metrics of the trained model. */
  test: ClassificationReport;
  /** Accuracy of always predicting the most frequent PublicTest class. */
  majorityBaseline: number;
  nTrain: number;
  nTest: number;
  steps: number;
  seed: number;
  /** OpenBLAS's kernel (`OPENBLAS_CORETYPE`, or "auto"): it changes a seeded run's numbers. */
  openblasCoretype: string;
  /** What the forward passes ran at. */
  precision: "bf16" | "fp32";
  /** Wall time of data loading and of training, in seconds. */
  loadSeconds: number;
  trainSeconds: number;
  /** Files that could not be decoded (skipped). */
  skippedFiles: number;
}

/** A small conv net for `[N, 1, 48, 48]` images → `[N, numClasses]` logits. */
export function tinyCnn(numClasses: number): torch.nn.Sequential {
  const block = (cin: number, cout: number): torch.nn.Module[] => [
    new nn.Conv2d(cin, cout, 3, { padding: 1, bias: false }),
    new nn.BatchNorm2d(cout),
    new nn.ReLU(),
  ];
  return new nn.Sequential(
    ...block(1, 16),
    new nn.MaxPool2d(2),
    ...block(16, 32),
    new nn.MaxPool2d(2),
    ...block(32, 64),
    new nn.MaxPool2d(2),
    ...block(64, 64),
    new nn.AdaptiveAvgPool2d(1),
    new nn.Flatten(),
    new nn.Linear(64, numClasses),
  );
}

async function loadSplit(
  records: Fer2013Record[],
  classIds: number[],
  cap: number,
): Promise<{ x: torch.Tensor; y: torch.Tensor; labels: number[]; failed: number }> {
  const chosen: Fer2013Record[] = [];
  const taken = new Map<number, number>();
  for (const r of records) {
    const k = classIds.indexOf(r.label);
    if (k < 0 || (taken.get(k) ?? 0) >= cap) continue;
    taken.set(k, (taken.get(k) ?? 0) + 1);
    chosen.push(r);
  }
  const decoded = await decodeGrayBatch(
    chosen.map((r) => r.imagePath),
    48,
  );
  const labels = decoded.kept.map((i) => classIds.indexOf(chosen[i].label));
  const x = torch.tidy(() => torch.fromArray(decoded.pixels, [labels.length, 1, 48, 48]).float().div(255));
  const y = torch.tensor(labels, { dtype: "int64" });
  return { x, y, labels, failed: decoded.failed.length };
}

/**
 * Predicted class of every row of `x`, in batches, in inference mode.
 * @param x `[N, 1, 48, 48]` float32 images in [0, 1]
 * @param precision the forward passes' precision (bf16: under autocast)
 * @returns the `[N]` predicted class indices
 */
export function predict(model: torch.nn.Module, x: torch.Tensor, batchSize = 256, precision: "bf16" | "fp32" = "fp32"): number[] {
  model.eval();
  const net = atPrecision(model, precision);
  const out: number[] = [];
  torch.inferenceMode(() => {
    for (let i = 0; i < x.shape[0]; i += batchSize) {
      torch.tidy(() => {
        const n = Math.min(batchSize, x.shape[0] - i);
        out.push(
          ...net
            .forward(x.narrow(0, i, n))
            .argmax(1)
            .toNumbers(),
        );
      });
    }
  });
  return out;
}

/**
 * Trains {@link tinyCnn} on the chosen classes of FER2013 Training with Adam (cosine decay
 * to 0) and random horizontal flips, then reports PublicTest metrics against the majority-class baseline.
 * @throws RangeError for an unknown class name; Error when the data folder is unreadable
 */
export async function firstRun(o: FirstRunOptions): Promise<FirstRunResult> {
  const classIds = o.classes.map(fer2013Index);
  if (new Set(classIds).size < 2) throw new RangeError(`first-run: need at least two different classes, got ${o.classes.join(", ")}`);
  torch.setNumThreads(o.threads);
  torch.manualSeed(o.seed);

  const t0 = performance.now();
  const { records } = readFer2013(o.fer2013Dir, ["Training", "PublicTest"]);
  const train = await loadSplit(
    records.filter((r) => r.split === "Training"),
    classIds,
    o.maxPerClass,
  );
  const test = await loadSplit(
    records.filter((r) => r.split === "PublicTest"),
    classIds,
    Infinity,
  );
  const loadSeconds = (performance.now() - t0) / 1000;
  o.log(
    `loaded ${train.labels.length} Training and ${test.labels.length} PublicTest images of ${o.classes.join(", ")} in ${loadSeconds.toFixed(1)} s`,
  );

  const model = tinyCnn(classIds.length);
  const precision = o.precision ?? torch.resolvePrecision("auto").precision;
  const net = atPrecision(model, precision);
  const opt = new optim.Adam(model.parameters(), { lr: o.lr });
  // Decaying to 0 makes the last iterate (the one evaluated) a settled model: at a constant
  // rate, 150 steps ended anywhere between 62 and 86 % accuracy depending on the seed and on
  // OpenBLAS's kernel (OPENBLAS_CORETYPE), since the final weights sat on a noisy step.
  const schedule = new optim.LambdaLR(opt, optim.cosineWithWarmup(o.steps));
  const n = train.labels.length;
  let order = torch.randperm(n);
  let cursor = 0;
  const t1 = performance.now();
  model.train();
  for (let step = 1; step <= o.steps; step++) {
    if (cursor + o.batchSize > n) {
      order.dispose();
      order = torch.randperm(n);
      cursor = 0;
    }
    const loss = torch.tidy(() => {
      const idx = order.narrow(0, cursor, o.batchSize);
      const xb = train.x.indexSelect(0, idx);
      const flip = torch.rand([o.batchSize, 1, 1, 1]).lt(0.5);
      const input = torch.where(flip, xb.flip(3), xb);
      const l = F.crossEntropy(net.forward(input), train.y.indexSelect(0, idx));
      opt.zeroGrad();
      l.backward();
      opt.step();
      schedule.step();
      return l.item();
    });
    cursor += o.batchSize;
    if (!Number.isFinite(loss)) throw new Error(`first-run: the loss became ${loss} at step ${step}`);
    if (step % 50 === 0 || step === o.steps) {
      const secs = (performance.now() - t1) / 1000;
      o.log(`step ${step}/${o.steps}  loss ${loss.toFixed(4)}  ${((step * o.batchSize) / secs).toFixed(0)} img/s`);
    }
  }
  const trainSeconds = (performance.now() - t1) / 1000;
  order.dispose();

  const predictions = predict(model, test.x, 256, precision);
  const report = classificationReport(test.labels, predictions, classIds.length);
  const counts = classIds.map((_, k) => test.labels.filter((l) => l === k).length);
  const result: FirstRunResult = {
    classes: classIds.map((i) => FER2013_CLASSES[i]),
    test: report,
    majorityBaseline: Math.max(...counts) / test.labels.length,
    nTrain: n,
    nTest: test.labels.length,
    steps: o.steps,
    seed: o.seed,
    openblasCoretype: torch.openblasCoretype(),
    precision,
    loadSeconds,
    trainSeconds,
    skippedFiles: train.failed + test.failed,
  };
  if (o.outDir !== null) {
    mkdirSync(o.outDir, { recursive: true });
    torch.saveSafetensors(path.join(o.outDir, "model.safetensors"), model.stateDict(), {
      classes: JSON.stringify(result.classes),
      architecture: "tiny-cnn",
    });
    writeFileSync(path.join(o.outDir, "metrics.json"), JSON.stringify(result, null, 2) + "\n");
  }
  for (const t of [train.x, train.y, test.x, test.y]) t.dispose();
  opt.dispose();
  model.dispose();
  return result;
}
