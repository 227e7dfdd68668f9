/**
 * Prediction on faces the user gives instead of faces found by the detector: photos that are each
 * one face crop ({@link predictCrops}, `ferkit predict --crops`) and face boxes from the user's own
 * detector ({@link predictBoxes}, `ferkit predict --boxes`). The results have the shape of
 * {@link predictImages}'s, each face with an `align` field.
 */
import { availableParallelism } from "node:os";
import {
  FaceDetector,
  decodeImage,
  sharedDetectorPool,
  type AlignedFace,
  type DecodedImage,
  type Detects,
  type FaceDetectorOptions,
} from "../faces/index.js";
import type { BoxEntry, Box } from "./boxes.js";
import type { FaceClassifier } from "./classifier.js";
import type { CropWriter } from "./crops.js";
import { PREDICT_LANDMARKS, facePrediction, predictOutputs, type FacePrediction, type ImagePrediction } from "./images.js";
import { alignLocated, locateBoxFaces, locateCropFace, type GivenAlign, type LocatedFace } from "./locate.js";
import { decodeResized } from "../data/image.js";

/** Options of {@link predictCrops} and {@link predictBoxes}. */
export interface PredictGivenOptions {
  /** Average with the horizontal flip (test-time augmentation). */
  tta?: boolean;
  /**
   * `"eyes"`: align by the eye landmarks BlazeFace finds in the crop or around the box, else by the
   * frame; `"resize"`: by the frame alone, no model runs. Default: `"resize"` for crops (as the
   * eval path and the training pools' `align: "resize"` read face crops), `"eyes"` for boxes.
   */
  align?: GivenAlign;
  /** Detector settings for `align: "eyes"`; `landmarks` defaults to {@link PREDICT_LANDMARKS}. */
  detector?: FaceDetectorOptions;
  /** Worker threads for `align: "eyes"` (default: `min(2, cores)` for 24 photos or more, else 0 = the calling thread). */
  workers?: number;
  /** Keep at most this many faces per photo: the largest boxes, in their given order (default: all). */
  maxFaces?: number;
  /** Write each face's aligned input as a PNG here (a folder, or a {@link CropWriter}); the face gets a `crop` field. */
  saveCrops?: string | CropWriter;
  /** Photos whose longer side exceeds this are shrunk to it before aligning (default 1024 px); coordinates stay in the photo's pixels. */
  maxSide?: number;
  onProgress?: (done: number, total: number) => void;
}

type Located = { faces: LocatedFace[]; problems?: { index: number; error: string }[] };

interface Pending {
  entry: ImagePrediction;
  crops: AlignedFace[];
  faces: LocatedFace[];
  /** Photo pixels per decoded pixel. */
  scale: number;
}

/** The detector for `align: "eyes"`, and how to release it. */
async function openDetector(o: PredictGivenOptions, files: number): Promise<{ detector: Detects | null; close: () => void }> {
  if ((o.align ?? "resize") !== "eyes") return { detector: null, close: () => undefined };
  const options: FaceDetectorOptions = { landmarks: PREDICT_LANDMARKS, ...o.detector };
  const workers = Math.min(o.workers ?? (files >= 24 ? Math.min(2, availableParallelism()) : 0), files);
  if (workers > 0) return { detector: sharedDetectorPool(workers, options), close: () => undefined };
  const d = await FaceDetector.create(options);
  return { detector: d, close: () => d.dispose() };
}

/** `[C, H, W]` planar pixels as `H x W x C` interleaved ones. */
function interleaved(planar: Uint8Array, channels: number): Uint8Array {
  if (channels === 1) return planar;
  const n = planar.length / channels;
  const out = new Uint8Array(planar.length);
  for (let i = 0; i < n; i++) for (let c = 0; c < channels; c++) out[i * channels + c] = planar[c * n + i];
  return out;
}

