/**
 * The run folders `ferkit serve` shows: listed from one root folder, each with its state and key
 * metrics, and resolved from a run id only inside that root (no `..`, no absolute path, no
 * symbolic link that leads out).
 */
import { existsSync, lstatSync, readdirSync, realpathSync, statSync } from "node:fs";
import path from "node:path";
import { readRun, type RunData } from "../report/run_data.js";
import { lockAlive, readRunLock } from "../train/run_lock.js";

/** Where a run stands: training now, done, stopped before its end, or stopped by an error. */
export type RunState = "running" | "finished" | "interrupted" | "failed";

/** One line of the runs list. */
export interface RunSummary {
  /** The folder's name under the runs root: the id in `/api/runs/:id`. */
  id: string;
  state: RunState;
  algorithm: string;
  model: string | null;
  seed: number | null;
  /** Steps done (the last logged step) and asked for. */
  step: number | null;
  target_steps: number | null;
  /** Best validation macro-F1 so far, in [0, 1]. */
  best_val_macro_f1: number | null;
  /** Test split metrics of a finished run, in [0, 1]. */
  test_accuracy: number | null;
  test_macro_f1: number | null;
  /** When the log last changed (ISO 8601). */
  updated: string;
}

/** Run ids: a folder name of letters, digits, `.`, `_`, `-` (not `.` or `..`). */
const RUN_ID = /^(?!\.{1,2}$)[\w.-]{1,200}$/;

/** Events after which a run is not training any more. */
const FAILED_EVENTS = new Set(["nonfinite_loss"]);

/**
 * The folder of run `id` under `root`, or null when `id` is not a plain folder name, does not
 * exist, is not a run folder (no `log.jsonl`), or resolves (through links) outside `root`.
 */
export function runDir(root: string, id: string): string | null {
  if (!RUN_ID.test(id)) return null;
  const dir = path.join(root, id);
  try {
    const realRoot = realpathSync(root);
    const real = realpathSync(dir);
    if (!real.startsWith(realRoot + path.sep)) return null;
    const log = path.join(real, "log.jsonl");
    if (!statSync(real).isDirectory() || !existsSync(log) || lstatSync(log).isSymbolicLink()) return null;
    return real;
  } catch {
    return null;
  }
}

/** A run's state from its metrics, its lock (`train.pid`) and its last log event. */
export function runState(dir: string, data: RunData): RunState {
  if (data.metrics !== null) return "finished";
  const lock = readRunLock(dir);
  if (lock !== null && lockAlive(lock)) return "running";
  return FAILED_EVENTS.has(data.lastEvent) ? "failed" : "interrupted";
}

/** The summary of one run folder. */
export function summarizeRun(id: string, dir: string, data: RunData): RunSummary {
  const lastStep = data.steps.at(-1)?.step ?? data.epochs.at(-1)?.step ?? null;
  const bestVal = data.epochs.length > 0 ? Math.max(...data.epochs.map((e) => e.macro_f1)) : null;
  const model = (data.config?.model as { name?: string } | undefined)?.name ?? data.metrics?.model ?? null;
  return {
    id,
    state: runState(dir, data),
    algorithm: data.algorithm,
    model,
    seed: data.seed,
    step: data.metrics?.steps ?? lastStep,
    target_steps: data.targetSteps,
    best_val_macro_f1: data.metrics?.best_val_macro_f1 ?? bestVal,
    test_accuracy: data.metrics?.test?.accuracy ?? null,
    test_macro_f1: data.metrics?.test?.macro_f1 ?? null,
    updated: statSync(path.join(dir, "log.jsonl")).mtime.toISOString(),
  };
}

/**
 * The run folders directly under `root`, most recently updated first; folders that are not
 * readable runs are left out.
 */
export function listRuns(root: string): RunSummary[] {
  if (!existsSync(root)) return [];
  const out: RunSummary[] = [];
  for (const id of readdirSync(root).sort()) {
    const dir = runDir(root, id);
    if (dir === null) continue;
    try {
      out.push(summarizeRun(id, dir, readRun(dir)));
    } catch {
      // not a run folder after all (an empty log, say)
    }
  }
  return out.sort((a, b) => b.updated.localeCompare(a.updated) || a.id.localeCompare(b.id));
}
