/** Image decoding with sharp (libvips), into the uint8 pixel arrays ferkit feeds its models. */
import sharp from "sharp";

/**
 * Decodes an image file to `size` x `size` 8-bit grayscale, resized (cover + centre
 * crop) when it is not already that size.
 * @returns `size * size` bytes, row-major, 0 = black
 * @throws Error naming the file when it cannot be decoded
 */
export async function decodeGray(file: string, size: number): Promise<Uint8Array> {
  try {
    const { data, info } = await sharp(file).grayscale().resize(size, size, { fit: "cover" }).raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 1) throw new Error(`expected 1 channel, got ${info.channels}`);
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } catch (err) {
    throw new Error(`cannot decode image ${file}: ${(err as Error).message}`, { cause: err });
  }
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

/**
 * Decodes many files to grayscale `size` x `size`, `concurrency` at a time (sharp runs
 * on libuv's thread pool). Unreadable files are skipped and reported in `failed`.
 */
export async function decodeGrayBatch(files: readonly string[], size: number, concurrency = 8): Promise<DecodedBatch> {
  const results: (Uint8Array | null)[] = new Array(files.length).fill(null);
  const failed: { file: string; reason: string }[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      try {
        results[i] = await decodeGray(files[i], size);
      } catch (err) {
        failed.push({ file: files[i], reason: (err as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  const kept = results.flatMap((r, i) => (r === null ? [] : [i]));
  const pixels = new Uint8Array(kept.length * size * size);
  kept.forEach((i, k) => pixels.set(results[i] as Uint8Array, k * size * size));
  return { pixels, kept, failed };
}
