/**
 * Reads a run folder written by the trainer (`config.json`, `log.jsonl`, `metrics.json`)
 * into the series a report plots. Nothing here computes a metric: every number comes
 * from the run's own log, so a report shows exactly what the run measured.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { z } from "zod";

/** A run folder that cannot be reported (missing, or without a readable log). */
export class ReportError extends Error {
  override name = "ReportError";
}

/** One `step` log event: means over the last `train.logEvery` steps. */
export interface StepPoint {
  step: number;
  /** Total loss (supervised + weighted unlabeled terms). */
  loss: number;
  /** Supervised cross-entropy, for semi-supervised algorithms. */
  loss_x?: number;
  /** Unlabeled (pseudo-label) loss before its weight `lambda_u`. */
  loss_u?: number;
  /** Fraction of unlabeled images whose pseudo-label passed the threshold, in [0, 1]. */
  mask_rate?: number;
  lr: number;
  steps_s: number;
}

/** One `epoch` log event: validation metrics (probabilities in [0, 1]) and wall time in seconds. */
export interface EpochPoint {
  epoch: number;
  step: number;
  accuracy: number;
  macro_f1: number;
  ece: number;
  wall_s: number;
}

/** One `thresholds` log event: per-class thresholds tau in [0, 1] after an epoch's update. */
export interface ThresholdPoint {
  epoch: number;
  tau: number[];
  /** Thresholds before this update (DTM and Ada-CM log them). */
  tau_before?: number[];
  /** DTM and Ada-CM: mean max-confidence of each class's correct labeled samples (null: none). */
  mu?: (number | null)[];
}

/** One `pseudo_labels` log event: what the unlabeled loss used during an epoch. */
export interface PseudoPoint {
  epoch: number;
  step: number;
  mask_rate: number | null;
  /** Accepted pseudo-labels per class. */
  histogram: number[];
  /** All pseudo-labels (accepted or not) per class. */
  histogram_all: number[];
  /** Accuracy of accepted pseudo-labels on images with hidden labels (null: none). */
  accuracy: number | null;
  accuracy_all: number | null;
  per_class_accuracy: (number | null)[];
}

/** Test metrics as `metrics.json` stores them (keys as `ferkit eval --json`). */
export interface TestMetrics {
  accuracy: number;
  macro_f1: number;
  per_class: Record<string, { precision: number; recall: number; f1: number; support: number }>;
  confusion_matrix: number[][];
  classes: string[];
  n: number;
  ece?: number;
}

const testMetricsSchema = z
  .object({
    accuracy: z.number(),
    macro_f1: z.number(),
    per_class: z.record(
      z.string(),
      z.object({ precision: z.number(), recall: z.number(), f1: z.number(), support: z.number() }).passthrough(),
    ),
    confusion_matrix: z.array(z.array(z.number())),
    classes: z.array(z.string()),
    n: z.number(),
    ece: z.number().optional(),
  })
  .passthrough();

/** The shape `metrics.json` (and the log's `end` event) must have. */
const runMetricsSchema = z
  .object({
    split: z.string().nullable(),
    test: testMetricsSchema.nullable(),
    best_val_macro_f1: z.number().nullable(),
    best_step: z.number().nullable(),
    steps: z.number(),
    seed: z.number(),
    wall_time_s: z.number(),
    model: z.string(),
    algorithm: z.string(),
    n_labeled: z.number(),
    n_unlabeled: z.number(),
  })
  .passthrough();

/** `metrics.json` of a finished run. */
export interface RunMetrics {
  split: string | null;
  test: TestMetrics | null;
  best_val_macro_f1: number | null;
  best_step: number | null;
  steps: number;
  seed: number;
  wall_time_s: number;
  model: string;
  algorithm: string;
  n_labeled: number;
  n_unlabeled: number;
}

/** Everything a report shows of one run, in step (or epoch) order. */
export interface RunData {
  dir: string;
  /** The run folder's base name: the label of this run in comparisons. */
  name: string;
  config: Record<string, unknown> | null;
  classes: string[];
  algorithm: string;
  seed: number | null;
  /** Training steps the config asks for. */
  targetSteps: number | null;
  steps: StepPoint[];
  epochs: EpochPoint[];
  thresholds: ThresholdPoint[];
  pseudo: PseudoPoint[];
  /** null while the run has not finished. */
  metrics: RunMetrics | null;
  /** Where {@link RunData.metrics} came from (the log's `end` event when `metrics.json` is missing). */
  metricsSource: "metrics.json" | "log" | null;
  /** Labeled training images (from the metrics, else the log's `start` event); null if unknown. */
  nLabeled: number | null;
  /** Unlabeled images; null if unknown. */
  nUnlabeled: number | null;
  /** Log lines that were not log events (a line cut by a kill, say); skipped. */
  skippedLines: number;
  /** The name of the log's last event (`end`, `interrupted`, `nonfinite_loss`, `step`, ...). */
  lastEvent: string;
}

const isNumber = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);

/**
 * Reads one run folder.
 * @param dir a folder written by `ferkit train` (holds at least `log.jsonl`)
 * @throws ReportError when the folder or its `log.jsonl` is missing, or no line of it is a log event
 */
