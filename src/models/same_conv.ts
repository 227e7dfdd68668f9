/**
 * Convolutions with TensorFlow's "SAME" padding, for networks imported from TensorFlow models:
 * the output has `ceil(size / stride)` rows and columns, and when the padding a dimension needs
 * is odd (a stride-2 layer on an even size) the extra row or column goes after, not before
 * (`tensorflow/core/framework/kernel_shape_util.cc`). PyTorch's symmetric `padding=1` samples the
 * image one pixel off there, which changes every later activation.
 */
import { F, nn, type Tensor } from "../torch/index.js";

/** TensorFlow's SAME padding of one dimension: `[before, after]` pixels. */
export function samePadding(size: number, kernel: number, stride: number, dilation = 1): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** `nn.Conv2d` (same parameters, names and initialisation) with TensorFlow's SAME padding for any input size. */
export class SameConv2d extends nn.Conv2d {
  readonly #kernel: number;
  readonly #stride: number;

  /** A square `kernel` with `stride` (1 or 2) and `groups`, with bias. */
  constructor(inChannels: number, outChannels: number, kernel: number, stride = 1, groups = 1) {
    super(inChannels, outChannels, kernel, { stride, padding: 0, groups });
    this.#kernel = kernel;
    this.#stride = stride;
  }

  /** `[N, C_in, H, W]` → `[N, C_out, ceil(H / stride), ceil(W / stride)]`. */
  override forward(x: Tensor): Tensor {
    const [t, b] = samePadding(x.shape[2], this.#kernel, this.#stride);
    const [l, r] = samePadding(x.shape[3], this.#kernel, this.#stride);
    if (t === b && l === r) return F.conv2d(x, this.weight, this.bias, { ...this.options, padding: [t, l] });
    const padded = F.pad(x, [l, r, t, b]);
    const out = F.conv2d(padded, this.weight, this.bias, this.options);
    padded.dispose();
    return out;
  }
}
