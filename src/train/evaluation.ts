/**
 * Judging a run: validation at each epoch's end, model selection by validation macro-F1
 * (the ABAW metric), and the algorithm's threshold update from the teacher's predictions
 * on the labeled training set (DTM, Ada-CM, ...).
 */
import { predictProbs, scoreProbs, type EvalResult } from "../eval/evaluate.js";
import type { LabeledPredictions } from "../ssl/types.js";
import type { PreparedSplit } from "../data/prepare.js";
import type { EpochReport, Persistent, RunPart } from "./parts.js";
import type { Run } from "./run.js";
import type { EventWriter } from "./run_log.js";

/**
 * Runs the run's evaluation model (the EMA teacher, or the student) over its splits. In a
 * data-parallel run each rank predicts its contiguous shard of a split and the probabilities are
 * gathered, so every rank scores the whole split and reaches the same figures.
 */
export class Evaluation {
  constructor(readonly run: Run) {}

  /** The evaluation model's softmax over a split's images (flip-averaged when `tta`), `[n, C]`. */
  #probs(split: PreparedSplit, tta: boolean): Float32Array {
    const { evalModel, classes, config, model, evalPrecision, world } = this.run;
    const per = split.shape[0] * split.shape[1] * split.shape[2];
    const [lo, hi] = world.shard(split.n);
    const local = predictProbs(evalModel, split.images.subarray(lo * per, hi * per), split.shape, {
      batchSize: config.eval.batchSize,
      tta,
      precision: evalPrecision,
    });
    model.train();
    return world.gatherRows(local, split.n, classes.length);
  }

  /** Metrics on a split, with the config's batch size and flip averaging; the student stays in training mode. */
  on(split: PreparedSplit): EvalResult {
    return scoreProbs(this.#probs(split, this.run.config.eval.tta), split.labels, this.run.classes);
  }

  /** Validation metrics (config `data.valSplit`). */
  validate(): EvalResult {
    return this.on(this.run.val);
  }

  /**
   * The evaluation model's softmax (no augmentation) over the labeled images threshold rules
   * measure: the held-out ones when `data.labeledHoldout` is set, else the images trained on.
   */
  labeledPredictions(): LabeledPredictions {
    const { labeled, heldout, classes } = this.run;
    const split = heldout ?? labeled;
    return { probs: this.#probs(split, false), labels: split.labels, numClasses: classes.length };
  }
}

/** Model selection: the best validation macro-F1 so far, and its step. */
export class Selection implements Persistent {
  readonly key = "best";
  best: { metric: number; step: number } | null = null;

  /** Judges an epoch's validation; a tie keeps the earlier best. */
  judge(epoch: number, step: number, val: EvalResult): EpochReport {
    const improved = this.best === null || val.macroF1 > this.best.metric;
    if (improved) this.best = { metric: val.macroF1, step };
    return { epoch, step, val, improved, best: this.best as { metric: number; step: number } };
  }

  state(): unknown {
    return this.best;
  }

  loadState(state: unknown): void {
    this.best = state as { metric: number; step: number } | null;
  }
}

/** At each epoch's end, lets the algorithm update its thresholds and logs what it reports (`thresholds` events). */
export class ThresholdUpdate implements RunPart {
  constructor(
    readonly run: Run,
    readonly evaluation: Evaluation,
    readonly out: EventWriter,
  ) {}

  afterEpoch(e: EpochReport): void {
    const events = this.run.algorithm.epochEnd({
      epoch: e.epoch,
      classes: this.run.classes,
      labeledPredictions: () => this.evaluation.labeledPredictions(),
    });
    for (const event of events) this.out.write(event);
  }
}
