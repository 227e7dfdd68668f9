/**
 * From an unlabeled pool of raw photos to in-memory aligned face crops, through the
 * cache: files -> decode -> detect the largest face -> rotate (eyes level), crop with
 * FER2013's framing, resize -> cache -> `[n, C, H, W]` uint8. Photos with no face are
 * skipped and counted. Already-cropped pools can be resized instead (`align: "resize"`).
 */
import { createHash } from "node:crypto";
import { cachedImages, readCachedImages } from "./cache.js";
import { DataError, SkipLog, type UnlabeledPool } from "./dataset.js";
import { decodeBatch, toPlanar, type ImageSet } from "./image.js";
import { createProgress } from "../util/progress.js";

/** The aligned images of a pool. */
export interface PreparedPool {
  /** `[n, C, H, W]` uint8. */
  images: Uint8Array;
  shape: [number, number, number];
  n: number;
  /** Source file of each image. */
  paths: string[];
  /** Pool source of each image (e.g. "lfw"). */
  sources: string[];
  /** Hidden label of each image, or -1 (pools made from labeled sets keep them for measurement only). */
  hiddenLabels: Int32Array;
  /** Photos that gave no image, by reason (`no_face`, `unreadable_image`, ...). */
  skipped: Record<string, number>;
  /** Whether the images came from the cache. */
  fromCache: boolean;
}

/** Options of {@link preparePool}. */
export interface PoolPrepareOptions {
  size: number;
  channels: 1 | 3;
  cacheDir: string;
  /** "detect": detect and align the largest face (default); "resize": the photo is already a face crop. */
  align?: "detect" | "resize";
  progress?: boolean;
  /** Receives a line naming a photo that gave no image, with the reason (the first 3 of each reason). */
  warn?: (message: string) => void;
  /** Detection threads (default: 2, or the cores when fewer). */
  workers?: number;
  /**
   * The ranks of a data-parallel job: when the cache is missing on any of them, each rank detects
   * and aligns its contiguous share of the photos and every rank receives all of them.
   */
  group?: ShardGroup;
}

/** What sharded preparation needs from a process group (src/train/data_parallel.ts provides it). */
export interface ShardGroup {
  readonly rank: number;
  readonly worldSize: number;
  /** This rank's contiguous share `[lo, hi)` of `n` items. */
  shard(n: number, rank?: number): [number, number];
  /** Whether `flag` holds on any rank. */
  any(flag: boolean): boolean;
  /** Every rank's bytes, in rank order. */
  gatherBytes(bytes: Uint8Array): Uint8Array[];
}

async function detectAligned(
  files: readonly string[],
  size: number,
  channels: 1 | 3,
  progress: boolean,
  log: SkipLog,
  workers: number | undefined,
): Promise<ImageSet> {
  const { detectAndAlign } = await import("../faces/index.js");
  const bar = progress ? createProgress("detect+align", files.length) : null;
  const r = await detectAndAlign(files, { size, channels, workers, onProgress: (done) => bar?.update(done) });
  bar?.stop();
  const per = channels * size * size;
  const kept = r.results.flatMap((x, i) => (x.status === "ok" && x.faces.length > 0 ? [i] : []));
  const pixels = new Uint8Array(kept.length * per);
  kept.forEach((i, k) => {
    const res = r.results[i];
    if (res.status === "ok") pixels.set(toPlanar(res.faces[0].pixels, size * size, channels), k * per);
  });
  const skipped: Record<string, number> = {};
  for (const x of r.results) {
    if (x.status !== "skipped") continue;
    // An unreadable photo is counted under the decoder's own reason (missing_file, image_too_large, ...).
    const reason = x.decodeReason ?? x.reason;
    skipped[reason] = (skipped[reason] ?? 0) + 1;
    log.add(reason, x.file, x.message?.replace(`cannot decode image ${x.file}: `, "") ?? "");
  }
  return { pixels, shape: [channels, size, size], n: kept.length, sourceIndex: Int32Array.from(kept), skipped };
}

/**
 * Aligns (or reads from the cache) every photo of `pool`. Photos that give no image are
 * skipped and counted by reason: `no_face`, `detect_failed`, and the decoder's reasons
 * (`missing_file`, `empty_file`, `unreadable_image`, `image_too_large`, `image_too_small`).
 * @throws Error when the face detector cannot be loaded
 */
