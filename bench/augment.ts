/**
 * Cost of the augmentation against a training step: the views FixMatch-style methods
 * need for one unlabeled batch (two weak + one strong, 64 gray 48x48 images) versus one
 * VggFer train step at batch 64 (forward + cross-entropy + backward + Adam).
 *
 *   npm run bench:augment
 *   node dist/bench/augment.js --reps 30 --steps 10 --threads 2
 *
 * Measured, each as the median over --reps (views) or --steps (train steps) after warm-up:
 *   - augment_ms: `makeViews` on the main thread (libtorch with --threads threads);
 *   - worker_augment_ms: the round trip of one request to an {@link AugmentWorker}
 *     (--worker-threads threads inside it), with nothing else running;
 *   - train_step_ms: one train step alone, at --precision (bf16 or fp32; default ferkit's own,
 *     bf16 on a CPU with native bfloat16, as the trainer runs);
 *   - overlap_train_step_ms: one train step while the worker builds the next batch's views
 *     (the intended use), so the cost of sharing the cores shows.
 * The images are seeded noise (the ops' cost does not depend on the content).
 *
 * Each phase also reports how many cores other processes kept busy meanwhile (from
 * /proc/stat): on a shared machine, read the figures with that in mind. In particular, when
 * another process holds a core, GNU OpenMP's spin-waiting makes every parallel op with 2
 * threads wait for a descheduled thread: the main-thread views then take hundreds of ms
 * (measured 575 ms against 20 ms with `OMP_WAIT_POLICY=passive`), while the worker
 * (1 thread, no parallel regions) is unaffected.
 *
 * The last line printed is one JSON object:
 * `{"augment_ms","train_step_ms","ratio","worker_augment_ms","worker_compute_ms","overlap_train_step_ms","augment_cpu_ms","threads","other_load"}`,
 * with ratio = augment_ms / train_step_ms (target < 0.10).
 */
import os from "node:os";
import { parseArgs } from "node:util";
import * as torch from "../src/torch/index.js";
import { Rng } from "../src/data/sampler.js";
import { AugmentWorker, makeViews } from "../src/augment/index.js";
import { atPrecision, createModel } from "../src/models/index.js";
import { machineBusySeconds, median } from "./common.js";

const { values } = parseArgs({
  options: {
    reps: { type: "string", default: "30" },
    steps: { type: "string", default: "10" },
    warmup: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    "worker-threads": { type: "string", default: "1" },
    batch: { type: "string", default: "64" },
    precision: { type: "string", default: torch.resolvePrecision("auto").precision },
  },
});
if (values.precision !== "bf16" && values.precision !== "fp32")
  throw new RangeError(`--precision must be bf16 or fp32, got ${values.precision}`);
