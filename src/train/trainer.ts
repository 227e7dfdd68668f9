/**
 * The training loop shared by every algorithm: step-based, with epochs as the unit of
 * evaluation and checkpoints; an EMA teacher; the best checkpoint by validation macro-F1
 * and the last one; exact resume; a clean stop on Ctrl-C; a NaN/Inf loss stops the run and
 * keeps the last good checkpoint.
 *
 * `train()` builds the run's pieces ({@link buildRun}) and its parts, then runs a short
 * loop: take a step, hand it to the parts; at an epoch's end validate, judge, and hand the
 * report to the parts. The parts, in the order they act:
 *   Clock (wall time), ProgressBar, StepLog (`step` events), MemoryTrim, EpochLog (`epoch`
 *   events), ThresholdUpdate (the algorithm's thresholds), PseudoLabelLog (semi-supervised
 *   runs), Checkpointer (last and best checkpoints).
 * A run folder holds `config.json` (the resolved config), `log.jsonl` (one JSON event per
 * line), `checkpoints/{last,best}.safetensors` and, at the end, `metrics.json` and
 * `model.safetensors`.
 *
 * In a data-parallel run (`world` of W processes, src/train/data_parallel.ts) every rank runs
 * this same loop on its share of each batch; they agree on the config, the data, when to stop
 * and every statistic, and only rank 0 writes the run folder and prints.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { EvalResult } from "../eval/evaluate.js";
import * as torch from "../torch/index.js";
import { BatchSource } from "./batches.js";
import { DataParallel } from "./data_parallel.js";
import { Checkpointer } from "./checkpointer.js";
import { acquireRunLock } from "./run_lock.js";
import { ConfigError, type TrainConfig } from "./config.js";
import { Evaluation, Selection, ThresholdUpdate } from "./evaluation.js";
import { finishRun } from "./finish.js";
import { EpochLog, ProgressBar, PseudoLabelLog, StepLog } from "./logging.js";
import { Clock, MemoryTrim, persistent, type Persistent, type RunPart } from "./parts.js";
import { buildRun, disposeRun, readRunConfig, type Run } from "./run.js";
import { RunLog, type EventWriter } from "./run_log.js";
import { NonFiniteLossError, TrainStep } from "./step.js";

export { loadTrainData } from "./data.js";
export { readRunConfig } from "./run.js";
export { NonFiniteLossError } from "./step.js";

/** Options of {@link train}. */
export interface TrainOptions {
  /** The resolved config (ignored when resuming: the run's own config.json is used). */
  config?: TrainConfig;
  /** The run folder (created when new). */
  runDir: string;
  /** Continue the run in `runDir` from its last checkpoint. */
  resume?: boolean;
  /** The shared data folder that relative dataset paths are resolved against. */
  dataRoot: string;
  /** Progress lines and warnings. */
  log?: (line: string) => void;
  /** Show a progress bar (default true). */
  progress?: boolean;
  /** Stop after this many steps of this invocation (tests use it to simulate a kill). */
  stopAfter?: number;
  /** This process's rank in a data-parallel run (default: one process); its group must be joined. */
  world?: DataParallel;
  /** libtorch threads of this process (default: the config's `threads`). */
  threads?: number;
}

/** Outcome of {@link train}. */
export interface TrainResult {
  runDir: string;
  /** "completed", "interrupted" (Ctrl-C or stopAfter: resume to continue). */
  status: "completed" | "interrupted";
  step: number;
  /** Test-split metrics of the best checkpoint (null when interrupted or no test split). */
  test: EvalResult | null;
  /** Name of the split `test` was measured on (config `data.testSplit`). */
  testSplit: string | null;
  best: { metric: number; step: number } | null;
  /** Training wall time over all invocations, in seconds. */
  wallSeconds: number;
  /** What the training forward passes ran at. */
  precision: "bf16" | "fp32";
}

/** The named parts of a run's loop (the loop calls `all` at each moment, in order). */
interface Parts {
  step: TrainStep;
  clock: Clock;
  evaluation: Evaluation;
  selection: Selection;
  checkpointer: Checkpointer;
  all: RunPart[];
}

