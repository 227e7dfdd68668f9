/**
 * Pseudo-labeling with a confidence mask, the step FixMatch (Sohn et al. 2020), FlexMatch,
 * FreeMatch and DTM share; they differ in how many weak views make the pseudo-label and in
 * the thresholding rule (ssl/thresholds.ts). One step:
 *
 * 1. the weak views go through the model in one batch without gradient; the pseudo-label
 *    distribution q is the mean of their softmax; `pseudo_label` = argmax q, conf = max q;
 * 2. `mask` = [conf >= tau(pseudo_label)] from the rule;
 * 3. the labeled images and the strong views go through the model in one batch with
 *    gradient (USB's `use_cat`), so each image is computed once;
 * 4. loss = CE(labeled) + lambda_u * mean over the whole unlabeled batch of mask * CE(strong, pseudo_label).
 *
 * Differences from the reference codes, on purpose: one concatenated forward instead of
 * separate ones (BatchNorm sees labeled and strong images together, as in USB).
 */
import * as torch from "../torch/index.js";
import type { Tensor } from "../torch/index.js";
import type { Classifier } from "../models/index.js";
import type { ThresholdRule } from "./thresholds.js";
import type { Algorithm, EpochContext, LabeledBatch, PseudoLabels, StepOutput, UnlabeledBatch } from "./types.js";

/** Pseudo-labels of a batch, as arrays: the mean softmax over the views and its argmax/max. */
export interface Guess {
  /** `[U, C]` row-major mean probabilities. */
  probs: Float32Array;
  conf: Float32Array;
  label: Int32Array;
}

/**
 * Mean softmax over `views` (each `[U, C, H, W]`) of `model`, computed in one batch
 * in inference mode (no graph, no version counters: the result only becomes arrays), with
 * its argmax and max per image. In train mode BatchNorm still updates its running statistics.
 */
export function guessLabels(model: Classifier, views: readonly Tensor[]): Guess {
  if (views.length === 0) throw new RangeError("pseudo-labels need at least one weak view");
  const U = views[0].shape[0];
  const probs = torch.inferenceMode(() =>
    torch.tidy(() => {
      const input = views.length === 1 ? views[0] : torch.cat(views);
      const p = model.forward(input).softmax(1);
      const q = views.length === 1 ? p : p.view(views.length, U, -1).mean(0);
      return q.contiguous().toArray() as Float32Array;
    }),
  );
  return { probs, ...rowMax(probs, probs.length / U) };
}

/** Argmax and max of each row of a `[U, C]` row-major array. */
export function rowMax(probs: Float32Array, numClasses: number): { conf: Float32Array; label: Int32Array } {
  const U = probs.length / numClasses;
  const conf = new Float32Array(U);
  const label = new Int32Array(U);
  for (let i = 0; i < U; i++) {
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (probs[i * numClasses + c] > probs[i * numClasses + best]) best = c;
    label[i] = best;
    conf[i] = probs[i * numClasses + best];
  }
  return { conf, label };
}

/**
 * mean_i mask_i * CE(logits_i, target_i): the unlabeled loss of FixMatch, averaged over the
 * whole batch (masked-out images count as zeros, as in USB and the DTM reference).
 * @param logits `[U, C]`; target and mask `[U]`
 */
export function maskedCrossEntropy(logits: Tensor, target: Int32Array, mask: Uint8Array): Tensor {
  return torch.tidy(() => {
    const U = target.length;
    const ce = torch.F.crossEntropy(logits, torch.fromArray(target, [U], "int64"), { reduction: "none" });
    return ce.mul(torch.fromArray(mask, [U], "float32")).mean();
  });
}

/** Fraction of ones in a mask. */
export function maskRate(mask: Uint8Array): number {
  let s = 0;
  for (const m of mask) s += m;
  return mask.length === 0 ? 0 : s / mask.length;
}

/** Options of {@link SelfTraining}. */
export interface SelfTrainingOptions {
  /** Weight of the unlabeled loss (lambda_u). */
  lambdaU: number;
  /** Weak views averaged into the pseudo-label (1 for FixMatch, 2 for DTM). */
  weakViews: number;
  /** Label smoothing of the labeled cross-entropy (0 in the papers). */
  labelSmoothing: number;
}

/** The labeled and strong-view logits of one concatenated forward. */
export interface JointForward {
  logitsX: Tensor;
  logitsS: Tensor;
}

/** FixMatch-style pseudo-labeling with a swappable {@link ThresholdRule}. */
export class SelfTraining implements Algorithm {
  readonly strongViews = 1;
  readonly weakViews: number;

  constructor(
    readonly name: string,
    readonly rule: ThresholdRule,
    readonly o: SelfTrainingOptions,
  ) {
    this.weakViews = o.weakViews;
  }

  /** Forward of the labeled images and the strong views in one batch, with gradient. */
  protected jointForward(model: Classifier, labeled: LabeledBatch, strong: Tensor): JointForward {
    const B = labeled.x.shape[0];
    const logits = model.forward(torch.cat([labeled.x, strong]));
    const [logitsX, logitsS] = logits.split([B, strong.shape[0]]);
    return { logitsX, logitsS };
  }

  /** The loss terms beyond CE(labeled) + lambda_u * unlabeled CE (none here). */
  protected extraLoss(_f: JointForward, _mask: Uint8Array): { loss: Tensor; logs: Record<string, number> } | null {
    return null;
  }

  step(model: Classifier, labeled: LabeledBatch, unlabeled: UnlabeledBatch | null): StepOutput {
    if (unlabeled === null) throw new Error(`${this.name} needs unlabeled data (set data.unlabeled in the config)`);
    const guess = guessLabels(model, unlabeled.weak.slice(0, this.weakViews));
    const mask = this.rule.mask({ ...guess, index: unlabeled.index });
    const f = this.jointForward(model, labeled, unlabeled.strong[0]);
    const lossX = torch.F.crossEntropy(f.logitsX, labeled.y, { labelSmoothing: this.o.labelSmoothing });
    const lossU = maskedCrossEntropy(f.logitsS, guess.label, mask);
    let loss = lossX.add(lossU.mul(this.o.lambdaU));
    const logs: Record<string, number> = { loss_x: lossX.item(), loss_u: lossU.item(), mask_rate: maskRate(mask) };
    const extra = this.extraLoss(f, mask);
    if (extra !== null) {
      loss = loss.add(extra.loss);
      Object.assign(logs, extra.logs);
    }
    const pseudo: PseudoLabels = { label: guess.label, mask, conf: guess.conf };
    return { loss, logs, pseudo };
  }

  epochEnd(ctx: EpochContext): Record<string, unknown>[] {
    const fields = this.rule.epochEnd(ctx.epoch, () => ctx.labeledPredictions());
    return [{ event: "thresholds", epoch: ctx.epoch, algorithm: this.name, classes: [...ctx.classes], ...fields }];
  }

  thresholds(): number[] {
    return this.rule.thresholds();
  }

  stateDict(): unknown {
    return { rule: this.rule.stateDict() };
  }

  loadStateDict(state: unknown): void {
    const s = state as { rule?: unknown } | null;
    this.rule.loadStateDict(s?.rule);
  }
}
