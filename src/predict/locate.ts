/**
 * Faces whose place is given rather than searched for: an image that is one face crop
 * (`predict --crops`) or boxes from the user's own detector (`predict --boxes`). Each is aligned
 * by the eye landmarks BlazeFace finds in it when asked (`align: "eyes"`) and found, else by its
 * frame alone: a crop is resized as a whole (its centred square, as the training pools'
 * `align: "resize"` does), a box is framed as FER2013 frames a detector's box ({@link boxFrame}).
 */
import sharp from "sharp";
import {
  FER2013_TEMPLATE,
  alignmentTransform,
  boxFrame,
  checkAlignOptions,
  eyeAngle,
  frameEyes,
  warpAffine,
  type AlignOptions,
  type AlignedFace,
  type DetectedFace,
  type Detects,
  type Point2,
  type RgbImage,
  type SquareFrame,
} from "../faces/index.js";
import type { Box } from "./boxes.js";

/**
 * How given faces are aligned: `"eyes"` runs BlazeFace in the crop (or around the box) and aligns
 * by its eye points when it finds the face, else falls back to the frame; `"resize"` uses the frame
 * alone (no model runs).
 */
export type GivenAlign = "eyes" | "resize";

/** How one face was aligned: by eye landmarks, by its box's frame, or by resizing the crop. */
export type FaceAlign = "eyes" | "box" | "resize";

/** A given face placed for alignment. Coordinates are pixels of the image it was located in. */
export interface LocatedFace {
  /** `[x, y, w, h]`: the whole crop, or the given box clipped to the image. */
  box: Box;
  /** Subject's left and right eye centres: found by BlazeFace (`align: "eyes"`) or where the frame puts them. */
  leftEye: Point2;
  rightEye: Point2;
  /** BlazeFace's score in [0, 1] when it found the face's eyes, else null. */
  score: number | null;
  align: FaceAlign;
}

/** Photos whose longer side is below this are upscaled before BlazeFace runs on them (as `decodeImage` does). */
const DETECT_MIN_SIDE = 192;

/**
 * Faces in an image as the detector sees it: small images upscaled (bicubic, integer factor) to a
 * longer side of at least 192 px, the coordinates given back in the image's own pixels.
 */
async function detectIn(image: RgbImage, detector: Detects): Promise<DetectedFace[]> {
  const longer = Math.max(image.width, image.height);
  if (longer >= DETECT_MIN_SIDE) return detector.detect(image);
  const k = Math.ceil(DETECT_MIN_SIDE / longer);
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(image.width * k, image.height * k, { kernel: "cubic", fit: "fill" })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const faces = await detector.detect({
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
  });
  const s = (p: Point2): Point2 => [p[0] / k, p[1] / k];
  return faces.map((f) => ({
    ...f,
    box: f.box.map((v) => v / k) as DetectedFace["box"],
    leftEye: s(f.leftEye),
    rightEye: s(f.rightEye),
    landmarks: f.landmarks.map(s),
  }));
}

/** A copy of the `w x h` region at `(x, y)` (integers, inside the image). */
function region(image: RgbImage, x: number, y: number, w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++)
    data.set(image.data.subarray(((y + r) * image.width + x) * 3, ((y + r) * image.width + x + w) * 3), r * w * 3);
  return { data, width: w, height: h };
}

const inside = (p: Point2, [x, y, w, h]: readonly number[]): boolean => p[0] >= x && p[0] <= x + w && p[1] >= y && p[1] <= y + h;

function iou(a: readonly number[], b: readonly number[]): number {
  const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  return (w * h) / (a[2] * a[3] + b[2] * b[3] - w * h);
}

/**
 * Places the face of an image that is one face crop. Its frame is the centred square of side
 * `min(width, height)` (the whole image when square). With `detector`, BlazeFace runs on the crop
 * and the largest face whose two eyes lie in the image gives the eyes.
 * @param image the crop, RGB
 * @param detector BlazeFace (a `FaceDetector` or `DetectorPool`) for `align: "eyes"`; null for `"resize"`
 * @returns the face: `box` the whole image, `align` `"eyes"` or `"resize"`
 * @throws Error when the detector fails (e.g. a broken worker pool)
 */
export async function locateCropFace(image: RgbImage, detector: Detects | null): Promise<LocatedFace> {
  const { width: w, height: h } = image;
  const s = Math.min(w, h);
  const box: Box = [0, 0, w, h];
  if (detector) {
    const found = (await detectIn(image, detector)).find((f) => inside(f.leftEye, box) && inside(f.rightEye, box));
    if (found) return { box, leftEye: found.leftEye, rightEye: found.rightEye, score: found.score, align: "eyes" };
  }
  return { box, ...frameEyes([(w - s) / 2, (h - s) / 2, s]), score: null, align: "resize" };
}

/** A given box that could not be used, and why. */
export interface BoxProblem {
  /** Index of the box in the list given. */
  index: number;
  error: string;
}