export function readRun(dir: string): RunData {
  if (!existsSync(dir)) throw new ReportError(`${dir}: no such run folder`);
  if (!statSync(dir).isDirectory()) throw new ReportError(`${dir}: a file, not a run folder`);
  const logFile = path.join(dir, "log.jsonl");
  if (!existsSync(logFile) || !statSync(logFile).isFile()) throw new ReportError(`${dir}: not a ferkit run folder (no log.jsonl file)`);

  // A resumed run logs again the steps after its last checkpoint: keyed maps keep the latest.
  const steps = new Map<number, StepPoint>();
  const epochs = new Map<number, EpochPoint>();
  const thresholds = new Map<number, ThresholdPoint>();
  const pseudo = new Map<number, PseudoPoint>();
  let config: Record<string, unknown> | null = null;
  let classes: string[] = [];
  let started: { n_train?: unknown; n_unlabeled?: unknown } = {};
  let ended: RunMetrics | null = null;
  let skippedLines = 0;
  let events = 0;
  let lastEvent = "";

  for (const line of readFileSync(logFile, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
      if (typeof e !== "object" || e === null || typeof e.event !== "string") throw new Error("not an event");
    } catch {
      skippedLines++;
      continue;
    }
    events++;
    lastEvent = e.event;
    switch (e.event) {
      case "start":
        config = typeof e.config === "object" && e.config !== null ? (e.config as Record<string, unknown>) : null;
        if (Array.isArray(e.classes)) classes = e.classes as string[];
        started = e;
        break;
      case "end": {
        const m = runMetricsSchema.safeParse(e);
        if (m.success) ended = m.data as RunMetrics;
        else skippedLines++;
        break;
      }
      case "step":
        if (isNumber(e.step) && isNumber(e.loss)) steps.set(e.step, e as unknown as StepPoint);
        break;
      case "epoch": {
        const val = e.val as Record<string, number> | undefined;
        if (isNumber(e.epoch) && val !== undefined) {
          epochs.set(e.epoch, {
            epoch: e.epoch,
            step: e.step as number,
            accuracy: val.accuracy,
            macro_f1: val.macro_f1,
            ece: val.ece,
            wall_s: e.wall_s as number,
          });
        }
        break;
      }
      case "thresholds":
        if (isNumber(e.epoch) && Array.isArray(e.tau)) thresholds.set(e.epoch, e as unknown as ThresholdPoint);
        break;
      case "pseudo_labels":
        if (isNumber(e.epoch) && Array.isArray(e.histogram)) pseudo.set(e.epoch, e as unknown as PseudoPoint);
        break;
    }
  }
  if (events === 0) throw new ReportError(`${logFile}: no log events in it`);

  let metrics: RunMetrics | null = ended;
  let metricsSource: RunData["metricsSource"] = ended ? "log" : null;
  const metricsFile = path.join(dir, "metrics.json");
  if (existsSync(metricsFile)) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(metricsFile, "utf8"));
    } catch (err) {
      throw new ReportError(`${metricsFile}: not valid JSON (${(err as Error).message})`);
    }
    const m = runMetricsSchema.safeParse(raw);
    if (!m.success) {
      const issue = m.error.issues[0];
      throw new ReportError(`${metricsFile}: not a ferkit metrics file (${issue.path.join(".") || "the top level"}: ${issue.message})`);
    }
    metrics = m.data as RunMetrics;
    metricsSource = "metrics.json";
  }
  const algorithmConfig = (config?.algorithm as { name?: string } | undefined)?.name;
  const trainConfig = config?.train as { steps?: number } | undefined;
  const byKey = <T>(m: Map<number, T>): T[] => [...m.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
  return {
    dir,
    name: path.basename(path.resolve(dir)),
    config,
    classes: classes.length > 0 ? classes : (metrics?.test?.classes ?? []),
    // A config without an algorithm section predates them: those runs were supervised.
    algorithm: metrics?.algorithm ?? algorithmConfig ?? (config !== null ? "supervised" : "unknown"),
    seed: metrics?.seed ?? (isNumber(config?.seed) ? config.seed : null),
    targetSteps: isNumber(trainConfig?.steps) ? trainConfig.steps : null,
    steps: byKey(steps),
    epochs: byKey(epochs),
    thresholds: byKey(thresholds),
    pseudo: byKey(pseudo),
    metrics,
    metricsSource,
    nLabeled: metrics?.n_labeled ?? (isNumber(started.n_train) ? started.n_train : null),
    nUnlabeled: metrics?.n_unlabeled ?? (isNumber(started.n_unlabeled) ? started.n_unlabeled : null),
    skippedLines,
    lastEvent,
  };
}

/**
 * Reads several run folders. Runs whose folder names repeat are labelled with as many parent
 * folders as it takes to tell them apart (`a/run`, `b/run`).
 * @throws ReportError as {@link readRun}
 */
export function readRuns(dirs: readonly string[]): RunData[] {
  const runs = dirs.map((d) => readRun(d));
  const parts = runs.map((r) =>
    path
      .resolve(r.dir)
      .split(path.sep)
      .filter((p) => p !== ""),
  );
  for (let depth = 1; ; depth++) {
    const names = parts.map((p) => p.slice(-depth).join("/"));
    const unique = new Set(names).size === names.length;
    if (unique || depth >= Math.max(...parts.map((p) => p.length))) {
      runs.forEach((r, i) => (r.name = names[i]));
      return runs;
    }
  }
}
