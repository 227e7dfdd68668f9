/**
 * Prediction on photos: every face detected, aligned to the model's framing and classified.
 * Inputs are expanded first (folders walked for images and videos); a missing or unreadable
 * file becomes an entry with an `error`, never an exception, so one bad file loses nothing else.
 */
import { readdirSync, realpathSync, statSync } from "node:fs";
import path from "node:path";
import { IMAGE_EXTENSIONS } from "../data/dataset.js";
import { availableParallelism } from "node:os";
import { detectAndAlign, sharedDetectorPool, type AlignedFace, type FaceDetectorOptions } from "../faces/index.js";
import type { FaceClassifier } from "./classifier.js";
import { argmax } from "./smoothing.js";
import { CropWriter } from "./crops.js";

/** File extensions read as videos (through ffmpeg). */
export const VIDEO_EXTENSIONS: ReadonlySet<string> = new Set([
  ".mp4",
  ".m4v",
  ".mov",
  ".avi",
  ".mkv",
  ".webm",
  ".mpg",
  ".mpeg",
  ".wmv",
  ".flv",
  ".3gp",
  ".ts",
]);

/** What the inputs of `ferkit predict` expand to. */
export interface ExpandedInputs {
  images: string[];
  videos: string[];
  /** Paths that do not exist or cannot be listed, with the reason. */
  errors: { file: string; error: string }[];
}

/**
 * Expands files and folders (walked recursively, sorted, hidden entries skipped) into image and
 * video files by extension. A file named explicitly with another extension is tried as an image.
 */
export function expandInputs(paths: readonly string[]): ExpandedInputs {
  const out: ExpandedInputs = { images: [], videos: [], errors: [] };
  const classify = (file: string, explicit: boolean): void => {
    const ext = path.extname(file).toLowerCase();
    if (VIDEO_EXTENSIONS.has(ext)) out.videos.push(file);
    else if (IMAGE_EXTENSIONS.has(ext) || explicit) out.images.push(file);
  };
  // Folders by real path: a link back up the tree (`loop -> .`) or a second link to a folder is walked once.
  const seen = new Set<string>();
  const visit = (dir: string): void => {
    let real: string;
    try {
      real = realpathSync(dir);
    } catch (err) {
      out.errors.push({ file: dir, error: `cannot resolve the folder: ${(err as Error).message}` });
      return;
    }
    if (seen.has(real)) return;
    seen.add(real);
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (err) {
      out.errors.push({ file: dir, error: `cannot list the folder: ${(err as Error).message}` });
      return;
    }
    for (const name of names) {
      if (name.startsWith(".")) continue;
      const full = path.join(dir, name);
      let st;
      try {
        st = statSync(full, { throwIfNoEntry: false });
      } catch (err) {
        out.errors.push({ file: full, error: `cannot read: ${(err as Error).message}` }); // e.g. ELOOP
        continue;
      }
      if (st === undefined) continue; // vanished while listing (or a broken link)
      if (st.isDirectory()) visit(full);
      else if (st.isFile()) classify(full, false);
      else if (IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase()) || VIDEO_EXTENSIONS.has(path.extname(name).toLowerCase()))
        out.errors.push({ file: full, error: NOT_REGULAR }); // a pipe or device would block the decoder
    }
  };
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch {
      out.errors.push({ file: p, error: "no such file or folder" });
      continue;
    }
    if (st.isDirectory()) visit(p);
    else if (st.isFile()) classify(p, true);
    else out.errors.push({ file: p, error: NOT_REGULAR });
  }
  return out;
}

const NOT_REGULAR = "not a regular file (a pipe, socket or device)";

