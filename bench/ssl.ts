/**
 * The cost of a DTM step (GUIDE section 4) on VGG-FER 48x48 with 30 labeled + 30 unlabeled
 * images, three ways, in the same run:
 *
 *   (a) ferkit's DTM step as the trainer runs it: weak and strong views made from uint8
 *       batches (augmentation included), `SelfTraining` with the DTM rule (two weak views
 *       in one no-grad forward, labeled + strong views in one forward with gradient),
 *       backward, Adam, EMA update;
 *   (b) the model compute that step needs, on ready-made tensors: a no-grad forward of
 *       the 60 weak images, a forward + backward of the 60 labeled + strong images, Adam,
 *       EMA. (a) / (b) is the step's overhead; the target is at most 1.1;
 *   (c) the same DTM step in PyTorch (Debian's python3-torch, the same libtorch), written
 *       as the reference code does (one forward per view) in a `bench/ssl_pytorch.py
 *       --serve` subprocess; with --pytorch-cat also USB's concatenated variant.
 *
 * Rounds alternate (a), (b), (c) with a few steps each, so all three see the same machine
 * (its speed drifts by tens of percent over minutes); the ratios reported are medians of the
 * per-round ratios, the steps/s medians over rounds.
 *
 *   npm run bench:ssl
 *   node dist/bench/ssl.js --rounds 3 --steps 4
 *
 * Options: --rounds (11), --steps timed steps per measurement (3), --warmup (1, plus 2 at
 * start), --threads (2), --pytorch-cat, --precision: bf16 runs ferkit's forward passes under
 * bfloat16 autocast as the trainer does (float32 logits, softmax and losses) and PyTorch's
 * step under `torch.autocast("cpu", dtype=torch.bfloat16)` with channels_last model and
 * inputs (its CPU AMP recipe); fp32 runs both in float32 (default: ferkit's own default, bf16
 * on a CPU with native bfloat16).
 * The last line printed is one JSON object
 * `{"ferkit_steps_s":..,"pytorch_steps_s":..,"ratio":..,"precision":..}` (ratio = ferkit / PyTorch
 * at the same precision, target >= 1.0)
 * with the overhead figures alongside.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as torch from "../src/torch/index.js";
import { makeViews } from "../src/augment/views.js";
import { Rng } from "../src/data/sampler.js";
import { atPrecision, createModel } from "../src/models/index.js";
import { createAlgorithm } from "../src/ssl/index.js";
import { parseConfig } from "../src/train/config.js";
import { EmaTeacher } from "../src/train/ema.js";
import { PYTHON, ensurePyTorch, median } from "./common.js";

const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "ssl_pytorch.py");
const B = 30;
const U = 30;

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "11" },
    steps: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    threads: { type: "string", default: "2" },
    "pytorch-cat": { type: "boolean", default: false },
    precision: { type: "string", default: torch.resolvePrecision("auto").precision },
  },
});
if (values.precision !== "bf16" && values.precision !== "fp32")
  throw new RangeError(`--precision must be bf16 or fp32, got ${values.precision}`);
const precision = values.precision;
const rounds = Number(values.rounds);
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const threads = Number(values.threads);
for (const [k, v] of Object.entries({ rounds, steps, threads })) {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${k} must be a positive integer, got ${v}`);
}
if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`--warmup must be a non-negative integer, got ${warmup}`);

/** ferkit's model, optimizer, teacher and inputs. */
class FerkitSide {
  readonly model = createModel("vgg-fer");
  readonly net = atPrecision(this.model, precision);
  readonly teacher = createModel("vgg-fer");
  readonly ema: EmaTeacher;
  readonly opt: torch.optim.Adam;
  readonly algorithm = createAlgorithm(parseConfig({ algorithm: { name: "dtm" }, data: { unlabeled: { trainSplit: true } } }).algorithm, {
    numClasses: 7,
    numUnlabeled: U,
    labelSmoothing: 0,
  });
  readonly rng = new Rng(1);
  readonly labeledPixels = new Uint8Array(B * 48 * 48);
  readonly unlabeledPixels = new Uint8Array(U * 48 * 48);
  readonly y: torch.Tensor;
  readonly weak: torch.Tensor;
  readonly joint: torch.Tensor;

  constructor() {
    this.ema = new EmaTeacher(this.model, this.teacher, 0.999);
    this.opt = new torch.optim.Adam(this.model.parameters(), { lr: 5e-4 });
    this.model.train();
    const r = new Rng(2);
    for (const a of [this.labeledPixels, this.unlabeledPixels]) for (let i = 0; i < a.length; i++) a[i] = Math.floor(r.next() * 256);
    this.y = torch.keep(torch.randint(0, 7, [B]));
    this.weak = torch.keep(torch.rand([2 * U, 1, 48, 48]));
    this.joint = torch.keep(torch.rand([B + U, 1, 48, 48]));
  }

  /** (a): the full DTM step. */
  dtmStep(): void {
    torch.tidy(() => {
      const x = makeViews({ data: this.labeledPixels, shape: [B, 1, 48, 48] }, this.rng, { weak: 1, strong: 0 }).weak[0];
      const v = makeViews({ data: this.unlabeledPixels, shape: [U, 1, 48, 48] }, this.rng, { weak: 2, strong: 1 });
      const out = this.algorithm.step(
        this.net,
        { x, y: this.y, index: Int32Array.from({ length: B }, (_, i) => i) },
        { weak: v.weak, strong: v.strong, index: Int32Array.from({ length: U }, (_, i) => i) },
      );
      this.opt.zeroGrad();
      out.loss.backward();
      this.opt.step();
      this.ema.update();
    });
  }

