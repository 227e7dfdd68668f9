/**
 * Neural-network functions, as in `torch.nn.functional`. Images are `[N, C, H, W]`
 * float tensors; class scores (logits) are `[N, C]`; class targets are `[N]` int64.
 */
import { native } from "./native.js";
import { Tensor, wrap } from "./tensor.js";

/** A size given once for both spatial dimensions, or as `[h, w]`. */
export type Size2 = number | readonly [number, number];

function pair(v: Size2): [number, number] {
  return typeof v === "number" ? [v, v] : [v[0], v[1]];
}

/** Loss reduction over the batch: mean, sum, or none (one value per sample). */
export type Reduction = "mean" | "sum" | "none";

/** Options of {@link conv2d}. */
export interface Conv2dOptions {
  stride?: Size2;
  padding?: Size2;
  dilation?: Size2;
  groups?: number;
}

/**
 * 2-D convolution.
 * @param x `[N, C_in, H, W]`
 * @param weight `[C_out, C_in / groups, kH, kW]`
 * @param bias `[C_out]` or null
 * @returns `[N, C_out, H_out, W_out]`
 */
export function conv2d(x: Tensor, weight: Tensor, bias: Tensor | null = null, o: Conv2dOptions = {}): Tensor {
  return wrap(
    native.conv2d(x.handle, weight.handle, bias?.handle, pair(o.stride ?? 1), pair(o.padding ?? 0), pair(o.dilation ?? 1), o.groups ?? 1),
  );
}

/** Options of {@link batchNorm}. */
export interface BatchNormOptions {
  /** Use batch statistics and update the running ones (true), or use the running ones (false). */
  training: boolean;
  /** Weight of the new batch in the running averages (PyTorch's convention; default 0.1). */
  momentum?: number;
  eps?: number;
}

/**
 * Batch normalisation over `[N, C, ...]` per channel C (Ioffe & Szegedy, 2015).
 * In training mode `runningMean` and `runningVar` `[C]` are updated in place with
 * `r = (1 - momentum) * r + momentum * batch_stat` (unbiased batch variance).
 */
export function batchNorm(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  o: BatchNormOptions,
): Tensor {
  if (o.training) {
    // As PyTorch's F.batch_norm: with one value per channel the batch variance is
    // undefined and libtorch would write NaN into the running variance.
    const [n, , ...spatial] = x.shape;
    if (n * spatial.reduce((a, b) => a * b, 1) === 1) {
      throw new Error(`batchNorm: expected more than 1 value per channel when training, got input of shape [${x.shape.join(", ")}]`);
    }
  }
  return wrap(
    native.batchNorm(
      x.handle,
      weight?.handle,
      bias?.handle,
      runningMean?.handle,
      runningVar?.handle,
      o.training,
      o.momentum ?? 0.1,
      o.eps ?? 1e-5,
    ),
  );
}

/** `x @ weight^T + bias`: x `[..., in]`, weight `[out, in]`, bias `[out]` → `[..., out]`. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  return wrap(native.linear(x.handle, weight.handle, bias?.handle));
}

/** Matrix product with broadcasting. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return wrap(native.matmul(a.handle, b.handle));
}

/** Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)` when training. */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  return wrap(native.dropout(x.handle, p, training));
}

/** Zeroes whole channels of `[N, C, H, W]` with probability `p` when training. */
export function dropout2d(x: Tensor, p = 0.5, training = true): Tensor {
  return wrap(native.dropout2d(x.handle, p, training));
}

/** `max(x, 0)`. */
export function relu(x: Tensor): Tensor {
  return wrap(native.relu(x.handle));
}
/**
 * `max(x, 0)` in place (PyTorch's `relu_`), returning `x` itself. Saves a tensor's worth of
 * memory traffic; safe where nothing else reads `x`'s old values later, such as a BatchNorm or
 * linear output (their backward passes read their inputs, not their outputs).
 * @throws Error when `x` is a leaf that requires grad (libtorch refuses in-place ops on it)
 */