/** One classified face. Coordinates are pixels of the decoded photo (after EXIF rotation). */
export interface FacePrediction {
  /** `[x, y, w, h]` of the detector's box, pixels. */
  box: [number, number, number, number];
  /** Eye centres used for alignment, pixels (the subject's left and right eye). */
  landmarks: { left_eye: [number, number]; right_eye: [number, number] };
  /** Class name -> probability in [0, 1], in the model's class order. */
  probs: Record<string, number>;
  /** The most probable class. */
  label: string;
  /** Probability of `label`, in [0, 1]. */
  score: number;
  /**
   * Face detector confidence, in [0, 1]. Null for a given face (`--crops`, `--boxes`) whose eyes
   * BlazeFace did not find (or did not look for: `align: "resize"`).
   */
  detection_score: number | null;
  /**
   * Only for given faces (`--crops`, `--boxes`): how the face was aligned: `"eyes"` by the eye
   * landmarks BlazeFace found in it, `"box"` by the given box's frame, `"resize"` by resizing the
   * crop. `landmarks` are then where that frame put the eyes.
   */
  align?: "eyes" | "box" | "resize";
  /** With `saveCrops`: the PNG of the face's aligned input (the model's input size). */
  crop?: string;
}

/** The result for one photo: its faces (largest first; empty when none), or why it failed. */
export interface ImagePrediction {
  file: string;
  /** The photo's size in pixels (after EXIF rotation); absent when it could not be decoded. */
  width?: number;
  height?: number;
  faces: FacePrediction[];
  /**
   * Why the file gave no prediction (not a readable image, or detection failed; it then has no
   * faces), or why part of it failed (its crops could not be saved, some of its boxes were unusable).
   */
  error?: string;
  /** With given boxes: the boxes that could not be used (e.g. outside the image), with where they were given. */
  box_errors?: { where: string; box: [number, number, number, number]; error: string }[];
}

/**
 * Where prediction takes the eye points from by default: BlazeFace's own keypoints. Measured on
 * FER2013 PrivateTest through the whole photo pipeline (3,585 images, the model shipped before the
 * class-balanced one): accuracy 62.65 % / macro-F1 54.74 % against 63.24 % / 54.86 % with
 * FaceMesh's eyes, at 1.5x the faces/s (`npm run bench:predict`: 101.1 against 65.9, detection on
 * libtorch). The training caches keep FaceMesh's more precise eyes.
 */
export const PREDICT_LANDMARKS: NonNullable<FaceDetectorOptions["landmarks"]> = "blazeface";

