/**
 * RandAugment (Cubuk et al. 2020, "RandAugment: Practical automated data augmentation
 * with a reduced search space") with the op list and magnitude ranges of USB
 * (microsoft/Semi-supervised-learning, `semilearn/datasets/augmentation/randaugment.py`,
 * `augment_list()`), as the strong view of FixMatch (Sohn et al. 2020): for each image,
 * `numOps` ops drawn uniformly *with replacement*, each at a magnitude
 * `min + (max - min) * U(0, 1)`, then Cutout (DeVries & Taylor 2017) of a grey square of
 * side `U(0, 0.5)` times the image side.
 *
 * Pixel scale: every op here takes and returns float32 `[n, C, H, W]` tensors whose values
 * are integers in 0..255 (C = 1 gray or 3 RGB). Each op rounds to that grid the way Pillow
 * does on uint8 images, so ops compose as Pillow's would and geometric copies stay exact;
 * the views in views.ts divide by 255 at the very end.
 *
 * The ops follow Pillow's semantics (USB runs them on PIL images):
 * - the enhance ops (Brightness, Color, Contrast, Sharpness) are `ImageEnhance`: a blend
 *   `floor(clip(d + f * (x - d), 0, 255))` with a degenerate image d (black; grayscale;
 *   the rounded mean gray level; the 3x3 SMOOTH filter with the border rows and columns kept);
 * - AutoContrast, Equalize, Posterize, Solarize are `ImageOps` (per image, per channel);
 * - Rotate, ShearX/Y, TranslateX/Y are Pillow's `Image.rotate` / `Image.transform(AFFINE)`
 *   with nearest-neighbour sampling (Pillow's default), in Pillow's coordinates (shear about
 *   the top-left corner, rotation counter-clockwise about the centre). One deliberate
 *   difference: the uncovered area is filled with grey ({@link GREY}), not black as in USB,
 *   so a geometric op does not add a dark border a model could key on.
 *
 * Per-image magnitudes are given as a number (the same for every image) or an array with one
 * value per image.
 */
import * as torch from "../torch/index.js";
import { F, type Tensor, type Operand } from "../torch/index.js";
import type { Rng } from "../data/sampler.js";

/** Grey fill of Cutout and of the area geometric ops uncover, on the 0..255 scale (127/255 ≈ 0.498). */
export const GREY = 127;

/** The 14 ops of USB's `augment_list()`, in its order (the index drawn by the Rng). */
export const RANDAUGMENT_OPS = [
  "AutoContrast",
  "Brightness",
  "Color",
  "Contrast",
  "Equalize",
  "Identity",
  "Posterize",
  "Rotate",
  "Sharpness",
  "ShearX",
  "ShearY",
  "Solarize",
  "TranslateX",
  "TranslateY",
] as const;

/** Name of a RandAugment op. */
export type RandAugmentOpName = (typeof RANDAUGMENT_OPS)[number];

/**
 * `[min, max]` of each op's magnitude (USB's `augment_list()`); the magnitude is
 * `min + (max - min) * U(0, 1)`. Units: blend factor (Brightness, Color, Contrast, Sharpness),
 * bits kept (Posterize, truncated to an integer), degrees counter-clockwise (Rotate),
 * shear coefficient (ShearX/Y), threshold on 0..255 (Solarize), fraction of the width or
 * height (TranslateX/Y). AutoContrast, Equalize and Identity ignore theirs.
 */
export const MAGNITUDE_RANGES: Readonly<Record<RandAugmentOpName, readonly [number, number]>> = {
  AutoContrast: [0, 1],
  Brightness: [0.05, 0.95],
  Color: [0.05, 0.95],
  Contrast: [0.05, 0.95],
  Equalize: [0, 1],
  Identity: [0, 1],
  Posterize: [4, 8],
  Rotate: [-30, 30],
  Sharpness: [0.05, 0.95],
  ShearX: [-0.3, 0.3],
  ShearY: [-0.3, 0.3],
  Solarize: [0, 256],
  TranslateX: [-0.3, 0.3],
  TranslateY: [-0.3, 0.3],
};

