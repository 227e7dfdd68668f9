/**
 * Shared helpers of the engine tests: numeric comparisons with useful failure
 * messages, and small input generators for gradient checks.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { beforeEach } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import * as torch from "../src/torch/index.js";
import type { Tensor } from "../src/torch/index.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";

/** Keeps every test file on a small, fixed thread pool (the CI machine has 2 cores). */
torch.setNumThreads(1);

setFlagsFromString("--expose-gc");
/** A full garbage collection, now (V8's `gc()`, exposed for the tests). */
export const gc = runInNewContext("gc") as () => void;
// Tensors an earlier test left to the collector are freed whenever it runs, during the
// collection itself (native/src/common.cc); collecting before each test keeps them out of
// the live-tensor counts the tests make.
beforeEach(() => gc());

/** Asserts `|actual - expected| <= atol + rtol * |expected|`. */
export function assertClose(actual: number, expected: number, atol = 1e-6, rtol = 0, what = "value"): void {
  const tol = atol + rtol * Math.abs(expected);
  if (!(Math.abs(actual - expected) <= tol)) {
    assert.fail(`${what}: expected ${expected}, got ${actual} (|diff| ${Math.abs(actual - expected)} > tol ${tol})`);
  }
}

/** Asserts two number sequences have the same length and are elementwise close. */
export function assertAllClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-6, rtol = 0, what = "values"): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const tol = atol + rtol * Math.abs(e);
    if (!(Math.abs(a - e) <= tol)) {
      assert.fail(
        `${what}[${i}]: expected ${e}, got ${a} (|diff| ${Math.abs(a - e)} > tol ${tol})\nactual:   [${Array.from(actual).join(", ")}]\nexpected: [${Array.from(expected).join(", ")}]`,
      );
    }
  }
}

/** Asserts a tensor's shape and elementwise values (row-major). */
export function assertTensor(t: Tensor, shape: readonly number[], expected: ArrayLike<number>, atol = 1e-6, what = "tensor"): void {
  assert.deepEqual([...t.shape], [...shape], `${what}: shape`);
  assertAllClose(t.toNumbers(), expected, atol, 0, what);
}

/** Values of a tensor as plain numbers, disposing nothing. */
export function values(t: Tensor): number[] {
  return t.toNumbers();
}

/**
 * float64 samples whose magnitude is in [minAbs, minAbs + spread] with a random
 * sign: inputs for functions with a kink at 0 (relu, leaky relu, elu).
 */
export function awayFromZero(shape: readonly number[], minAbs = 0.2, spread = 1): Tensor {
  return torch.tidy(() => {
    const mag = torch.rand(shape, "float64").mul(spread).add(minAbs);
    const sign = torch.rand(shape, "float64").gt(0.5).to("float64").mul(2).sub(1);
    return mag.mul(sign);
  });
}

/** float64 samples of U[low, high). */
export function uniform(shape: readonly number[], low: number, high: number): Tensor {
  return torch.tidy(() =>
    torch
      .rand(shape, "float64")
      .mul(high - low)
      .add(low),
  );
}

/** A float64 N(0, 1) leaf that requires grad. */
export function leaf(shape: readonly number[]): Tensor {
  return torch.randn(shape, "float64").requiresGrad_();
}

/** Runs gradcheck and fails with the worst mismatch when it does not pass. */
export function assertGradcheck(
  name: string,
  fn: (...inputs: Tensor[]) => Tensor,
  inputs: Tensor[],
  options: torch.GradcheckOptions = {},
): void {
  const r = torch.gradcheck(fn, inputs, options);
  assert.ok(r.passed, `${name}: gradcheck failed, max |analytic - numeric| = ${r.maxAbsError} at ${JSON.stringify(r.worst)}`);
  assert.ok(
    inputs.some((x) => x.requiresGrad),
    `${name}: no input requires grad`,
  );
}

/** Numerically stable log(sum(exp(xs))) in plain JavaScript. */
export function logSumExp(xs: readonly number[]): number {
  const m = Math.max(...xs);
  return m + Math.log(xs.reduce((s, x) => s + Math.exp(x - m), 0));
}

/** log-softmax of one row in plain JavaScript. */
export function logSoftmaxRow(xs: readonly number[]): number[] {
  const lse = logSumExp(xs);
  return xs.map((x) => x - lse);
}

/** Runs `fn` and returns its result, disposing every tensor it created. */
export const scoped = torch.tidy;

/**
 * Writes a training config that runs in seconds on real FER2013 images (600 / 200 / 200 of the
 * Training / PublicTest / PrivateTest splits, Adam at 1e-3, cosine with 5 warm-up steps, 30 steps of
 * 16, an epoch every 10); `train` overrides fields of its `train` section.
 * @returns `file`
 */
export function writeTinyConfig(file: string, train: Record<string, unknown> = {}): string {
  writeFileSync(
    file,
    JSON.stringify({
      name: "tiny",
      data: { limits: { train: 600, val: 200, test: 200 } },
      optimizer: { name: "adam", lr: 0.001, weightDecay: 0 },
      schedule: { name: "cosine", warmupSteps: 5 },
      train: { steps: 30, batchSize: 16, epochSteps: 10, emaDecay: 0.9, logEvery: 5, ...train },
    }),
  );
  return file;
}

/**
 * A clip of one photo held still, made by ffmpeg: `seconds` at `fps`, through the `-vf` filter
 * when given; H.264 in yuv420p, or raw YUV when `file` ends in `.y4m` (Chromium's fake camera).
 * @returns `file`
 */
export function stillClip(photo: string, file: string, seconds: number, fps: number, filter?: string): string {
  const ff = spawnSync("ffmpeg", [
    ...["-v", "error", "-y", "-loop", "1", "-i", photo, "-t", String(seconds), "-r", String(fps)],
    ...(filter === undefined ? [] : ["-vf", filter]),
    ...(file.endsWith(".y4m") ? [] : ["-c:v", "libx264"]),
    ...["-pix_fmt", "yuv420p", file],
  ]);
  assert.equal(ff.status, 0, String(ff.stderr));
  return file;
}

/** A TCP port free right now on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** What a finished command left: its exit code (or the signal that ended it), output and duration. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time, in milliseconds. */
  ms: number;
}

/**
 * Starts `ferkit <args>` (the built CLI) without waiting; `done` resolves when it exits.
 * @param o.env variables added to this process's environment
 * @param o.wrap a command line to run it under (e.g. `ip netns exec <ns>`)
 */
export function startCli(
  args: readonly string[],
  o: { env?: Record<string, string>; wrap?: string[] } = {},
): { child: ChildProcess; done: Promise<CliRun> } {
  const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
  const started = performance.now();
  const [cmd, ...pre] = [...(o.wrap ?? []), process.execPath, bin, ...args];
  const child = spawn(cmd, pre, { env: { ...process.env, ...o.env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d) => (stdout += d));
  child.stderr?.on("data", (d) => (stderr += d));
  const done = new Promise<CliRun>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr, ms: performance.now() - started })),
  );
  return { child, done };
}

/** Runs `ferkit <args>` to its end (see {@link startCli}). */
export function runCli(args: readonly string[], o: { env?: Record<string, string>; wrap?: string[] } = {}): Promise<CliRun> {
  return startCli(args, o).done;
}