function buildParts(run: Run, out: EventWriter, o: TrainOptions): Parts {
  const log = o.log ?? (() => {});
  const batches = new BatchSource(run);
  const clock = new Clock();
  const evaluation = new Evaluation(run);
  const selection = new Selection();
  const pseudo = run.unlabeled === null ? null : new PseudoLabelLog(run, out, log);
  const owners: Persistent[] = [
    persistent(
      "scheduler",
      () => run.schedule.stateDict(),
      (s) => run.schedule.loadStateDict(s),
    ),
    persistent(
      "algorithm",
      () => run.algorithm.stateDict(),
      (s) => run.algorithm.loadStateDict(s),
    ),
    batches,
    clock,
    selection,
    ...(pseudo === null ? [] : [pseudo]),
  ];
  const checkpointer = new Checkpointer(run, owners, out, log);
  const all: RunPart[] = [
    clock,
    new ProgressBar(run, o.progress !== false),
    new StepLog(run.config.train.logEvery, out, run.world),
    new MemoryTrim(run.config.train.logEvery),
    new EpochLog(run, clock, out, log),
    new ThresholdUpdate(run, evaluation, out),
    ...(pseudo === null ? [] : [pseudo]),
    checkpointer,
  ];
  return { step: new TrainStep(run, batches), clock, evaluation, selection, checkpointer, all };
}

/** Ctrl-C, or the `stopAfter` budget of a test (the ranks of a data-parallel run stop together when any asks). */
class StopSignal {
  #interrupted = false;
  #steps = 0;
  readonly #onSigint = (): void => {
    this.#interrupted = true;
  };

  constructor(readonly stopAfter: number | undefined) {
    process.on("SIGINT", this.#onSigint);
  }

  /** Counts a step taken by this invocation. */
  stepTaken(): void {
    this.#steps++;
  }

  get requested(): boolean {
    return this.#interrupted || (this.stopAfter !== undefined && this.#steps >= this.stopAfter);
  }

  dispose(): void {
    process.off("SIGINT", this.#onSigint);
  }
}

/**
 * The loop: steps until the config's last step or a stop. Returns false when stopped early.
 * @throws NonFiniteLossError when a loss is NaN or Inf
 */
async function loop(run: Run, parts: Parts, stop: StopSignal): Promise<boolean> {
  const { steps, epochSteps } = run.config.train;
  for (const p of parts.all) p.beforeRun?.();
  run.model.train();
  try {
    while (run.step < steps) {
      // Let the event loop run (a few microseconds) so a Ctrl-C handler can set its flag.
      await new Promise((resolve) => setImmediate(resolve));
      if (run.world.any(stop.requested)) {
        for (const p of parts.all) p.onInterrupt?.();
        return false;
      }
      const taken = parts.step.take();
      stop.stepTaken();
      for (const p of parts.all) p.afterTrainStep?.(taken);
      if (run.step % epochSteps === 0 || run.step === steps) {
        const report = parts.selection.judge(Math.ceil(run.step / epochSteps), run.step, parts.evaluation.validate());
        for (const p of parts.all) p.afterEpoch?.(report);
      }
    }
    return true;
  } finally {
    for (const p of parts.all) p.afterLoop?.();
  }
}

/** Checks the run folder for a new run or a resume and returns the config to use. @throws ConfigError */
function runConfig(o: TrainOptions): TrainConfig {
  if (o.resume) {
    const config = readRunConfig(o.runDir);
    const last = path.join(o.runDir, "checkpoints", "last.safetensors");
    if (!existsSync(last)) throw new ConfigError(`${o.runDir} has no checkpoint to resume from (${last}); start a new run instead`);
    if (existsSync(path.join(o.runDir, "metrics.json")))
      throw new ConfigError(`${o.runDir} has already finished (see its metrics.json); nothing to resume`);
    return config;
  }
  if (o.config === undefined) throw new Error("train: a config is needed for a new run");
  if (existsSync(path.join(o.runDir, "config.json")))
    throw new ConfigError(`${o.runDir} already holds a run; resume it with --resume or choose another --out`);
  return o.config;
}

/**
 * {@link runConfig} as rank 0 decides it, on every rank: rank 0 checks the run folder (the
 * others may not see it) and sends its answer; for a new run every rank's own config must equal
 * rank 0's (`threads` aside, which may differ between machines).
 * @throws ConfigError on every rank alike
 */
function agreedConfig(o: TrainOptions, world: DataParallel): TrainConfig {
  if (!world.distributed) return runConfig(o);
  let answer: { config?: TrainConfig; error?: string } = {};
  if (world.isMain)
    try {
      answer = { config: runConfig(o) };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      answer = { error: err.message };
    }
  const got = JSON.parse(
    Buffer.from(world.broadcastBytes(world.isMain ? Buffer.from(JSON.stringify(answer)) : null)).toString("utf8"),
  ) as typeof answer;
  if (got.error !== undefined) throw new ConfigError(got.error);
  if (o.resume) return got.config as TrainConfig;
  const all = world.gatherJson({ ...(o.config as TrainConfig), threads: 0 });
  const diffs = all.flatMap((c, r) => differences(c, all[0]).map((d) => `rank ${r} ${d}`));
  if (diffs.length > 0)
    throw new ConfigError(
      `the ranks were launched with different configs (${diffs.slice(0, 3).join("; ")}): start every rank with the same config and overrides`,
    );
  return o.config as TrainConfig;
}

/** The dotted fields where `a` differs from `b`, as "has x where rank 0 has y". */
function differences(a: unknown, b: unknown, at = ""): string[] {
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null && !Array.isArray(a)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) =>
      differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at === "" ? k : `${at}.${k}`),
    );
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`has ${at} = ${JSON.stringify(a)} where rank 0 has ${JSON.stringify(b)}`];
}