const precision: "bf16" | "fp32" = values.precision;
const reps = Number(values.reps);
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const threads = Number(values.threads);
const workerThreads = Number(values["worker-threads"]);
const batchSize = Number(values.batch);
for (const [k, v] of Object.entries({ reps, steps, threads, workerThreads, batchSize })) {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${k} must be a positive integer, got ${v}`);
}
if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`--warmup must be a non-negative integer, got ${warmup}`);

/** Times `fn` over a phase: wall time, this process's CPU time, and how many cores other processes kept busy. */
async function phase(fn: () => Promise<void>): Promise<{ wallS: number; cpuS: number; otherLoad: number }> {
  const busy0 = machineBusySeconds();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  return { wallS, cpuS, otherLoad: Math.max(0, machineBusySeconds() - busy0 - cpuS) / wallS };
}

torch.setNumThreads(threads);
torch.manualSeed(0);
const SHAPE = [batchSize, 1, 48, 48] as const;
const noise = new Rng(1);
const pixels = Uint8Array.from({ length: SHAPE.reduce((a, b) => a * b, 1) }, () => noise.int(256));
const batch = torch.fromArray(pixels, SHAPE);
const rng = new Rng(2);

console.log(
  `ferkit augmentation benchmark: batch ${batchSize}x1x48x48, 2 weak + 1 strong views, libtorch ${torch.libtorchVersion()}, ` +
    `${threads} threads (worker: ${workerThreads}), load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} on ${os.availableParallelism()} cores`,
);

// --- views on the main thread
const augTimes: number[] = [];
const augPhase = await phase(async () => {
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    const v = makeViews(batch, rng, { weak: 2, strong: 1 });
    const dt = performance.now() - t0;
    torch.dispose(v);
    if (i >= warmup) augTimes.push(dt);
  }
});
const augmentMs = median(augTimes);
const augmentCpuMs = (1000 * augPhase.cpuS) / (warmup + reps);
console.log(
  `views, main thread:        ${augmentMs.toFixed(2)} ms/batch (median of ${reps}; ${augmentCpuMs.toFixed(2)} ms CPU; other processes busy ${augPhase.otherLoad.toFixed(2)} cores)`,
);

// --- views through the worker, alone
const worker = await AugmentWorker.start({ threads: workerThreads });
const workerTimes: number[] = [];
const computeTimes: number[] = [];
const workerPhase = await phase(async () => {
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    const v = await worker.makeViews(batch, rng, { weak: 2, strong: 1 });
    const dt = performance.now() - t0;
    torch.dispose(v);
    if (i >= warmup) {
      workerTimes.push(dt);
      computeTimes.push(worker.lastComputeMs);
    }
  }
});
const workerMs = median(workerTimes);
const workerComputeMs = median(computeTimes);
console.log(
  `views, worker round trip:  ${workerMs.toFixed(2)} ms/batch (${workerComputeMs.toFixed(2)} ms computing in the worker; other processes busy ${workerPhase.otherLoad.toFixed(2)} cores)`,
);

// --- VggFer train steps
const model = createModel("vgg-fer");
model.train();
const net = atPrecision(model, precision);
const opt = new torch.optim.Adam(model.parameters(), { lr: 5e-4 });
const labels = torch.fromArray(
  Int32Array.from({ length: batchSize }, (_, i) => i % 7),
  [batchSize],
  "int64",
);
const input = torch.tidy(() => batch.float().div(255));
function trainStep(): void {
  torch.tidy(() => {
    const loss = torch.F.crossEntropy(net.forward(input), labels);
    opt.zeroGrad();
    loss.backward();
    opt.step();
  });
}
const stepTimes: number[] = [];
const trainPhase = await phase(async () => {
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    trainStep();
    if (i >= warmup) stepTimes.push(performance.now() - t0);
  }
});
const trainMs = median(stepTimes);
console.log(
  `VggFer train step:         ${trainMs.toFixed(2)} ms (median of ${steps}, ${((batchSize * 1000) / trainMs).toFixed(0)} img/s; other processes busy ${trainPhase.otherLoad.toFixed(2)} cores)`,
);

// --- train steps while the worker prepares the next batch's views
const overlapTimes: number[] = [];
const overlapPhase = await phase(async () => {
  let next = worker.makeViews(batch, rng);
  for (let i = 0; i < warmup + steps; i++) {
    const views = await next;
    next = worker.makeViews(batch, rng);
    const t0 = performance.now();
    trainStep();
    if (i >= warmup) overlapTimes.push(performance.now() - t0);
    torch.dispose(views);
  }
  torch.dispose(await next);
});
await worker.terminate();
const overlapMs = median(overlapTimes);
console.log(
  `train step + worker views: ${overlapMs.toFixed(2)} ms (the worker building the next views meanwhile; other processes busy ${overlapPhase.otherLoad.toFixed(2)} cores)`,
);

const ratio = augmentMs / trainMs;
const maxOther = Math.max(augPhase.otherLoad, workerPhase.otherLoad, trainPhase.otherLoad, overlapPhase.otherLoad);
console.log(
  `ratio views / train step:  ${(100 * ratio).toFixed(1)} % (target < 10 %); with the worker a step takes ${(overlapMs - trainMs).toFixed(2)} ms longer`,
);
if (maxOther > 0.3) console.log(`note: other processes kept up to ${maxOther.toFixed(2)} cores busy; the timings are disturbed`);
console.log(
  JSON.stringify({
    augment_ms: Number(augmentMs.toFixed(3)),
    train_step_ms: Number(trainMs.toFixed(3)),
    ratio: Number(ratio.toFixed(4)),
    worker_augment_ms: Number(workerMs.toFixed(3)),
    worker_compute_ms: Number(workerComputeMs.toFixed(3)),
    overlap_train_step_ms: Number(overlapMs.toFixed(3)),
    augment_cpu_ms: Number(augmentCpuMs.toFixed(3)),
    threads,
    other_load: Number(maxOther.toFixed(2)),
  }),
);
