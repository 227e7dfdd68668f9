/**
 * The views of an unlabeled batch that FixMatch-style methods train on (Sohn et al. 2020;
 * GUIDE section 4): weak views (random crop with reflect padding, applied with probability
 * 0.5, and a horizontal flip) and strong views (RandAugment, 3 ops, then Cutout, then the
 * weak transform).
 *
 * Randomness is split from computation: {@link planViews} draws every random choice from a
 * seeded JS {@link Rng} (never from libtorch's generator) into a plain-data {@link ViewPlan};
 * {@link applyViews} turns a plan into tensors with batched torch ops. So the views of a batch
 * depend only on the Rng state, do not shift when a model draws random numbers, and a plan
 * can be drawn on the main thread and executed in a worker ({@link AugmentWorker} in
 * worker.ts) with the same result.
 */
import * as torch from "../torch/index.js";
import type { Tensor } from "../torch/index.js";
import type { Rng } from "../data/sampler.js";
import { applyRandAugment, planRandAugment, type RandAugmentImagePlan, type RandAugmentOptions } from "./randaugment.js";
import { applyWeak, cropFlip, planWeak, reflectPad, type WeakOptions, type WeakPlan } from "./weak.js";

/** Shape of an image batch: `[N, C, H, W]`, C = 1 (gray) or 3 (RGB). */
export type BatchShape = readonly [number, number, number, number];

/**
 * A uint8 image batch `[N, C, H, W]` (0 = black, 255 = white): a uint8 Tensor, or the
 * row-major bytes with their shape.
 */
export type BatchInput = Tensor | { data: Uint8Array; shape: BatchShape };

/** How many views to make, and how. */
export interface ViewOptions {
  /** Number of weak views (default 2, as the reference FER method). */
  weak?: number;
  /** Number of strong views (default 1). */
  strong?: number;
  /** Options of the weak transform, used alone and at the end of the strong views. */
  weakOptions?: WeakOptions;
  /** Options of RandAugment + Cutout. */
  randAugment?: RandAugmentOptions;
}

/** Every random draw of the views of one batch (plain data: JSON- and structured-clone-safe). */
export interface ViewPlan {
  shape: BatchShape;
  weak: WeakPlan[];
  strong: { randAugment: RandAugmentImagePlan[]; weak: WeakPlan }[];
}

/** The views of a batch: float32 `[N, C, H, W]` tensors with values in [0, 1] (pixel / 255). */
export interface Views {
  weak: Tensor[];
  strong: Tensor[];
}

function count(v: number | undefined, dflt: number, what: string): number {
  const k = v ?? dflt;
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`views: ${what} must be a non-negative integer, got ${k}`);
  return k;
}

/**
 * Checks a batch shape.
 * @throws RangeError unless it is `[N, C, H, W]` with C = 1 or 3 and positive sizes
 */
export function checkBatchShape(shape: readonly number[]): BatchShape {
  if (shape.length !== 4 || !shape.every((d) => Number.isInteger(d) && d >= 0))
    throw new RangeError(`views: expected a batch shape [N, C, H, W], got [${shape.join(", ")}]`);
  const [n, c, h, w] = shape;
  if (c !== 1 && c !== 3) throw new RangeError(`views: expected 1 (gray) or 3 (RGB) channels, got ${c}`);
  if (h < 1 || w < 1) throw new RangeError(`views: empty images ${h}x${w}`);
  return [n, c, h, w];
}

/** The shape of a batch input. */
export function batchShape(batch: BatchInput): BatchShape {
  return checkBatchShape(batch instanceof torch.Tensor ? batch.shape : batch.shape);
}

/**
 * A batch as a float32 tensor on the 0..255 scale (the scale the RandAugment ops work on).
 * @throws TypeError when a Tensor is not uint8 or the byte count does not match the shape
 */
export function toPixelScale(batch: BatchInput): Tensor {
  const shape = batchShape(batch);
  if (batch instanceof torch.Tensor) {
    if (batch.dtype !== "uint8") throw new TypeError(`views: expected a uint8 batch, got ${batch.dtype}`);
    return batch.float();
  }
  if (!(batch.data instanceof Uint8Array)) throw new TypeError("views: batch.data must be a Uint8Array");
  const need = shape.reduce((a, b) => a * b, 1);
  if (batch.data.length !== need) throw new RangeError(`views: shape [${shape.join(", ")}] needs ${need} bytes, got ${batch.data.length}`);
  return torch.fromArray(batch.data, shape, "float32");
}

/**
 * Draws the views of a batch of `shape` from `rng`: the weak views in order, then for each
 * strong view its RandAugment + Cutout draws for every image and its weak-transform draws.
 * The Rng advances by the same amount for the same shape, options and state.
 */
export function planViews(shape: readonly number[], rng: Rng, o: ViewOptions = {}): ViewPlan {
  const [n, , h, w] = checkBatchShape(shape);
  const nWeak = count(o.weak, 2, "weak");
  const nStrong = count(o.strong, 1, "strong");
  const weak = Array.from({ length: nWeak }, () => planWeak(n, h, w, rng, o.weakOptions));
  const strong = Array.from({ length: nStrong }, () => ({
    randAugment: planRandAugment(n, h, w, rng, o.randAugment),
    weak: planWeak(n, h, w, rng, o.weakOptions),
  }));
  return { shape: checkBatchShape(shape), weak, strong };
}

/**
 * Computes the views of a plan from {@link planViews}. The input is converted and scaled
 * once, and the padded batch is shared by all weak views; each strong view is RandAugment
 * (with Cutout) on the 0..255 scale, scaled to [0, 1], then its weak transform.
 * @param batch uint8 `[N, C, H, W]`, the shape the plan was drawn for
 * @returns float32 `[N, C, H, W]` views in [0, 1]; the caller owns (disposes) them
 */
export function applyViews(batch: BatchInput, plan: ViewPlan): Views {
  const shape = batchShape(batch);
  if (shape.some((d, i) => d !== plan.shape[i]))
    throw new RangeError(`views: the plan is for a batch of [${plan.shape.join(", ")}], got [${shape.join(", ")}]`);
  return torch.tidy(() =>
    torch.noGrad(() => {
      const pixels = toPixelScale(batch);
      const unit = pixels.div(255);
      const padded = new Map<number, Tensor>();
      const weak = plan.weak.map((p) => {
        let pb = padded.get(p.pad);
        if (pb === undefined) padded.set(p.pad, (pb = reflectPad(unit, p.pad)));
        return cropFlip(pb, p);
      });
      const strong = plan.strong.map((s) => {
        const augmented = applyRandAugment(pixels, s.randAugment);
        const scaled = augmented.div(255);
        augmented.dispose();
        return applyWeak(scaled, s.weak);
      });
      return { weak, strong };
    }),
  );
}

/**
 * The weak and strong views of a uint8 batch, drawn from `rng`: {@link planViews} then
 * {@link applyViews}.
 *
 *     const rng = new Rng(seed);
 *     const { weak: [w1, w2], strong: [s] } = makeViews(batch, rng, { weak: 2, strong: 1 });
 *
 * @param batch uint8 `[N, C, H, W]`
 * @returns float32 `[N, C, H, W]` views with values in [0, 1]; the caller owns them
 */
export function makeViews(batch: BatchInput, rng: Rng, o: ViewOptions = {}): Views {
  return applyViews(batch, planViews(batchShape(batch), rng, o));
}