/**
 * Checks, before any data loads, that a data-parallel run can split its batches over the ranks.
 * @throws ConfigError on every rank alike
 */
function checkBatchSplit(config: TrainConfig, world: DataParallel): void {
  const B = config.train.batchSize;
  const U = Math.round(("uratio" in config.algorithm ? config.algorithm.uratio : 0) * B);
  if (B % world.worldSize !== 0 || U % world.worldSize !== 0)
    throw new ConfigError(
      `train.batchSize ${B}${U > 0 ? ` (and its ${U} unlabeled images)` : ""} does not split evenly over ${world.worldSize} processes: the batch is the global batch, each rank takes batchSize / ${world.worldSize}; choose a multiple of ${world.worldSize}`,
    );
}

/**
 * Checks that every rank of a data-parallel run loaded the same data.
 * @throws ConfigError on every rank alike
 */
function checkSameData(run: Run): void {
  const { world } = run;
  if (!world.distributed) return;
  const digest = (labels: ArrayLike<number>): number => {
    let h = 7;
    for (let i = 0; i < labels.length; i++) h = (h * 31 + labels[i] + 1) % 2147483647;
    return h;
  };
  const mine = {
    classes: run.classes,
    labeled: [run.labeled.n, digest(run.labeled.labels)],
    val: [run.val.n, digest(run.val.labels)],
    heldout: run.heldout?.n ?? 0,
    unlabeled: run.unlabeled?.n ?? 0,
    shape: run.labeled.shape,
  };
  const all = world.gatherJson(mine);
  const diffs = all.flatMap((d, r) => differences(d, all[0]).map((x) => `rank ${r} ${x}`));
  if (diffs.length > 0)
    throw new ConfigError(
      `the ranks loaded different data (${diffs.slice(0, 3).join("; ")}): every machine needs the same datasets and pools at the same paths under --data`,
    );
}

/** Writes nothing: the log of a rank other than 0. */
const noEvents: EventWriter = { write: () => {} };

