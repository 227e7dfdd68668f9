/**
 * Tensor: a typed TypeScript face over a libtorch tensor.
 *
 * Methods follow PyTorch's names and semantics (camelCase where PyTorch uses
 * snake_case; a trailing `_` marks an in-place op, which returns `this`). Every
 * method that returns a new tensor allocates native memory: dispose it, or create
 * it inside {@link tidy}. Errors from libtorch (shape mismatches, bad dtypes) are
 * thrown as `Error` with libtorch's message; wrong argument types as `TypeError`.
 */
import { native, type Handle } from "./native.js";
import { track, type Tracked } from "./scope.js";

/** Element types, named as in PyTorch without the `torch.` prefix. */
export type DType = "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** Typed arrays a tensor can be created from or read into. */
export type TypedArray = Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array;

/** A dimension list or a single dimension. */
export type Dims = number | readonly number[];

/**
 * How a 4-D tensor's elements are ordered in memory; the shape is `[N, C, H, W]` either
 * way. "contiguous": NCHW row-major, the default; "channels_last": NHWC order, which
 * libtorch's CPU convolutions (oneDNN) run faster on.
 */
export type MemoryFormat = "contiguous" | "channels_last";

/** A second operand: another tensor or a number broadcast to every element. */
export type Operand = Tensor | number;

/** A tensor of any shape and dtype, backed by libtorch CPU memory. */
export class Tensor implements Tracked {
  /** @internal */ scope: Set<Tracked> | null = null;
  #handle: Handle | null;
  #shape: readonly number[] | null = null;
  #dtype: DType | null = null;

  private constructor(handle: Handle) {
    this.#handle = handle;
    track(this);
  }

  /** @internal Wraps a handle returned by the binding. */
  static fromHandle(handle: Handle): Tensor {
    return new Tensor(handle);
  }

