/**
 * Ada-CM (Li et al., "Towards Semi-Supervised Deep Facial Expression Recognition with an
 * Adaptive Confidence Margin", CVPR 2022), the direct ancestor of DTM, as its reference
 * code trains: the pseudo-label is the mean softmax of two weak views; images whose
 * confidence passes the class's adaptive margin ({@link AdaCmThreshold}) train with CE on
 * their strong view; the others are not dropped but feed a contrastive loss between the
 * features of their two weak views (SimCLR's NT-Xent, the unsupervised form of SupConLoss,
 * temperature 0.07, on L2-normalised penultimate features).
 * loss = lambda_x CE(labeled) + lambda_u masked CE(strong) + lambda_c contrastive, with the
 * reference's weights 0.5, 1, 0.1 by default.
 *
 * With `lowConfidence: "drop"` the contrastive term is off and the weak views run without
 * gradient, like DTM. With it on, the weak views need gradient (the contrastive loss
 * trains through both), so a step costs one more backward pass than DTM's.
 */
import * as torch from "../torch/index.js";
import type { Tensor } from "../torch/index.js";
import { hasFeatures, type Classifier } from "../models/index.js";
import { SelfTraining, guessLabels, maskedCrossEntropy, maskRate, rowMax, type Guess } from "./self_training.js";
import type { ThresholdRule } from "./thresholds.js";
import type { LabeledBatch, StepOutput, UnlabeledBatch } from "./types.js";

/** Options of {@link AdaCm}. */
export interface AdaCmAlgorithmOptions {
  lambdaX: number;
  lambdaU: number;
  lambdaC: number;
  /** Temperature of the contrastive loss (0.07). */
  temperature: number;
  /** What happens to images below the margin: a contrastive loss (the paper) or nothing. */
  lowConfidence: "contrastive" | "drop";
  labelSmoothing: number;
}

/**
 * NT-Xent (Chen et al. 2020, SimCLR): for 2n L2-normalised features, each feature's positive
 * is the other view of the same image and its negatives the 2n - 2 others.
 * @param z1 `[n, d]` and z2 `[n, d]`: the two views' normalised features
 * @param temperature > 0
 * @returns the mean loss over the 2n anchors (a scalar)
 */
export function ntXent(z1: Tensor, z2: Tensor, temperature: number): Tensor {
  return torch.tidy(() => {
    const n = z1.shape[0];
    const z = torch.cat([z1, z2]);
    const self = torch.eye(2 * n).gt(0);
    const sim = z.matmul(z.t()).div(temperature).maskedFill(self, -1e9);
    const target = torch.fromArray(
      Int32Array.from({ length: 2 * n }, (_, i) => (i + n) % (2 * n)),
      [2 * n],
      "int64",
    );
    return torch.F.crossEntropy(sim, target);
  });
}

/** The Ada-CM algorithm; thresholds, epoch updates and state as {@link SelfTraining}. */
export class AdaCm extends SelfTraining {
  /** @param rule Ada-CM's margin (an `AdaCmThreshold`), possibly wrapped (a data-parallel run's) */
  constructor(
    rule: ThresholdRule,
    readonly opts: AdaCmAlgorithmOptions,
  ) {
    super("adacm", rule, { lambdaU: opts.lambdaU, weakViews: 2, labelSmoothing: opts.labelSmoothing });
  }

  override step(model: Classifier, labeled: LabeledBatch, unlabeled: UnlabeledBatch | null): StepOutput {
    if (unlabeled === null) throw new Error("adacm needs unlabeled data (set data.unlabeled in the config)");
    const [w1, w2] = unlabeled.weak;
    const U = w1.shape[0];
    let guess: Guess;
    let lossC: Tensor | null = null;
    let mask: Uint8Array;
    if (this.opts.lowConfidence === "contrastive") {
      if (!hasFeatures(model)) throw new TypeError("adacm's contrastive loss needs a model with forwardWithFeatures");
      const { logits, features } = model.forwardWithFeatures(torch.cat([w1, w2]));
      const probs = torch.noGrad(() => logits.detach().softmax(1).view(2, U, -1).mean(0).contiguous().toArray() as Float32Array);
      guess = { probs, ...rowMax(probs, probs.length / U) };
      mask = this.rule.mask({ ...guess, index: unlabeled.index });
      const low = [...mask.keys()].filter((i) => mask[i] === 0);
      if (low.length >= 2) {
        const z = torch.F.normalize(features, 2, 1);
        const idx = torch.fromArray(Int32Array.from(low), [low.length], "int64");
        lossC = ntXent(z.narrow(0, 0, U).indexSelect(0, idx), z.narrow(0, U, U).indexSelect(0, idx), this.opts.temperature);
      }
    } else {
      guess = guessLabels(model, [w1, w2]);
      mask = this.rule.mask({ ...guess, index: unlabeled.index });
    }
    const { logitsX, logitsS } = this.jointForward(model, labeled, unlabeled.strong[0]);
    const lossX = torch.F.crossEntropy(logitsX, labeled.y, { labelSmoothing: this.opts.labelSmoothing });
    const lossU = maskedCrossEntropy(logitsS, guess.label, mask);
    let loss = lossX.mul(this.opts.lambdaX).add(lossU.mul(this.opts.lambdaU));
    if (lossC !== null) loss = loss.add(lossC.mul(this.opts.lambdaC));
    return {
      loss,
      logs: { loss_x: lossX.item(), loss_u: lossU.item(), loss_c: lossC?.item() ?? 0, mask_rate: maskRate(mask) },
      pseudo: { label: guess.label, mask, conf: guess.conf },
    };
  }
}