/** The ops that move pixels; they are resampled together in one affine warp per RandAugment slot. */
export const GEOMETRIC_OPS: ReadonlySet<RandAugmentOpName> = new Set(["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"]);

/** A magnitude for every image (a number) or one per image. */
export type Magnitudes = number | readonly number[];

function checkBatch(x: Tensor, what: string): [number, number, number, number] {
  if (x.ndim !== 4 || x.dtype !== "float32")
    throw new TypeError(`${what}: expected a float32 [n, C, H, W] tensor on the 0..255 scale, got ${x.toString()}`);
  const [n, c, h, w] = x.shape;
  if (c !== 1 && c !== 3) throw new RangeError(`${what}: expected 1 or 3 channels, got ${c}`);
  return [n, c, h, w];
}

/** Per-image values as a `[n, 1, 1, 1]` float32 tensor, or the number itself. */
function perImage(m: Magnitudes, n: number, what: string): Operand {
  if (typeof m === "number") return m;
  if (m.length !== n) throw new RangeError(`${what}: got ${m.length} magnitudes for ${n} images`);
  return torch.fromArray(Float32Array.from(m), [n, 1, 1, 1]);
}

/** Pillow's `Image.blend(degenerate, x, f)` on uint8: `floor(clip(d + f * (x - d), 0, 255))`. */
function blend(x: Tensor, degenerate: Tensor | 0, f: Operand): Tensor {
  const mixed = degenerate === 0 ? x.mul(f) : x.sub(degenerate).mul(f).add(degenerate);
  return mixed.clamp(0, 255).floor();
}

/**
 * Pillow's luminance `L = (19595 R + 38470 G + 7471 B + 32768) >> 16` (ITU-R 601-2 in 16-bit
 * fixed point, as `Image.convert("L")`); exact in float32. For one channel, the channel.
 * @param x `[n, C, H, W]` on the 0..255 scale
 * @returns `[n, 1, H, W]`
 */
export function luminance(x: Tensor): Tensor {
  const [, c] = checkBatch(x, "luminance");
  if (c === 1) return x.clone();
  return torch.tidy(() => {
    const s = x.select(1, 0).mul(19595).add(x.select(1, 1).mul(38470)).add(x.select(1, 2).mul(7471));
    return s.add(32768).div(65536).floor().unsqueeze(1);
  });
}

/**
 * Pillow's `ImageOps.autocontrast` (no cutoff): per image and channel, maps the lowest
 * value to 0 and the highest to 255, `floor((x - lo) * 255 / (hi - lo))`; a flat channel
 * is left unchanged.
 * @param x `[n, C, H, W]` on the 0..255 scale
 */
export function autoContrast(x: Tensor): Tensor {
  checkBatch(x, "autoContrast");
  return torch.tidy(() => {
    const flat = x.flatten(2);
    const lo = flat.minDim(2, true).values.unsqueeze(3);
    const hi = flat.maxDim(2, true).values.unsqueeze(3);
    const range = hi.sub(lo);
    const stretched = x.sub(lo).mul(255).div(range.clamp(1)).floor().clamp(0, 255);
    return torch.where(range.gt(0), stretched, x);
  });
}

/**
 * Pillow's `ImageEnhance.Brightness(x).enhance(f)`: blend with black, `floor(f * x)`.
 * @param factors blend factor per image (USB: 0.05..0.95; 1 = unchanged, 0 = black)
 */
export function brightness(x: Tensor, factors: Magnitudes): Tensor {
  const [n] = checkBatch(x, "brightness");
  return torch.tidy(() => blend(x, 0, perImage(factors, n, "brightness")));
}

