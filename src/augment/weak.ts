/**
 * The weak view of FixMatch (Sohn et al. 2020) as the reference FER code builds it with
 * TorchVision: `RandomApply([RandomCrop(side, padding)], p = 0.5)` then
 * `RandomHorizontalFlip(p = 0.5)`, with reflect padding of 1/8 of the side (6 px at 48).
 * Crop and flip of the whole batch are one `gather` from the padded batch, so values are
 * copied exactly.
 */
import * as torch from "../torch/index.js";
import { F, type Tensor } from "../torch/index.js";
import type { Rng } from "../data/sampler.js";

/** Options of the weak view. */
export interface WeakOptions {
  /** Reflect padding as a fraction of the (shorter) side, rounded to pixels (default 0.125: 6 px at 48). */
  padFraction?: number;
  /** Probability that an image is randomly cropped (default 0.5); otherwise it keeps its position. */
  cropProbability?: number;
  /** Probability that an image is mirrored left-right (default 0.5). */
  flipProbability?: number;
}

/**
 * Where one image's `H` x `W` window starts in the padded `(H + 2 pad)` x `(W + 2 pad)`
 * image, in pixels: `dx, dy` in `[0, 2 pad]`; `(pad, pad)` is the uncropped image. `flip`
 * mirrors the window left-right.
 */
export interface WeakImagePlan {
  dx: number;
  dy: number;
  flip: boolean;
}

/** The draws of a weak view of a batch: the padding in pixels and one window per image. */
export interface WeakPlan {
  pad: number;
  images: WeakImagePlan[];
}

/** The reflect padding in pixels for an `h` x `w` image: `round(padFraction * min(h, w))`. */
export function weakPadding(h: number, w: number, padFraction = 0.125): number {
  if (!(padFraction >= 0)) throw new RangeError(`weak view: padFraction must be >= 0, got ${padFraction}`);
  const pad = Math.round(padFraction * Math.min(h, w));
  if (pad >= Math.min(h, w)) throw new RangeError(`weak view: reflect padding of ${pad} px needs images larger than ${h}x${w}`);
  return pad;
}

/**
 * Draws the weak view of `n` images of `h` x `w` from `rng`, image by image: one number for
 * "crop?" (`rng.next() < cropProbability`), if cropping the top then the left offset
 * (`rng.int(2 pad + 1)` each, as TorchVision's `RandomCrop.get_params`), then one number for
 * "flip?" (`rng.next() < flipProbability`).
 */
export function planWeak(n: number, h: number, w: number, rng: Rng, o: WeakOptions = {}): WeakPlan {
  const pad = weakPadding(h, w, o.padFraction ?? 0.125);
  const pCrop = o.cropProbability ?? 0.5;
  const pFlip = o.flipProbability ?? 0.5;
  for (const [k, p] of [
    ["cropProbability", pCrop],
    ["flipProbability", pFlip],
  ] as const) {
    if (!(p >= 0 && p <= 1)) throw new RangeError(`weak view: ${k} must be in [0, 1], got ${p}`);
  }
  const images = Array.from({ length: n }, () => {
    let dx = pad;
    let dy = pad;
    if (rng.next() < pCrop) {
      dy = rng.int(2 * pad + 1);
      dx = rng.int(2 * pad + 1);
    }
    return { dx, dy, flip: rng.next() < pFlip };
  });
  return { pad, images };
}

/**
 * Reflect padding (mirror without repeating the edge, PyTorch's `"reflect"`) on all four sides.
 * @param x `[n, C, H, W]` float
 * @returns `[n, C, H + 2 pad, W + 2 pad]` (a copy, also when pad is 0)
 */
export function reflectPad(x: Tensor, pad: number): Tensor {
  return pad === 0 ? x.clone() : F.pad(x, [pad, pad, pad, pad], "reflect");
}

/**
 * Cuts each image's window out of the padded batch and mirrors it when asked, in one gather.
 * @param padded `[n, C, H + 2 pad, W + 2 pad]` (from {@link reflectPad})
 * @returns `[n, C, H, W]`, same dtype
 */
export function cropFlip(padded: Tensor, plan: WeakPlan): Tensor {
  const [n, c, hp, wp] = padded.shape;
  const { pad, images } = plan;
  const h = hp - 2 * pad;
  const w = wp - 2 * pad;
  if (images.length !== n) throw new RangeError(`weak view: the plan is for ${images.length} images, the batch has ${n}`);
  const rowStart = new Int32Array(n * h);
  const col = new Int32Array(n * w);
  images.forEach(({ dx, dy, flip }, i) => {
    if (!(Number.isInteger(dx) && Number.isInteger(dy) && dx >= 0 && dy >= 0 && dx <= 2 * pad && dy <= 2 * pad))
      throw new RangeError(`weak view: image ${i} has window offset (${dx}, ${dy}) outside [0, ${2 * pad}]`);
    for (let r = 0; r < h; r++) rowStart[i * h + r] = (dy + r) * wp;
    for (let j = 0; j < w; j++) col[i * w + j] = dx + (flip ? w - 1 - j : j);
  });
  return torch.tidy(() => {
    const index = torch
      .fromArray(rowStart, [n, 1, h, 1], "int64")
      .add(torch.fromArray(col, [n, 1, 1, w], "int64"))
      .view(n, 1, h * w)
      .expand(n, c, h * w);
    return padded
      .reshape(n, c, hp * wp)
      .gather(2, index)
      .view(n, c, h, w);
  });
}

/**
 * The weak view of a batch for a plan from {@link planWeak}.
 * @param x `[n, C, H, W]` float (any scale; values are only moved)
 * @returns `[n, C, H, W]`
 */
export function applyWeak(x: Tensor, plan: WeakPlan): Tensor {
  return torch.tidy(() => cropFlip(reflectPad(x, plan.pad), plan));
}
