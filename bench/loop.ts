/**
 * What the training loop adds to the model compute: `fer2013-supervised`'s step (VGG-FER
 * width 0.5, batch 64, SGD Nesterov, EMA teacher) timed two ways in one process:
 *
 *   (a) the trainer's own loop, `train()` on real FER2013 (from the image cache): sampling,
 *       gathering the batch, weak augmentation, forward, loss, backward, optimizer,
 *       schedule, EMA update, step logs and the progress display; read from the run's
 *       `step` events;
 *   (b) the pure model compute on a ready-made batch: forward, cross-entropy, backward,
 *       optimizer step.
 *
 * The machine's speed drifts by tens of percent over minutes, so the two alternate: each
 * round times (b) for a few steps, then runs (a) for one log window of 25 steps (the run
 * stops and is resumed between rounds, untimed). The first round is warm-up and left out;
 * the overhead reported is the median of the per-round ratios (b) / (a) - 1. Target: under 10 %.
 *
 *   npm run bench:loop
 *   node dist/bench/loop.js --rounds 4
 *
 * Options: --rounds (8), --compute-steps (10), --threads (2), --precision of both sides (bf16
 * or fp32; default: ferkit's own, bf16 on a CPU with native bfloat16). The last line printed is
 * one JSON object `{"loop_steps_s","compute_steps_s","overhead_pct","precision"}`.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import * as torch from "../src/torch/index.js";
import { atPrecision, createModel } from "../src/models/index.js";
import { defaultDataRoot } from "../src/paths.js";
import { loadConfigFile } from "../src/train/config.js";
import { train } from "../src/train/trainer.js";
import { median } from "./common.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "8" },
    "compute-steps": { type: "string", default: "10" },
    threads: { type: "string", default: "2" },
    precision: { type: "string", default: torch.resolvePrecision("auto").precision },
  },
});
if (values.precision !== "bf16" && values.precision !== "fp32")
  throw new RangeError(`--precision must be bf16 or fp32, got ${values.precision}`);
const precision: "bf16" | "fp32" = values.precision;
const rounds = Number(values.rounds);
const computeSteps = Number(values["compute-steps"]);
const threads = Number(values.threads);
for (const [k, v] of Object.entries({ rounds, computeSteps, threads }))
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${k} must be a positive integer, got ${v}`);
if (rounds < 2) throw new RangeError("--rounds must be at least 2 (the first is warm-up)");
const WINDOW = 25;
const steps = rounds * WINDOW;

const preset = loadConfigFile("fer2013-supervised", true);
const config = {
  ...preset,
  threads,
  data: { ...preset.data, limits: { train: null, val: 256, test: 256 } },
  train: { ...preset.train, steps, epochSteps: 10 ** 9, logEvery: WINDOW, precision },
  eval: { ...preset.eval, precision },
};
const B = config.train.batchSize;
torch.setNumThreads(threads);

/** (b): the model compute of one step on a fixed batch (a model of its own, kept across rounds). */
class PureCompute {
  readonly model = createModel("vgg-fer", { width: config.model.width, dropout: config.model.dropout, numClasses: 7, inChannels: 1 });
  readonly net = atPrecision(this.model, precision);
  readonly opt = new torch.optim.SGD(this.model.parameters(), { lr: 0.01, momentum: 0.9, nesterov: true, weightDecay: 5e-4 });
  readonly x = torch.keep(torch.rand([B, 1, 48, 48]));
  readonly y = torch.keep(torch.randint(0, 7, [B]));

  step(): void {
    torch.tidy(() => {
      const loss = torch.F.crossEntropy(this.net.forward(this.x), this.y);
      this.opt.zeroGrad();
      loss.backward();
      this.opt.step();
    });
  }

  /** Steps per second over `n` steps. */
  measure(n: number): number {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) this.step();
    return n / ((performance.now() - t0) / 1000);
  }
}

console.log(
  `ferkit training-loop benchmark: fer2013-supervised step (VGG-FER width ${config.model.width}, batch ${B}, ${precision}), ${threads} threads, ${rounds} rounds of ${computeSteps} compute steps + ${WINDOW} trainer steps`,
);
torch.manualSeed(0);
const pure = new PureCompute();
pure.model.train();
pure.measure(3);
const runDir = mkdtempSync(path.join(tmpdir(), "ferkit-loop-"));
const run = path.join(runDir, "run");
const dataRoot = defaultDataRoot();
try {
  const compute: number[] = [];
  const loop: number[] = [];
  for (let r = 0; r < rounds; r++) {
    compute.push(pure.measure(computeSteps));
    const o = { runDir: run, dataRoot, progress: false, log: () => {}, stopAfter: WINDOW };
    await train(r === 0 ? { ...o, config } : { ...o, resume: true });
    const windows = readFileSync(path.join(run, "log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; steps_s?: number })
      .filter((e) => e.event === "step");
    loop.push(windows[windows.length - 1].steps_s as number);
    console.log(
      `  round ${r + 1}/${rounds}${r === 0 ? " (warm-up)" : ""}: pure compute ${compute[r].toFixed(3)} steps/s, trainer ${loop[r].toFixed(3)} steps/s`,
    );
  }
  const ratios = compute.slice(1).map((c, i) => c / loop[i + 1]);
  const overhead = 100 * (median(ratios) - 1);
  const loopMedian = median(loop.slice(1));
  const computeMedian = median(compute.slice(1));
  console.log(
    `trainer loop: ${loopMedian.toFixed(3)} steps/s; model compute alone: ${computeMedian.toFixed(3)} steps/s (medians over ${rounds - 1} rounds)`,
  );
  console.log(`the loop adds ${overhead.toFixed(1)} % (median of per-round ratios; target < 10 %)`);
  const r3 = (v: number): number => Math.round(v * 1000) / 1000;
  console.log(
    JSON.stringify({
      loop_steps_s: r3(loopMedian),
      compute_steps_s: r3(computeMedian),
      overhead_pct: Math.round(overhead * 10) / 10,
      batch: B,
      threads,
      rounds,
    }),
  );
} finally {
  rmSync(runDir, { recursive: true, force: true });
}