/**
 * Pillow's `ImageEnhance.Color(x).enhance(f)`: blend with the grayscale image
 * ({@link luminance}); saturation 0 at f = 0. A gray image is its own degenerate, so for
 * C = 1 the result equals the input (as in Pillow).
 * @param factors blend factor per image (USB: 0.05..0.95)
 */
export function color(x: Tensor, factors: Magnitudes): Tensor {
  const [n, c] = checkBatch(x, "color");
  if (c === 1) return x.clone();
  return torch.tidy(() => blend(x, luminance(x), perImage(factors, n, "color")));
}

/**
 * Pillow's `ImageEnhance.Contrast(x).enhance(f)`: blend with a flat image at the mean
 * gray level of the luminance, rounded half up (`int(mean + 0.5)`), per image.
 * @param factors blend factor per image (USB: 0.05..0.95)
 */
export function contrast(x: Tensor, factors: Magnitudes): Tensor {
  const [n] = checkBatch(x, "contrast");
  return torch.tidy(() => {
    const mean = luminance(x).mean([1, 2, 3], true).add(0.5).floor(); // [n, 1, 1, 1]
    return blend(x, mean, perImage(factors, n, "contrast"));
  });
}

/**
 * Pillow's `ImageOps.equalize` (no mask), per image and channel: with the histogram h and
 * `step = (count - h[last used level]) // 255`, level i maps to
 * `(step // 2 + sum(h[0..i-1])) // step`; unchanged when step is 0 (one level, or nearly so).
 * @param x `[n, C, H, W]` on the 0..255 scale
 */
export function equalize(x: Tensor): Tensor {
  const [n, c, h, w] = checkBatch(x, "equalize");
  const rows = n * c;
  const hw = h * w;
  return torch.tidy(() => {
    const levels = x.reshape(rows, hw).long();
    const hist = torch.zeros([rows, 256], "float64").scatterAdd(1, levels, torch.ones([rows, hw], "float64"));
    const top = levels.maxDim(1, true).values;
    const step = hist.gather(1, top).rsub(hw).div(255).floor(); // [rows, 1]
    const before = hist.cumsum(1).sub(hist); // exclusive cumulative histogram
    const lut = before.add(step.div(2).floor()).div(step.clamp(1)).floor().clamp(0, 255);
    const identityLut = torch.arange(0, 256, 1, "float64").view(1, 256);
    const table = torch.where(step.gt(0), lut, identityLut);
    return table.gather(1, levels).float().view(n, c, h, w);
  });
}

/** The identity op: a copy of `x`. */
export function identity(x: Tensor): Tensor {
  checkBatch(x, "identity");
  return x.clone();
}

/**
 * Pillow's `ImageOps.posterize`: keeps the top `bits` bits of each value,
 * `floor(x / 2^(8 - bits)) * 2^(8 - bits)`.
 * @param bits per image; truncated to an integer and raised to at least 1 as USB's
 *   `max(1, int(v))` (USB: 4..8)
 */
export function posterize(x: Tensor, bits: Magnitudes): Tensor {
  const [n] = checkBatch(x, "posterize");
  const q = (b: number): number => 2 ** (8 - Math.min(8, Math.max(1, Math.trunc(b))));
  const quantum = typeof bits === "number" ? q(bits) : bits.map(q);
  return torch.tidy(() => {
    const s = perImage(quantum, n, "posterize");
    return x.div(s).floor().mul(s);
  });
}

/**
 * Pillow's `ImageOps.solarize`: values at or above the threshold are inverted (`255 - x`).
 * @param thresholds per image on the 0..255 scale (USB: 0..256; 256 = unchanged, 0 = all inverted)
 */
export function solarize(x: Tensor, thresholds: Magnitudes): Tensor {
  const [n] = checkBatch(x, "solarize");
  return torch.tidy(() => torch.where(x.lt(perImage(thresholds, n, "solarize")), x, x.rsub(255)));
}

