/**
 * One photo at a time: decode (sharp, plus a small PGM/PPM reader), detect with a given
 * detector, rotate each face so the eyes are level and crop it with FER2013's framing. Used in
 * the calling thread and inside the detection workers ({@link DetectorPool}).
 */
import { readFile } from "node:fs/promises";
import sharp from "sharp";
import { parsePnm as parsePnmPixels } from "../data/pnm.js";
import { FER2013_TEMPLATE, alignmentTransform, eyeAngle, warpAffine, type AlignTemplate } from "./align.js";
import type { DetectedFace, RgbImage } from "./detector.js";

/** Options of {@link detectAndAlign}, {@link alignImage} and {@link alignFaces}. */
export interface AlignOptions {
  /** Output side in pixels: 48 for FER2013-style models, 112 for the larger ones, or any integer >= 8. */
  size: 48 | 112 | number;
  /** 1 = grayscale (BT.601 luma), 3 = RGB. */
  channels: 1 | 3;
  /** Align every face found (largest first) instead of only the largest (default false). */
  every?: boolean;
  /** Eye positions in the crop (default {@link FER2013_TEMPLATE}). */
  template?: AlignTemplate;
  /** Pixels outside the photo: `"replicate"` the edge (default) or `"constant"` grey 128. */
  border?: "replicate" | "constant";
}

/** Options of {@link decodeImage} and {@link detectFile}: how a photo is sized for detection, and the crops. */
export interface PhotoOptions extends AlignOptions {
  /** Photos whose longer side exceeds this are shrunk to it before detection and cropping (default 1024 px). */
  maxSide?: number;
  /** Photos whose longer side is below this are upscaled (bicubic) by an integer factor to at least it (default 192 px; FER2013's 48x48 become 192x192). */
  minSide?: number;
}

/** Anything that finds faces in an RGB image: a {@link FaceDetector} or a {@link DetectorPool}. */
export interface Detects {
  detect(image: RgbImage): Promise<DetectedFace[]>;
}

/** One aligned face crop. Coordinates refer to the decoded photo (after EXIF rotation). */
export interface AlignedFace {
  /** `size * size * channels` bytes, row-major, interleaved when `channels` is 3. */
  pixels: Uint8Array;
  /** Side of the crop in pixels. */
  size: number;
  /** 1 (gray) or 3 (RGB). */
  channels: 1 | 3;
  /** Detector box `[x, y, w, h]` in photo pixels. */
  box: [number, number, number, number];
  /** Detector score in [0, 1]. */
  score: number;
  /** Subject's left eye centre in photo pixels. */
  leftEye: [number, number];
  /** Subject's right eye centre in photo pixels. */
  rightEye: [number, number];
  /** Roll of the face in the photo (the rotation that alignment undid), degrees, clockwise positive. */
  roll: number;
}

/** A decoded photo as detection sees it, with the size of the file itself. */
export interface DecodedImage extends RgbImage {
  /** The photo's own width in pixels (after EXIF rotation), before any resize for detection. */
  photoWidth: number;
  /** The photo's own height in pixels (after EXIF rotation), before any resize for detection. */
  photoHeight: number;
}

/** Why a file produced no crop. */
export type SkipReason = "no_face" | "unreadable_image" | "detect_failed";

/** The outcome for one input file. */
export type FileResult =
  | {
      file: string;
      status: "ok";
      /** Size of the image detection ran on (the photo resized to `maxSide`/`minSide`), pixels. */
      width: number;
      height: number;
      /** The photo's own size in pixels (after EXIF rotation). */
      photoWidth: number;
      photoHeight: number;
      faces: AlignedFace[];
    }
  | {
      file: string;
      status: "skipped";
      reason: SkipReason;
      message?: string;
      /** The photo's own size, when it was decoded (reason `no_face` or `detect_failed`). */
      photoWidth?: number;
      photoHeight?: number;
    };

const PNM_MAGIC = /^P[2356]$/;

/**
 * Reads a PGM/PPM (see src/data/pnm.ts) as RGB pixels, gray replicated into three channels.
 * @throws Error on a malformed header or truncated pixel data
 */
export function parsePnm(buf: Uint8Array): RgbImage {
  const img = parsePnmPixels(buf);
  if (img.channels === 3) return { data: img.data, width: img.width, height: img.height };
  const data = new Uint8Array(img.width * img.height * 3);
  for (let i = 0; i < img.width * img.height; i++) data[3 * i] = data[3 * i + 1] = data[3 * i + 2] = img.data[i];
  return { data, width: img.width, height: img.height };
}

/**
 * Decodes an image file to 8-bit RGB: JPEG, PNG, WebP, TIFF, GIF, AVIF (through sharp, with the
 * EXIF orientation applied) and PGM/PPM ({@link parsePnm}). The longer side is shrunk to `maxSide`
 * or upscaled (bicubic, integer factor) to at least `minSide`.
 * @throws Error naming the file when it cannot be read or decoded
 */