/**
 * Trains (or resumes) a run as its config says and, when it completes, evaluates the
 * best checkpoint on the test split.
 * @throws NonFiniteLossError when the loss becomes NaN or Inf; ConfigError on a bad run
 *   folder or config; DataError on unusable data; DistributedError when a rank of a
 *   data-parallel run fails
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const world = o.world ?? DataParallel.single;
  const log = world.isMain ? (o.log ?? (() => {})) : () => {};
  const progress = world.isMain && o.progress !== false;
  const config = agreedConfig(o, world);
  checkBatchSplit(config, world);
  const out = world.isMain ? new RunLog(path.join(o.runDir, "log.jsonl")) : noEvents;
  // A resumed run is locked before its data loads (another process may be training it).
  let release = o.resume && world.isMain ? acquireRunLock(o.runDir) : null;
  let run: Run;
  try {
    run = await buildRun(config, { dir: o.runDir, dataRoot: o.dataRoot, fresh: !o.resume, log, progress, threads: o.threads, world });
  } catch (err) {
    release?.();
    throw err;
  }
  try {
    checkSameData(run);
    const parts = buildParts(run, out, { ...o, log, progress });
    if (o.resume) {
      parts.checkpointer.restore();
      out.write({
        event: "resume",
        step: run.step,
        precision: run.precision,
        eval_precision: run.evalPrecision,
        world_size: world.worldSize,
      });
      log(`resumed ${o.runDir} at step ${run.step}`);
    } else if (world.isMain) {
      // Written only once the data loaded, so a run that could not start leaves no run folder behind.
      mkdirSync(o.runDir, { recursive: true });
      writeFileSync(path.join(o.runDir, "config.json"), JSON.stringify(run.config, null, 2) + "\n");
      release = acquireRunLock(o.runDir);
      out.write(startEvent(run));
    }
    const completed = await stoppableLoop(run, parts, out, o.stopAfter);
    const result = {
      runDir: o.runDir,
      step: run.step,
      testSplit: config.data.testSplit,
      best: parts.selection.best,
      wallSeconds: parts.clock.seconds(),
      precision: run.precision,
    };
    if (!completed) return { ...result, status: "interrupted", test: null };
    return { ...result, status: "completed", test: finishRun(run, { ...parts, out }, result.wallSeconds) };
  } finally {
    disposeRun(run);
    release?.();
  }
}

/**
 * The loop with Ctrl-C caught while it runs (and only then: the end of a completed run is not
 * interruptible), and a NaN/Inf loss logged and reported with the last good checkpoint.
 * @returns false when stopped early
 * @throws NonFiniteLossError
 */
async function stoppableLoop(run: Run, parts: Parts, out: EventWriter, stopAfter: number | undefined): Promise<boolean> {
  const stop = new StopSignal(stopAfter);
  try {
    return await loop(run, parts, stop);
  } catch (err) {
    if (!(err instanceof NonFiniteLossError)) throw err;
    out.write({ event: "nonfinite_loss", step: err.step, loss: String(err.loss) });
    const last = parts.checkpointer.lastIfWritten();
    throw new NonFiniteLossError(
      err.loss,
      err.step,
      ` ${last !== null ? `Its last good checkpoint is ${last}.` : "It had no checkpoint yet."} Lower the learning rate and start a new run.`,
    );
  } finally {
    stop.dispose();
  }
}

/** The log's first event: the config, the data's sizes, the libtorch version and the precision. */
function startEvent(run: Run): Record<string, unknown> {
  return {
    event: "start",
    config: run.config,
    precision: run.precision,
    eval_precision: run.evalPrecision,
    native_bf16: torch.cpuHasNativeBf16(),
    classes: run.classes,
    n_params: run.model.numParameters(),
    n_train: run.labeled.n,
    n_heldout: run.heldout?.n ?? 0,
    n_val: run.val.n,
    n_unlabeled: run.unlabeled?.n ?? 0,
    unlabeled_sources: run.unlabeled?.sources ?? {},
    unlabeled_skipped: run.unlabeled?.skipped ?? {},
    libtorch: torch.libtorchVersion(),
    openblas_coretype: torch.openblasCoretype(),
    world_size: run.world.worldSize,
  };
}
