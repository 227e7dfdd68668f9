/**
 * One photo at a time: decode (sharp, plus the PGM/PPM and BMP readers of src/data), detect with a given
 * detector, rotate each face so the eyes are level and crop it with FER2013's framing. Used in
 * the calling thread and inside the detection workers ({@link DetectorPool}).
 */
import { ImageError, checkImageSize, isPnm, openImageBuffer, readImageBytes, type ImageSkipReason } from "../data/image.js";
import { parsePnm as parsePnmPixels, readPnmHeader } from "../data/pnm.js";
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
      /**
       * With `unreadable_image`: why the file gave no image (`missing_file`, `empty_file`,
       * `image_too_large`, `image_too_small`, ... or `unreadable_image` itself).
       */
      decodeReason?: ImageSkipReason;
      message?: string;
      /** The photo's own size, when it was decoded (reason `no_face` or `detect_failed`). */
      photoWidth?: number;
      photoHeight?: number;
    };

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
 * Decodes an image file to 8-bit RGB: JPEG, PNG, WebP, TIFF, GIF (first frame), AVIF (through
 * sharp, with the EXIF orientation applied), BMP and PGM/PPM (see src/data/image.ts). 16-bit and
 * CMYK images are converted to 8-bit sRGB, alpha is dropped. The longer side is shrunk to
 * `maxSide` or upscaled (bicubic, integer factor) to at least `minSide`.
 * @throws ImageError naming the file, with the reason (`missing_file`, `not_a_file`, `empty_file`,
 *   `unreadable_image`, `image_too_large` above 100 megapixels, `image_too_small` below 8 pixels a side:
 *   MAX_INPUT_PIXELS and MIN_IMAGE_SIDE there)
 */
export async function decodeImage(file: string, options: { maxSide?: number; minSide?: number } = {}): Promise<DecodedImage> {
  const maxSide = options.maxSide ?? 1024;
  const minSide = options.minSide ?? 192;
  try {
    const buf = await readImageBytes(file);
    if (isPnm(buf)) {
      const { width, height } = readPnmHeader(buf);
      checkImageSize(file, width, height);
      const longer = Math.max(width, height);
      if (longer <= maxSide && longer >= minSide) return { ...parsePnm(buf), photoWidth: width, photoHeight: height };
    }
    const opened = await openImageBuffer(buf, file, "error");
    const turned = opened.orientation >= 5; // EXIF orientations 5..8 swap width and height
    const [w, h] = turned ? [opened.height, opened.width] : [opened.width, opened.height];
    const longer = Math.max(w, h);
    let img = opened.orientation === 1 ? opened.image : opened.image.rotate();
    if (longer > maxSide) img = img.resize({ width: maxSide, height: maxSide, fit: "inside" });
    else if (longer < minSide) {
      const k = Math.ceil(minSide / longer);
      img = img.resize(w * k, h * k, { kernel: "cubic", fit: "fill" });
    }
    const { data, info } = await img.removeAlpha().toColourspace("srgb").raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
    const photo = { photoWidth: w, photoHeight: h };
    const px = info.width * info.height;
    if (info.channels === 3)
      return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, ...photo };
    const rgb = new Uint8Array(px * 3);
    for (let i = 0; i < px; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = data[i * info.channels];
    return { data: rgb, width: info.width, height: info.height, ...photo };
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError("unreadable_image", file, (err as Error).message, { cause: err });
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
  if (!image) {
    const decodeReason = error instanceof ImageError ? error.reason : "unreadable_image";
    return { file, status: "skipped", reason: "unreadable_image", decodeReason, message: error?.message };
  }
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
