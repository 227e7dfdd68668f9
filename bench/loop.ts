/**
 * What the training loop adds to the model compute: `fer2013-supervised`'s step (VGG-FER
 * width 0.5, batch 64, SGD Nesterov, EMA teacher) timed two ways in one process:
 *
 *   (a) the trainer's own loop, `train()` on real FER2013 (from the image cache): sampling,
 *       gathering the batch, weak augmentation, forward, loss, backward, optimizer,
 *       schedule, EMA update, step logs and the progress display; read from the run's
 *       `step` events (the first window, with warm-up, is left out);
 *   (b) the pure model compute on a ready-made batch: forward, cross-entropy, backward,
 *       optimizer step; timed before and after (a) and averaged.
 *
 * Target: (b) / (a) - 1 under 10 %.
 *
 *   npm run bench:loop
 *   node dist/bench/loop.js --steps 150
 *
 * Options: --steps (200), --threads (2). The last line printed is one JSON object
 * `{"loop_steps_s","compute_steps_s","overhead_pct"}`.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import * as torch from "../src/torch/index.js";
import { createModel } from "../src/models/index.js";
import { defaultDataRoot } from "../src/paths.js";
import { loadConfigFile } from "../src/train/config.js";
import { train } from "../src/train/trainer.js";
import { median } from "./common.js";

const { values } = parseArgs({ options: { steps: { type: "string", default: "200" }, threads: { type: "string", default: "2" } } });
const steps = Number(values.steps);
const threads = Number(values.threads);
for (const [k, v] of Object.entries({ steps, threads }))
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${k} must be a positive integer, got ${v}`);
const WINDOW = 25;
if (steps < 2 * WINDOW) throw new RangeError(`--steps must be at least ${2 * WINDOW}`);

const preset = loadConfigFile("fer2013-supervised", true);
const config = {
  ...preset,
  threads,
  data: { ...preset.data, limits: { train: null, val: 256, test: 256 } },
  train: { ...preset.train, steps, epochSteps: 10 ** 9, logEvery: WINDOW },
};
const B = config.train.batchSize;
torch.setNumThreads(threads);

/** (b): the model compute of one step on a fixed batch, in steps/s. */
function computeStepsPerSecond(n: number): number {
  return torch.tidy(() => {
    torch.manualSeed(0);
    const model = createModel("vgg-fer", { width: config.model.width, dropout: config.model.dropout, numClasses: 7, inChannels: 1 });
    model.train();
    const opt = new torch.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, nesterov: true, weightDecay: 5e-4 });
    const x = torch.rand([B, 1, 48, 48]);
    const y = torch.randint(0, 7, [B]);
    const step = (): void =>
      torch.tidy(() => {
        const loss = torch.F.crossEntropy(model.forward(x), y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
      });
    for (let i = 0; i < 3; i++) step();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) step();
    const s = n / ((performance.now() - t0) / 1000);
    opt.dispose();
    model.dispose();
    return s;
  });
}

console.log(
  `ferkit training-loop benchmark: fer2013-supervised step (VGG-FER width ${config.model.width}, batch ${B}), ${threads} threads, ${steps} steps`,
);
const before = computeStepsPerSecond(Math.min(50, steps));
const runDir = mkdtempSync(path.join(tmpdir(), "ferkit-loop-"));
try {
  await train({ config, runDir: path.join(runDir, "run"), dataRoot: defaultDataRoot(), progress: true, log: () => {} });
  const windows = readFileSync(path.join(runDir, "run", "log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { event: string; steps_s?: number })
    .filter((e) => e.event === "step")
    .slice(1)
    .map((e) => e.steps_s as number);
  const after = computeStepsPerSecond(Math.min(50, steps));
  const loop = median(windows);
  const compute = (before + after) / 2;
  const overhead = 100 * (compute / loop - 1);
  console.log(`trainer loop: ${loop.toFixed(3)} steps/s (median of ${windows.length} windows of ${WINDOW} steps)`);
  console.log(`model compute alone: ${compute.toFixed(3)} steps/s (before ${before.toFixed(3)}, after ${after.toFixed(3)})`);
  console.log(`the loop adds ${overhead.toFixed(1)} % (target < 10 %)`);
  const r3 = (v: number): number => Math.round(v * 1000) / 1000;
  console.log(
    JSON.stringify({
      loop_steps_s: r3(loop),
      compute_steps_s: r3(compute),
      overhead_pct: Math.round(overhead * 10) / 10,
      batch: B,
      threads,
      steps,
    }),
  );
} finally {
  rmSync(runDir, { recursive: true, force: true });
}