export function relu_(x: Tensor): Tensor {
  native.relu_(x.handle);
  return x;
}
/** `min(max(x, 0), 6)` (MobileNetV2). */
export function relu6(x: Tensor): Tensor {
  return wrap(native.relu6(x.handle));
}
/** `x` if positive, else `negativeSlope * x`. */
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor {
  return wrap(native.leakyRelu(x.handle, negativeSlope));
}
/**
 * PReLU (He et al. 2015, "Delving Deep into Rectifiers"): `x` if positive, else `weight * x`, with
 * one learned slope per channel (`weight` `[C]` against `x` `[N, C, ...]`) or one for all (`[1]`).
 * libtorch's `at::prelu`; under bfloat16 autocast it runs in bfloat16, as PyTorch's CPU autocast does.
 */
export function prelu(x: Tensor, weight: Tensor): Tensor {
  return wrap(native.prelu(x.handle, weight.handle));
}
/** `x` if positive, else `alpha * (e^x - 1)`. */
export function elu(x: Tensor, alpha = 1): Tensor {
  return wrap(native.elu(x.handle, alpha));
}
/** `x * sigmoid(x)` (also called swish). */
export function silu(x: Tensor): Tensor {
  return wrap(native.silu(x.handle));
}
/** Gaussian error linear unit; `approximate: "tanh"` uses the tanh formula. */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  return wrap(native.gelu(x.handle, approximate));
}
/** `1 / (1 + e^-x)`. */
export function sigmoid(x: Tensor): Tensor {
  return wrap(native.sigmoid(x.handle));
}
/** Hyperbolic tangent. */
export function tanh(x: Tensor): Tensor {
  return wrap(native.tanh(x.handle));
}
/** `x * relu6(x + 3) / 6` (MobileNetV3). */
export function hardswish(x: Tensor): Tensor {
  return wrap(native.hardswish(x.handle));
}
/** Softmax along `dim`. */
export function softmax(x: Tensor, dim: number): Tensor {
  return wrap(native.softmax(x.handle, dim));
}
/** Log-softmax along `dim`. */
export function logSoftmax(x: Tensor, dim: number): Tensor {
  return wrap(native.logSoftmax(x.handle, dim));
}

/** Options of the pooling functions. */
export interface PoolOptions {
  /** Defaults to the kernel size. */
  stride?: Size2;
  padding?: Size2;
  ceilMode?: boolean;
}

/** Max pooling over `[N, C, H, W]`. */
export function maxPool2d(x: Tensor, kernelSize: Size2, o: PoolOptions & { dilation?: Size2 } = {}): Tensor {
  return wrap(
    native.maxPool2d(
      x.handle,
      pair(kernelSize),
      pair(o.stride ?? kernelSize),
      pair(o.padding ?? 0),
      pair(o.dilation ?? 1),
      o.ceilMode ?? false,
    ),
  );
}

/** Average pooling over `[N, C, H, W]`. */
export function avgPool2d(x: Tensor, kernelSize: Size2, o: PoolOptions & { countIncludePad?: boolean } = {}): Tensor {
  return wrap(
    native.avgPool2d(
      x.handle,
      pair(kernelSize),
      pair(o.stride ?? kernelSize),
      pair(o.padding ?? 0),
      o.ceilMode ?? false,
      o.countIncludePad ?? true,
    ),
  );
}

/** Average pooling to a fixed output size `[outH, outW]`. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: Size2): Tensor {
  return wrap(native.adaptiveAvgPool2d(x.handle, pair(outputSize)));
}

/** Max pooling to a fixed output size `[outH, outW]`. */
export function adaptiveMaxPool2d(x: Tensor, outputSize: Size2): Tensor {
  return wrap(native.adaptiveMaxPool2d(x.handle, pair(outputSize)));
}

/** Options of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Per-class weights `[C]`. */
  weight?: Tensor | null;
  reduction?: Reduction;
  /** Targets equal to this are ignored (class-index targets only). */
  ignoreIndex?: number;
  /** Mixes the target with the uniform distribution (Szegedy et al., 2016). */
  labelSmoothing?: number;
}

