/**
 * Image decoding with sharp (libvips), into the uint8 pixel arrays ferkit feeds its models.
 * Formats sharp's prebuilt libvips lacks are decoded in JavaScript and handed to sharp as raw
 * pixels: Netpbm (PGM/PPM, src/data/pnm.ts) and BMP (the `bmp-ts` package: 1, 4, 8, 16, 24 and
 * 32 bits per pixel, palettes, RLE, top-down and bottom-up rows). Every file is read once into
 * memory and checked before it is decoded: a missing, non-regular or zero-length file, and an
 * image whose header says it is above {@link MAX_INPUT_PIXELS} or has a side below
 * {@link MIN_IMAGE_SIDE}, fail with an {@link ImageError} whose `reason` says which.
 */
import { readFile, stat } from "node:fs/promises";
import { decode as decodeBmpPixels } from "bmp-ts";
import sharp from "sharp";
import { parsePnm, readPnmHeader } from "./pnm.js";

/**
 * Largest image ferkit decodes, in pixels (width x height as the header states them): 100
 * megapixels, e.g. 10,000 x 10,000. Larger files are refused before any pixel is decoded (sharp's
 * `limitInputPixels` too), so one file cannot take gigabytes of memory: a 100-megapixel BMP
 * decodes into 400 MB, sharp's pipelines stream and stay far below that.
 */
export const MAX_INPUT_PIXELS = 100_000_000;
/** Smallest side, in pixels, of an image ferkit uses: below 8 px there is no face to see. */
export const MIN_IMAGE_SIDE = 8;

/** Why an input file gave no image; these are the reason names counted in skip logs. */
export type ImageSkipReason = "missing_file" | "not_a_file" | "empty_file" | "unreadable_image" | "image_too_large" | "image_too_small";

/** A file that gave no image, with the reason (a {@link SkipLog} key) and a one-line detail. */
export class ImageError extends Error {
  override name = "ImageError";
  /**
   * @param reason the skip reason
   * @param file the file's path
   * @param detail what is wrong, without the file name (e.g. "20000x20000 pixels, above ...")
   */
  /** What is wrong, on one line (see {@link oneLine}). */
  readonly detail: string;

  constructor(
    readonly reason: ImageSkipReason,
    readonly file: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`cannot decode image ${file}: ${oneLine(detail)}`, options);
    this.detail = oneLine(detail);
  }
}

/** HEIF brands of HEVC-coded images (HEIC), which the libvips inside sharp cannot decode (it reads AVIF, the AV1-coded HEIF). */
const HEVC_BRANDS = new Set(["heic", "heix", "hevc", "hevx", "heim", "heis"]);

/** Whether the bytes are an HEIC file (ISO-BMFF `ftyp` box with an HEVC brand). */
function isHeic(buf: Buffer): boolean {
  return buf.length >= 12 && buf.toString("latin1", 4, 8) === "ftyp" && HEVC_BRANDS.has(buf.toString("latin1", 8, 12));
}

/**
 * A decoder's message on one line: libvips reports each low-level failure on its own line
 * ("source: bad seek to 2979", ...) before the cause, so a multi-line message keeps its first
 * line's lead ("Input buffer has corrupt header") and its last line.
 */
export function oneLine(message: string): string {
  const lines = message
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  if (lines.length <= 1) return lines[0] ?? "";
  const lead = lines[0].split(": ")[0];
  return `${lead}: ${lines[lines.length - 1]}`;
}

/** Why an HEIC file is refused, and what to do about it. */
export const HEIC_REFUSED =
  "an HEIC (HEVC-coded HEIF) image, which the image decoder ferkit uses (sharp's libvips) cannot read (AVIF, JPEG, PNG, WebP, TIFF, GIF, BMP, PGM/PPM it can): convert it, e.g. with heif-convert from Debian's libheif-examples";

/**
 * Checks an image's size from its header against {@link MAX_INPUT_PIXELS} and {@link MIN_IMAGE_SIDE}.
 * @throws ImageError `image_too_large` or `image_too_small`
 */
export function checkImageSize(file: string, width: number, height: number): void {
  if (width * height > MAX_INPUT_PIXELS)
    throw new ImageError(
      "image_too_large",
      file,
      `${width}x${height} pixels (${((width * height) / 1e6).toFixed(0)} megapixels), above the ${MAX_INPUT_PIXELS / 1e6} megapixels ferkit decodes`,
    );
  if (Math.min(width, height) < MIN_IMAGE_SIDE)
    throw new ImageError("image_too_small", file, `${width}x${height} pixels, a side below ${MIN_IMAGE_SIDE} pixels`);
}

