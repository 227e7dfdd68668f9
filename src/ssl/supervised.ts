/** Plain supervised training: cross-entropy on the labeled batch; unlabeled data is not used. */
import * as torch from "../torch/index.js";
import type { Classifier } from "../models/index.js";
import type { Algorithm, LabeledBatch, StepOutput } from "./types.js";

/** Cross-entropy on labeled batches (the baseline every semi-supervised method is compared with). */
export class Supervised implements Algorithm {
  readonly name = "supervised";
  readonly weakViews = 0;
  readonly strongViews = 0;

  /** @param labelSmoothing in [0, 1): mixes targets with the uniform distribution (Szegedy et al. 2016) */
  constructor(readonly labelSmoothing = 0) {}

  step(model: Classifier, labeled: LabeledBatch): StepOutput {
    const logits = model.forward(labeled.x);
    const loss = torch.F.crossEntropy(logits, labeled.y, { labelSmoothing: this.labelSmoothing });
    logits.dispose();
    return { loss, logs: {} };
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
