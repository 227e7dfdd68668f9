/**
 * The unlabeled set of a semi-supervised run, in memory: the train split's images with
 * their labels hidden (all of them, or those a few-label split left without a label) and
 * the external pools of face photos (detected, aligned and cached), concatenated into one
 * `[n, C, H, W]` uint8 array. Hidden labels are kept only to measure pseudo-label accuracy.
 */
import path from "node:path";
import { openData } from "../data/open.js";
import { preparePool, type ShardGroup } from "../data/pool_prepare.js";
import { gatherImages, imageBytes, type PreparedSplit } from "../data/prepare.js";
import { DataError, type UnlabeledPool, type UnlabeledSample } from "../data/dataset.js";
import { Rng, shuffleInPlace } from "../data/sampler.js";
import type { TrainConfig } from "./config.js";

/** The unlabeled images of a run. */
export interface UnlabeledSet {
  /** `[n, C, H, W]` uint8. */
  images: Uint8Array;
  shape: [number, number, number];
  n: number;
  /** Hidden label of each image (class index of the labeled space), or -1 for external photos. */
  hiddenLabels: Int32Array;
  /** Number of images from each source ("train split", or the pool's folder). */
  sources: Record<string, number>;
  /** Photos of the pools that gave no face, by reason. */
  skipped: Record<string, number>;
}

/** Options of {@link loadUnlabeledSet}. */
export interface UnlabeledOptions {
  config: TrainConfig;
  dataRoot: string;
  cacheDir: string;
  /** The (full) labeled train split. */
  train: PreparedSplit;
  /** Indices of `train` whose images join the unlabeled set when `data.unlabeled.trainSplit` is on. */
  trainIndices: readonly number[];
  log: (line: string) => void;
  progress: boolean;
  /** Detection threads for pools (default: the face module's). */
  workers?: number;
  /** The ranks of a data-parallel run: a pool missing from a rank's cache is prepared in shards over all ranks. */
  group?: ShardGroup;
}

/**
 * Builds the unlabeled set a config asks for.
 * @throws DataError when a pool folder is missing or nothing usable remains
 */
export async function loadUnlabeledSet(o: UnlabeledOptions): Promise<UnlabeledSet> {
  const u = o.config.data.unlabeled;
  const shape = o.train.shape;
  const parts: { images: Uint8Array; hidden: Int32Array; sources: string[] }[] = [];
  const skipped: Record<string, number> = {};
  if (u.trainSplit && o.trainIndices.length > 0) {
    parts.push({
      images: gatherImages(o.train, o.trainIndices),
      hidden: Int32Array.from(o.trainIndices, (i) => o.train.labels[i]),
      sources: o.trainIndices.map(() => `${o.config.data.trainSplit} (labels hidden)`),
    });
  }
  for (const align of ["detect", "resize"] as const) {
    const pools = u.pools.filter((p) => p.align === align);
    const roots = pools.map((p) => (path.isAbsolute(p.path) ? p.path : path.join(o.dataRoot, p.path)));
    if (roots.length === 0) continue;
    const opened = openData({ paths: roots, format: "pool", warn: (m) => o.log(`warning: ${m}`) });
    if (opened.kind !== "pool") throw new Error("unreachable: a pool was expected");
    const caps = new Map(pools.map((p, i) => [path.basename(roots[i]), p.maxPhotos]));
    const capped = capPool(opened.pool, caps);
    // The first use detects every face (minutes for thousands of photos): say so, progress bar or not.
    o.log(
      `pool ${capped.name}: ${capped.samples.length} photos (${align === "detect" ? "faces detected and aligned" : "resized"} on first use, then read from the cache)`,
    );
    const pool = await preparePool(capped, {
      size: shape[1],
      channels: shape[0] as 1 | 3,
      cacheDir: o.cacheDir,
      align,
      progress: o.progress,
      workers: o.workers,
      group: o.group,
    });
    if (pool.shape.some((d, i) => d !== shape[i]))
      throw new Error(`pool images are [${pool.shape.join(", ")}], the model needs [${shape.join(", ")}]`);
    for (const [k, v] of Object.entries(pool.skipped)) skipped[k] = (skipped[k] ?? 0) + v;
    parts.push({ images: pool.images, hidden: new Int32Array(pool.n).fill(-1), sources: pool.sources });
  }
  const total = parts.reduce((a, p) => a + p.hidden.length, 0);
  if (total === 0) throw new DataError("the unlabeled set is empty (no train-split images left and no face found in the pools)");
  let keep = Array.from({ length: total }, (_, i) => i);
  if (u.limit !== null && total > u.limit)
    keep = shuffleInPlace(keep, new Rng(o.config.seed + 3))
      .slice(0, u.limit)
      .sort((a, b) => a - b);
  const per = imageBytes(shape);
  const all = { images: new Uint8Array(total * per), hidden: new Int32Array(total), sources: new Array<string>(total) };
  let off = 0;
  for (const p of parts) {
    all.images.set(p.images, off * per);
    all.hidden.set(p.hidden, off);
    p.sources.forEach((s, i) => (all.sources[off + i] = s));
    off += p.hidden.length;
  }
  const images = keep.length === total ? all.images : gatherImages({ images: all.images, shape }, keep);
  const sources: Record<string, number> = {};
  for (const i of keep) sources[all.sources[i]] = (sources[all.sources[i]] ?? 0) + 1;
  return { images, shape, n: keep.length, hiddenLabels: Int32Array.from(keep, (i) => all.hidden[i]), sources, skipped };
}

/**
 * Keeps at most `caps.get(source)` photos of each pool folder: evenly spaced in path order,
 * so the choice (and its face cache) is the same for every run and seed. A capped pool is
 * renamed (`lfw.max2000`) so its cache does not replace the full pool's.
 */
export function capPool(pool: UnlabeledPool, caps: ReadonlyMap<string, number | null>): UnlabeledPool {
  const bySource = new Map<string, UnlabeledSample[]>();
  for (const s of pool.samples) {
    const list = bySource.get(s.source);
    if (list === undefined) bySource.set(s.source, [s]);
    else list.push(s);
  }
  const samples: UnlabeledSample[] = [];
  const names: string[] = [];
  for (const [source, list] of bySource) {
    const cap = caps.get(source) ?? null;
    if (cap === null || list.length <= cap) {
      samples.push(...list);
      names.push(source);
      continue;
    }
    const sorted = [...list].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    for (let i = 0; i < cap; i++) samples.push(sorted[Math.floor((i * sorted.length) / cap)]);
    names.push(`${source}.max${cap}`);
  }
  return { name: names.join("+"), samples, skipped: pool.skipped };
}

/** The images and labels of `split` at `indices` (the labeled part of a few-label split). */
export function subsetSplit(split: PreparedSplit, indices: readonly number[]): PreparedSplit {
  return {
    images: gatherImages(split, indices),
    labels: Int32Array.from(indices, (i) => split.labels[i]),
    shape: split.shape,
    n: indices.length,
    paths: indices.map((i) => split.paths[i]),
    skipped: split.skipped,
  };
}