/**
 * Pillow's `ImageEnhance.Sharpness(x).enhance(f)`: blend with the image smoothed by the 3x3
 * kernel `[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13` (Pillow's `ImageFilter.SMOOTH`), rounded to
 * the nearest level, the first and last rows and columns kept unchanged; per channel.
 * f < 1 blurs, f > 1 sharpens. Images smaller than 3x3 are returned unchanged.
 * @param factors blend factor per image (USB: 0.05..0.95)
 */
export function sharpness(x: Tensor, factors: Magnitudes): Tensor {
  const [n, c, h, w] = checkBatch(x, "sharpness");
  if (h < 3 || w < 3) return x.clone();
  return torch.tidy(() => {
    const kernel = torch.tensor([1, 1, 1, 1, 5, 1, 1, 1, 1], { shape: [1, 1, 3, 3] }).expand(c, 1, 3, 3);
    const smooth = F.conv2d(x, kernel, null, { groups: c }).div(13).add(0.5).floor(); // [n, c, h-2, w-2]
    const degenerate = x.clone();
    degenerate
      .narrow(2, 1, h - 2)
      .narrow(3, 1, w - 2)
      .copy_(smooth);
    return blend(x, degenerate, perImage(factors, n, "sharpness"));
  });
}

/**
 * Coefficients `(a, b, c, d, e, f)` of Pillow's `Image.transform(size, AFFINE, ...)`: the
 * output pixel at (u, v) takes the input at `(a u + b v + c, d u + e v + f)`, in pixel
 * units with the origin at the top-left *corner* (pixel centres at k + 0.5).
 */
export type AffineCoefficients = readonly [number, number, number, number, number, number];

/** Pillow rounds its rotation matrix to 15 decimals, so that multiples of 90 degrees are exact. */
function round15(v: number): number {
  return Math.round(v * 1e15) / 1e15;
}

/**
 * The inverse map of a geometric op at magnitude `v` on an `h` x `w` image, as USB's code
 * builds it: ShearX `(1, v, 0, 0, 1, 0)`, ShearY `(1, 0, 0, v, 1, 0)`, TranslateX
 * `(1, 0, v w, 0, 1, 0)`, TranslateY `(1, 0, 0, 0, 1, v h)` (positive v moves the content
 * left / up), Rotate `v` degrees counter-clockwise about the image centre (`Image.rotate`).
 * @throws RangeError for a non-geometric op
 */
export function affineCoefficients(op: RandAugmentOpName, v: number, h: number, w: number): AffineCoefficients {
  switch (op) {
    case "ShearX":
      return [1, v, 0, 0, 1, 0];
    case "ShearY":
      return [1, 0, 0, v, 1, 0];
    case "TranslateX":
      return [1, 0, v * w, 0, 1, 0];
    case "TranslateY":
      return [1, 0, 0, 0, 1, v * h];
    case "Rotate": {
      const t = (-v * Math.PI) / 180;
      const [a, b, d, e] = [round15(Math.cos(t)), round15(Math.sin(t)), round15(-Math.sin(t)), round15(Math.cos(t))];
      const [cx, cy] = [w / 2, h / 2];
      return [a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy];
    }
    default:
      throw new RangeError(`affineCoefficients: ${op} is not a geometric op`);
  }
}

/**
 * Resamples each image with its own Pillow-style affine map in one `affineGrid` +
 * `gridSample` call (nearest neighbour, so values are copied exactly); pixels whose source
 * falls outside the image get `fill`.
 * @param x `[n, C, H, W]` on the 0..255 scale
 * @param coefficients one {@link AffineCoefficients} per image
 * @param fill value of uncovered pixels (default {@link GREY})
 */