export async function preparePool(pool: UnlabeledPool, o: PoolPrepareOptions): Promise<PreparedPool> {
  const align = o.align ?? "detect";
  const files = pool.samples.map((s) => s.path);
  const progress = o.progress !== false;
  const log = new SkipLog(o.warn);
  const produce = async (f: readonly string[]): Promise<ImageSet> => {
    if (align === "detect") return detectAligned(f, o.size, o.channels, progress, log, o.workers);
    const bar = progress ? createProgress("decoding pool", f.length) : null;
    const out = await decodeBatch(f, o.size, o.channels, {
      onProgress: (d) => bar?.update(d),
      onSkip: (file, _message, reason, detail) => log.add(reason, file, detail),
    });
    bar?.stop();
    return out;
  };
  const cache = {
    cacheDir: o.cacheDir,
    name: `pool-${pool.name}-${align}-${o.size}x${o.size}x${o.channels}`.replace(/[^A-Za-z0-9_.+-]/g, "_"),
    files,
    settings: {
      mode: align,
      size: o.size,
      channels: o.channels,
      // The engine is part of the key: libtorch and tfjs-wasm give faces that differ by rounding.
      faces: align === "detect" ? "blazeface+facemesh on libtorch (square input), FER2013_TEMPLATE v1" : null,
    },
  };
  let set: ImageSet & { fromCache: boolean };
  if (o.group === undefined || o.group.worldSize === 1) set = await cachedImages({ ...cache, produce });
  else {
    const group = o.group;
    const hit = readCachedImages(cache);
    if (!group.any(hit === null)) set = hit as ImageSet & { fromCache: true };
    else {
      const made = await shardedImages(files, group, produce);
      set = hit ?? { ...(await cachedImages({ ...cache, produce: () => Promise.resolve(made) })), fromCache: false };
    }
  }
  const idx = [...set.sourceIndex];
  return {
    images: set.pixels,
    shape: set.shape,
    n: set.n,
    paths: idx.map((i) => files[i]),
    sources: idx.map((i) => pool.samples[i].source),
    hiddenLabels: Int32Array.from(idx, (i) => pool.samples[i].hiddenLabel ?? -1),
    skipped: set.skipped,
    fromCache: set.fromCache,
  };
}

/**
 * Each rank makes the images of its contiguous share of `files`; every rank gets them all, in
 * file order (`sourceIndex` into the whole list), with the skips summed.
 * @throws DataError when the ranks list different photos
 */
async function shardedImages(
  files: readonly string[],
  group: ShardGroup,
  produce: (f: readonly string[]) => Promise<ImageSet>,
): Promise<ImageSet> {
  const listing = createHash("sha256").update(files.join("\n")).digest("hex").slice(0, 16);
  const [lo, hi] = group.shard(files.length);
  const mine = await produce(files.slice(lo, hi));
  const head = Buffer.from(
    JSON.stringify({ listing, n: mine.n, shape: mine.shape, sourceIndex: [...mine.sourceIndex], skipped: mine.skipped }),
  );
  const packed = new Uint8Array(4 + head.length + mine.pixels.length);
  new DataView(packed.buffer).setUint32(0, head.length);
  packed.set(head, 4);
  packed.set(mine.pixels, 4 + head.length);
  const parts = group.gatherBytes(packed).map((b) => {
    const length = new DataView(b.buffer, b.byteOffset).getUint32(0);
    const h = JSON.parse(Buffer.from(b.subarray(4, 4 + length)).toString("utf8")) as {
      listing: string;
      n: number;
      shape: [number, number, number];
      sourceIndex: number[];
      skipped: Record<string, number>;
    };
    return { ...h, pixels: b.subarray(4 + length) };
  });
  const other = parts.findIndex((p) => p.listing !== listing);
  if (other >= 0)
    throw new DataError(
      `rank ${other} lists other photos in this pool than rank ${group.rank}: every machine needs the same files at the same paths`,
    );
  const pixels = new Uint8Array(parts.reduce((a, p) => a + p.pixels.length, 0));
  const sourceIndex: number[] = [];
  const skipped: Record<string, number> = {};
  let off = 0;
  parts.forEach((p, r) => {
    pixels.set(p.pixels, off);
    off += p.pixels.length;
    const start = group.shard(files.length, r)[0];
    for (const i of p.sourceIndex) sourceIndex.push(start + i);
    for (const [k, v] of Object.entries(p.skipped)) skipped[k] = (skipped[k] ?? 0) + v;
  });
  return { pixels, shape: mine.shape, n: sourceIndex.length, sourceIndex: Int32Array.from(sourceIndex), skipped };
}