  /**
   * The native handle.
   * @throws Error when the tensor was disposed.
   */
  get handle(): Handle {
    if (this.#handle === null) throw new Error("Tensor used after dispose()");
    return this.#handle;
  }

  /** Sizes of each dimension, e.g. `[N, C, H, W]`. */
  get shape(): readonly number[] {
    const h = this.handle; // throws after dispose, even when the shape is cached
    this.#shape ??= Object.freeze(native.shape(h) as number[]);
    return this.#shape;
  }

  /** Element type. */
  get dtype(): DType {
    const h = this.handle;
    this.#dtype ??= native.dtype(h) as DType;
    return this.#dtype;
  }

  /** Device string; always `"cpu"` in this build. */
  get device(): string {
    return native.device(this.handle) as string;
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }

  /** Number of elements. */
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Whether the native memory was released. */
  get isDisposed(): boolean {
    return this.#handle === null;
  }

  /** Releases the native memory now. Safe to call twice. */
  dispose(): void {
    if (this.#handle === null) return;
    native.dispose(this.#handle);
    this.#handle = null;
    this.scope?.delete(this);
    this.scope = null;
  }

  /** Lets `using t = ...` dispose the tensor at the end of the block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** A short description with shape and dtype (values are not printed). */
  toString(): string {
    return this.#handle === null ? "Tensor(disposed)" : `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype})`;
  }

  // ---------------------------------------------------------------- read-back

  /**
   * Copies the elements into a new typed array in row-major order: Float32Array for
   * float32 (and float16/bfloat16, converted), Float64Array, Int32Array, BigInt64Array
   * for int64, Uint8Array for uint8 and bool (0/1).
   */
  toArray(): TypedArray {
    return native.toArray(this.handle) as TypedArray;
  }

  /** The elements as plain numbers (int64 converted with `Number`). */
  toNumbers(): number[] {
    const a = this.toArray();
    return a instanceof BigInt64Array ? Array.from(a, Number) : Array.from(a);
  }

  /** The raw little-endian bytes of the elements, row-major (as safetensors stores them). */
  toBytes(): Buffer {
    return native.toBytes(this.handle) as Buffer;
  }

  /**
   * The value of a one-element tensor.
   * @throws Error when the tensor has more than one element.
   */
  item(): number {
    const v = native.item(this.handle) as number | boolean;
    return typeof v === "boolean" ? Number(v) : v;
  }

  // ------------------------------------------------------- copies and views

  /** A copy with its own memory (contiguous). Keeps the autograd graph. */
  clone(): Tensor {
    return wrap(native.clone(this.handle));
  }
  /** The same data without autograd history (shares memory). */
  detach(): Tensor {
    return wrap(native.detach(this.handle));
  }
  /**
   * A tensor whose elements lie in memory in `format` order (this one when they already
   * do, else a copy). Keeps the autograd graph.
   * @throws Error for "channels_last" when the tensor is not 4-D; TypeError for another format name.
   */
  contiguous(format: MemoryFormat = "contiguous"): Tensor {
    return wrap(native.contiguous(this.handle, format));
  }
  /**
   * Whether the elements lie in memory in `format` order, without gaps (always false for
   * "channels_last" when the tensor is not 4-D).
   * @throws TypeError for another format name.
   */
  isContiguous(format: MemoryFormat = "contiguous"): boolean {
    return native.isContiguous(this.handle, format) as boolean;
  }
  /**
   * A copy in `format` order, or null when this tensor's strides already suggest that order
   * (PyTorch's `t.to(memory_format=...)`, which returns `t` then). Unlike {@link contiguous},
   * a tensor whose strides fit both orders, such as a `[O, 1, kH, kW]` filter, is copied into
   * channels_last strides, which is what libtorch's convolutions look at to pick NHWC.
   * @throws TypeError when `format` is not "contiguous" or "channels_last"; Error for
   *   "channels_last" on a tensor that is not 4-D
   */
  toMemoryFormat(format: MemoryFormat): Tensor | null {
    const h = native.toMemoryFormat(this.handle, format) as Handle | null;
    return h === null ? null : wrap(h);
  }

  /** Converts to another dtype (a copy; differentiable between float types). */
  to(dtype: DType): Tensor {
    return wrap(native.to(this.handle, dtype));
  }
  /** Shorthand for `to("float32")`. */
  float(): Tensor {
    return this.to("float32");
  }
  /** Shorthand for `to("int64")`. */
  long(): Tensor {
    return this.to("int64");
  }
  /** Same elements in a new shape; one dimension may be -1. A view when possible. */
  reshape(...shape: number[]): Tensor {
    return wrap(native.reshape(this.handle, shape));
  }
  /** Same elements in a new shape, always a view. @throws Error on incompatible strides. */
  view(...shape: number[]): Tensor {
    return wrap(native.view(this.handle, shape));
  }
  /** Reorders dimensions (a view). */
  permute(...dims: number[]): Tensor {
    return wrap(native.permute(this.handle, dims));
  }
  /** Swaps two dimensions (a view). */
  transpose(dim0: number, dim1: number): Tensor {
    return wrap(native.transpose(this.handle, dim0, dim1));
  }
  /** Matrix transpose of a 2-D tensor. */
  t(): Tensor {
    return this.transpose(0, 1);
  }
  /** Merges dimensions startDim..endDim into one. */
  flatten(startDim = 0, endDim = -1): Tensor {
    return wrap(native.flatten(this.handle, startDim, endDim));
  }
  /** Removes size-1 dimensions (all, or only `dim`). */
  squeeze(dim?: number): Tensor {
    return wrap(native.squeeze(this.handle, dim));
  }
  /** Inserts a size-1 dimension at `dim`. */
  unsqueeze(dim: number): Tensor {
    return wrap(native.unsqueeze(this.handle, dim));
  }
  /** Broadcasts size-1 dimensions to `shape` without copying (-1 keeps a size). */
  expand(...shape: number[]): Tensor {
    return wrap(native.expand(this.handle, shape));
  }
  /** Tiles the tensor `repeats[i]` times along each dimension (a copy). */
  repeat(...repeats: number[]): Tensor {
    return wrap(native.repeat(this.handle, repeats));
  }
  /** Elements `start, start+step, ... < end` along `dim` (a view); like `x[start:end:step]`. */
  slice(dim: number, start?: number, end?: number, step = 1): Tensor {
    return wrap(native.slice(this.handle, dim, start, end, step));
  }
  /** `length` elements from `start` along `dim` (a view). */
  narrow(dim: number, start: number, length: number): Tensor {
    return wrap(native.narrow(this.handle, dim, start, length));
  }
  /** The slice at `index` along `dim`, with that dimension removed (a view). */
  select(dim: number, index: number): Tensor {
    return wrap(native.select(this.handle, dim, index));
  }
  /** Rows (along `dim`) picked by an int64 index tensor (a copy). */
  indexSelect(dim: number, index: Tensor): Tensor {
    return wrap(native.indexSelect(this.handle, dim, index.handle));
  }
  /** The elements where the bool `mask` is true, as a 1-D tensor. */
  maskedSelect(mask: Tensor): Tensor {
    return wrap(native.maskedSelect(this.handle, mask.handle));
  }
  /** `out[i][j] = x[i][index[i][j]]` along `dim`. */
  gather(dim: number, index: Tensor): Tensor {
    return wrap(native.gather(this.handle, dim, index.handle));
  }
  /** A copy with `src` (tensor or number) written at `index` along `dim`. */
  scatter(dim: number, index: Tensor, src: Operand): Tensor {
    return wrap(native.scatter(this.handle, dim, index.handle, src instanceof Tensor ? src.handle : src));
  }
  /** A copy with `src` added at `index` along `dim`. */
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(native.scatterAdd(this.handle, dim, index.handle, src.handle));
  }
  /** A copy with `value` where the bool `mask` is true. */
  maskedFill(mask: Tensor, value: number): Tensor {
    return wrap(native.maskedFill(this.handle, mask.handle, value));
  }
  /** Indices of non-zero elements, `[nnz, ndim]` int64. */
  nonzero(): Tensor {
    return wrap(native.nonzero(this.handle));
  }
  /** Splits along `dim` into pieces of the given sizes. */
  split(sizes: readonly number[], dim = 0): Tensor[] {
    return wrapAll(native.split(this.handle, sizes, dim));
  }
  /** Splits along `dim` into `chunks` nearly equal pieces. */
  chunk(chunks: number, dim = 0): Tensor[] {
    return wrapAll(native.chunk(this.handle, chunks, dim));
  }
  /** Reverses the order of elements along `dims`. */
  flip(dims: Dims): Tensor {
    return wrap(native.flip(this.handle, dims));
  }
  /** Shifts elements cyclically by `shifts` along `dims`. */
  roll(shifts: Dims, dims: Dims): Tensor {
    return wrap(native.roll(this.handle, shifts, dims));
  }

  // ----------------------------------------------------- elementwise math

  /** `this + alpha * other`. */
  add(other: Operand, alpha = 1): Tensor {
    return other instanceof Tensor
      ? wrap(native.add(this.handle, other.handle, alpha))
      : wrap(native.add(this.handle, scaled("add", other, alpha)));
  }
  /** `this - alpha * other`. */
  sub(other: Operand, alpha = 1): Tensor {
    return other instanceof Tensor
      ? wrap(native.sub(this.handle, other.handle, alpha))
      : wrap(native.sub(this.handle, scaled("sub", other, alpha)));
  }
  /** `value - this`. */
  rsub(value: number): Tensor {
    return wrap(native.rsub(this.handle, value));
  }
  /** Elementwise product. */
  mul(other: Operand): Tensor {
    return binary("mul", this, other);
  }
  /** Elementwise true division (ints give floats). */
  div(other: Operand): Tensor {
    return binary("div", this, other);
  }
  /** Elementwise power. */
  pow(exponent: Operand): Tensor {
    return binary("pow", this, exponent);
  }
  /** Python-style remainder (sign of the divisor). */
  remainder(other: Operand): Tensor {
    return binary("remainder", this, other);
  }
  /** Elementwise maximum of two tensors. */
  maximum(other: Tensor): Tensor {
    return wrap(native.maximum(this.handle, other.handle));
  }
  /** Elementwise minimum of two tensors. */
  minimum(other: Tensor): Tensor {
    return wrap(native.minimum(this.handle, other.handle));
  }
  /** `this + value * t1 * t2`. */
  addcmul(t1: Tensor, t2: Tensor, value = 1): Tensor {
    return wrap(native.addcmul(this.handle, t1.handle, t2.handle, value));
  }
  /** `this + weight * (end - this)`. */
  lerp(end: Tensor, weight: number): Tensor {
    return wrap(native.lerp(this.handle, end.handle, weight));
  }
  /** Limits every element to `[min, max]` (either bound may be omitted). */
  clamp(min?: number, max?: number): Tensor {
    return wrap(native.clamp(this.handle, min, max));
  }
  /** `-x`. */
  neg(): Tensor {
    return unary("neg", this);
  }
  /** `|x|`. */
  abs(): Tensor {
    return unary("abs", this);
  }
  /** `e^x`. */
  exp(): Tensor {
    return unary("exp", this);
  }
  /** Natural logarithm. */
  log(): Tensor {
    return unary("log", this);
  }
  /** `log(1 + x)`, accurate for small x. */
  log1p(): Tensor {
    return unary("log1p", this);
  }
  /** Square root. */
  sqrt(): Tensor {
    return unary("sqrt", this);
  }
  /** `1 / sqrt(x)`. */
  rsqrt(): Tensor {
    return unary("rsqrt", this);
  }
  /** `x * x`. */
  square(): Tensor {
    return unary("square", this);
  }
  /** `1 / x`. */
  reciprocal(): Tensor {
    return unary("reciprocal", this);
  }
  /** Sine (radians). */
  sin(): Tensor {
    return unary("sin", this);
  }
  /** Cosine (radians). */
  cos(): Tensor {
    return unary("cos", this);
  }
  /** Rounds down. */
  floor(): Tensor {
    return unary("floor", this);
  }
  /** Rounds up. */
  ceil(): Tensor {
    return unary("ceil", this);
  }
  /** Rounds half to even. */
  round(): Tensor {
    return unary("round", this);
  }
  /** Rounds toward zero. */
  trunc(): Tensor {
    return unary("trunc", this);
  }
  /** -1, 0 or 1. */
  sign(): Tensor {
    return unary("sign", this);
  }
  /** Logistic sigmoid `1 / (1 + e^-x)`. */
  sigmoid(): Tensor {
    return unary("sigmoid", this);
  }
  /** Hyperbolic tangent. */
  tanh(): Tensor {
    return unary("tanh", this);
  }
  /** `max(x, 0)`. */
  relu(): Tensor {
    return unary("relu", this);
  }
  /** Softmax along `dim`: probabilities in [0, 1] summing to 1. */
  softmax(dim: number): Tensor {
    return wrap(native.softmax(this.handle, dim));
  }
  /** Log of the softmax along `dim`, computed stably. */
  logSoftmax(dim: number): Tensor {
    return wrap(native.logSoftmax(this.handle, dim));
  }

  // ---------------------------------------------------- comparisons (bool)

  /** `this == other`, bool. */
  eq(other: Operand): Tensor {
    return binary("eq", this, other);
  }
  /** `this != other`, bool. */
  ne(other: Operand): Tensor {
    return binary("ne", this, other);
  }
  /** `this < other`, bool. */
  lt(other: Operand): Tensor {
    return binary("lt", this, other);
  }
  /** `this <= other`, bool. */
  le(other: Operand): Tensor {
    return binary("le", this, other);
  }
  /** `this > other`, bool. */
  gt(other: Operand): Tensor {
    return binary("gt", this, other);
  }
  /** `this >= other`, bool. */
  ge(other: Operand): Tensor {
    return binary("ge", this, other);
  }
  /** Logical and of two bool tensors. */
  logicalAnd(other: Tensor): Tensor {
    return wrap(native.logicalAnd(this.handle, other.handle));
  }
  /** Logical or of two bool tensors. */
  logicalOr(other: Tensor): Tensor {
    return wrap(native.logicalOr(this.handle, other.handle));
  }
  /** Logical not. */
  logicalNot(): Tensor {
    return unary("logicalNot", this);
  }
  /** True where NaN. */
  isnan(): Tensor {
    return unary("isnan", this);
  }
  /** True where finite (not NaN or ±Inf). */
  isfinite(): Tensor {
    return unary("isfinite", this);
  }

  // ------------------------------------------------------------ reductions

  /** Sum of all elements, or over `dims`. */
  sum(dims?: Dims, keepdim = false): Tensor {
    return wrap(dims === undefined ? native.sum(this.handle) : native.sum(this.handle, dims, keepdim));
  }
  /** Mean of all elements, or over `dims` (float tensors). */
  mean(dims?: Dims, keepdim = false): Tensor {
    return wrap(dims === undefined ? native.mean(this.handle) : native.mean(this.handle, dims, keepdim));
  }
  /** Product of all elements, or along `dim`. */
  prod(dim?: number, keepdim = false): Tensor {
    return wrap(dim === undefined ? native.prod(this.handle) : native.prod(this.handle, dim, keepdim));
  }
  /** Variance (Bessel-corrected unless `unbiased` is false). */
  var(dims?: Dims, unbiased = true, keepdim = false): Tensor {
    return wrap(native.var(this.handle, dims, unbiased, keepdim));
  }
  /** Standard deviation (Bessel-corrected unless `unbiased` is false). */
  std(dims?: Dims, unbiased = true, keepdim = false): Tensor {
    return wrap(native.std(this.handle, dims, unbiased, keepdim));
  }
  /** `log(sum(exp(x)))` over `dims`, computed stably. */
  logsumexp(dims: Dims, keepdim = false): Tensor {
    return wrap(native.logsumexp(this.handle, dims, keepdim));
  }
  /** Cumulative sum along `dim`. */
  cumsum(dim: number): Tensor {
    return wrap(native.cumsum(this.handle, dim));
  }
  /** p-norm of all elements, or over `dims`. */
  norm(p = 2, dims?: Dims, keepdim = false): Tensor {
    return wrap(dims === undefined ? native.norm(this.handle, p) : native.norm(this.handle, p, dims, keepdim));
  }
  /** Largest element (a 0-d tensor). */
  max(): Tensor {
    return wrap(native.maxAll(this.handle));
  }
  /** Smallest element (a 0-d tensor). */
  min(): Tensor {
    return wrap(native.minAll(this.handle));
  }
  /** Largest values along `dim` and their int64 indices. */
  maxDim(dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
    return pair(native.max(this.handle, dim, keepdim));
  }
  /** Smallest values along `dim` and their int64 indices. */
  minDim(dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
    return pair(native.min(this.handle, dim, keepdim));
  }
  /** Index of the largest element (flattened, or along `dim`), int64. */
  argmax(dim?: number, keepdim = false): Tensor {
    return wrap(native.argmax(this.handle, dim, keepdim));
  }
  /** Index of the smallest element (flattened, or along `dim`), int64. */
  argmin(dim?: number, keepdim = false): Tensor {
    return wrap(native.argmin(this.handle, dim, keepdim));
  }
  /** The `k` largest (or smallest) values along `dim` and their indices. */
  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    return pair(native.topk(this.handle, k, dim, largest, sorted));
  }
  /** Sorted values along `dim` and the permutation indices. */
  sort(dim = -1, descending = false): { values: Tensor; indices: Tensor } {
    return pair(native.sort(this.handle, dim, descending));
  }
  /** True if every element is non-zero (a 0-d bool tensor). */
  all(): Tensor {
    return unary("all", this);
  }
  /** True if any element is non-zero (a 0-d bool tensor). */
  any(): Tensor {
    return unary("any", this);
  }

  // --------------------------------------------------------- linear algebra

  /** Matrix product with broadcasting (`@` in Python). */
  matmul(other: Tensor): Tensor {
    return wrap(native.matmul(this.handle, other.handle));
  }

  // ------------------------------------------------------------- in place

  /** Copies `src` (broadcast) into this tensor. */
  copy_(src: Tensor): this {
    native.copy_(this.handle, src.handle);
    return this;
  }
  /**
   * Makes this tensor use `src`'s memory (PyTorch's `t.data = src`): same identity, so
   * an optimizer or module holding it sees the change; used to change a parameter's
   * memory format. Not recorded by autograd.
   * @throws Error when `src` has another shape or dtype, or when `src` was made under
   *   inference mode and this tensor was not (its memory could never again join a graph).
   */
  setData_(src: Tensor): this {
    if (src.isInference && !this.isInference) {
      throw new Error("setData_: the new data was made under inference mode; make it outside inferenceMode()");
    }
    native.setData_(this.handle, src.handle);
    return this;
  }
  /** Sets every element to 0. */
  zero_(): this {
    native.zero_(this.handle);
    return this;
  }
  /** Sets every element to `value`. */
  fill_(value: number): this {
    native.fill_(this.handle, value);
    return this;
  }
  /** `this += alpha * other`. */
  add_(other: Operand, alpha = 1): this {
    if (other instanceof Tensor) native.add_(this.handle, other.handle, alpha);
    else native.add_(this.handle, scaled("add_", other, alpha));
    return this;
  }
  /** `this *= other`. */
  mul_(other: Operand): this {
    native.mul_(this.handle, other instanceof Tensor ? other.handle : other);
    return this;
  }
  /** `this /= other`. */
  div_(other: Operand): this {
    native.div_(this.handle, other instanceof Tensor ? other.handle : other);
    return this;
  }
  /** `this += weight * (end - this)`: the EMA update with `weight = 1 - decay`. */
  lerp_(end: Tensor, weight: number): this {
    native.lerp_(this.handle, end.handle, weight);
    return this;
  }
  /** Limits every element to `[min, max]` in place. */
  clamp_(min?: number, max?: number): this {
    native.clamp_(this.handle, min, max);
    return this;
  }
  /** Writes `value` where the bool `mask` is true. */
  maskedFill_(mask: Tensor, value: number): this {
    native.maskedFill_(this.handle, mask.handle, value);
    return this;
  }
  /** Fills with samples of U(low, high) from the global generator. */
  uniform_(low = 0, high = 1): this {
    native.uniform_(this.handle, low, high);
    return this;
  }
  /** Fills with samples of N(mean, std^2) from the global generator. */
  normal_(mean = 0, std = 1): this {
    native.normal_(this.handle, mean, std);
    return this;
  }

  // -------------------------------------------------------------- autograd

  /** Whether operations on this tensor are recorded for autograd. */
  get requiresGrad(): boolean {
    return native.requiresGrad(this.handle) as boolean;
  }
  /** Starts (or stops) recording operations on this leaf tensor. @throws Error on non-float dtypes. */
  requiresGrad_(requires = true): this {
    native.requiresGrad_(this.handle, requires);
    return this;
  }
  /** True for tensors created by the user rather than by a recorded op. */
  get isLeaf(): boolean {
    return native.isLeaf(this.handle) as boolean;
  }
  /** True for tensors created inside {@link inferenceMode}; they can never take part in autograd. */
  get isInference(): boolean {
    return native.isInference(this.handle) as boolean;
  }
  /** Name of the autograd node that produced this tensor, e.g. `"AddBackward0"`, or null. */
  get gradFn(): string | null {
    return native.gradFn(this.handle) as string | null;
  }
  /**
   * The gradient accumulated by {@link backward}, or null. Each access returns a new
   * Tensor object sharing the gradient's memory; dispose it when done.
   */
  get grad(): Tensor | null {
    const h = native.grad(this.handle) as Handle | null;
    return h === null ? null : wrap(h);
  }
  /** Replaces the stored gradient (null clears it, as `zero_grad(set_to_none=True)`). */
  setGrad(grad: Tensor | null): void {
    native.setGrad(this.handle, grad?.handle);
  }
  /** Keeps `.grad` for this non-leaf tensor after backward. */
  retainGrad(): void {
    native.retainGrad(this.handle);
  }
  /**
   * Back-propagates from this tensor, accumulating `.grad` in the leaves.
   * @param gradient seed gradient; required unless the tensor has one element
   * @throws Error when the tensor does not require grad or the graph was freed
   */
  backward(gradient?: Tensor, retainGraph?: boolean, createGraph = false): void {
    native.backward(this.handle, gradient?.handle, retainGraph, createGraph);
  }
}

/** @internal Wraps a binding result. */
export function wrap(h: Handle): Tensor {
  return Tensor.fromHandle(h);
}

/** @internal Wraps an array of binding results. */
export function wrapAll(hs: Handle[]): Tensor[] {
  return hs.map((h) => Tensor.fromHandle(h));
}

function pair(hs: Handle[]): { values: Tensor; indices: Tensor } {
  const [values, indices] = wrapAll(hs);
  return { values, indices };
}

/**
 * `other * alpha` for a number operand. Checked here because the product of a
 * string or null with a number is a number (NaN or 0) the binding would accept.
 */
function scaled(op: string, other: unknown, alpha: unknown): number {
  if (typeof other !== "number") throw new TypeError(`${op}: the second operand must be a Tensor or a number`);
  if (typeof alpha !== "number") throw new TypeError(`${op}: alpha must be a number`);
  return other * alpha;
}

function unary(op: string, x: Tensor): Tensor {
  return wrap(native[op](x.handle));
}

function binary(op: string, x: Tensor, other: Operand): Tensor {
  if (typeof other !== "number" && !(other instanceof Tensor)) {
    throw new TypeError(`${op}: the second operand must be a Tensor or a number`);
  }
  return wrap(native[op](x.handle, other instanceof Tensor ? other.handle : other));
}
