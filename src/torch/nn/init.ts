/**
 * Weight initialisation, in place, drawing from the global generator (seed it with
 * `manualSeed`). Formulas as in `torch.nn.init` (He et al. 2015; Glorot & Bengio 2010).
 */
import { noGrad } from "../runtime.js";
import type { Tensor } from "../tensor.js";

/** Fan-in and fan-out of a weight `[out, in, ...kernel]`. */
export function fans(w: Tensor): { fanIn: number; fanOut: number } {
  const [out, inp, ...kernel] = w.shape;
  if (out === undefined || inp === undefined)
    throw new Error(`init: need a weight with at least 2 dimensions, got [${w.shape.join(", ")}]`);
  const receptive = kernel.reduce((a, b) => a * b, 1);
  return { fanIn: inp * receptive, fanOut: out * receptive };
}

/** Gain for a nonlinearity: `sqrt(2 / (1 + a^2))` for (leaky) ReLU, 1 for linear. */
export function calculateGain(nonlinearity: "relu" | "leaky_relu" | "linear" | "tanh" | "sigmoid", a = 0): number {
  if (nonlinearity === "relu") return Math.SQRT2;
  if (nonlinearity === "leaky_relu") return Math.sqrt(2 / (1 + a * a));
  if (nonlinearity === "tanh") return 5 / 3;
  return 1;
}

/** U(-bound, bound) with `bound = gain * sqrt(3 / fan)` (Kaiming uniform). */
export function kaimingUniform_(
  w: Tensor,
  a = 0,
  mode: "fan_in" | "fan_out" = "fan_in",
  nonlinearity: "relu" | "leaky_relu" = "leaky_relu",
): Tensor {
  const f = fans(w);
  const bound = calculateGain(nonlinearity, a) * Math.sqrt(3 / (mode === "fan_in" ? f.fanIn : f.fanOut));
  return noGrad(() => w.uniform_(-bound, bound));
}

/** N(0, std^2) with `std = gain / sqrt(fan)` (Kaiming normal, torchvision's ResNet default with fan_out). */
export function kaimingNormal_(
  w: Tensor,
  a = 0,
  mode: "fan_in" | "fan_out" = "fan_in",
  nonlinearity: "relu" | "leaky_relu" = "leaky_relu",
): Tensor {
  const f = fans(w);
  const std = calculateGain(nonlinearity, a) / Math.sqrt(mode === "fan_in" ? f.fanIn : f.fanOut);
  return noGrad(() => w.normal_(0, std));
}

/** U(-a, a) with `a = gain * sqrt(6 / (fan_in + fan_out))` (Glorot uniform). */
export function xavierUniform_(w: Tensor, gain = 1): Tensor {
  const f = fans(w);
  const a = gain * Math.sqrt(6 / (f.fanIn + f.fanOut));
  return noGrad(() => w.uniform_(-a, a));
}

/** U(low, high). */
export function uniform_(w: Tensor, low: number, high: number): Tensor {
  return noGrad(() => w.uniform_(low, high));
}

/** N(mean, std^2). */
export function normal_(w: Tensor, mean = 0, std = 1): Tensor {
  return noGrad(() => w.normal_(mean, std));
}

/** Fills with `value`. */
export function constant_(w: Tensor, value: number): Tensor {
  return noGrad(() => w.fill_(value));
}