/**
 * Cross-entropy of logits `[N, C]` against class indices `[N]` int64 or class
 * probabilities `[N, C]`; PyTorch's `F.cross_entropy`, including its weighted mean
 * (divided by the sum of the weights of the non-ignored targets).
 */
export function crossEntropy(logits: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  return wrap(
    native.crossEntropy(
      logits.handle,
      target.handle,
      o.weight?.handle,
      o.reduction ?? "mean",
      o.ignoreIndex ?? -100,
      o.labelSmoothing ?? 0,
    ),
  );
}

/** Negative log-likelihood of log-probabilities `[N, C]` against class indices `[N]`. */
export function nllLoss(
  logProbs: Tensor,
  target: Tensor,
  o: { weight?: Tensor | null; reduction?: Reduction; ignoreIndex?: number } = {},
): Tensor {
  return wrap(native.nllLoss(logProbs.handle, target.handle, o.weight?.handle, o.reduction ?? "mean", o.ignoreIndex ?? -100));
}

/** Mean squared error. */
export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  return wrap(native.mseLoss(input.handle, target.handle, reduction));
}

/** Binary cross-entropy on logits (numerically stable). */
export function binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  return wrap(native.bceWithLogits(logits.handle, target.handle, null, null, reduction));
}

/** KL divergence with `input` as log-probabilities (PyTorch's `F.kl_div`). */
export function klDiv(input: Tensor, target: Tensor, reduction: Reduction = "mean", logTarget = false): Tensor {
  return wrap(native.klDiv(input.handle, target.handle, reduction, logTarget));
}

/** Cosine similarity along `dim`. */
export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return wrap(native.cosineSimilarity(a.handle, b.handle, dim, eps));
}

/** `x / max(||x||_p, eps)` along `dim` (PyTorch's `F.normalize`). */
export function normalize(x: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  const n = x.norm(p, dim, true);
  const c = n.clamp(eps);
  const out = x.div(c);
  n.dispose();
  c.dispose();
  return out;
}

/** One-hot int64 encoding of class indices; `numClasses` -1 infers it. */
export function oneHot(indices: Tensor, numClasses = -1): Tensor {
  return wrap(native.oneHot(indices.handle, numClasses));
}

/**
 * Pads the last dimensions; `pad` lists (left, right, top, bottom, ...) as in PyTorch.
 * Modes other than constant need `[N, C, H, W]` input.
 */
export function pad(
  x: Tensor,
  padding: readonly number[],
  mode: "constant" | "reflect" | "replicate" | "circular" = "constant",
  value = 0,
): Tensor {
  return wrap(native.pad(x.handle, padding, mode, value));
}

/** Resizes `[N, C, H, W]` to `size` `[outH, outW]` pixels. */
export function interpolate(x: Tensor, size: Size2, mode: "nearest" | "bilinear" | "bicubic" = "nearest", alignCorners = false): Tensor {
  return wrap(native.interpolate(x.handle, pair(size), mode, alignCorners));
}

/**
 * Sampling grid `[N, H, W, 2]` for affine matrices `theta` `[N, 2, 3]` and an output
 * size `[N, C, H, W]`; coordinates in [-1, 1] (PyTorch's `F.affine_grid`).
 */
export function affineGrid(theta: Tensor, size: readonly [number, number, number, number], alignCorners = false): Tensor {
  return wrap(native.affineGrid(theta.handle, size, alignCorners));
}

/**
 * Samples `x` `[N, C, H, W]` at `grid` `[N, H', W', 2]` (x, y in [-1, 1]) → `[N, C, H', W']`.
 * PyTorch's `F.grid_sample`.
 */
export function gridSample(
  x: Tensor,
  grid: Tensor,
  mode: "bilinear" | "nearest" | "bicubic" = "bilinear",
  paddingMode: "zeros" | "border" | "reflection" = "zeros",
  alignCorners = false,
): Tensor {
  return wrap(native.gridSample(x.handle, grid.handle, mode, paddingMode, alignCorners));
}