export function warpAffine(x: Tensor, coefficients: readonly AffineCoefficients[], fill = GREY): Tensor {
  const [n, c, h, w] = checkBatch(x, "warpAffine");
  if (coefficients.length !== n) throw new RangeError(`warpAffine: got ${coefficients.length} maps for ${n} images`);
  // Normalised coordinates of affineGrid with alignCorners = false: g = 2 u / W - 1, where u
  // is the corner-origin pixel coordinate Pillow uses; conjugate Pillow's map by that.
  const theta = new Float32Array(6 * n);
  coefficients.forEach(([a, b, cc, d, e, f], i) => {
    const bh = (b * h) / w;
    const dw = (d * w) / h;
    theta.set([a, bh, a + bh + (2 * cc) / w - 1, dw, e, dw + e + (2 * f) / h - 1], 6 * i);
  });
  return torch.tidy(() => {
    const grid = F.affineGrid(torch.fromArray(theta, [n, 2, 3]), [n, c, h, w], false);
    // Sampling x - fill with zero padding, then adding fill back, puts `fill` where the
    // source is outside; exact, since the values are integers.
    return F.gridSample(x.sub(fill), grid, "nearest", "zeros", false).add(fill);
  });
}

/** Rotate `degrees` counter-clockwise about the centre (Pillow's `Image.rotate`), grey fill. */
export function rotate(x: Tensor, degrees: Magnitudes): Tensor {
  return geometric(x, "Rotate", degrees);
}
/** ShearX: output (u, v) takes input (u + s v, v), Pillow's affine transform, grey fill. */
export function shearX(x: Tensor, s: Magnitudes): Tensor {
  return geometric(x, "ShearX", s);
}
/** ShearY: output (u, v) takes input (u, v + s u), Pillow's affine transform, grey fill. */
export function shearY(x: Tensor, s: Magnitudes): Tensor {
  return geometric(x, "ShearY", s);
}
/** TranslateX by a fraction of the width: output (u, v) takes input (u + t W, v), grey fill. */
export function translateX(x: Tensor, t: Magnitudes): Tensor {
  return geometric(x, "TranslateX", t);
}
/** TranslateY by a fraction of the height: output (u, v) takes input (u, v + t H), grey fill. */
export function translateY(x: Tensor, t: Magnitudes): Tensor {
  return geometric(x, "TranslateY", t);
}

function geometric(x: Tensor, op: RandAugmentOpName, m: Magnitudes): Tensor {
  const [n, , h, w] = checkBatch(x, op);
  const values = typeof m === "number" ? new Array<number>(n).fill(m) : m;
  if (values.length !== n) throw new RangeError(`${op}: got ${values.length} magnitudes for ${n} images`);
  return warpAffine(
    x,
    values.map((v) => affineCoefficients(op, v, h, w)),
  );
}

/** A Cutout square: rows `[y0, y1)`, columns `[x0, x1)` in pixels (empty when x1 <= x0 or y1 <= y0). */
export interface CutoutBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/**
 * Draws a Cutout square as USB does: side `s = U(0, maxFraction) * min(h, w)` pixels (rounded),
 * centre uniform over the image; the corner is clipped to 0 first
 * (`x0 = floor(max(0, cx - s/2))`), the far edge to the image border, so squares near the
 * right or bottom border are cut. Draws 3 numbers from `rng`: side, cx, cy.
 */
export function drawCutoutBox(rng: Rng, h: number, w: number, maxFraction = 0.5): CutoutBox {
  const side = rng.next() * maxFraction * Math.min(h, w);
  const cx = rng.next() * w;
  const cy = rng.next() * h;
  const s = Math.round(side);
  const x0 = Math.floor(Math.max(0, cx - side / 2));
  const y0 = Math.floor(Math.max(0, cy - side / 2));
  return { x0, y0, x1: Math.min(w, x0 + s), y1: Math.min(h, y0 + s) };
}

/**
 * Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks
 * with Cutout"): fills one box per image with `fill` (default {@link GREY}), all channels.
 * @param x `[n, C, H, W]`
 * @param boxes one per image; null leaves that image unchanged
 */
