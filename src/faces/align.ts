/**
 * Face alignment: the similarity transform that puts a face's two eye centres on fixed positions
 * of an output crop, and the bilinear warp that produces that crop. Pure functions, no model.
 *
 * Coordinates are continuous pixel coordinates: pixel `(col, row)` covers `[col, col + 1) x
 * [row, row + 1)`, so its centre is `(col + 0.5, row + 0.5)`; x grows to the right, y downwards.
 * "Left eye" always means the *subject's* left eye, which is on the image's right in an upright,
 * non-mirrored photo.
 */

/** A 2-D point `[x, y]`, in pixels unless stated otherwise. */
export type Point = readonly [number, number];

/**
 * A 2-D affine map `[a, b, c, d, e, f]`: `x' = a*x + b*y + c`, `y' = d*x + e*y + f`.
 * In this module it maps source-image pixel coordinates to *normalised* output coordinates,
 * where `[0, 0]` is the output crop's top-left corner and `[1, 1]` its bottom-right corner, so one
 * transform serves every output size.
 */
export type Affine = readonly [number, number, number, number, number, number];

/**
 * Where the eye centres go in an aligned crop, as fractions of the output side (`[0, 0]` top-left,
 * `[1, 1]` bottom-right). `leftEye` is the subject's left eye, so its x is normally > 0.5.
 */
export interface AlignTemplate {
  /** Subject's left eye centre `[x, y]`, fractions of the output side. */
  readonly leftEye: Point;
  /** Subject's right eye centre `[x, y]`, fractions of the output side. */
  readonly rightEye: Point;
}

/**
 * The eye positions that make an aligned crop look like FER2013's framing (roughly centred,
 * tightly cropped 48x48 faces).
 *
 * Measured, not guessed: {@link FaceDetector} with its defaults (FaceMesh eye-contour centres)
 * ran on 2,000 FER2013 training images (`FER2013Train`, every 14th file in name order), each
 * upscaled from 48x48 gray to 192x192 RGB (bicubic, as `decodeImage` does). A face was found in
 * 1,976 (98.8 %). Medians of those, as fractions of the image side (x 48 for pixels of the 48x48):
 *
 * | quantity | median | quartiles |
 * |---|---|---|
 * | subject's left eye x, y | 0.6867, 0.3938 | x 0.654..0.715, y 0.357..0.422 |
 * | subject's right eye x, y | 0.3182, 0.3948 | x 0.289..0.346, y 0.358..0.424 |
 * | inter-ocular distance | 0.3638 (17.5 px of 48) | 0.319..0.401 |
 * | eye midpoint x | 0.5036 | 0.481..0.523 |
 * | roll | -0.31 degrees | -5.2..4.3 degrees |
 *
 * The template is the symmetric, level version: both eyes at y = 0.394 (mean of the two eye-y
 * medians), x = 0.5 -+ 0.3638 / 2 (the 0.0036 offset of the midpoint, 0.2 px, is dropped).
 * With BlazeFace's eye keypoints instead (`landmarks: "blazeface"`), the same images give eyes at
 * x 0.6857 / 0.3120, y 0.3852 / 0.3868, inter-ocular 0.3725: within 0.01 of these.
 * Command (from the repo root, after `npx tsc -b`):
 *
 * ```sh
 * node -e 'const fs=require("fs"),d="../shared/data/fer2013/FER2013Train",a=fs.readdirSync(d).filter(f=>f.endsWith(".png")).sort();
 *   import("./dist/src/faces/index.js").then(m=>m.measureTemplate(a.filter((_,i)=>i%14===0).slice(0,2000).map(f=>d+"/"+f)))
 *   .then(s=>console.log(JSON.stringify(s)))'
 * ```
 */
export const FER2013_TEMPLATE: AlignTemplate = {
  leftEye: [0.6819, 0.394],
  rightEye: [0.3181, 0.394],
};

/**
 * The roll of the eye line: the angle of the vector from the subject's right eye to the subject's
 * left eye, in degrees, in image coordinates (y down), so a clockwise-tilted face has a positive
 * angle. 0 means the eyes are level.
 */
export function eyeAngle(leftEye: Point, rightEye: Point): number {
  return (Math.atan2(leftEye[1] - rightEye[1], leftEye[0] - rightEye[0]) * 180) / Math.PI;
}

/**
 * The similarity transform (rotation, uniform scale, translation; no shear, no reflection) that
 * maps the subject's eye centres in a source image onto the template's eye positions.
 * @param leftEye subject's left eye centre in source pixels
 * @param rightEye subject's right eye centre in source pixels
 * @param template eye positions in the output, fractions of the output side (default {@link FER2013_TEMPLATE})
 * @returns an {@link Affine} from source pixels to normalised output coordinates
 * @throws RangeError when the eyes coincide or a coordinate is not finite
 */