/** Options of {@link predictImages}. */
export interface PredictImagesOptions {
  /** Average with the horizontal flip (test-time augmentation). */
  tta?: boolean;
  /** Detector settings; `landmarks` defaults to {@link PREDICT_LANDMARKS} here. */
  detector?: FaceDetectorOptions;
  /**
   * Worker threads for detection (default: `min(2, cores)` for 24 photos or more, else 0 = the
   * calling thread). The workers are kept for later calls in this process (see `sharedDetectorPool`).
   */
  workers?: number;
  /** Keep at most this many faces per photo, the largest (by box area) first (default: all). */
  maxFaces?: number;
  /** Write each face's aligned input as a PNG here (a folder, or a {@link CropWriter}); the face gets a `crop` field. */
  saveCrops?: string | CropWriter;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Checks the `maxFaces` option and opens the `saveCrops` folder, for the predict functions.
 * @returns `maxFaces` (Infinity when absent) and the crop writer (null when absent)
 * @throws RangeError when `maxFaces` is not a positive integer; ConfigError when the folder is not writable
 */
export function predictOutputs(o: { maxFaces?: number; saveCrops?: string | CropWriter }): { maxFaces: number; writer: CropWriter | null } {
  const maxFaces = o.maxFaces ?? Infinity;
  if (!(maxFaces === Infinity || (Number.isInteger(maxFaces) && maxFaces >= 1)))
    throw new RangeError(`maxFaces must be a positive integer, got ${o.maxFaces}`);
  const writer = o.saveCrops === undefined ? null : typeof o.saveCrops === "string" ? new CropWriter(o.saveCrops) : o.saveCrops;
  return { maxFaces, writer };
}

/**
 * Writes the crops of one photo's faces and records their paths; a failure becomes the entry's error.
 */
async function saveFaceCrops(writer: CropWriter, entry: ImagePrediction, crops: readonly AlignedFace[]): Promise<void> {
  try {
    for (const [i, face] of entry.faces.entries()) face.crop = await writer.write(crops[i], entry.file, i);
  } catch (err) {
    entry.error = (err as Error).message;
  }
}

/** Turns a probability row into the face's fields. */
export function facePrediction(
  face: Pick<AlignedFace, "box" | "leftEye" | "rightEye"> & { score: number | null },
  row: ArrayLike<number>,
  classes: readonly string[],
): FacePrediction {
  const values = Array.from(row);
  const k = argmax(values);
  const round = (x: number): number => Math.round(x * 1e6) / 1e6;
  return {
    box: face.box.map((v) => Math.round(v * 10) / 10) as [number, number, number, number],
    landmarks: {
      left_eye: face.leftEye.map((v) => Math.round(v * 10) / 10) as [number, number],
      right_eye: face.rightEye.map((v) => Math.round(v * 10) / 10) as [number, number],
    },
    probs: Object.fromEntries(classes.map((c, i) => [c, round(values[i])])),
    label: classes[k],
    score: round(values[k]),
    detection_score: face.score === null ? null : round(face.score),
  };
}

/**
 * Detects, aligns and classifies every face of every photo.
 * @returns one entry per file, in input order
 * @throws Error only when the face detector cannot start (its model files are missing)
 */
export async function predictImages(
  files: readonly string[],
  classifier: FaceClassifier,
  o: PredictImagesOptions = {},
): Promise<ImagePrediction[]> {
  const { maxFaces, writer } = predictOutputs(o);
  const workers = Math.min(o.workers ?? (files.length >= 24 ? Math.min(2, availableParallelism()) : 0), files.length);
  const detector: FaceDetectorOptions = { landmarks: PREDICT_LANDMARKS, ...o.detector };
  const detected = await detectAndAlign(files, {
    size: classifier.size,
    channels: classifier.channels,
    every: true,
    detector,
    workers,
    pool: workers > 0 ? sharedDetectorPool(workers, detector) : undefined,
    onProgress: o.onProgress ? (done, total) => o.onProgress?.(done, total) : undefined,
  });
  // Faces come largest first: --max-faces keeps the first ones.
  const crops = detected.results.flatMap((r) => (r.status === "ok" ? r.faces.slice(0, maxFaces) : []));
  const probs = classifier.classify(crops, { tta: o.tta });
  const C = classifier.classes.length;
  let k = 0;
  const out: ImagePrediction[] = detected.results.map((r) => {
    const size = r.photoWidth === undefined || r.photoHeight === undefined ? {} : { width: r.photoWidth, height: r.photoHeight };
    if (r.status === "skipped") {
      if (r.reason === "no_face") return { file: r.file, ...size, faces: [] };
      // The decoder's message names the file again; the entry already does.
      const detail = r.message?.replace(`cannot decode image ${r.file}: `, "");
      const what = r.reason === "unreadable_image" ? "not a readable image" : "face detection failed";
      return { file: r.file, ...size, faces: [], error: detail ? `${what}: ${detail}` : what };
    }
    // Detection ran on the photo resized to at most maxSide (see decodeImage): back to its own pixels.
    const f = r.photoWidth / r.width;
    const faces = r.faces.slice(0, maxFaces).map((face) => {
      const row = probs.subarray(C * k, C * ++k);
      const scaled = {
        ...face,
        box: face.box.map((v) => v * f) as typeof face.box,
        leftEye: face.leftEye.map((v) => v * f) as typeof face.leftEye,
        rightEye: face.rightEye.map((v) => v * f) as typeof face.rightEye,
      };
      return facePrediction(scaled, row, classifier.classes);
    });
    return { file: r.file, width: r.photoWidth, height: r.photoHeight, faces };
  });
  if (writer)
    for (const [i, r] of detected.results.entries()) if (r.status === "ok") await saveFaceCrops(writer, out[i], r.faces.slice(0, maxFaces));
  return out;
}