  /** (b): the model compute the step needs. */
  computeStep(): void {
    torch.tidy(() => {
      torch.noGrad(() => this.net.forward(this.weak).softmax(1));
      const logits = this.net.forward(this.joint);
      const loss = torch.F.crossEntropy(logits.narrow(0, 0, B), this.y);
      this.opt.zeroGrad();
      loss.backward();
      this.opt.step();
      this.ema.update();
    });
  }

  measure(fn: () => void, warmupSteps = warmup): number {
    for (let i = 0; i < warmupSteps; i++) fn();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) fn();
    return steps / ((performance.now() - t0) / 1000);
  }
}

/** A long-lived `ssl_pytorch.py --serve` process. */
class PyTorchSide {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;
  #stderr = "";

  constructor(cat: boolean) {
    const args = [SCRIPT, "--serve", "--threads", String(threads), "--labeled", String(B), "--unlabeled", String(U)];
    if (cat) args.push("--cat");
    if (precision === "bf16") args.push("--precision", "bf16", "--memory-format", "channels_last");
    this.#child = spawn(PYTHON, args);
    this.#child.stderr.on("data", (d: Buffer) => (this.#stderr += d.toString()));
    this.#lines = createInterface({ input: this.#child.stdout })[Symbol.asyncIterator]();
  }

  async reply(): Promise<Record<string, unknown>> {
    const next = await this.#lines.next();
    if (next.done === true) throw new Error(`the PyTorch worker exited:\n${this.#stderr}`);
    return JSON.parse(next.value) as Record<string, unknown>;
  }

  async measure(warmupSteps = warmup): Promise<number> {
    this.#child.stdin.write(`${JSON.stringify({ steps, warmup: warmupSteps })}\n`);
    return (await this.reply()).steps_s as number;
  }

  close(): void {
    this.#child.stdin.end();
  }
}

ensurePyTorch();
torch.setNumThreads(threads);
console.log(
  `ferkit SSL step benchmark: DTM on VGG-FER 48x48, ${B} labeled + ${U} unlabeled, ${precision}; libtorch ${torch.libtorchVersion()}, ${threads} threads, ${rounds} rounds x ${steps} steps (+${warmup} warm-up)`,
);
torch.manualSeed(0);
const ferkit = new FerkitSide();
const py = new PyTorchSide(false);
const pyCat = values["pytorch-cat"] ? new PyTorchSide(true) : null;
await py.reply();
if (pyCat !== null) await pyCat.reply();
ferkit.measure(() => ferkit.dtmStep(), 2);
ferkit.measure(() => ferkit.computeStep(), 2);
await py.measure(2);
if (pyCat !== null) await pyCat.measure(2);

const s = { dtm: [] as number[], compute: [] as number[], pytorch: [] as number[], pytorchCat: [] as number[] };
for (let r = 1; r <= rounds; r++) {
  const dtm = ferkit.measure(() => ferkit.dtmStep());
  const compute = ferkit.measure(() => ferkit.computeStep());
  const pytorch = await py.measure();
  const pytorchCat = pyCat === null ? null : await pyCat.measure();
  s.dtm.push(dtm);
  s.compute.push(compute);
  s.pytorch.push(pytorch);
  if (pytorchCat !== null) s.pytorchCat.push(pytorchCat);
  console.log(
    `  round ${r}/${rounds}: ferkit DTM step ${dtm.toFixed(3)} steps/s, model compute alone ${compute.toFixed(3)} steps/s, PyTorch DTM step ${pytorch.toFixed(3)} steps/s` +
      (pytorchCat === null ? "" : `, PyTorch (cat) ${pytorchCat.toFixed(3)} steps/s`),
  );
}
py.close();
pyCat?.close();

const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const f = median(s.dtm);
const c = median(s.compute);
const p = median(s.pytorch);
const ratio = median(s.dtm.map((x, i) => x / s.pytorch[i]));
const overhead = median(s.compute.map((x, i) => x / s.dtm[i]));
const catRatio = s.pytorchCat.length > 0 ? median(s.dtm.map((x, i) => x / s.pytorchCat[i])) : null;
console.log(
  `ferkit DTM step: ${(1000 / f).toFixed(0)} ms; the model compute it needs: ${(1000 / c).toFixed(0)} ms; overhead ${overhead.toFixed(3)} x (target <= 1.1)`,
);
console.log(`PyTorch DTM step (reference style): ${(1000 / p).toFixed(0)} ms; ferkit / PyTorch = ${ratio.toFixed(3)} (target >= 1.0)`);
if (catRatio !== null) console.log(`PyTorch DTM step with concatenated views (USB's use_cat): ferkit / PyTorch = ${catRatio.toFixed(3)}`);
console.log(
  JSON.stringify({
    ferkit_steps_s: r3(f),
    pytorch_steps_s: r3(p),
    ratio: r3(ratio),
    model_compute_steps_s: r3(c),
    overhead: r3(overhead),
    pytorch_cat_steps_s: s.pytorchCat.length > 0 ? r3(median(s.pytorchCat)) : null,
    ratio_vs_cat: catRatio === null ? null : r3(catRatio),
    precision,
    batch: { labeled: B, unlabeled: U },
    threads,
    rounds,
    steps,
  }),
);