/**
 * Places the faces of given boxes in an image. A box that reaches beyond the image is clipped (the
 * crop still frames the whole box, the missing part filled from the image's edge); a box with no
 * pixel inside the image is a problem, not a face. With `detector`, BlazeFace runs on the whole
 * image, and on the region around a box (twice its longer side, clipped to the image) where none of
 * the whole image's faces has its eyes in the box; the face whose two eyes lie in the box (the best
 * overlap if several) gives the eyes. Without a detector, or when no face is found, the box's
 * FER2013 frame ({@link boxFrame}) does.
 * @param image the photo or frame, RGB
 * @param boxes `[x, y, w, h]` in pixels of `image`, w and h > 0
 * @returns one face per usable box, in the order given, and the problems
 * @throws Error when the detector fails (e.g. a broken worker pool)
 */
export async function locateBoxFaces(
  image: RgbImage,
  boxes: readonly Box[],
  detector: Detects | null,
): Promise<{ faces: (LocatedFace & { index: number })[]; problems: BoxProblem[] }> {
  const faces: (LocatedFace & { index: number })[] = [];
  const problems: BoxProblem[] = [];
  const { width: W, height: H } = image;
  // BlazeFace runs on the whole image once (a box from predict's own output then gets exactly the
  // detector's eyes), and around a box only when none of those faces has its eyes in it.
  let whole: DetectedFace[] | null = null;
  const matching = (
    found: readonly DetectedFace[],
    dx: number,
    dy: number,
    b: Box,
  ): { f: DetectedFace; leftEye: Point2; rightEye: Point2 } | undefined =>
    found
      .map((f) => ({
        f,
        leftEye: [f.leftEye[0] + dx, f.leftEye[1] + dy] as Point2,
        rightEye: [f.rightEye[0] + dx, f.rightEye[1] + dy] as Point2,
        overlap: iou([f.box[0] + dx, f.box[1] + dy, f.box[2], f.box[3]], b),
      }))
      .filter((c) => inside(c.leftEye, b) && inside(c.rightEye, b))
      .sort((p, q) => q.overlap - p.overlap)[0];
  for (const [index, b] of boxes.entries()) {
    const [x, y, w, h] = b;
    const x0 = Math.max(0, x);
    const y0 = Math.max(0, y);
    const x1 = Math.min(W, x + w);
    const y1 = Math.min(H, y + h);
    if (!(x1 - x0 >= 1 && y1 - y0 >= 1)) {
      problems.push({ index, error: `box [${b.map((v) => Math.round(v * 10) / 10).join(", ")}] lies outside the ${W}x${H} image` });
      continue;
    }
    const clipped: Box = [x0, y0, x1 - x0, y1 - y0];
    if (detector) {
      whole ??= await detectIn(image, detector);
      let found = matching(whole, 0, 0, b);
      if (!found) {
        const side = 2 * Math.max(w, h);
        const rx = Math.max(0, Math.floor(x + w / 2 - side / 2));
        const ry = Math.max(0, Math.floor(y + h / 2 - side / 2));
        const rw = Math.min(W, Math.ceil(x + w / 2 + side / 2)) - rx;
        const rh = Math.min(H, Math.ceil(y + h / 2 + side / 2)) - ry;
        found = matching(await detectIn(region(image, rx, ry, rw, rh), detector), rx, ry, b);
      }
      if (found) {
        faces.push({ index, box: clipped, leftEye: found.leftEye, rightEye: found.rightEye, score: found.f.score, align: "eyes" });
        continue;
      }
    }
    const frame: SquareFrame = boxFrame(b);
    faces.push({ index, box: clipped, ...frameEyes(frame), score: null, align: "box" });
  }
  return { faces, problems };
}

/**
 * Aligns located faces: the same similarity transform and warp as `alignFaces` (eyes onto
 * {@link FER2013_TEMPLATE}, which the frames are placed with; edge pixels replicated outside the
 * image), so a face aligned by its frame is that square resized to the model's input.
 * @param options crop side in pixels and channels (1 gray, BT.601 luma; 3 RGB)
 * @returns one crop per face, in order (`score` is 0 where the face has none)
 * @throws RangeError on a bad size or channel count
 */
export function alignLocated(
  image: RgbImage,
  faces: readonly LocatedFace[],
  options: Pick<AlignOptions, "size" | "channels">,
): AlignedFace[] {
  checkAlignOptions(options);
  return faces.map((f) => ({
    pixels: warpAffine(
      image.data,
      image.width,
      image.height,
      alignmentTransform(f.leftEye, f.rightEye, FER2013_TEMPLATE),
      options.size,
      options.channels,
      { border: "replicate" },
    ),
    size: options.size,
    channels: options.channels,
    box: [...f.box],
    score: f.score ?? 0,
    leftEye: [...f.leftEye],
    rightEye: [...f.rightEye],
    roll: eyeAngle(f.leftEye, f.rightEye),
  }));
}
