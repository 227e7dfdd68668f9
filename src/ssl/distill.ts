/**
 * Knowledge distillation from fixed soft targets (Hinton, Vinyals and Dean 2015, "Distilling the
 * knowledge in a neural network"): the targets are the class probabilities of one or more
 * teacher models on every labeled and unlabeled image, computed once before training (an
 * ensemble's mean); the student learns them on the labeled images beside their labels, and on
 * the unlabeled images alone.
 */
import * as torch from "../torch/index.js";
import type { Tensor } from "../torch/index.js";
import type { Classifier } from "../models/index.js";
import { rowMax } from "./self_training.js";
import type { Algorithm, LabeledBatch, StepOutput, UnlabeledBatch } from "./types.js";

/** The teachers' class probabilities, row-major `[n, C]` float32 rows summing to 1. */
export interface SoftTargets {
  numClasses: number;
  /** One row per labeled training image (the run's labeled images, in their order). */
  labeled: Float32Array;
  /** One row per unlabeled image (the run's unlabeled set, in its order); null without one. */
  unlabeled: Float32Array | null;
}

/** Options of {@link Distill} (the `distill` algorithm section; see its config fields). */
export interface DistillOptions {
  /** Temperature T > 0. */
  temperature: number;
  /** Weight of the soft targets on labeled images, in [0, 1]. */
  alpha: number;
  /** Weight of the soft targets on unlabeled images. */
  lambdaU: number;
  /** Label smoothing of the labeled cross-entropy. */
  labelSmoothing: number;
}

/**
 * Rows of `p` (`[n, C]`) tempered: p^(1/T), renormalised per row, so T > 1 softens the
 * distribution as dividing the logits by T would (log p is the logits up to a per-row constant).
 */
export function temper(p: Float32Array, numClasses: number, T: number): Float32Array {
  if (T === 1) return p;
  const out = new Float32Array(p.length);
  for (let r = 0; r < p.length; r += numClasses) {
    let sum = 0;
    for (let c = 0; c < numClasses; c++) sum += out[r + c] = Math.pow(p[r + c], 1 / T);
    for (let c = 0; c < numClasses; c++) out[r + c] /= sum;
  }
  return out;
}

/**
 * T^2 * mean_i KL(t_i || softmax(z_i / T)): the distillation term (Hinton et al. 2015; T^2 keeps
 * its gradient's scale as T changes).
 * @param logits `[n, C]` student logits, with gradient
 * @param target `[n * C]` row-major target probabilities (already tempered)
 * @returns a scalar tensor (nats)
 */
export function distillationLoss(logits: Tensor, target: Float32Array, T: number): Tensor {
  return torch.tidy(() => {
    const [n, C] = logits.shape;
    let entropy = 0; // sum t log t, the part of KL the student cannot change
    for (const t of target) if (t > 0) entropy += t * Math.log(t);
    const crossEntropy = torch.fromArray(target, [n, C], "float32").mul(logits.float().div(T).logSoftmax(1)).sum(1).mean().neg();
    return crossEntropy.add(entropy / n).mul(T * T);
  });
}

function rows(all: Float32Array, index: Int32Array, C: number): Float32Array {
  const out = new Float32Array(index.length * C);
  index.forEach((i, k) => out.set(all.subarray(i * C, (i + 1) * C), k * C));
  return out;
}

/**
 * The `distill` algorithm: loss = (1 - alpha) CE(labels) + alpha T^2 KL(target || student) on
 * the labeled batch, + lambda_u T^2 KL on the unlabeled batch's weak view; one forward of both.
 * Its pseudo-labels are the targets' argmax (all accepted), so the run's epoch statistics give
 * the teachers' accuracy on unlabeled images whose labels are known.
 */
export class Distill implements Algorithm {
  readonly name = "distill";
  readonly strongViews = 0;
  readonly weakViews: number;
  readonly #labeled: Float32Array;
  readonly #unlabeled: Float32Array | null;
  /** The unlabeled targets before tempering: the teachers' own confidence for the epoch statistics. */
  readonly #unlabeledRaw: Float32Array | null;
  readonly #C: number;

  /** @throws RangeError when a target row count is not a whole number of rows of C */
  constructor(
    targets: SoftTargets,
    readonly o: DistillOptions,
  ) {
    const C = targets.numClasses;
    for (const t of [targets.labeled, targets.unlabeled])
      if (t !== null && t.length % C !== 0) throw new RangeError(`soft targets of ${t.length} values are not rows of ${C} classes`);
    this.#C = C;
    this.#labeled = temper(targets.labeled, C, o.temperature);
    this.#unlabeled = targets.unlabeled === null ? null : temper(targets.unlabeled, C, o.temperature);
    this.#unlabeledRaw = targets.unlabeled;
    this.weakViews = targets.unlabeled === null ? 0 : 1;
  }

  step(model: Classifier, labeled: LabeledBatch, unlabeled: UnlabeledBatch | null): StepOutput {
    const { temperature: T, alpha, lambdaU, labelSmoothing } = this.o;
    const C = this.#C;
    const B = labeled.x.shape[0];
    const withU = unlabeled !== null && this.#unlabeled !== null;
    const logits = model.forward(withU ? torch.cat([labeled.x, unlabeled.weak[0]]) : labeled.x);
    const [logitsX, logitsU] = withU ? logits.split([B, unlabeled.weak[0].shape[0]]) : [logits, null];
    const lossCe = torch.F.crossEntropy(logitsX, labeled.y, { labelSmoothing });
    const lossKd = distillationLoss(logitsX, rows(this.#labeled, labeled.index, C), T);
    let loss = lossCe.mul(1 - alpha).add(lossKd.mul(alpha));
    const logs: Record<string, number> = { loss_x: lossCe.item(), loss_kd: lossKd.item() };
    if (!withU || logitsU === null) return { loss, logs };
    const target = rows(this.#unlabeled as Float32Array, unlabeled.index, C);
    const lossU = distillationLoss(logitsU, target, T);
    loss = loss.add(lossU.mul(lambdaU));
    logs.loss_u = lossU.item();
    const { label, conf } = rowMax(rows(this.#unlabeledRaw as Float32Array, unlabeled.index, C), C);
    return { loss, logs, pseudo: { label, conf, mask: new Uint8Array(label.length).fill(1) } };
  }

  epochEnd(): Record<string, unknown>[] {
    return [];
  }

  thresholds(): null {
    return null;
  }

  stateDict(): unknown {
    return {};
  }

  loadStateDict(): void {}
}
