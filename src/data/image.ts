/** Image decoding with sharp (libvips), into the uint8 pixel arrays ferkit feeds its models. */
import { readFile } from "node:fs/promises";
import sharp from "sharp";
import { isPnmPath, parsePnm } from "./pnm.js";

/**
 * A sharp pipeline over an image file. Netpbm files (PGM/PPM), which the bundled
 * libvips does not read, are parsed by ferkit and handed to sharp as raw pixels.
 * Truncated JPEG/PNG files fail (`failOn: "truncated"`) instead of decoding half an image.
 * @throws Error when a Netpbm file is malformed (other formats fail when the pipeline runs)
 */
export async function openImage(file: string): Promise<sharp.Sharp> {
  if (isPnmPath(file)) {
    const img = parsePnm(await readFile(file));
    return sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels } });
  }
  return sharp(file, { failOn: "truncated" });
}

/** Decoded images of one size: `pixels` is `[n, C, H, W]` uint8 (planar channels). */
export interface ImageSet {
  pixels: Uint8Array;
  /** `[C, H, W]` of every image. */
  shape: [number, number, number];
  n: number;
  /** For each image, the index of the input file it came from. */
  sourceIndex: Int32Array;
  /** Inputs that gave no image, by reason (e.g. `unreadable_image`, `no_face`). */
  skipped: Record<string, number>;
}

/** Interleaved `[H, W, C]` pixels to planar `[C, H, W]` (a copy unless C = 1). */
export function toPlanar(hwc: Uint8Array, pixels: number, channels: number): Uint8Array {
  if (channels === 1) return hwc;
  const out = new Uint8Array(hwc.length);
  for (let c = 0; c < channels; c++) for (let i = 0; i < pixels; i++) out[c * pixels + i] = hwc[i * channels + c];
  return out;
}

/**
 * Decodes an image file to `size` x `size`, resized with "cover" (scaled to fill, then
 * centre-cropped) when it is not already that size, as 1 (grayscale) or 3 (RGB) channels.
 * @returns `[channels, size, size]` uint8, planar
 * @throws Error naming the file when it cannot be decoded
 */
export async function decodeResized(file: string, size: number, channels: 1 | 3): Promise<Uint8Array> {
  try {
    let img = await openImage(file);
    img = channels === 1 ? img.grayscale() : img.removeAlpha().toColourspace("srgb");
    const { data, info } = await img.resize(size, size, { fit: "cover" }).raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== channels) throw new Error(`expected ${channels} channel(s), got ${info.channels}`);
    return toPlanar(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), size * size, channels);
  } catch (err) {
    throw new Error(`cannot decode image ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** {@link decodeResized} with one channel: `size * size` bytes, row-major, 0 = black. */
export function decodeGray(file: string, size: number): Promise<Uint8Array> {
  return decodeResized(file, size, 1);
}

/**
 * Decodes many files `concurrency` at a time (sharp works on libuv's thread pool).
 * Unreadable files are skipped, counted under `unreadable_image`, and passed to `onSkip`.
 * @param onProgress called with the number of files finished so far
 */
export async function decodeBatch(
  files: readonly string[],
  size: number,
  channels: 1 | 3,
  o: { concurrency?: number; onProgress?: (done: number) => void; onSkip?: (file: string, reason: string) => void } = {},
): Promise<ImageSet> {
  const results: (Uint8Array | null)[] = new Array(files.length).fill(null);
  let skippedCount = 0;
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      try {
        results[i] = await decodeResized(files[i], size, channels);
      } catch (err) {
        skippedCount++;
        o.onSkip?.(files[i], (err as Error).message);
      }
      o.onProgress?.(++done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 8, files.length) }, worker));
  const kept = results.flatMap((r, i) => (r === null ? [] : [i]));
  const per = channels * size * size;
  const pixels = new Uint8Array(kept.length * per);
  kept.forEach((i, k) => pixels.set(results[i] as Uint8Array, k * per));
  return {
    pixels,
    shape: [channels, size, size],
    n: kept.length,
    sourceIndex: Int32Array.from(kept),
    skipped: skippedCount > 0 ? { unreadable_image: skippedCount } : {},
  };
}

/** Result of {@link decodeGrayBatch}: pixels of the decoded images and the files that failed. */
export interface DecodedBatch {
  /** `[n, size, size]` uint8, n = number of decoded files, in input order. */
  pixels: Uint8Array;
  /** Indices (into the input list) of the decoded files. */
  kept: number[];
  /** Files that could not be decoded, with the reason; they are skipped, not fatal. */
  failed: { file: string; reason: string }[];
}

/** Grayscale {@link decodeBatch} that also lists the failed files. */
export async function decodeGrayBatch(files: readonly string[], size: number, concurrency = 8): Promise<DecodedBatch> {
  const failed: { file: string; reason: string }[] = [];
  const set = await decodeBatch(files, size, 1, { concurrency, onSkip: (file, reason) => failed.push({ file, reason }) });
  return { pixels: set.pixels, kept: [...set.sourceIndex], failed };
}
