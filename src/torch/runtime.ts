/**
 * Process-wide switches of the engine: autograd recording, inference mode, the
 * random generator, and the number of CPU threads.
 */
import { native } from "./native.js";
import { syncScope } from "./sync_scope.js";
import { Tensor, wrap } from "./tensor.js";

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const previous = native.isGradEnabled() as boolean;
  native.setGradEnabled(enabled);
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

/** Runs `fn` without recording operations for autograd (`torch.no_grad()`). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs `fn` with autograd recording on, even inside {@link noGrad}. */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

/** Whether operations are currently recorded for autograd. */
export function isGradEnabled(): boolean {
  return native.isGradEnabled() as boolean;
}

/**
 * Runs `fn` in libtorch's inference mode (`torch.inference_mode()`): faster than
 * {@link noGrad}, but the tensors it creates can never take part in autograd later.
 * @throws TypeError when `fn` returns a Promise (the mode is per synchronous call)
 */
export function inferenceMode<T>(fn: () => T): T {
  native.enterInferenceMode();
  return syncScope("inferenceMode", fn, () => native.exitInferenceMode());
}

/** Seeds libtorch's global CPU generator (`torch.manual_seed`). */
export function manualSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TypeError(`manualSeed: seed must be a non-negative integer, got ${seed}`);
  native.manualSeed(seed);
}

/** The global generator's state as a uint8 tensor (to store in a checkpoint). */
export function getRngState(): Tensor {
  return wrap(native.getRngState());
}

/** Restores a state returned by {@link getRngState}. @throws Error on a malformed state. */
export function setRngState(state: Tensor): void {
  native.setRngState(state.handle);
}

/** Sets the number of intra-op CPU threads (`torch.set_num_threads`). */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}

/** The number of intra-op CPU threads. */
export function getNumThreads(): number {
  return native.getNumThreads() as number;
}

/** Tensors handed to JavaScript and not yet disposed, process-wide (for leak checks). */
export function liveTensors(): number {
  return native.liveTensors() as number;
}

/**
 * Returns the C allocator's free memory to the operating system (glibc's `malloc_trim(0)`).
 * Freed tensors stay in glibc's heaps, where fragmentation makes resident memory creep up
 * over thousands of training steps; the trainer calls this every `train.logEvery` steps.
 * @returns true when memory was released (always false off glibc)
 */
export function releaseFreeMemory(): boolean {
  return native.releaseFreeMemory() as boolean;
}

/**
 * Sets the size of OpenBLAS's thread pool, which is shared by the whole process (every worker
 * thread included) and separate from libtorch's OpenMP threads ({@link setNumThreads}).
 * Detection workers that each run libtorch on one core want it at 1: two threads calling a
 * 2-thread OpenBLAS contend for its one pool (measured: BlazeFace 24 ms per photo per worker
 * against 15 ms).
 * @returns false when the BLAS is not OpenBLAS (nothing was changed)
 * @throws Error when `n` < 1
 */
export function setBlasThreads(n: number): boolean {
  return native.setBlasThreads(n) as boolean;
}

/** OpenBLAS's thread count, or -1 when the BLAS is not OpenBLAS. */
export function getBlasThreads(): number {
  return native.getBlasThreads() as number;
}

/**
 * Runs `fn` with OpenBLAS at `n` threads and restores the count after (no-op on another BLAS).
 * OpenBLAS's results move in the last bits with its thread count, so code whose output must
 * not depend on what else the process is doing pins it.
 */
export function withBlasThreads<T>(n: number, fn: () => T): T {
  const previous = getBlasThreads();
  const change = previous !== -1 && previous !== n;
  if (change) setBlasThreads(n);
  try {
    return fn();
  } finally {
    if (change) setBlasThreads(previous);
  }
}

/**
 * Records every libtorch op that `fn` runs (name, start and duration in microseconds, thread)
 * into `file` as a Chrome trace (JSON; open it in chrome://tracing or Perfetto), with libtorch's
 * autograd profiler: to see where a training step spends its time, op by op, beside PyTorch's
 * `torch.autograd.profiler.profile().export_chrome_trace()`.
 * @throws TypeError when `fn` returns a Promise; Error when a profile is already being recorded
 *   on this thread, or `file` cannot be written
 */
export function profile<T>(file: string, fn: () => T): T {
  native.profilerStart(file);
  return syncScope("profile", fn, () => native.profilerStop());
}

/** The libtorch version the binding was built against, e.g. "1.13.0". */
export function libtorchVersion(): string {
  return native.version() as string;
}

/**
 * OpenBLAS's kernel as the environment forces it (`OPENBLAS_CORETYPE`, e.g. "Haswell"), or
 * "auto" when OpenBLAS picks it from the CPU. The kernel changes float rounding in matrix
 * products, and so the numbers of a seeded training: runs record it next to their seed.
 */
export function openblasCoretype(): string {
  return process.env.OPENBLAS_CORETYPE || "auto";
}