/**
 * The bytes of an image file, read once.
 * @throws ImageError `missing_file` (gone since it was listed), `not_a_file` (a folder, a pipe, a
 *   device) or `empty_file` (zero bytes); `unreadable_image` for any other read error
 */
export async function readImageBytes(file: string): Promise<Buffer> {
  try {
    // A pipe or device named like an image would block a read or never end: only regular files are read.
    if (!(await stat(file)).isFile()) throw new ImageError("not_a_file", file, "not a regular file");
    const buf = await readFile(file);
    if (buf.length === 0) throw new ImageError("empty_file", file, "the file is empty (0 bytes)");
    return buf;
  } catch (err) {
    if (err instanceof ImageError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT")
      throw new ImageError("missing_file", file, "the file does not exist (removed since it was listed?)", { cause: err });
    throw new ImageError("unreadable_image", file, e.message, { cause: err });
  }
}

/** True when `buf` starts with the BMP signature `BM`. */
export function isBmp(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x42 && buf[1] === 0x4d;
}

/** True when `buf` starts like a binary or ASCII PGM/PPM (`P2`, `P3`, `P5`, `P6`). */
export function isPnm(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x50 && (buf[1] === 0x32 || buf[1] === 0x33 || buf[1] === 0x35 || buf[1] === 0x36);
}

/** Width and height (pixels, positive) from a BMP header; the height's sign only orders the rows. */
function bmpHeaderSize(buf: Buffer): { width: number; height: number; bitsPerPixel: number; compression: number; dataOffset: number } {
  if (buf.length < 30) throw new Error(`truncated BMP header (${buf.length} bytes)`);
  const headerSize = buf.readUInt32LE(14);
  if (headerSize === 12) {
    // OS/2 BITMAPCOREHEADER: 16-bit sizes.
    return {
      width: buf.readUInt16LE(18),
      height: buf.readUInt16LE(20),
      bitsPerPixel: buf.readUInt16LE(24),
      compression: 0,
      dataOffset: buf.readUInt32LE(10),
    };
  }
  if (buf.length < 34) throw new Error(`truncated BMP header (${buf.length} bytes)`);
  return {
    width: Math.abs(buf.readInt32LE(18)),
    height: Math.abs(buf.readInt32LE(22)),
    bitsPerPixel: buf.readUInt16LE(28),
    compression: buf.readUInt32LE(30),
    dataOffset: buf.readUInt32LE(10),
  };
}

/**
 * Decodes a BMP file's bytes (with `bmp-ts`) to interleaved 8-bit RGB, `[height, width, 3]`.
 * The size is checked before decoding, and an uncompressed file must hold all its rows.
 * @throws ImageError `image_too_large` / `image_too_small`; Error on a malformed or truncated file
 */
export function parseBmp(buf: Buffer, file = "BMP"): { data: Uint8Array; width: number; height: number; channels: 3 } {
  const h = bmpHeaderSize(buf);
  checkImageSize(file, h.width, h.height);
  if (h.compression === 0 && [1, 4, 8, 16, 24, 32].includes(h.bitsPerPixel)) {
    const rowBytes = Math.ceil((h.width * h.bitsPerPixel) / 32) * 4;
    if (h.dataOffset + rowBytes * h.height > buf.length)
      throw new Error(`truncated BMP: ${buf.length} bytes, its ${h.width}x${h.height} pixels need ${h.dataOffset + rowBytes * h.height}`);
  }
  // bmp-ts writes A,B,G,R bytes per pixel (its `toRGBA` option is ignored by the paletted
  // decoders in 1.0.9, so it is not used). The A byte is not alpha in most BMPs (0 for 24-bit
  // files): dropped.
  const bmp = decodeBmpPixels(buf);
  const n = bmp.width * bmp.height;
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    rgb[3 * i] = bmp.data[4 * i + 3];
    rgb[3 * i + 1] = bmp.data[4 * i + 2];
    rgb[3 * i + 2] = bmp.data[4 * i + 1];
  }
  return { data: rgb, width: bmp.width, height: bmp.height, channels: 3 };
}

