/**
 * Checkpoints: one safetensors file per checkpoint holding every tensor (student
 * `model.*`, teacher `ema.*`, optimizer state `optim.*`, libtorch's RNG state) with the
 * rest of the training state as JSON in the file's `__metadata__`. One file, written to a
 * temporary name and renamed: a save killed halfway leaves the previous checkpoint valid.
 * The `model.*` tensors carry PyTorch's state_dict names, so Python reads them too.
 */
import { existsSync } from "node:fs";
import * as torch from "../torch/index.js";
import type { Tensor } from "../torch/index.js";
import type { OptimizerStateDict } from "../torch/optim/index.js";

/** Everything of a checkpoint that is not a tensor. */
export interface CheckpointState {
  /** Optimizer steps completed. */
  step: number;
  /** The resolved config of the run. */
  config: unknown;
  /** Class names of the model's outputs, in order. */
  classes: string[];
  optimizer: OptimizerStateDict["meta"];
  /**
   * The state of each part of the training loop that keeps one, under the part's key
   * (`scheduler`, `algorithm`, `batches`, `pseudo`, `clock`, `best`; see src/train/parts.ts).
   */
  parts: Record<string, unknown>;
  /** Processes of the data-parallel run that wrote it (absent: 1). */
  world_size?: number;
  /**
   * Per rank of a data-parallel run, in rank order: its libtorch RNG state (base64 of the
   * state tensor's bytes) and the states of the parts that differ between ranks (`batches`,
   * `pseudo`); absent for one process (its RNG is the `rng.torch` tensor, its parts `parts`).
   */
  ranks?: { rng: string; parts: Record<string, unknown> }[];
}

/**
 * The layout written before the loop was split into parts (one `loop` object for the data
 * order, RNG and wall time): read as the parts' layout, so runs stopped by an older ferkit
 * still resume.
 */
function upgradeState(s: Record<string, unknown>): CheckpointState {
  if (s.parts !== undefined) return s as unknown as CheckpointState;
  const loop = s.loop as Record<string, unknown> | undefined;
  if (typeof loop !== "object" || loop === null) throw new Error("its training state has neither parts nor a loop object");
  const { step, config, classes, optimizer } = s as unknown as CheckpointState;
  return {
    step,
    config,
    classes,
    optimizer,
    parts: {
      scheduler: s.scheduler,
      algorithm: s.algorithm,
      best: s.best,
      batches: {
        sampler: loop.sampler,
        balancedRng: loop.balancedRng,
        unlabeledSampler: loop.unlabeledSampler,
        augmentRng: loop.augmentRng,
      },
      pseudo: loop.pseudo,
      clock: { wallSeconds: loop.wallSeconds },
    },
  };
}

/** What {@link saveCheckpoint} writes. */
export interface CheckpointParts {
  model: Map<string, Tensor>;
  ema: Map<string, Tensor> | null;
  optimizer: OptimizerStateDict;
  state: Omit<CheckpointState, "optimizer">;
}

/** Writes a checkpoint atomically to `file`. */
export function saveCheckpoint(file: string, parts: CheckpointParts): void {
  torch.tidy(() => {
    const tensors = new Map<string, Tensor>();
    for (const [k, t] of parts.model) tensors.set(`model.${k}`, t);
    if (parts.ema !== null) for (const [k, t] of parts.ema) tensors.set(`ema.${k}`, t);
    for (const [k, t] of parts.optimizer.tensors) tensors.set(`optim.${k}`, t);
    tensors.set("rng.torch", torch.getRngState());
    const state: CheckpointState = { ...parts.state, optimizer: parts.optimizer.meta };
    torch.saveSafetensors(file, tensors, { format: "pt", ferkit_checkpoint: JSON.stringify(state) });
  });
}

/** A loaded checkpoint; the caller owns (and disposes) the tensors. */
export interface LoadedCheckpoint {
  model: Map<string, Tensor>;
  ema: Map<string, Tensor> | null;
  optimizer: OptimizerStateDict;
  rngState: Tensor | null;
  state: CheckpointState;
}

/**
 * Reads a checkpoint written by {@link saveCheckpoint}.
 * @throws Error naming the file when it is missing, not safetensors, or not a ferkit checkpoint
 */
export function loadCheckpoint(file: string): LoadedCheckpoint {
  if (!existsSync(file)) throw new Error(`checkpoint ${file} does not exist`);
  const { tensors, metadata } = torch.loadSafetensors(file);
  if (metadata.ferkit_checkpoint === undefined) {
    for (const t of tensors.values()) t.dispose();
    throw new Error(`${file} is a weights file, not a ferkit checkpoint (no training state in its metadata)`);
  }
  let state: CheckpointState;
  try {
    state = upgradeState(JSON.parse(metadata.ferkit_checkpoint) as Record<string, unknown>);
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw new Error(`${file} is not a readable ferkit checkpoint: ${(err as Error).message}`, { cause: err });
  }
  const model = new Map<string, Tensor>();
  const ema = new Map<string, Tensor>();
  const optim = new Map<string, Tensor>();
  let rngState: Tensor | null = null;
  for (const [k, t] of tensors) {
    if (k.startsWith("model.")) model.set(k.slice(6), t);
    else if (k.startsWith("ema.")) ema.set(k.slice(4), t);
    else if (k.startsWith("optim.")) optim.set(k.slice(6), t);
    else if (k === "rng.torch") rngState = t;
    else t.dispose();
  }
  return { model, ema: ema.size > 0 ? ema : null, optimizer: { tensors: optim, meta: state.optimizer }, rngState, state };
}

/** Disposes every tensor of a loaded checkpoint. */
export function disposeCheckpoint(c: LoadedCheckpoint): void {
  torch.dispose([c.model, c.ema, c.optimizer.tensors, c.rngState]);
}