export function alignmentTransform(leftEye: Point, rightEye: Point, template: AlignTemplate = FER2013_TEMPLATE): Affine {
  const coords = [...leftEye, ...rightEye, ...template.leftEye, ...template.rightEye];
  if (!coords.every(Number.isFinite)) throw new RangeError(`alignmentTransform: non-finite coordinate in ${JSON.stringify(coords)}`);
  const vx = leftEye[0] - rightEye[0];
  const vy = leftEye[1] - rightEye[1];
  const wx = template.leftEye[0] - template.rightEye[0];
  const wy = template.leftEye[1] - template.rightEye[1];
  const vv = vx * vx + vy * vy;
  if (vv < 1e-12 || wx * wx + wy * wy < 1e-12) throw new RangeError("alignmentTransform: the two eye points coincide");
  // The complex number (a + i*d) = w / v gives scale * rotation; x' = a*x - d*y, y' = d*x + a*y.
  const a = (wx * vx + wy * vy) / vv;
  const d = (wy * vx - wx * vy) / vv;
  const c = template.rightEye[0] - (a * rightEye[0] - d * rightEye[1]);
  const f = template.rightEye[1] - (d * rightEye[0] + a * rightEye[1]);
  return [a, -d, c, d, a, f];
}

/** Applies an affine map to a point. */
export function applyAffine(m: Affine, p: Point): [number, number] {
  return [m[0] * p[0] + m[1] * p[1] + m[2], m[3] * p[0] + m[4] * p[1] + m[5]];
}

/**
 * The inverse of an affine map.
 * @throws RangeError when the map is singular (determinant near 0)
 */
export function invertAffine(m: Affine): Affine {
  const [a, b, c, d, e, f] = m;
  const det = a * e - b * d;
  if (!Number.isFinite(det) || Math.abs(det) < 1e-15) throw new RangeError("invertAffine: singular transform");
  const ia = e / det;
  const ib = -b / det;
  const id = -d / det;
  const ie = a / det;
  return [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)];
}

/** Options of {@link warpAffine}. */
export interface WarpOptions {
  /**
   * What source pixels outside the image look like: `"replicate"` (the nearest edge pixel, the
   * default, so no artificial borders appear in the crop) or `"constant"` ({@link WarpOptions.fill}).
   */
  border?: "replicate" | "constant";
  /** Grey level 0..255 used by `border: "constant"` (default 128). */
  fill?: number;
  /**
   * Average `k x k` bilinear samples per output pixel, with `k = ceil(source pixels per output
   * pixel)` capped at 4, so that shrinking a large face does not alias (default true).
   */
  antialias?: boolean;
}

/**
 * Warps an RGB image into a square `outSize x outSize` crop, sampling bilinearly.
 * @param rgb source pixels, `height * width * 3` bytes, row-major, interleaved R, G, B
 * @param width source width in pixels
 * @param height source height in pixels
 * @param transform map from source pixels to normalised output coordinates (from {@link alignmentTransform})
 * @param outSize output side in pixels (e.g. 48 or 112)
 * @param channels 1 for grayscale (ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B) or 3 for RGB
 * @returns `outSize * outSize * channels` bytes, row-major (interleaved when `channels` is 3)
 * @throws RangeError on a buffer whose length does not match `width * height * 3`, a bad size or
 *   channel count, or a singular transform
 */
