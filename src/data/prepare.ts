/**
 * From a labeled dataset to in-memory uint8 image arrays per split, through the cache:
 * files -> decode (and resize) -> cache -> `[n, C, H, W]` uint8 + labels. Already-cropped
 * datasets (FER2013, ABAW's cropped_aligned) are resized, not detected.
 */
import path from "node:path";
import { cachedImages } from "./cache.js";
import { DataError, SkipLog, type LabeledDataset, type LabeledSample } from "./dataset.js";
import { decodeBatch } from "./image.js";
import { Rng, shuffleInPlace } from "./sampler.js";
import { createProgress } from "../util/progress.js";

/** The images and labels of one split, ready for batching. */
export interface PreparedSplit {
  /** `[n, C, H, W]` uint8. */
  images: Uint8Array;
  /** Label index of each image. */
  labels: Int32Array;
  /** `[C, H, W]`. */
  shape: [number, number, number];
  n: number;
  /** Source file of each image. */
  paths: string[];
  /** Source samples that gave no image, by reason. */
  skipped: Record<string, number>;
}

/** Options of {@link prepareSplit}. */
export interface PrepareOptions {
  /** Output side in pixels (square). */
  size: number;
  channels: 1 | 3;
  cacheDir: string;
  /** Show a progress bar while decoding (default true). */
  progress?: boolean;
  /** Keep at most this many samples of the split, chosen by a seeded shuffle (file order kept). */
  limit?: number;
  /** Seed of the `limit` selection (default 0). */
  limitSeed?: number;
  /** Receives a line naming a file that could not be decoded, with the reason (the first 3 of each reason). */
  warn?: (message: string) => void;
}

/** Number of bytes of one image. */
export function imageBytes(shape: readonly [number, number, number]): number {
  return shape[0] * shape[1] * shape[2];
}

/**
 * Decodes (or reads from the cache) the images of `split` of `ds`, resized to `size`.
 * Files that give no image are skipped and counted by reason (`missing_file`, `empty_file`,
 * `unreadable_image`, `image_too_large`, `image_too_small`: see src/data/image.ts); a
 * batch never stops for one file.
 * @throws RangeError when the split does not exist; DataError when none of its images can be read
 */
export async function prepareSplit(ds: LabeledDataset, split: string, o: PrepareOptions): Promise<PreparedSplit> {
  let samples: LabeledSample[] = ds.samples.filter((s) => s.split === split);
  if (o.limit !== undefined && samples.length > o.limit) {
    const keep = new Set(shuffleInPlace([...samples.keys()], new Rng(o.limitSeed ?? 0)).slice(0, o.limit));
    samples = samples.filter((_, i) => keep.has(i));
  }
  if (samples.length === 0)
    throw new RangeError(`dataset ${ds.name} has no split '${split}' (splits: ${[...new Set(ds.samples.map((s) => s.split))].join(", ")})`);
  const files = samples.map((s) => s.path);
  const name = `${ds.name}-${split}-${o.size}x${o.size}x${o.channels}`.replace(/[^A-Za-z0-9_.+-]/g, "_");
  const set = await cachedImages({
    cacheDir: o.cacheDir,
    name,
    files,
    settings: { mode: "resize", size: o.size, channels: o.channels, fit: "cover" },
    produce: async (f) => {
      const bar = o.progress === false ? null : createProgress(`decoding ${ds.name} ${split}`, f.length);
      const log = new SkipLog(o.warn);
      const out = await decodeBatch(f, o.size, o.channels, {
        onProgress: (d) => bar?.update(d),
        onSkip: (file, _message, reason, detail) => log.add(reason, file, detail),
      });
      bar?.stop();
      return out;
    },
  });
  if (set.n === 0) throw new DataError(`dataset ${ds.name}: none of the ${files.length} images of split '${split}' could be read`);
  const labels = Int32Array.from(set.sourceIndex, (i) => samples[i].label);
  return {
    images: set.pixels,
    labels,
    shape: set.shape,
    n: set.n,
    paths: Array.from(set.sourceIndex, (i) => files[i]),
    skipped: set.skipped,
  };
}

/** Copies the images at `indices` into one `[indices.length, C, H, W]` uint8 batch. */
export function gatherImages(split: Pick<PreparedSplit, "images" | "shape">, indices: readonly number[]): Uint8Array {
  const per = imageBytes(split.shape);
  const out = new Uint8Array(indices.length * per);
  indices.forEach((idx, k) => out.set(split.images.subarray(idx * per, (idx + 1) * per), k * per));
  return out;
}

/** A readable cache folder path under the checkout for relative `cacheDir` values. */
export function resolveCacheDir(cacheDir: string, root: string): string {
  return path.isAbsolute(cacheDir) ? cacheDir : path.join(root, cacheDir);
}
