/**
 * The batches of a run: which labeled and unlabeled images each step sees (seeded samplers)
 * and their augmented views (one seeded RNG for every augmentation). Its state (sampler
 * orders and RNG states) is saved in checkpoints, so a resumed run sees the same batches.
 */
import { makeViews } from "../augment/views.js";
import { gatherImages } from "../data/prepare.js";
import { ClassBalancedSampler, RandomSampler, Rng, type SamplerState } from "../data/sampler.js";
import type { LabeledBatch, UnlabeledBatch } from "../ssl/types.js";
import * as torch from "../torch/index.js";
import type { Persistent } from "./parts.js";
import type { Run } from "./run.js";

/** The indices of one step's images (this rank's share in a data-parallel run). */
export interface BatchIndices {
  /** `[B]` indices into the run's labeled images. */
  labeled: number[];
  /** `[U]` indices into the unlabeled set, or null for supervised training. */
  unlabeled: number[] | null;
}

/** What {@link BatchSource} saves in checkpoints. */
export interface BatchSourceState {
  sampler: SamplerState | null;
  balancedRng: number[] | null;
  unlabeledSampler: SamplerState | null;
  augmentRng: number[];
}

/**
 * Labeled batches of `train.batchSize` (a fresh permutation each epoch, or class-balanced
 * draws with `data.balanced`) and unlabeled batches of `uratio * batchSize`, with the weak
 * and strong views the algorithm asks for. Seeds: labeled order `seed`, augmentation
 * `seed + 1`, unlabeled order `seed + 2`.
 *
 * In a data-parallel run of W ranks the config's batch is the global batch: every rank draws
 * the same global batch (same seeds) and keeps its contiguous share of B / W labeled and U / W
 * unlabeled images, so the shards are disjoint and an epoch covers the data exactly as one
 * process would. Rank r's augmentations come from its own stream, `seed + 1 + 1000003 r`.
 */
export class BatchSource implements Persistent {
  readonly key = "batches";
  /** The augmentation stream differs between ranks. */
  readonly perRank = true;
  readonly #run: Run;
  readonly #sampler: RandomSampler | null;
  readonly #balanced: ClassBalancedSampler | null;
  readonly #unlabeledSampler: RandomSampler | null;
  readonly #augmentRng: Rng;
  /** Labeled images per step over all ranks (B). */
  readonly batchSize: number;
  /** Unlabeled images per step over all ranks (U = round(uratio * B)). */
  readonly unlabeledSize: number;

  constructor(run: Run) {
    const { config, labeled, unlabeled } = run;
    this.#run = run;
    this.batchSize = config.train.batchSize;
    this.unlabeledSize = Math.round(("uratio" in config.algorithm ? config.algorithm.uratio : 0) * this.batchSize);
    this.#unlabeledSampler = unlabeled === null ? null : new RandomSampler(unlabeled.n, config.seed + 2);
    this.#sampler = config.data.balanced ? null : new RandomSampler(labeled.n, config.seed);
    this.#balanced = config.data.balanced ? new ClassBalancedSampler([...labeled.labels], config.seed) : null;
    this.#augmentRng = new Rng(config.seed + 1 + 1_000_003 * run.world.rank);
  }

  /** Draws the next step's indices (this rank's share of the global batch): labeled first, then unlabeled. */
  next(): BatchIndices {
    const B = this.batchSize;
    const share = (ix: number[]): number[] => ix.slice(...this.#run.world.shard(ix.length));
    const labeled = this.#sampler !== null ? this.#sampler.nextBatch(B) : (this.#balanced as ClassBalancedSampler).nextBatch(B);
    const unlabeled = this.#unlabeledSampler?.nextBatch(this.unlabeledSize) ?? null;
    return { labeled: share(labeled), unlabeled: unlabeled === null ? null : share(unlabeled) };
  }

  /**
   * The tensors of a batch: the labeled images' weak or strong view (`train.augment`; the
   * plain images when it is false) with their labels, then the unlabeled images' views. Call
   * inside a `tidy` scope: the tensors are the caller's.
   */
  views(ix: BatchIndices): { labeled: LabeledBatch; unlabeled: UnlabeledBatch | null } {
    const { labeled, unlabeled, algorithm } = this.#run;
    const shape = [ix.labeled.length, ...labeled.shape] as const;
    const pixels = gatherImages(labeled, ix.labeled);
    const x = this.#labeledView(pixels, shape);
    const y = torch.fromArray(
      Int32Array.from(ix.labeled, (i) => labeled.labels[i]),
      [ix.labeled.length],
      "int64",
    );
    const batch = { x, y, index: Int32Array.from(ix.labeled) };
    if (unlabeled === null || ix.unlabeled === null) return { labeled: batch, unlabeled: null };
    const views = makeViews(
      { data: gatherImages(unlabeled, ix.unlabeled), shape: [ix.unlabeled.length, ...unlabeled.shape] },
      this.#augmentRng,
      {
        weak: algorithm.weakViews,
        strong: algorithm.strongViews,
      },
    );
    return { labeled: batch, unlabeled: { weak: views.weak, strong: views.strong, index: Int32Array.from(ix.unlabeled) } };
  }

  /** The labeled images as `train.augment` asks: float32 `[N, C, H, W]` in [0, 1]. */
  #labeledView(pixels: Uint8Array, shape: readonly [number, number, number, number]): torch.Tensor {
    const augment = this.#run.config.train.augment;
    if (augment === false)
      return torch
        .fromArray(pixels, [...shape])
        .float()
        .div(255);
    const strong = augment === "strong";
    const views = makeViews({ data: pixels, shape }, this.#augmentRng, { weak: strong ? 0 : 1, strong: strong ? 1 : 0 });
    return strong ? views.strong[0] : views.weak[0];
  }

  state(): BatchSourceState {
    return {
      sampler: this.#sampler?.state() ?? null,
      balancedRng: this.#balanced?.rng.getState() ?? null,
      unlabeledSampler: this.#unlabeledSampler?.state() ?? null,
      augmentRng: this.#augmentRng.getState(),
    };
  }

  loadState(state: unknown): void {
    const s = state as BatchSourceState;
    if (this.#sampler !== null && s.sampler !== null) this.#sampler.loadState(s.sampler);
    if (this.#balanced !== null && s.balancedRng !== null) this.#balanced.rng.setState(s.balancedRng);
    if (this.#unlabeledSampler !== null && s.unlabeledSampler) this.#unlabeledSampler.loadState(s.unlabeledSampler);
    this.#augmentRng.setState(s.augmentRng);
  }
}
