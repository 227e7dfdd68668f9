/**
 * The parts that report a run as it trains: the progress bar, the `step` events (means over
 * `train.logEvery` steps), the `epoch` events with their console line, and the
 * `pseudo_labels` events of semi-supervised runs. Events go to the run's `log.jsonl`
 * (fields as documented in docs/training.md).
 */
import { createProgress, silentProgress, type Progress } from "../util/progress.js";
import { PseudoStats } from "./pseudo_stats.js";
import type { Clock, EpochReport, Persistent, RunPart, StepResult } from "./parts.js";
import type { Run } from "./run.js";
import type { EventWriter } from "./run_log.js";
import { DataParallel } from "./data_parallel.js";

const pct = (x: unknown): string => (typeof x === "number" ? `${(100 * x).toFixed(1)} %` : "n/a");

/** The terminal's progress bar: step, loss, lr and the mask rate when there is one. */
export class ProgressBar implements RunPart {
  #bar: Progress = silentProgress;

  /** @param show false for no bar (tests, `--no-progress`) */
  constructor(
    readonly run: Run,
    readonly show: boolean,
  ) {}

  /** The bar starts with the loop (a bar started earlier would keep a failed setup's process alive). */
  beforeRun(): void {
    if (this.show) this.#bar = createProgress(`train ${this.run.config.name}`, this.run.config.train.steps);
  }

  afterTrainStep(s: StepResult): void {
    this.#bar.update(s.step, {
      loss: s.loss.toFixed(3),
      lr: s.lr.toExponential(2),
      ...(s.logs.mask_rate === undefined ? {} : { mask: s.logs.mask_rate.toFixed(2) }),
    });
  }

  afterLoop(): void {
    this.#bar.stop();
  }
}

/**
 * Writes a `step` event every `train.logEvery` steps: mean loss and logs, lr, img/s, steps/s; in
 * a data-parallel run also rank 0's share of the wall time spent in collectives (`comm_share`,
 * waiting for slower ranks included) and the bytes it handed to them per step (`comm_bytes`).
 */
export class StepLog implements RunPart {
  #start = performance.now();
  #steps = 0;
  #loss = 0;
  #logs: Record<string, number> = {};
  #comm = { ms: 0, bytes: 0 };

  constructor(
    readonly every: number,
    readonly out: EventWriter,
    readonly world: DataParallel = DataParallel.single,
  ) {}

  beforeRun(): void {
    this.#start = performance.now();
    this.#comm = { ms: this.world.commMs, bytes: this.world.commBytes };
  }

  afterTrainStep(s: StepResult): void {
    this.#steps++;
    this.#loss += s.loss;
    for (const [k, v] of Object.entries(s.logs)) this.#logs[k] = (this.#logs[k] ?? 0) + v;
    if (s.step % this.every !== 0) return;
    const secs = (performance.now() - this.#start) / 1000;
    const n = this.#steps;
    this.out.write({
      event: "step",
      step: s.step,
      loss: this.#loss / n,
      ...Object.fromEntries(Object.entries(this.#logs).map(([k, v]) => [k, v / n])),
      lr: s.lr,
      img_s: (n * s.batchSize) / secs,
      steps_s: n / secs,
      ...(this.world.distributed
        ? {
            comm_share: (this.world.commMs - this.#comm.ms) / 1000 / secs,
            comm_bytes: (this.world.commBytes - this.#comm.bytes) / n,
          }
        : {}),
    });
    this.#comm = { ms: this.world.commMs, bytes: this.world.commBytes };
    this.#start = performance.now();
    this.#steps = 0;
    this.#loss = 0;
    this.#logs = {};
  }
}

/** Writes each epoch's `epoch` event (validation metrics, best so far, wall time) and its console line. */
export class EpochLog implements RunPart {
  constructor(
    readonly run: Run,
    readonly clock: Clock,
    readonly out: EventWriter,
    readonly log: (line: string) => void,
  ) {}

  afterEpoch(e: EpochReport): void {
    const { val } = e;
    this.out.write({
      event: "epoch",
      epoch: e.epoch,
      step: e.step,
      val: { accuracy: val.accuracy, macro_f1: val.macroF1, ece: val.ece },
      best: e.best,
      wall_s: this.clock.seconds(),
    });
    this.log(
      `epoch ${e.epoch} (step ${e.step}): ${this.run.config.data.valSplit} accuracy ${(100 * val.accuracy).toFixed(2)} %, macro-F1 ${(100 * val.macroF1).toFixed(2)} %${e.improved ? " (best)" : ""}`,
    );
  }
}

/**
 * Counts each epoch's pseudo-labels (mask rate, class histogram, accuracy against the
 * hidden labels where known) and writes them as a `pseudo_labels` event with a console line
 * that also shows the thresholds. Its counters are saved in checkpoints, so a resumed epoch
 * reports the same figures.
 */
export class PseudoLabelLog implements RunPart, Persistent {
  readonly key = "pseudo";
  /** Each rank counts its own shard of the batches until the epoch's end. */
  readonly perRank = true;
  readonly #stats: PseudoStats;

  constructor(
    readonly run: Run,
    readonly out: EventWriter,
    readonly log: (line: string) => void,
  ) {
    this.#stats = new PseudoStats(run.classes.length);
  }

  afterTrainStep(s: StepResult): void {
    const hidden = this.run.unlabeled?.hiddenLabels;
    if (s.pseudo === null || hidden === undefined) return;
    this.#stats.add(
      s.pseudo.labels,
      s.pseudo.indices.map((i) => hidden[i]),
    );
  }

  afterEpoch(e: EpochReport): void {
    this.#stats.sumOverRanks((v) => this.run.world.sum(v));
    const p = this.#stats.flush(e.epoch, e.step, this.run.classes);
    this.out.write(p);
    const tau = this.run.algorithm.thresholds();
    this.log(
      `  pseudo-labels: mask rate ${pct(p.mask_rate)}, accuracy ${pct(p.accuracy)} (all: ${pct(p.accuracy_all)})` +
        (tau === null ? "" : `; tau ${tau.map((t, c) => `${this.run.classes[c]} ${t.toFixed(3)}`).join(", ")}`),
    );
  }

  state(): unknown {
    return this.#stats.state();
  }

  loadState(state: unknown): void {
    if (state !== null && state !== undefined) this.#stats.loadState(state as ReturnType<PseudoStats["state"]>);
  }
}
