/**
 * Mixed precision on the CPU: libtorch's autocast (`torch.autocast("cpu", dtype=torch.bfloat16)`)
 * and the choice between bfloat16 and float32 for a whole run.
 *
 * Inside an autocast region libtorch runs the ops on its lower-precision list (convolutions,
 * linear layers, matrix products) in bfloat16 through oneDNN, the ops on its float32 list
 * (losses, interpolation, grid sampling) in float32, and every other op in the dtype of its
 * inputs. Parameters stay float32: the region casts them on the fly (once per region, cached
 * until the outermost region ends), and gradients flow back through the casts to the float32
 * parameters. The state is thread-local, like Python's.
 *
 * Source: PyTorch's `torch/amp/autocast_mode.py` and `aten/src/ATen/autocast_mode.cpp` (1.13).
 */
import { readFileSync } from "node:fs";
import { native } from "./native.js";
import { syncScope } from "./sync_scope.js";

/**
 * The lower-precision dtype an autocast region runs in. bfloat16 only: libtorch 1.13 has no
 * float16 CPU convolutions or matrix products, and PyTorch disables CPU autocast for float16.
 */
export type AutocastDtype = "bfloat16";

/** The thread's autocast state. */
export interface AutocastState {
  /** Whether ops currently run under autocast. */
  enabled: boolean;
  /** The dtype that autocast casts to when enabled. */
  dtype: AutocastDtype;
}

/** Options of {@link autocast} and {@link autocastScope}. */
export interface AutocastOptions {
  /** false opens a region with autocast off (to run a part in float32 inside a bf16 region). Default true. */
  enabled?: boolean;
  /** Default "bfloat16". */
  dtype?: AutocastDtype;
}

/** The calling thread's CPU autocast state (`torch.is_autocast_cpu_enabled()`, `torch.get_autocast_cpu_dtype()`). */
export function autocastState(): AutocastState {
  const [enabled, dtype] = native.autocastState() as [boolean, AutocastDtype];
  return { enabled, dtype };
}

/** A guard for a `using` declaration: the region ends when the guard is disposed. */
export interface AutocastGuard {
  /** Ends the region and restores the state that was current when it began; a second call does nothing. */
  [Symbol.dispose](): void;
}

/**
 * Opens an autocast region that lasts until the returned guard is disposed:
 * `using _ = autocastScope();`. Guards must end in the reverse order of their creation,
 * which `using` guarantees. Prefer {@link autocast} when the region is one callback.
 * A guard disposed out of order (an outer one before an inner one) restores the state its
 * region began with, which leaves the other region's state in place: keep them nested.
 * @throws Error when `dtype` is not "bfloat16"
 */
export function autocastScope(options: AutocastOptions = {}): AutocastGuard {
  const previous = autocastState();
  native.autocastEnter(options.enabled ?? true, options.dtype ?? "bfloat16");
  let open = true;
  return {
    [Symbol.dispose]() {
      if (!open) return;
      open = false;
      native.autocastExit(previous.enabled, previous.dtype);
    },
  };
}

/**
 * Runs `fn` under CPU autocast and restores the previous state afterwards, also when `fn`
 * throws. Regions nest; the cache of float32 -> bfloat16 weight casts is cleared when the
 * outermost region ends, so run each training step's forward passes in their own region.
 * One region should not span a pass under `noGrad` or `inferenceMode` and a pass with autograd:
 * the second reuses the casts the first cached, which carry no graph (or are inference tensors),
 * so the convolution and linear weights get no gradient, silently. PyTorch 1.13 does the same
 * (`with autocast(): with no_grad(): model(u)` then `model(x).backward()`); give each forward
 * pass its own region, as {@link atPrecision} in src/models does.
 * @example const logits = autocast(() => model.forward(x)).float(); // bf16 compute, float32 out
 * @throws TypeError when `fn` returns a Promise (the state is per synchronous call)
 */
export function autocast<T>(fn: () => T, options: AutocastOptions = {}): T {
  const region = autocastScope(options);
  return syncScope("autocast", fn, () => region[Symbol.dispose]());
}

/**
 * Whether this CPU computes bfloat16 natively (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo).
 * Without them libtorch still runs bfloat16, emulated and slower than float32, so callers use
 * this to choose. The environment variable `FERKIT_NATIVE_BF16=0|1` overrides the answer (to
 * test the fallback on a CPU that has it, or to force bfloat16 where detection fails).
 */
export function cpuHasNativeBf16(): boolean {
  const forced = process.env.FERKIT_NATIVE_BF16;
  if (forced === "0" || forced === "1") return forced === "1";
  let cpuinfo: string;
  try {
    cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return false;
  }
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  return flags.includes("avx512_bf16") || flags.includes("amx_bf16");
}

/** The precisions a user can ask for, in the order help texts list them. */
export const PRECISIONS = ["auto", "bf16", "fp32"] as const;

/** What a user asks for: "auto" = bf16 where the CPU has native bfloat16, else fp32. */
export type Precision = (typeof PRECISIONS)[number];

/** A precision resolved for this machine. */
export interface ResolvedPrecision {
  /** What runs: bfloat16 autocast or plain float32. */
  precision: "bf16" | "fp32";
  /** Why it differs from the request, or why auto chose fp32 (one line), else undefined. */
  note?: string;
}

/**
 * Resolves a requested precision on this CPU. "bf16" on a CPU without native bfloat16 falls
 * back to fp32 with a note: emulated bfloat16 is slower than float32 and rounds as much.
 */
export function resolvePrecision(requested: Precision): ResolvedPrecision {
  if (requested === "fp32") return { precision: "fp32" };
  if (cpuHasNativeBf16()) return { precision: "bf16" };
  const why = "this CPU has no native bfloat16 (avx512_bf16 or amx_bf16)";
  return {
    precision: "fp32",
    note: requested === "bf16" ? `precision bf16 requested, but ${why}: running fp32` : `precision auto: fp32, since ${why}`,
  };
}