/** An image opened for decoding: a sharp pipeline and the size its file states. */
export interface OpenedImage {
  /** The pipeline; the EXIF orientation is not applied yet (call `.rotate()` for that). */
  image: sharp.Sharp;
  /** Width and height in pixels as stored in the file (before any EXIF rotation). */
  width: number;
  height: number;
  /** EXIF orientation 1..8 (1 when the file has none); 5..8 swap width and height. */
  orientation: number;
  /** "pnm", "bmp", or sharp's format name ("jpeg", "png", "gif", ...). */
  format: string;
}

/**
 * Opens an image from its bytes: PGM/PPM and BMP are decoded here and wrapped as raw pixels,
 * everything else (JPEG, PNG, WebP, TIFF, GIF, AVIF...) goes to sharp, which reads only the
 * header now. An animated GIF or WebP, or a multi-page TIFF, gives its first frame. 16-bit and
 * CMYK images come out as 8-bit once converted (`toColourspace`, `grayscale`, `raw()`).
 * @param failOn sharp's `failOn` (how strict decoding is about warnings); default "truncated"
 * @throws ImageError `unreadable_image` (not an image, malformed header), `image_too_large` or
 *   `image_too_small`
 */
export async function openImageBuffer(buf: Buffer, file: string, failOn: sharp.FailOnOptions = "truncated"): Promise<OpenedImage> {
  try {
    // sharp reads an HEIC's header, then fails on its pixels with libheif's plugin error.
    if (isHeic(buf)) throw new ImageError("unreadable_image", file, HEIC_REFUSED);
    if (isPnm(buf)) {
      const header = readPnmHeader(buf);
      checkImageSize(file, header.width, header.height);
      const img = parsePnm(buf);
      const image = sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels } });
      return { image, width: img.width, height: img.height, orientation: 1, format: "pnm" };
    }
    if (isBmp(buf)) {
      const img = parseBmp(buf, file);
      const image = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
      return { image, width: img.width, height: img.height, orientation: 1, format: "bmp" };
    }
    // The header is read without sharp's pixel limit, so that a too large image gets ferkit's
    // message; the pipeline keeps the limit.
    const meta = await sharp(buf, { limitInputPixels: false }).metadata();
    const image = sharp(buf, { failOn, limitInputPixels: MAX_INPUT_PIXELS });
    const width = meta.width ?? 0;
    const height = meta.height ?? 0;
    checkImageSize(file, width, height);
    return { image, width, height, orientation: meta.orientation ?? 1, format: meta.format ?? "unknown" };
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError("unreadable_image", file, (err as Error).message, { cause: err });
  }
}

/**
 * An image's format and size from its header alone (nothing is decoded), as it will be decoded:
 * after EXIF rotation, first frame only.
 * @returns width and height in pixels, and "pnm", "bmp" or sharp's format name
 * @throws ImageError `unreadable_image` (not an image, malformed header), `image_too_large` or
 *   `image_too_small`
 */
export async function probeImage(buf: Buffer, file: string): Promise<{ width: number; height: number; format: string }> {
  let size: { width: number; height: number; format: string };
  if (isHeic(buf)) throw new ImageError("unreadable_image", file, HEIC_REFUSED);
  try {
    if (isPnm(buf)) size = { ...readPnmHeader(buf), format: "pnm" };
    else if (isBmp(buf)) size = { ...bmpHeaderSize(buf), format: "bmp" };
    else {
      const m = await sharp(buf, { limitInputPixels: false }).metadata();
      const turned = (m.orientation ?? 1) >= 5;
      size = { width: (turned ? m.height : m.width) ?? 0, height: (turned ? m.width : m.height) ?? 0, format: m.format ?? "unknown" };
    }
  } catch (err) {
    throw new ImageError("unreadable_image", file, (err as Error).message, { cause: err });
  }
  checkImageSize(file, size.width, size.height);
  return { width: size.width, height: size.height, format: size.format };
}

/**
 * A sharp pipeline over an image file with its EXIF orientation applied (a photo taken sideways
 * comes out upright). Netpbm and BMP files are decoded by ferkit (see {@link openImageBuffer}).
 * Truncated JPEG/PNG files fail (`failOn: "truncated"`) instead of decoding half an image.
 * @throws ImageError naming the file and the reason when it cannot be read or its header is bad
 *   (a corrupt body fails when the pipeline runs)
 */
export async function openImage(file: string): Promise<sharp.Sharp> {
  const opened = await openImageBuffer(await readImageBytes(file), file);
  return opened.orientation === 1 ? opened.image : opened.image.rotate();
}