export async function decodeImage(file: string, options: { maxSide?: number; minSide?: number } = {}): Promise<DecodedImage> {
  const maxSide = options.maxSide ?? 1024;
  const minSide = options.minSide ?? 192;
  try {
    const buf = await readFile(file);
    let img: sharp.Sharp;
    let longer: number;
    let photo: { photoWidth: number; photoHeight: number };
    if (buf.length >= 2 && buf[0] === 0x50 && PNM_MAGIC.test(buf.subarray(0, 2).toString("latin1"))) {
      const pnm = parsePnm(buf);
      longer = Math.max(pnm.width, pnm.height);
      photo = { photoWidth: pnm.width, photoHeight: pnm.height };
      if (longer <= maxSide && longer >= minSide) return { ...pnm, ...photo };
      img = sharp(pnm.data, { raw: { width: pnm.width, height: pnm.height, channels: 3 } });
    } else {
      img = sharp(buf, { failOn: "error" });
      const meta = await img.metadata();
      longer = Math.max(meta.width ?? 0, meta.height ?? 0);
      const turned = (meta.orientation ?? 1) >= 5; // EXIF orientations 5..8 swap width and height
      photo = { photoWidth: (turned ? meta.height : meta.width) ?? 0, photoHeight: (turned ? meta.width : meta.height) ?? 0 };
      img = img.rotate();
    }
    if (longer > maxSide) img = img.resize({ width: maxSide, height: maxSide, fit: "inside" });
    else if (longer > 0 && longer < minSide) {
      const k = Math.ceil(minSide / longer);
      const meta = await img.metadata();
      const [w, h] = (meta.orientation ?? 1) >= 5 ? [meta.height ?? 0, meta.width ?? 0] : [meta.width ?? 0, meta.height ?? 0];
      img = img.resize(w * k, h * k, { kernel: "cubic", fit: "fill" });
    }
    const { data, info } = await img.removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
    // No size in the header: nothing was resized (longer was 0), so the decoded size is the photo's.
    if (!photo.photoWidth || !photo.photoHeight) photo = { photoWidth: info.width, photoHeight: info.height };
    const px = info.width * info.height;
    if (info.channels === 3)
      return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, ...photo };
    const rgb = new Uint8Array(px * 3);
    for (let i = 0; i < px; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = data[i * info.channels];
    return { data: rgb, width: info.width, height: info.height, ...photo };
  } catch (err) {
    throw new Error(`cannot decode image ${file}: ${(err as Error).message}`, { cause: err });
  }
}

export function checkAlignOptions(o: AlignOptions): void {
  if (!Number.isInteger(o.size) || o.size < 8 || o.size > 4096) throw new RangeError(`size must be an integer in [8, 4096], got ${o.size}`);
  if (o.channels !== 1 && o.channels !== 3) throw new RangeError(`channels must be 1 or 3, got ${String(o.channels)}`);
}

/**
 * Aligns already-detected faces: rotation so the eyes are level, scale and crop from the template.
 * @param image the photo the faces were detected in
 * @param faces detections, largest first (as {@link FaceDetector.detect} returns them)
 * @returns one crop per face (only the first unless `every`); empty when `faces` is empty
 * @throws RangeError on a bad size or channel count
 */
export function alignFaces(image: RgbImage, faces: readonly DetectedFace[], options: AlignOptions): AlignedFace[] {
  checkAlignOptions(options);
  const template = options.template ?? FER2013_TEMPLATE;
  const chosen = options.every ? faces : faces.slice(0, 1);
  return chosen.map((f) => ({
    pixels: warpAffine(
      image.data,
      image.width,
      image.height,
      alignmentTransform(f.leftEye, f.rightEye, template),
      options.size,
      options.channels,
      {
        border: options.border ?? "replicate",
      },
    ),
    size: options.size,
    channels: options.channels,
    box: f.box,
    score: f.score,
    leftEye: f.leftEye,
    rightEye: f.rightEye,
    roll: eyeAngle(f.leftEye, f.rightEye),
  }));
}

/**
 * Detects and aligns the faces of one decoded photo (or records why it has none).
 * @param decoded the photo, or the error that decoding it gave
 * @returns the file's result (never throws: a failed detection is `detect_failed`)
 */
export async function detectDecoded(
  file: string,
  decoded: { image: DecodedImage | null; error: Error | null },
  detector: Detects,
  options: AlignOptions,
): Promise<FileResult> {
  const { image, error } = decoded;
  if (!image) return { file, status: "skipped", reason: "unreadable_image", message: error?.message };
  const photo = { photoWidth: image.photoWidth, photoHeight: image.photoHeight };
  let faces: DetectedFace[];
  try {
    faces = await detector.detect(image);
  } catch (err) {
    return { file, status: "skipped", reason: "detect_failed", message: (err as Error).message, ...photo };
  }
  if (faces.length === 0) return { file, status: "skipped", reason: "no_face", ...photo };
  return { file, status: "ok", width: image.width, height: image.height, ...photo, faces: alignFaces(image, faces, options) };
}

/** Decodes a file, keeping the error instead of throwing it (see {@link detectDecoded}). */
export function decodeSafely(file: string, options: PhotoOptions): Promise<{ image: DecodedImage | null; error: Error | null }> {
  return decodeImage(file, { maxSide: options.maxSide, minSide: options.minSide }).then(
    (image) => ({ image, error: null }),
    (err: Error) => ({ image: null, error: err }),
  );
}

/**
 * Decodes, detects and aligns a list of files with one detector, decoding one file ahead.
 * @param emit called once per file, in list order
 */
export async function processFiles(
  files: readonly { index: number; file: string }[],
  detector: Detects,
  options: PhotoOptions,
  emit: (index: number, result: FileResult) => void,
): Promise<void> {
  let pending: { index: number; file: string; decoded: ReturnType<typeof decodeSafely> } | null = null;
  for (const { index, file } of files) {
    const job = { index, file, decoded: decodeSafely(file, options) };
    if (pending) emit(pending.index, await detectDecoded(pending.file, await pending.decoded, detector, options));
    pending = job;
  }
  if (pending) emit(pending.index, await detectDecoded(pending.file, await pending.decoded, detector, options));
}
