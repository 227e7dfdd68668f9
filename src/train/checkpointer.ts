/**
 * The run's checkpoints: `checkpoints/last.safetensors` after every epoch and on a stop,
 * `checkpoints/best.safetensors` when validation improves. A checkpoint holds the student,
 * the teacher, the optimizer, libtorch's RNG, the step, and the state of every part that
 * keeps one (collected from its owner, restored to it), so a resumed run is exact.
 *
 * In a data-parallel run only rank 0 writes: the other ranks send it their own RNG state and
 * per-rank parts, which go in the checkpoint with rank 0's; on resume rank 0 reads the file
 * and sends its bytes to every rank, so the other ranks need no access to the run folder.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as torch from "../torch/index.js";
import type { nn } from "../torch/index.js";
import { disposeCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
import { ConfigError } from "./config.js";
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

  /** Writes a checkpoint of the run as it is now (atomically). Every rank calls it; rank 0 writes. */
  save(file: string): void {
    const { run } = this;
    const { world } = run;
    const ranks = world.distributed ? world.gatherJson(this.#rankState()) : null;
    if (!world.isMain) return;
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
        ...(ranks === null ? {} : { world_size: world.worldSize, ranks }),
      },
    });
  }

  /** This rank's own state: its libtorch RNG and its per-rank parts. */
  #rankState(): { rng: string; parts: Record<string, unknown> } {
    const rng = torch.getRngState();
    const state = rng.toArray() as Uint8Array;
    const bytes = Buffer.from(state.buffer, state.byteOffset, state.byteLength).toString("base64");
    rng.dispose();
    return { rng: bytes, parts: Object.fromEntries(this.owners.filter((o) => o.perRank === true).map((o) => [o.key, o.state()])) };
  }

  /**
   * Restores the run from its last checkpoint: weights, teacher, optimizer, libtorch's RNG,
   * the step and every owner's state.
   * @throws Error when the checkpoint is missing, unreadable, or does not fit the run
   */
  restore(): void {
    const { run } = this;
    const { world } = run;
    const c = this.#load(this.lastFile);
    try {
      const saved = c.state.world_size ?? 1;
      if (saved !== world.worldSize)
        throw new ConfigError(
          `${run.dir} was trained by ${saved} process(es) and this resume has ${world.worldSize}: each rank's share of the batches and its random streams depend on the world size, so the run continues exactly only with the same one (launch it with ${saved === 1 ? "one process" : `${saved} processes in all`}, e.g. --nproc-per-node ${saved})`,
        );
      run.model.loadStateDict(c.model);
      if (run.ema !== null && c.ema !== null) run.ema.teacher.loadStateDict(c.ema);
      run.optimizer.loadStateDict(c.optimizer);
      const mine = c.state.ranks?.[world.rank];
      for (const o of this.owners) {
        const state = o.perRank === true && mine !== undefined ? mine.parts[o.key] : c.state.parts[o.key];
        if (state !== undefined) o.loadState(state);
      }
      if (mine !== undefined) {
        const bytes = Buffer.from(mine.rng, "base64");
        torch.tidy(() => torch.setRngState(torch.fromArray(new Uint8Array(bytes), [bytes.length], "uint8")));
      } else if (c.rngState !== null) torch.setRngState(c.rngState);
      run.step = c.state.step;
    } finally {
      disposeCheckpoint(c);
    }
  }

  /** Reads a checkpoint: rank 0 from its file, the other ranks from the bytes rank 0 sends. */
  #load(file: string): ReturnType<typeof loadCheckpoint> {
    const { world } = this.run;
    if (!world.distributed) return loadCheckpoint(file);
    const bytes = world.broadcastBytes(world.isMain ? readFileSync(file) : null);
    if (world.isMain) return loadCheckpoint(file);
    const dir = mkdtempSync(path.join(os.tmpdir(), "ferkit-rank-"));
    try {
      writeFileSync(path.join(dir, "checkpoint.safetensors"), bytes);
      return loadCheckpoint(path.join(dir, "checkpoint.safetensors"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Loads the best checkpoint's weights into `model` (the teacher's when `model` is the teacher), on every rank. */
  loadBest(model: nn.Module): void {
    const c = this.#load(this.bestFile);
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