/** Decoded images of one size: `pixels` is `[n, C, H, W]` uint8 (planar channels). */
export interface ImageSet {
  pixels: Uint8Array;
  /** `[C, H, W]` of every image. */
  shape: [number, number, number];
  n: number;
  /** For each image, the index of the input file it came from. */
  sourceIndex: Int32Array;
  /** Inputs that gave no image, by reason (an {@link ImageSkipReason}, or e.g. `no_face`). */
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
 * centre-cropped) when it is not already that size, as 1 (grayscale) or 3 (RGB) channels, after
 * its EXIF orientation. Alpha is dropped; 16-bit samples are scaled to 8 bits; CMYK goes to sRGB.
 * @returns `[channels, size, size]` uint8, planar
 * @throws ImageError naming the file, with the reason ({@link ImageSkipReason}) it cannot be decoded
 */
export async function decodeResized(file: string, size: number, channels: 1 | 3): Promise<Uint8Array> {
  try {
    let img = await openImage(file);
    img = channels === 1 ? img.removeAlpha().grayscale() : img.removeAlpha().toColourspace("srgb");
    const { data, info } = await img.resize(size, size, { fit: "cover" }).raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
    if (info.channels !== channels) throw new Error(`expected ${channels} channel(s), got ${info.channels}`);
    return toPlanar(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), size * size, channels);
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError("unreadable_image", file, (err as Error).message, { cause: err });
  }
}

/** {@link decodeResized} with one channel: `size * size` bytes, row-major, 0 = black. */
export function decodeGray(file: string, size: number): Promise<Uint8Array> {
  return decodeResized(file, size, 1);
}

/** The skip reason of an error thrown while decoding: its {@link ImageError} reason, else `unreadable_image`. */
export function skipReasonOf(err: unknown): ImageSkipReason {
  return err instanceof ImageError ? err.reason : "unreadable_image";
}

/**
 * Decodes many files `concurrency` at a time (sharp works on libuv's thread pool). A file that
 * cannot be decoded is skipped, counted under its {@link ImageSkipReason} (`missing_file`,
 * `empty_file`, `unreadable_image`, `image_too_large`, ...) and passed to `onSkip`; it never
 * stops the batch.
 * @param onProgress called with the number of files finished so far
 * @param onSkip called once per skipped file with the full message (naming the file), the
 *   reason, and the detail (the message without the file name)
 */
export async function decodeBatch(
  files: readonly string[],
  size: number,
  channels: 1 | 3,
  o: {
    concurrency?: number;
    onProgress?: (done: number) => void;
    onSkip?: (file: string, message: string, reason: ImageSkipReason, detail: string) => void;
  } = {},
): Promise<ImageSet> {
  const results: (Uint8Array | null)[] = new Array(files.length).fill(null);
  const skipped: Record<string, number> = {};
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      try {
        results[i] = await decodeResized(files[i], size, channels);
      } catch (err) {
        const reason = skipReasonOf(err);
        skipped[reason] = (skipped[reason] ?? 0) + 1;
        const e = err as Error;
        o.onSkip?.(files[i], e.message, reason, err instanceof ImageError ? err.detail : e.message);
      }
      o.onProgress?.(++done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 8, files.length) }, worker));
  const kept = results.flatMap((r, i) => (r === null ? [] : [i]));
  const per = channels * size * size;
  const pixels = new Uint8Array(kept.length * per);
  kept.forEach((i, k) => pixels.set(results[i] as Uint8Array, k * per));
  return { pixels, shape: [channels, size, size], n: kept.length, sourceIndex: Int32Array.from(kept), skipped };
}

/** Result of {@link decodeGrayBatch}: pixels of the decoded images and the files that failed. */
export interface DecodedBatch {
  /** `[n, size, size]` uint8, n = number of decoded files, in input order. */
  pixels: Uint8Array;
  /** Indices (into the input list) of the decoded files. */
  kept: number[];
  /** Files that could not be decoded, with the message (naming the file); they are skipped, not fatal. */
  failed: { file: string; reason: string }[];
}

/** Grayscale {@link decodeBatch} that also lists the failed files. */
export async function decodeGrayBatch(files: readonly string[], size: number, concurrency = 8): Promise<DecodedBatch> {
  const failed: { file: string; reason: string }[] = [];
  const set = await decodeBatch(files, size, 1, { concurrency, onSkip: (file, message) => failed.push({ file, reason: message }) });
  return { pixels: set.pixels, kept: [...set.sourceIndex], failed };
}