export function cutout(x: Tensor, boxes: readonly (CutoutBox | null)[], fill = GREY): Tensor {
  const [n, , h, w] = checkBatch(x, "cutout");
  if (boxes.length !== n) throw new RangeError(`cutout: got ${boxes.length} boxes for ${n} images`);
  // The mask is drawn in JS (a few row fills per box), then one maskedFill over all channels.
  const mask = new Uint8Array(n * h * w);
  boxes.forEach((b, i) => {
    if (b === null) return;
    const [x0, x1] = [Math.min(w, Math.max(0, Math.floor(b.x0))), Math.min(w, Math.floor(b.x1))];
    const [y0, y1] = [Math.max(0, Math.floor(b.y0)), Math.min(h, Math.floor(b.y1))];
    for (let y = y0; y < y1; y++) mask.fill(1, (i * h + y) * w + x0, (i * h + y) * w + Math.max(x0, x1));
  });
  return torch.tidy(() => x.maskedFill(torch.fromArray(mask, [n, 1, h, w], "bool"), fill));
}

/** One op of a RandAugment slot, with its magnitude in the op's own unit (see {@link MAGNITUDE_RANGES}). */
export interface RandAugmentStep {
  op: RandAugmentOpName;
  magnitude: number;
}

/** The draws of the strong augmentation for one image: its ops in order, then its Cutout box (or null). */
export interface RandAugmentImagePlan {
  ops: RandAugmentStep[];
  cutout: CutoutBox | null;
}

/** Options of {@link planRandAugment}. */
export interface RandAugmentOptions {
  /** Ops per image, drawn with replacement (default 3, as the reference FER code). */
  numOps?: number;
  /** The op list to draw from (default {@link RANDAUGMENT_OPS}, all 14). */
  ops?: readonly RandAugmentOpName[];
  /** Largest Cutout side as a fraction of the image side (default 0.5, USB); 0 disables Cutout. */
  cutoutMaxFraction?: number;
}

/**
 * Draws the strong augmentation of `n` images of `h` x `w` pixels from `rng`, image by image:
 * for each of `numOps` slots an op index (`rng.int(ops.length)`) and a magnitude
 * (`min + (max - min) * rng.next()`, drawn for every op as USB does), then the Cutout box
 * ({@link drawCutoutBox}). Plain data (JSON- and structured-clone-safe).
 */
export function planRandAugment(n: number, h: number, w: number, rng: Rng, o: RandAugmentOptions = {}): RandAugmentImagePlan[] {
  const numOps = o.numOps ?? 3;
  const ops = o.ops ?? RANDAUGMENT_OPS;
  const cutoutMax = o.cutoutMaxFraction ?? 0.5;
  if (!Number.isInteger(numOps) || numOps < 0)
    throw new RangeError(`planRandAugment: numOps must be a non-negative integer, got ${numOps}`);
  if (ops.length === 0) throw new RangeError("planRandAugment: the op list is empty");
  for (const op of ops) if (!(op in MAGNITUDE_RANGES)) throw new RangeError(`planRandAugment: unknown op "${op}"`);
  if (!(cutoutMax >= 0 && cutoutMax <= 1)) throw new RangeError(`planRandAugment: cutoutMaxFraction must be in [0, 1], got ${cutoutMax}`);
  return Array.from({ length: n }, () => {
    const steps = Array.from({ length: numOps }, () => {
      const op = ops[rng.int(ops.length)];
      const [lo, hi] = MAGNITUDE_RANGES[op];
      return { op, magnitude: lo + (hi - lo) * rng.next() };
    });
    let box: CutoutBox | null = null;
    if (cutoutMax > 0) {
      const b = drawCutoutBox(rng, h, w, cutoutMax);
      if (b.x1 > b.x0 && b.y1 > b.y0) box = b;
    }
    return { ops: steps, cutout: box };
  });
}

