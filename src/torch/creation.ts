/**
 * Creating tensors: from JavaScript data, constant fills, ranges, seeded random
 * samples, and joining tensors. Random functions draw from libtorch's global CPU
 * generator, so {@link manualSeed} makes them repeat exactly.
 */
import { native } from "./native.js";
import { Tensor, wrap, type DType, type Operand, type TypedArray } from "./tensor.js";

/** Nested arrays of numbers, e.g. `[[1, 2], [3, 4]]`. */
export type NestedNumbers = number | boolean | readonly NestedNumbers[];

function inferShape(data: NestedNumbers): number[] {
  const shape: number[] = [];
  let level: NestedNumbers = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = (level as readonly NestedNumbers[])[0] ?? 0;
  }
  return shape;
}

function flattenNested(data: NestedNumbers, shape: readonly number[], depth: number, out: number[]): void {
  if (depth === shape.length) {
    if (typeof data === "boolean") out.push(data ? 1 : 0);
    else if (typeof data === "number") out.push(data);
    else throw new TypeError("tensor: ragged nested array (rows of different lengths)");
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new TypeError("tensor: ragged nested array (rows of different lengths)");
  }
  for (const d of data as readonly NestedNumbers[]) flattenNested(d, shape, depth + 1, out);
}

/**
 * Creates a tensor from a typed array and a shape (the data is copied).
 * @param data row-major elements; its type sets the source dtype
 * @param shape sizes whose product equals `data.length`
 * @param dtype converts to this dtype after the copy (e.g. Uint8Array to "bool")
 * @throws Error when the shape does not match the length; TypeError for other array kinds
 */
export function fromArray(data: TypedArray, shape: readonly number[], dtype?: DType): Tensor {
  return wrap(native.fromArray(data, shape, dtype));
}

/**
 * Creates a tensor from raw little-endian bytes of the given dtype (as stored by safetensors).
 * @throws Error when the byte length does not match shape and dtype
 */
export function fromBytes(bytes: Uint8Array, shape: readonly number[], dtype: DType): Tensor {
  return wrap(native.fromBytes(bytes, shape, dtype));
}

/**
 * Creates a tensor from a number, nested arrays of numbers, or a typed array.
 * Numbers become float32 unless `dtype` says otherwise; a BigInt64Array becomes int64.
 * @param shape required for typed arrays with more than one dimension
 */
export function tensor(data: NestedNumbers | TypedArray, options: { dtype?: DType; shape?: readonly number[] } = {}): Tensor {
  if (ArrayBuffer.isView(data)) {
    return fromArray(data, options.shape ?? [data.length], options.dtype);
  }
  const shape = options.shape ?? inferShape(data);
  const flat: number[] = [];
  flattenNested(data, inferShape(data), 0, flat);
  const dtype = options.dtype ?? "float32";
  if (dtype === "int64")
    return fromArray(
      BigInt64Array.from(flat, (v) => BigInt(Math.trunc(v))),
      shape,
    );
  return fromArray(Float64Array.from(flat), shape, dtype);
}

/** Uninitialised memory of the given shape. */
export function empty(shape: readonly number[], dtype: DType = "float32"): Tensor {
  return wrap(native.empty(shape, dtype));
}
/** All zeros. */
export function zeros(shape: readonly number[], dtype: DType = "float32"): Tensor {
  return wrap(native.zeros(shape, dtype));
}
/** All ones. */
export function ones(shape: readonly number[], dtype: DType = "float32"): Tensor {
  return wrap(native.ones(shape, dtype));
}
/** Every element equal to `value`. */
export function full(shape: readonly number[], value: number, dtype: DType = "float32"): Tensor {
  return wrap(native.full(shape, value, dtype));
}
/** Zeros with the shape and dtype of `x`. */
export function zerosLike(x: Tensor): Tensor {
  return wrap(native.zerosLike(x.handle));
}
/** Ones with the shape and dtype of `x`. */
export function onesLike(x: Tensor): Tensor {
  return wrap(native.onesLike(x.handle));
}
/** `value` everywhere, with the shape and dtype of `x`. */
export function fullLike(x: Tensor, value: number): Tensor {
  return wrap(native.fullLike(x.handle, value));
}
/** `start, start+step, ... < end`; int64 by default. */
export function arange(start: number, end: number, step = 1, dtype: DType = "int64"): Tensor {
  return wrap(native.arange(start, end, step, dtype));
}
/** `steps` evenly spaced values from `start` to `end` inclusive. */
export function linspace(start: number, end: number, steps: number, dtype: DType = "float32"): Tensor {
  return wrap(native.linspace(start, end, steps, dtype));
}
/** The `n` x `n` identity matrix. */
export function eye(n: number, dtype: DType = "float32"): Tensor {
  return wrap(native.eye(n, dtype));
}
/** Samples of U[0, 1). */
export function rand(shape: readonly number[], dtype: DType = "float32"): Tensor {
  return wrap(native.rand(shape, dtype));
}
/** Samples of N(0, 1). */
export function randn(shape: readonly number[], dtype: DType = "float32"): Tensor {
  return wrap(native.randn(shape, dtype));
}
/** Integers uniformly drawn from `[low, high)`. */
export function randint(low: number, high: number, shape: readonly number[], dtype: DType = "int64"): Tensor {
  return wrap(native.randint(low, high, shape, dtype));
}
/** A random permutation of `0 .. n-1`. */
export function randperm(n: number, dtype: DType = "int64"): Tensor {
  return wrap(native.randperm(n, dtype));
}
/**
 * 0/1 samples of Bernoulli: with probabilities in [0, 1] taken from `input`, or,
 * when `probability` is given, with that probability for every element of `input`'s shape.
 */
export function bernoulli(input: Tensor, probability?: number): Tensor {
  return wrap(probability === undefined ? native.bernoulli(input.handle) : native.bernoulli(input.handle, probability));
}
/** `numSamples` indices per row drawn from the (unnormalised) weights in `probs`. */
export function multinomial(probs: Tensor, numSamples: number, replacement = false): Tensor {
  return wrap(native.multinomial(probs.handle, numSamples, replacement));
}
/** Concatenates tensors along an existing dimension. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return wrap(
    native.cat(
      tensors.map((t) => t.handle),
      dim,
    ),
  );
}
/** Stacks same-shaped tensors along a new dimension. */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return wrap(
    native.stack(
      tensors.map((t) => t.handle),
      dim,
    ),
  );
}
/** `condition ? x : y` elementwise; `x` and `y` may be numbers. */
export function where(condition: Tensor, x: Operand, y: Operand): Tensor {
  return wrap(native.where(condition.handle, x instanceof Tensor ? x.handle : x, y instanceof Tensor ? y.handle : y));
}
