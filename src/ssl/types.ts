/**
 * The interface between the trainer and a training algorithm (in the spirit of USB's
 * AlgorithmBase): once per step the trainer hands over a labeled batch and, for
 * semi-supervised algorithms, the views of an unlabeled batch; the algorithm runs the
 * model and returns the loss to back-propagate, the scalars to log and its pseudo-labels.
 * Once per epoch it may update its thresholds from the teacher's predictions on the
 * labeled training set. An algorithm never reads files; its state is plain JSON, saved in
 * checkpoints and restored on resume.
 */
import type { Classifier } from "../models/index.js";
import type { Tensor } from "../torch/index.js";

/**
 * A labeled batch: images already augmented, `x` `[B, C, H, W]` float32 in [0, 1], labels `y`
 * `[B]` int64, and each image's index in the run's labeled images (distillation reads its
 * soft target by it).
 */
export interface LabeledBatch {
  x: Tensor;
  y: Tensor;
  index: Int32Array;
}

/**
 * The views of an unlabeled batch of U images: `weak` views and `strong` views, each
 * `[U, C, H, W]` float32 in [0, 1], and each image's index in the unlabeled set (FlexMatch
 * keeps per-sample records by it).
 */
export interface UnlabeledBatch {
  weak: Tensor[];
  strong: Tensor[];
  index: Int32Array;
}

/** The pseudo-labels of one unlabeled batch, for the trainer's epoch statistics. */
export interface PseudoLabels {
  /** `pseudo_label` (argmax class) of each unlabeled image, `[U]`. */
  label: Int32Array;
  /** 1 where the image passed its class threshold (the `mask`), else 0, `[U]`. */
  mask: Uint8Array;
  /** Confidence (max probability, in [0, 1]) of each pseudo-label, `[U]`. */
  conf: Float32Array;
}

/** What an algorithm's step returns. */
export interface StepOutput {
  /** The scalar loss to back-propagate. */
  loss: Tensor;
  /** Scalars to log for this step (`loss_x`, `loss_u`, `mask_rate`, ...). */
  logs: Record<string, number>;
  /** The batch's pseudo-labels (semi-supervised algorithms only). */
  pseudo?: PseudoLabels;
}

/** The teacher's view of the labeled training set, computed on demand at an epoch's end. */
export interface LabeledPredictions {
  /** `[n, numClasses]` row-major softmax probabilities, in eval mode without augmentation. */
  probs: Float32Array;
  /** `[n]` true class indices. */
  labels: Int32Array;
  numClasses: number;
}

/** What the trainer offers an algorithm at the end of an epoch. */
export interface EpochContext {
  /** 1-based epoch number that just ended. */
  epoch: number;
  /** Class names, in the model's output order. */
  classes: readonly string[];
  /**
   * Runs the EMA teacher (the student without one) over the labeled training set, or over its
   * held-out part when the run holds one out (`data.labeledHoldout`).
   */
  labeledPredictions(): LabeledPredictions;
}

/** The interface every training algorithm implements. */
export interface Algorithm {
  /** The name used by `--algorithm` and in logs. */
  readonly name: string;
  /** Number of weak views of each unlabeled image the step needs (0: no unlabeled data). */
  readonly weakViews: number;
  /** Number of strong views of each unlabeled image the step needs. */
  readonly strongViews: number;
  /**
   * Computes the loss of one step with `model` in training mode.
   * @param unlabeled null for supervised algorithms
   */
  step(model: Classifier, labeled: LabeledBatch, unlabeled: UnlabeledBatch | null): StepOutput;
  /**
   * Called after each epoch's validation; returns the `log.jsonl` events to write (e.g. a
   * `thresholds` event), possibly none.
   */
  epochEnd(ctx: EpochContext): Record<string, unknown>[];
  /** Current per-class thresholds tau (probabilities in [0, 1]), or null when the algorithm has none. */
  thresholds(): number[] | null;
  /** JSON-serialisable state for checkpoints. */
  stateDict(): unknown;
  /**
   * Restores a state from {@link stateDict}.
   * @throws Error when the state does not fit this algorithm (another class count, pool size)
   */
  loadStateDict(state: unknown): void;
}
