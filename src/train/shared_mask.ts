/**
 * Pseudo-label masks decided on the global unlabeled batch of a data-parallel run. Each rank
 * holds U / W of the batch's unlabeled images; the wrapped rule sees the probabilities of all U
 * (gathered in rank order), so its per-batch state (FlexMatch's per-sample records, FreeMatch's
 * moving averages) moves exactly as in one process, identically on every rank, and each rank
 * keeps the mask of its own images.
 */
import { rowMax } from "../ssl/self_training.js";
import type { LabeledStats, MaskInput, ThresholdRule } from "../ssl/thresholds.js";
import type { DataParallel } from "./data_parallel.js";

/** A {@link ThresholdRule} applied to the whole batch across the ranks. */
export class SharedMaskRule implements ThresholdRule {
  constructor(
    readonly inner: ThresholdRule,
    readonly world: DataParallel,
  ) {}

  /** @returns the mask of this rank's images `[U / W]` */
  mask(b: MaskInput): Uint8Array {
    const U = b.conf.length;
    const n = U * this.world.worldSize;
    const C = U === 0 ? 0 : b.probs.length / U;
    const probs = this.world.gatherRows(b.probs, n, C);
    const index = this.world.gatherRows(Float64Array.from(b.index), n, 1);
    const all = this.inner.mask({ probs, ...rowMax(probs, C), index: Int32Array.from(index) });
    return all.slice(...this.world.shard(n));
  }

  thresholds(): number[] {
    return this.inner.thresholds();
  }

  epochEnd(epoch: number, stats: () => LabeledStats): Record<string, unknown> {
    return this.inner.epochEnd(epoch, stats);
  }

  stateDict(): unknown {
    return this.inner.stateDict();
  }

  loadStateDict(state: unknown): void {
    this.inner.loadStateDict(state);
  }
}
