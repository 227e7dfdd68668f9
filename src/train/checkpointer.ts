/**
 * The run's checkpoints: `checkpoints/last.safetensors` after every epoch and on a stop,
 * `checkpoints/best.safetensors` when validation improves. A checkpoint holds the student,
 * the teacher, the optimizer, libtorch's RNG, the step, and the state of every part that
 * keeps one (collected from its owner, restored to it), so a resumed run is exact.
 */
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import * as torch from "../torch/index.js";
import type { nn } from "../torch/index.js";
import { disposeCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
import type { EpochReport, Persistent, RunPart } from "./parts.js";
import type { Run } from "./run.js";
import type { EventWriter } from "./run_log.js";

/** Saves and restores a run's checkpoints. */
export class Checkpointer implements RunPart {
  readonly lastFile: string;
  readonly bestFile: string;

  /**
   * @param owners every state owner of the run, each saved under its own key
   * @param log receives the console line of a stop
   */
  constructor(
    readonly run: Run,
    readonly owners: readonly Persistent[],
    readonly out: EventWriter,
    readonly log: (line: string) => void,
  ) {
    const dir = path.join(run.dir, "checkpoints");
    this.lastFile = path.join(dir, "last.safetensors");
    this.bestFile = path.join(dir, "best.safetensors");
    const keys = owners.map((o) => o.key);
    if (new Set(keys).size !== keys.length) throw new Error(`Checkpointer: two state owners share a key (${keys.join(", ")})`);
  }

  afterEpoch(e: EpochReport): void {
    if (e.improved) this.save(this.bestFile);
    this.save(this.lastFile);
  }

  onInterrupt(): void {
    this.save(this.lastFile);
    this.out.write({ event: "interrupted", step: this.run.step });
    this.log(`stopped at step ${this.run.step}; checkpoint saved. Continue with: ferkit train --resume ${this.run.dir}`);
  }

  /** Writes a checkpoint of the run as it is now (atomically). */
  save(file: string): void {
    const { run } = this;
    mkdirSync(path.dirname(file), { recursive: true });
    saveCheckpoint(file, {
      model: run.model.stateDict(),
      ema: run.ema?.teacher.stateDict() ?? null,
      optimizer: run.optimizer.stateDict(),
      state: {
        step: run.step,
        config: run.config,
        classes: run.classes,
        parts: Object.fromEntries(this.owners.map((o) => [o.key, o.state()])),
      },
    });
  }

  /**
   * Restores the run from its last checkpoint: weights, teacher, optimizer, libtorch's RNG,
   * the step and every owner's state.
   * @throws Error when the checkpoint is missing, unreadable, or does not fit the run
   */
  restore(): void {
    const { run } = this;
    const c = loadCheckpoint(this.lastFile);
    try {
      run.model.loadStateDict(c.model);
      if (run.ema !== null && c.ema !== null) run.ema.teacher.loadStateDict(c.ema);
      run.optimizer.loadStateDict(c.optimizer);
      for (const o of this.owners) if (c.state.parts[o.key] !== undefined) o.loadState(c.state.parts[o.key]);
      if (c.rngState !== null) torch.setRngState(c.rngState);
      run.step = c.state.step;
    } finally {
      disposeCheckpoint(c);
    }
  }

  /** Loads the best checkpoint's weights into `model` (the teacher's when `model` is the teacher). */
  loadBest(model: nn.Module): void {
    const c = loadCheckpoint(this.bestFile);
    try {
      model.loadStateDict(model === this.run.model ? c.model : (c.ema ?? c.model));
    } finally {
      disposeCheckpoint(c);
    }
  }

  /** The last checkpoint's path when one was written, else null. */
  lastIfWritten(): string | null {
    return existsSync(this.lastFile) ? this.lastFile : null;
  }
}