export function warpAffine(
  rgb: Uint8Array,
  width: number,
  height: number,
  transform: Affine,
  outSize: number,
  channels: 1 | 3,
  options: WarpOptions = {},
): Uint8Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new RangeError(`warpAffine: bad image size ${width}x${height}`);
  if (rgb.length !== width * height * 3)
    throw new RangeError(`warpAffine: expected ${width * height * 3} bytes for ${width}x${height} RGB, got ${rgb.length}`);
  if (!Number.isInteger(outSize) || outSize < 1) throw new RangeError(`warpAffine: bad output size ${outSize}`);
  if (channels !== 1 && channels !== 3) throw new RangeError(`warpAffine: channels must be 1 or 3, got ${String(channels)}`);
  const border = options.border ?? "replicate";
  const fill = Math.min(255, Math.max(0, options.fill ?? 128));
  // Output pixel coordinates -> source pixel coordinates.
  const inv = invertAffine(transform);
  const s = 1 / outSize;
  const [ia, ib, ic, id, ie, iff] = [inv[0] * s, inv[1] * s, inv[2], inv[3] * s, inv[4] * s, inv[5]];
  const srcPerOut = Math.sqrt(Math.abs(ia * ie - ib * id));
  const k = options.antialias === false ? 1 : Math.min(4, Math.max(1, Math.ceil(srcPerOut - 1e-6)));
  const out = new Uint8Array(outSize * outSize * channels);
  const acc = [0, 0, 0];
  const maxX = width - 1;
  const maxY = height - 1;
  const sample = (sx: number, sy: number): void => {
    // Continuous coordinates -> pixel-centre index space.
    const x = sx - 0.5;
    const y = sy - 0.5;
    if (border === "constant" && (x < -0.5 || y < -0.5 || x > maxX + 0.5 || y > maxY + 0.5)) {
      acc[0] += fill;
      acc[1] += fill;
      acc[2] += fill;
      return;
    }
    const xc = Math.min(maxX, Math.max(0, x));
    const yc = Math.min(maxY, Math.max(0, y));
    const x0 = Math.floor(xc);
    const y0 = Math.floor(yc);
    const x1 = x0 < maxX ? x0 + 1 : x0;
    const y1 = y0 < maxY ? y0 + 1 : y0;
    const fx = xc - x0;
    const fy = yc - y0;
    const w00 = (1 - fx) * (1 - fy);
    const w01 = fx * (1 - fy);
    const w10 = (1 - fx) * fy;
    const w11 = fx * fy;
    const p00 = (y0 * width + x0) * 3;
    const p01 = (y0 * width + x1) * 3;
    const p10 = (y1 * width + x0) * 3;
    const p11 = (y1 * width + x1) * 3;
    for (let ch = 0; ch < 3; ch++) acc[ch] += w00 * rgb[p00 + ch] + w01 * rgb[p01 + ch] + w10 * rgb[p10 + ch] + w11 * rgb[p11 + ch];
  };
  const norm = 1 / (k * k);
  for (let row = 0; row < outSize; row++) {
    for (let col = 0; col < outSize; col++) {
      acc[0] = acc[1] = acc[2] = 0;
      for (let j = 0; j < k; j++) {
        const v = row + (j + 0.5) / k;
        for (let i = 0; i < k; i++) {
          const u = col + (i + 0.5) / k;
          sample(ia * u + ib * v + ic, id * u + ie * v + iff);
        }
      }
      const o = (row * outSize + col) * channels;
      if (channels === 1) {
        out[o] = Math.round((0.299 * acc[0] + 0.587 * acc[1] + 0.114 * acc[2]) * norm);
      } else {
        out[o] = Math.round(acc[0] * norm);
        out[o + 1] = Math.round(acc[1] * norm);
        out[o + 2] = Math.round(acc[2] * norm);
      }
    }
  }
  return out;
}

/**
 * Where a face detector's box sits in a FER2013-framed crop: its side and centre as fractions of
 * the crop side. Measured, like {@link FER2013_TEMPLATE}: BlazeFace (`landmarks: "blazeface"`,
 * the detector `ferkit predict` uses) on 250 FER2013 Training images (every 100th file in name
 * order, upscaled to 192x192 as `decodeImage` does) found a face in 244; the box's side was 0.87 of
 * the crop (width quartiles 0.77..0.96), its centre at x 0.500 (0.48..0.53) and y 0.544
 * (0.50..0.58): FER2013 crops a little wider than the face box, with more room above the eyes.
 * So a box from `predict --json` framed by {@link boxFrame} gives about the crop its eyes would.
 */
export const FER2013_BOX_IN_CROP = { side: 0.87, centerX: 0.5, centerY: 0.544 } as const;

/** A square region `[x, y, side]` of an image: top-left corner and side, in pixels. */
export type SquareFrame = readonly [number, number, number];

/**
 * The FER2013-framed square crop around a face box, by {@link FER2013_BOX_IN_CROP}: the box's
 * longer side (a box clipped at the image edge keeps its full side) divided by 0.87, centred on
 * the box horizontally and a little above its centre.
 * @param box `[x, y, w, h]` in pixels (may extend beyond the image)
 * @returns the crop's `[x, y, side]` in pixels (may extend beyond the image)
 * @throws RangeError when the box has no positive finite size
 */
export function boxFrame(box: readonly [number, number, number, number]): SquareFrame {
  const [x, y, w, h] = box;
  if (![x, y, w, h].every(Number.isFinite) || !(w > 0 && h > 0)) throw new RangeError(`boxFrame: bad box ${JSON.stringify(box)}`);
  const side = Math.max(w, h) / FER2013_BOX_IN_CROP.side;
  const cx = x + w / 2 - (FER2013_BOX_IN_CROP.centerX - 0.5) * side;
  const cy = y + h / 2 - (FER2013_BOX_IN_CROP.centerY - 0.5) * side;
  return [cx - side / 2, cy - side / 2, side];
}

/**
 * The eye positions that make {@link alignmentTransform} map a square region onto the whole
 * output crop (no rotation): the template's eyes placed inside that square. Aligning with them is
 * cropping the square and resizing it.
 * @param frame `[x, y, side]` in pixels
 * @param template eye positions, fractions of the output side (default {@link FER2013_TEMPLATE})
 * @returns the subject's left and right eye centres in pixels
 */
export function frameEyes(
  frame: SquareFrame,
  template: AlignTemplate = FER2013_TEMPLATE,
): { leftEye: [number, number]; rightEye: [number, number] } {
  const [x, y, s] = frame;
  return {
    leftEye: [x + template.leftEye[0] * s, y + template.leftEye[1] * s],
    rightEye: [x + template.rightEye[0] * s, y + template.rightEye[1] * s],
  };
}
