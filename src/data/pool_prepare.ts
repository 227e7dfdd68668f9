/**
 * From an unlabeled pool of raw photos to in-memory aligned face crops, through the
 * cache: files -> decode -> detect the largest face -> rotate (eyes level), crop with
 * FER2013's framing, resize -> cache -> `[n, C, H, W]` uint8. Photos with no face are
 * skipped and counted. Already-cropped pools can be resized instead (`align: "resize"`).
 */
import { cachedImages } from "./cache.js";
import { SkipLog, type UnlabeledPool } from "./dataset.js";
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
}

async function detectAligned(files: readonly string[], size: number, channels: 1 | 3, progress: boolean, log: SkipLog): Promise<ImageSet> {
  const { detectAndAlign } = await import("../faces/index.js");
  const bar = progress ? createProgress("detect+align", files.length) : null;
  const r = await detectAndAlign(files, { size, channels, onProgress: (done) => bar?.update(done) });
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
  const set = await cachedImages({
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
    produce: async (f) => {
      if (align === "detect") return detectAligned(f, o.size, o.channels, progress, log);
      const bar = progress ? createProgress("decoding pool", f.length) : null;
      const out = await decodeBatch(f, o.size, o.channels, {
        onProgress: (d) => bar?.update(d),
        onSkip: (file, _message, reason, detail) => log.add(reason, file, detail),
      });
      bar?.stop();
      return out;
    },
  });
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