/** Applies one colour op (or Identity) to a batch, one magnitude per image. */
function applyColourOp(op: RandAugmentOpName, x: Tensor, m: readonly number[]): Tensor {
  switch (op) {
    case "AutoContrast":
      return autoContrast(x);
    case "Brightness":
      return brightness(x, m);
    case "Color":
      return color(x, m);
    case "Contrast":
      return contrast(x, m);
    case "Equalize":
      return equalize(x);
    case "Identity":
      return identity(x);
    case "Posterize":
      return posterize(x, m);
    case "Sharpness":
      return sharpness(x, m);
    case "Solarize":
      return solarize(x, m);
    default:
      throw new RangeError(`applyColourOp: ${op} is not a colour op`);
  }
}

/**
 * One RandAugment slot: image i gets `steps[i]`. Images are grouped by op; each colour op
 * runs once on its group (an index subset), all geometric ops of the slot run in one
 * affine warp, Identity images are only copied; the groups are then put back in order with
 * one `cat` + `indexSelect`. (Each image gets exactly one op per slot, so the order of the
 * groups does not matter.)
 */
function applySlot(x: Tensor, steps: readonly RandAugmentStep[]): Tensor {
  const [n, , h, w] = x.shape;
  const groups = new Map<string, number[]>();
  steps.forEach((s, i) => {
    const key = GEOMETRIC_OPS.has(s.op) ? "geometric" : s.op;
    const g = groups.get(key);
    if (g === undefined) groups.set(key, [i]);
    else g.push(i);
  });
  const run = (key: string, sub: Tensor, members: readonly number[]): Tensor =>
    key === "geometric"
      ? warpAffine(
          sub,
          members.map((i) => affineCoefficients(steps[i].op, steps[i].magnitude, h, w)),
        )
      : applyColourOp(
          key as RandAugmentOpName,
          sub,
          members.map((i) => steps[i].magnitude),
        );
  if (groups.size === 1) {
    const [[key, members]] = groups;
    return run(key, x, members);
  }
  const pieces: Tensor[] = [];
  const position = new Int32Array(n); // where image i lands in the concatenation
  let k = 0;
  for (const [key, members] of groups) {
    const sub = x.indexSelect(0, torch.fromArray(Int32Array.from(members), [members.length], "int64"));
    pieces.push(key === "Identity" ? sub : run(key, sub, members));
    for (const i of members) position[i] = k++;
  }
  return torch.cat(pieces).indexSelect(0, torch.fromArray(position, [n], "int64"));
}

/**
 * Applies a RandAugment plan (from {@link planRandAugment}): slot by slot, then Cutout.
 * Each image's ops run in its own order; intermediate tensors are freed slot by slot.
 * @param x `[n, C, H, W]` float32 on the 0..255 scale (not modified)
 * @returns a new `[n, C, H, W]` float32 tensor on the 0..255 scale
 */
export function applyRandAugment(x: Tensor, plan: readonly RandAugmentImagePlan[]): Tensor {
  const [n] = checkBatch(x, "applyRandAugment");
  if (plan.length !== n) throw new RangeError(`applyRandAugment: the plan is for ${plan.length} images, the batch has ${n}`);
  const slots = n === 0 ? 0 : plan[0].ops.length;
  if (plan.some((p) => p.ops.length !== slots)) throw new RangeError("applyRandAugment: every image needs the same number of ops");
  let cur = x;
  for (let s = 0; s < slots; s++) {
    const next = torch.tidy(() =>
      applySlot(
        cur,
        plan.map((p) => p.ops[s]),
      ),
    );
    if (cur !== x) cur.dispose();
    cur = next;
  }
  const boxes = plan.map((p) => p.cutout);
  if (boxes.every((b) => b === null)) return cur === x ? x.clone() : cur;
  const out = cutout(cur, boxes);
  if (cur !== x) cur.dispose();
  return out;
}
