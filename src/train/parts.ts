/**
 * The training loop's vocabulary: the moments at which its parts act (in the spirit of
 * USB's hooks `before_run`, `after_train_step`, `after_train_epoch`, as typed methods
 * rather than strings), the records handed to them, and the contract of a part whose state
 * survives a stop and a resume.
 *
 * The loop (src/train/trainer.ts) calls every part at each moment, in the order the parts
 * were listed. A new capability (a precision policy, a writer that only one rank runs) is a
 * new part or a field of one, not a branch in the loop.
 */
import type { EvalResult } from "../eval/evaluate.js";
import type { PseudoLabels } from "../ssl/types.js";
import * as torch from "../torch/index.js";

/** One optimizer step, as the parts see it after it is done. */
export interface StepResult {
  /** Steps done, this one included (1 after the first). */
  step: number;
  /** The step's loss, finite (the mean over the ranks of a data-parallel run). */
  loss: number;
  /** The algorithm's scalars for this step (`loss_x`, `loss_u`, `mask_rate`, ...), means over the ranks. */
  logs: Record<string, number>;
  /** Learning rate of the first parameter group once the schedule moved past this step (the next step's). */
  lr: number;
  /** Images of this step's labeled batch, over all ranks. */
  batchSize: number;
  /** This rank's unlabeled images' pseudo-labels, and each image's index in the unlabeled set. */
  pseudo: { labels: PseudoLabels; indices: readonly number[] } | null;
}

/** The end of an epoch: validation done and judged. */
export interface EpochReport {
  /** 1-based epoch that just ended. */
  epoch: number;
  step: number;
  /** Validation metrics of the run's evaluation model. */
  val: EvalResult;
  /** True when this validation is the best so far (the best checkpoint is replaced). */
  improved: boolean;
  /** Best validation macro-F1 so far and its step. */
  best: { metric: number; step: number };
}

/** A part of the loop: each method is optional and called at its moment. */
export interface RunPart {
  /** Once per invocation, before its first step (after a resume restored every state). */
  beforeRun?(): void;
  /** After each optimizer step. */
  afterTrainStep?(s: StepResult): void;
  /** After each epoch's validation. */
  afterEpoch?(e: EpochReport): void;
  /** When the invocation stops before the last step (Ctrl-C, or `stopAfter`). */
  onInterrupt?(): void;
  /** When the loop ends, however it ends (completed, interrupted or thrown). */
  afterLoop?(): void;
}

/**
 * Anything whose state is saved in checkpoints and restored on resume. Each owner saves
 * and restores its own state (the GUIDE's lesson from USB, where the algorithm reached into
 * its hooks' fields).
 */
export interface Persistent {
  /** The state's key in the checkpoint (`parts.<key>`). */
  readonly key: string;
  /**
   * True when each rank of a data-parallel run holds its own state (its augmentation stream, its
   * share of a count): the checkpoint then keeps every rank's, and each rank gets its own back.
   */
  readonly perRank?: boolean;
  /** A JSON-serialisable copy of the state. */
  state(): unknown;
  /** @throws Error when the state does not fit (another data size, class count, ...) */
  loadState(state: unknown): void;
}

/** Wraps a state owner that is not a part (the schedule, the algorithm) as a {@link Persistent}. */
export function persistent<S>(key: string, state: () => S, loadState: (s: S) => void): Persistent {
  return { key, state, loadState: (s) => loadState(s as S) };
}

/** Training wall time over every invocation of a run, in seconds. */
export class Clock implements RunPart, Persistent {
  readonly key = "clock";
  #before = 0;
  #started = performance.now();

  beforeRun(): void {
    this.#started = performance.now();
  }

  /** Seconds of training so far, this invocation included. */
  seconds(): number {
    return this.#before + (performance.now() - this.#started) / 1000;
  }

  state(): { wallSeconds: number } {
    return { wallSeconds: this.seconds() };
  }

  loadState(s: unknown): void {
    this.#before = (s as { wallSeconds: number }).wallSeconds;
  }
}

/**
 * Hands libtorch's freed blocks back to the system every `every` steps, so a long run's
 * resident memory follows what it uses (glibc keeps freed blocks otherwise).
 */
export class MemoryTrim implements RunPart {
  constructor(readonly every: number) {}

  afterTrainStep(s: StepResult): void {
    if (s.step % this.every === 0) torch.releaseFreeMemory();
  }
}