async function runGiven(
  files: readonly string[],
  classifier: FaceClassifier,
  o: PredictGivenOptions & { align: GivenAlign },
  locate: (file: string, image: DecodedImage, detector: Detects | null) => Promise<Located & { entry?: Partial<ImagePrediction> }>,
): Promise<ImagePrediction[]> {
  const { maxFaces, writer } = predictOutputs(o);
  const { detector, close } = await openDetector(o, files.length);
  const pending: Pending[] = new Array(files.length);
  let next = 0;
  let done = 0;
  const one = async (file: string): Promise<Pending> => {
    let image: DecodedImage;
    try {
      image = await decodeImage(file, { maxSide: o.maxSide ?? 1024, minSide: 1 });
    } catch (err) {
      const detail = (err as Error).message.replace(`cannot decode image ${file}: `, "");
      return { entry: { file, faces: [], error: `not a readable image: ${detail}` }, crops: [], faces: [], scale: 1 };
    }
    const size = { width: image.photoWidth, height: image.photoHeight };
    const scale = image.photoWidth / image.width;
    let located: Located & { entry?: Partial<ImagePrediction> };
    try {
      located = await locate(file, image, detector);
    } catch (err) {
      return {
        entry: { file, ...size, faces: [], error: `face detection failed: ${(err as Error).message}` },
        crops: [],
        faces: [],
        scale,
      };
    }
    let faces = located.faces;
    if (faces.length > maxFaces) {
      const keep = new Set([...faces].sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]).slice(0, maxFaces));
      faces = faces.filter((f) => keep.has(f));
    }
    const crops = alignLocated(image, faces, { size: classifier.size, channels: classifier.channels });
    // A crop aligned by resizing is made as the eval path makes it (libvips' resize of the file),
    // not by the warp's bilinear sampling: a FER2013 crop gets the eval path's answer at any input size.
    for (const [k, face] of faces.entries())
      if (face.align === "resize")
        crops[k] = {
          ...crops[k],
          pixels: interleaved(await decodeResized(file, classifier.size, classifier.channels), classifier.channels),
        };
    return { entry: { file, ...size, faces: [], ...located.entry }, crops, faces, scale };
  };
  const lane = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      pending[i] = await one(files[i]);
      o.onProgress?.(++done, files.length);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(4, files.length) }, lane));
  } finally {
    close();
  }
  const probs = classifier.classify(
    pending.flatMap((p) => p.crops),
    { tta: o.tta },
  );
  const C = classifier.classes.length;
  let k = 0;
  for (const p of pending) {
    p.entry.faces = p.faces.map((face): FacePrediction => {
      const f = p.scale;
      const inPhoto = {
        box: face.box.map((v) => v * f) as Box,
        leftEye: face.leftEye.map((v) => v * f) as [number, number],
        rightEye: face.rightEye.map((v) => v * f) as [number, number],
        score: face.score,
      };
      return { ...facePrediction(inPhoto, probs.subarray(C * k, C * ++k), classifier.classes), align: face.align };
    });
    if (writer) {
      try {
        for (const [i, face] of p.entry.faces.entries()) face.crop = await writer.write(p.crops[i], p.entry.file, i);
      } catch (err) {
        p.entry.error = (err as Error).message;
      }
    }
  }
  return pending.map((p) => p.entry);
}

/**
 * Classifies photos that are each one face crop (a FER2013 image, a crop from the user's own
 * detector): no face search, so every readable photo gives exactly one face, whose `box` is the
 * whole photo. Aligned by resizing its centred square to the model's input (`align: "resize"`, the
 * default: a 48x48 FER2013 crop is then exactly what the eval path feeds the model) or, with
 * `align: "eyes"`, by the eye landmarks BlazeFace finds in it (resized when it finds none).
 * @returns one entry per file, in input order (an unreadable file has an `error` and no faces)
 * @throws RangeError on a bad `maxFaces`; ConfigError when `saveCrops` is not a writable folder;
 *   Error when the detector cannot start (`align: "eyes"`)
 */
export function predictCrops(
  files: readonly string[],
  classifier: FaceClassifier,
  o: PredictGivenOptions = {},
): Promise<ImagePrediction[]> {
  const align = o.align ?? "resize";
  return runGiven(files, classifier, { ...o, align }, async (_file, image, detector) => ({
    faces: [await locateCropFace(image, detector)],
  }));
}

/**
 * Classifies the faces at given boxes (from the user's own detector) in photos. Each box is
 * aligned by the eye landmarks BlazeFace finds around it (`align: "eyes"`, the default; the face
 * whose eyes lie in the box), else by the box framed as FER2013 frames a detector's box. A box
 * reaching beyond the photo is clipped (`box` in the result is the clipped one); a box with no
 * pixel in the photo, or with a frame number (for videos), is listed in the entry's `box_errors`
 * and not classified. Faces come in the boxes' order.
 * @param files photo paths
 * @param boxes input path -> its boxes (as {@link matchBoxes} gives them), in photo pixels; a photo
 *   without boxes gets `"faces": []`
 * @returns one entry per file, in input order
 * @throws RangeError on a bad `maxFaces`; ConfigError when `saveCrops` is not a writable folder;
 *   Error when the detector cannot start (`align: "eyes"`)
 */
export function predictBoxes(
  files: readonly string[],
  boxes: ReadonlyMap<string, readonly BoxEntry[]>,
  classifier: FaceClassifier,
  o: PredictGivenOptions = {},
): Promise<ImagePrediction[]> {
  const align = o.align ?? "eyes";
  return runGiven(files, classifier, { ...o, align }, async (file, image, detector) => {
    const all = boxes.get(file) ?? [];
    const errors: NonNullable<ImagePrediction["box_errors"]> = [];
    const usable = all.filter((e) => {
      if (e.frame === undefined) return true;
      errors.push({ where: e.where, box: e.box, error: `frame ${e.frame} given for a photo` });
      return false;
    });
    const f = image.width / image.photoWidth; // decoded pixels per photo pixel
    const { faces, problems } = await locateBoxFaces(
      image,
      usable.map((e) => e.box.map((v) => v * f) as Box),
      detector,
    );
    for (const p of problems) {
      const e = usable[p.index];
      errors.push({
        where: e.where,
        box: e.box,
        error: `box [${e.box.join(", ")}] lies outside the ${image.photoWidth}x${image.photoHeight} image`,
      });
    }
    return { faces, entry: errors.length > 0 ? { box_errors: errors } : {} };
  });
}
