/**
 * The layers the model zoo needs, with PyTorch's parameter names, shapes and
 * default initialisation (so a `state_dict` loads into the matching torch.nn model).
 */
import { empty, full, ones, zeros } from "../creation.js";
import * as F from "../functional.js";
import * as distributed from "../distributed.js";
import { noGrad } from "../runtime.js";
import type { Tensor } from "../tensor.js";
import { fans, kaimingUniform_, uniform_ } from "./init.js";
import { Module } from "./module.js";

/** PyTorch's default for Conv and Linear: Kaiming uniform with a = sqrt(5), bias U(±1/sqrt(fan_in)). */
function resetLikeTorch(weight: Tensor, bias: Tensor | null): void {
  kaimingUniform_(weight, Math.sqrt(5));
  if (bias !== null) {
    const bound = 1 / Math.sqrt(fans(weight).fanIn);
    uniform_(bias, -bound, bound);
  }
}

/** Options of {@link Conv2d}. */
export interface Conv2dConfig extends F.Conv2dOptions {
  /** Add a learnable bias (default true). */
  bias?: boolean;
}

/** 2-D convolution: `[N, C_in, H, W]` → `[N, C_out, H_out, W_out]`. Parameters `weight`, `bias`. */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly options: F.Conv2dOptions;

  constructor(inChannels: number, outChannels: number, kernelSize: F.Size2, config: Conv2dConfig = {}) {
    super();
    const [kh, kw] = typeof kernelSize === "number" ? [kernelSize, kernelSize] : kernelSize;
    const groups = config.groups ?? 1;
    if (inChannels % groups !== 0 || outChannels % groups !== 0) {
      throw new Error(`Conv2d: channels ${inChannels} -> ${outChannels} are not divisible by groups=${groups}`);
    }
    this.weight = this.registerParameter("weight", empty([outChannels, inChannels / groups, kh, kw]));
    this.bias = config.bias === false ? null : this.registerParameter("bias", empty([outChannels]));
    resetLikeTorch(this.weight, this.bias);
    this.options = { stride: config.stride, padding: config.padding, dilation: config.dilation, groups };
  }

  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, this.options);
  }
}

/** `y = x W^T + b`: `[..., in]` → `[..., out]`. Parameters `weight` `[out, in]`, `bias` `[out]`. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(inFeatures: number, outFeatures: number, bias = true) {
    super();
    this.weight = this.registerParameter("weight", empty([outFeatures, inFeatures]));
    this.bias = bias ? this.registerParameter("bias", empty([outFeatures])) : null;
    resetLikeTorch(this.weight, this.bias);
  }

  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

/** Options of {@link BatchNorm2d}. */
export interface BatchNormConfig {
  eps?: number;
  /** Weight of each new batch in the running statistics (default 0.1, PyTorch's convention). */
  momentum?: number;
  /** Learnable scale and shift (default true). */
  affine?: boolean;
  /** Keep running statistics for evaluation (default true). */
  trackRunningStats?: boolean;
}

/**
 * Batch normalisation of `[N, C, H, W]` per channel. Parameters `weight`, `bias`;
 * buffers `running_mean`, `running_var`, `num_batches_tracked` (int64), as in PyTorch. With
 * `sync` set ({@link convertSyncBatchNorm}) and a process group joined, training mode normalises
 * over every rank's batch together (PyTorch's SyncBatchNorm).
 */
export class BatchNorm2d extends Module {
  /** Normalise over all ranks' batches in training mode (when in a process group). */
  sync = false;
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  readonly numBatchesTracked: Tensor | null;
  readonly eps: number;
  readonly momentum: number;

  constructor(numFeatures: number, config: BatchNormConfig = {}) {
    super();
    this.eps = config.eps ?? 1e-5;
    this.momentum = config.momentum ?? 0.1;
    const affine = config.affine ?? true;
    this.weight = affine ? this.registerParameter("weight", ones([numFeatures])) : null;
    this.bias = affine ? this.registerParameter("bias", zeros([numFeatures])) : null;
    const track = config.trackRunningStats ?? true;
    this.runningMean = track ? this.registerBuffer("running_mean", zeros([numFeatures])) : null;
    this.runningVar = track ? this.registerBuffer("running_var", ones([numFeatures])) : null;
    this.numBatchesTracked = track ? this.registerBuffer("num_batches_tracked", zeros([], "int64")) : null;
  }

  forward(x: Tensor): Tensor {
    const useBatchStats = this.training || this.runningMean === null;
    if (this.training && this.numBatchesTracked !== null) noGrad(() => this.numBatchesTracked?.add_(1));
    if (this.sync && this.training && distributed.isInitialized())
      return distributed.syncBatchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias, {
        momentum: this.momentum,
        eps: this.eps,
      });
    return F.batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias, {
      training: useBatchStats,
      momentum: this.momentum,
      eps: this.eps,
    });
  }
}

