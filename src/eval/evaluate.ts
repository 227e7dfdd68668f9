/**
 * Running a classifier over an image array and scoring it: class probabilities in
 * batches (optionally averaged with the horizontal flip), then the metrics of the field
 * and the expected calibration error.
 */
import * as torch from "../torch/index.js";
import type { nn } from "../torch/index.js";
import { atPrecision } from "../models/index.js";
import { classificationReport, type ClassificationReport } from "./metrics.js";

/** Options of {@link predictProbs}. */
export interface PredictOptions {
  batchSize?: number;
  /** Average the softmax of the image and of its horizontal flip (test-time augmentation). */
  tta?: boolean;
  /** "bf16" runs the forward passes under bfloat16 autocast (softmax and the result stay float32). Default "fp32". */
  precision?: "bf16" | "fp32";
}

/**
 * Softmax probabilities of `model` (in eval mode, inference mode) for every image.
 * @param images `[n, C, H, W]` uint8 (0..255), scaled to [0, 1] as in training
 * @returns `[n, numClasses]` float32, rows summing to 1
 */
export function predictProbs(
  model: nn.Module,
  images: Uint8Array,
  shape: readonly [number, number, number],
  o: PredictOptions = {},
): Float32Array {
  const per = shape[0] * shape[1] * shape[2];
  const n = images.length / per;
  const batchSize = o.batchSize ?? 256;
  const wasTraining = model.training;
  model.eval();
  const chunks: Float32Array[] = [];
  const net = atPrecision(model, o.precision ?? "fp32");
  torch.inferenceMode(() => {
    for (let start = 0; start < n; start += batchSize) {
      const m = Math.min(batchSize, n - start);
      chunks.push(
        torch.tidy(() => {
          const x = torch
            .fromArray(images.subarray(start * per, (start + m) * per), [m, ...shape])
            .float()
            .div(255);
          let p = net.forward(x).softmax(1);
          if (o.tta) p = p.add(net.forward(x.flip(3)).softmax(1)).div(2);
          return p.toArray() as Float32Array;
        }),
      );
    }
  });
  model.train(wasTraining);
  const out = new Float32Array(chunks.reduce((a, c) => a + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Index of the largest value of each row of a `[n, C]` row-major array. */
export function argmaxRows(probs: Float32Array, numClasses: number): number[] {
  const n = probs.length / numClasses;
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (probs[i * numClasses + c] > probs[i * numClasses + best]) best = c;
    out[i] = best;
  }
  return out;
}

/**
 * Expected calibration error (Guo et al. 2017): the confidence-weighted gap between
 * confidence and accuracy over `bins` equal-width confidence bins, in [0, 1].
 */
export function expectedCalibrationError(probs: Float32Array, labels: ArrayLike<number>, numClasses: number, bins = 15): number {
  const n = labels.length;
  const count = new Array<number>(bins).fill(0);
  const conf = new Array<number>(bins).fill(0);
  const correct = new Array<number>(bins).fill(0);
  const pred = argmaxRows(probs, numClasses);
  for (let i = 0; i < n; i++) {
    const c = probs[i * numClasses + pred[i]];
    const b = Math.min(bins - 1, Math.floor(c * bins));
    count[b]++;
    conf[b] += c;
    correct[b] += pred[i] === labels[i] ? 1 : 0;
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) if (count[b] > 0) ece += (count[b] / n) * Math.abs(correct[b] / count[b] - conf[b] / count[b]);
  return ece;
}

/** Metrics of a model on one split: the classification report, ECE and class names. */
export interface EvalResult extends ClassificationReport {
  ece: number;
  classes: string[];
}

/** Predicts every image and scores the predictions against `labels`. */
export function evaluate(
  model: nn.Module,
  split: { images: Uint8Array; labels: ArrayLike<number>; shape: readonly [number, number, number] },
  classes: readonly string[],
  o: PredictOptions = {},
): EvalResult {
  return scoreProbs(predictProbs(model, split.images, split.shape, o), split.labels, classes);
}

/**
 * Scores predicted probabilities against the true labels.
 * @param probs `[n, classes.length]` row-major probabilities
 * @param labels `[n]` true class indices
 */
export function scoreProbs(probs: Float32Array, labels: ArrayLike<number>, classes: readonly string[]): EvalResult {
  const split = { labels };
  const report = classificationReport(split.labels, argmaxRows(probs, classes.length), classes.length);
  return { ...report, ece: expectedCalibrationError(probs, split.labels, classes.length), classes: [...classes] };
}

/**
 * The JSON shape `ferkit eval --json` prints: accuracy, macro_f1, per_class (class name ->
 * precision, recall, f1, support), confusion_matrix (rows = true class, in `classes` order),
 * classes, n, ece.
 */
export function evalJson(r: EvalResult): Record<string, unknown> {
  return {
    accuracy: r.accuracy,
    macro_f1: r.macroF1,
    per_class: Object.fromEntries(r.classes.map((c, i) => [c, r.perClass[i]])),
    confusion_matrix: r.confusion,
    classes: r.classes,
    n: r.n,
    ece: r.ece,
  };
}
