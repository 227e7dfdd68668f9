/**
 * The algorithm interface the trainer calls once per step (in the spirit of USB's
 * AlgorithmBase): it receives the labeled batch (and, for semi-supervised algorithms,
 * the unlabeled batch), returns the loss to back-propagate and the scalars to log.
 * An algorithm never reads files; its state (thresholds, ...) is saved in checkpoints.
 */
import * as torch from "../torch/index.js";
import type { nn, Tensor } from "../torch/index.js";

/** A labeled batch: images already augmented, `[B, C, H, W]` float32 in [0, 1], labels `[B]` int64. */
export interface LabeledBatch {
  x: Tensor;
  y: Tensor;
}

/** What an algorithm's step returns. */
export interface StepOutput {
  /** The scalar loss to back-propagate. */
  loss: Tensor;
  /** Scalars to log for this step (e.g. `loss_x`, `mask_rate`). */
  logs: Record<string, number>;
}

/** The interface every training algorithm implements. */
export interface Algorithm {
  readonly name: string;
  /** Computes the loss of one step with `model` in training mode. */
  step(model: nn.Module, labeled: LabeledBatch): StepOutput;
  /** JSON-serialisable state for checkpoints. */
  stateDict(): unknown;
  /** Restores a state from {@link stateDict}. */
  loadStateDict(state: unknown): void;
}

/** Plain supervised training: cross-entropy on the labeled batch. */
export class Supervised implements Algorithm {
  readonly name = "supervised";

  /** @param labelSmoothing in [0, 1): mixes targets with the uniform distribution */
  constructor(readonly labelSmoothing = 0) {}

  step(model: nn.Module, labeled: LabeledBatch): StepOutput {
    const logits = model.forward(labeled.x);
    const loss = torch.F.crossEntropy(logits, labeled.y, { labelSmoothing: this.labelSmoothing });
    logits.dispose();
    return { loss, logs: {} };
  }

  stateDict(): unknown {
    return {};
  }

  loadStateDict(): void {}
}