/**
 * Batch norm over `[N, C]` (or `[N, C, L]`) features: PyTorch's `nn.BatchNorm1d`, the same
 * parameters, buffers and statistics as {@link BatchNorm2d} (libtorch's batch norm takes any rank).
 */
export class BatchNorm1d extends BatchNorm2d {}

/**
 * Makes every batch norm of `module` synchronised across the ranks of the process group (in place,
 * as PyTorch's `SyncBatchNorm.convert_sync_batchnorm` returns a converted copy).
 * @returns the number of batch norms converted
 */
export function convertSyncBatchNorm(module: Module): number {
  let n = 0;
  for (const [, m] of module.namedModules())
    if (m instanceof BatchNorm2d) {
      m.sync = true;
      n++;
    }
  return n;
}

/** Dropout with probability `p`, active only in training mode. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new RangeError(`Dropout: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training);
  }
}

/** Channel dropout of `[N, C, H, W]`, active only in training mode. */
export class Dropout2d extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new RangeError(`Dropout2d: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return F.dropout2d(x, this.p, this.training);
  }
}

/** `max(x, 0)`; with `inplace`, written over its input and returning it (`nn.ReLU(inplace=True)`). */
export class ReLU extends Module {
  constructor(readonly inplace = false) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.inplace ? F.relu_(x) : F.relu(x);
  }
}

/** `min(max(x, 0), 6)`. */
export class ReLU6 extends Module {
  forward(x: Tensor): Tensor {
    return F.relu6(x);
  }
}

/**
 * PReLU with `numParameters` learned negative slopes (1, or one per channel), each starting at
 * `init` (PyTorch's `nn.PReLU`: parameter `weight` `[numParameters]`).
 */
export class PReLU extends Module {
  readonly weight: Tensor;
  constructor(numParameters = 1, init = 0.25) {
    super();
    this.weight = this.registerParameter("weight", full([numParameters], init));
  }
  forward(x: Tensor): Tensor {
    return F.prelu(x, this.weight);
  }
}

/** Leaky ReLU with the given negative slope. */
export class LeakyReLU extends Module {
  constructor(readonly negativeSlope = 0.01) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.leakyRelu(x, this.negativeSlope);
  }
}

/** `x * sigmoid(x)`. */
export class SiLU extends Module {
  forward(x: Tensor): Tensor {
    return F.silu(x);
  }
}

/** Gaussian error linear unit. */
export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return F.gelu(x);
  }
}

/** Returns its input. */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** Flattens dimensions `startDim..endDim` (default: all but the batch dimension). */
export class Flatten extends Module {
  constructor(
    readonly startDim = 1,
    readonly endDim = -1,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.flatten(this.startDim, this.endDim);
  }
}

/** Max pooling of `[N, C, H, W]`. */
export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: F.Size2,
    readonly options: F.PoolOptions = {},
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, this.kernelSize, this.options);
  }
}

/** Average pooling of `[N, C, H, W]`. */
export class AvgPool2d extends Module {
  constructor(
    readonly kernelSize: F.Size2,
    readonly options: F.PoolOptions = {},
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.avgPool2d(x, this.kernelSize, this.options);
  }
}

/** Average pooling to a fixed `[outH, outW]`, e.g. 1 for global pooling. */
export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: F.Size2) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.adaptiveAvgPool2d(x, this.outputSize);
  }
}

/**
 * Runs children in order; they are named "0", "1", ... as in PyTorch, so a
 * parameter of the third child is `2.weight`.
 */
export class Sequential extends Module {
  readonly layers: Module[];

  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((m, i) => this.registerModule(String(i), m));
  }

  /**
   * Applies every layer, disposing the intermediate activations that autograd does
   * not need to keep (autograd holds its own references to what it saved).
   */
  forward(x: Tensor): Tensor {
    let out = x;
    for (const layer of this.layers) {
      const next = layer.forward(out);
      if (out !== x && next !== out) out.dispose();
      out = next;
    }
    return out;
  }
}

/** Holds modules under the names "0", "1", ...; it has no forward of its own. */
export class ModuleList extends Module {
  readonly items: Module[];

  constructor(items: Module[] = []) {
    super();
    this.items = [];
    for (const m of items) this.append(m);
  }

  /** Adds a module under the next index. */
  append(m: Module): this {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return this;
  }

  forward(): Tensor {
    throw new Error("ModuleList has no forward; call its items");
  }
}
