/**
 * Training throughput of ferkit against PyTorch on the same machine, the same libtorch build
 * (Debian's 1.13) and the same models, at float32 and at bfloat16 mixed precision:
 *
 *   vgg-fer-w0.5  VggFer width 0.5 (ferkit's default model) on random 48x48x1 images, batch 64;
 *   vgg-fer       VggFer width 1, batch 64;
 *   resnet18      ResNet-18 (imagenet stem) on random 112x112x3 images, batch 32;
 *
 * one step = forward + cross-entropy + backward + Adam step (gradients set to none). Four sides
 * per model: ferkit fp32 and ferkit bf16 (forward under autocast, float32 logits and loss, as
 * the trainer runs it), PyTorch fp32 as a PyTorch user gets it by default (contiguous), and
 * PyTorch under `torch.autocast("cpu", dtype=torch.bfloat16)` with channels_last model and
 * input (its fastest CPU recipe). ferkit's convolution weights are channels_last at both
 * precisions (its default). Each round times every side once, in the orders of a balanced
 * Latin square (Williams design: over 4 rounds each side runs once in each position and once
 * after each other side), ferkit in this process and PyTorch in one long-lived
 * `/usr/bin/python3 bench/engine_pytorch.py ... --serve` subprocess per side, so the sides are
 * timed close together on a machine whose speed drifts; each measurement runs its own untimed
 * warm-up steps first. The report gives the median img/s per side over the rounds, and the
 * median of the per-round ratios as a paired check.
 *
 *   npm run bench:engine
 *   node dist/bench/engine.js --rounds 3 --steps 5 --warmup 2 --models vgg-fer-w0.5
 *
 * Options (environment variable in brackets): --rounds (FERKIT_BENCH_ROUNDS, 8; a multiple of 4 balances the orders), --steps timed
 * steps per measurement (FERKIT_BENCH_STEPS, 4), --warmup untimed steps before each measurement
 * (FERKIT_BENCH_WARMUP, 1; plus 2 once at start), --threads (2), --models
 * (vgg-fer-w0.5,vgg-fer,resnet18), --max-other-load: a measurement during which other processes
 * kept more than this many cores busy is repeated (0.3, up to --retries 2 times),
 * --py-no-inplace: PyTorch twins with out-of-place ReLU, --memory-format of ferkit's convolution
 * weights (channels_last, ferkit's default; contiguous).
 *
 * The last line printed is one JSON object: `{"results":[{"model","width","batch","threads",
 * "ferkit_precision","ferkit_img_s","ferkit_fp32_img_s","ferkit_bf16_img_s","pytorch_img_s",
 * "pytorch_bf16_img_s","ratio","ratio_bf16","ratio_fp32","paired_ratio","paired_ratio_bf16",
 * "paired_ratio_fp32"}],"min_ratio","min_ratio_bf16",
 * "min_ratio_fp32","ferkit_precision","native_bf16","ferkit_memory_format"}`, where `ratio` is
 * ferkit at its default precision (`auto`: bf16 on a CPU with native bfloat16) against PyTorch
 * fp32, `ratio_bf16` ferkit bf16 against PyTorch bf16 and `ratio_fp32` ferkit fp32 against
 * PyTorch fp32. Targets on a CPU with native bfloat16: min_ratio >= 2.0 (>= 2.5 for both
 * VGG-FER entries), min_ratio_bf16 >= 1.0.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as torch from "../src/torch/index.js";
import { atPrecision, createModel, defaultInputSize, type Classifier } from "../src/models/index.js";
import { PYTHON, ensurePyTorch, machineBusySeconds, median, run } from "./common.js";

// This file runs as dist/bench/engine.js; the Python twin stays in bench/.
const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "engine_pytorch.py");

/** A benchmarked model: the zoo model, its width and batch. */
interface Case {
  model: "vgg-fer" | "resnet18";
  width: number;
  batch: number;
}
const CASES: Record<string, Case> = {
  "vgg-fer-w0.5": { model: "vgg-fer", width: 0.5, batch: 64 },
  "vgg-fer": { model: "vgg-fer", width: 1, batch: 64 },
  resnet18: { model: "resnet18", width: 1, batch: 32 },
};
type Precision = "fp32" | "bf16";
/** The four sides timed per model. */
const SIDES = ["ferkit fp32", "ferkit bf16", "PyTorch fp32", "PyTorch bf16"] as const;
type Side = (typeof SIDES)[number];
/** Orders of the four sides, round after round: each side once in each position and once after each other side. */
const WILLIAMS = [
  [0, 1, 3, 2],
  [1, 2, 0, 3],
  [2, 3, 1, 0],
  [3, 0, 2, 1],
];

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: process.env.FERKIT_BENCH_ROUNDS ?? "8" },
    steps: { type: "string", default: process.env.FERKIT_BENCH_STEPS ?? "4" },
    warmup: { type: "string", default: process.env.FERKIT_BENCH_WARMUP ?? "1" },
    threads: { type: "string", default: "2" },
    models: { type: "string", default: Object.keys(CASES).join(",") },
    "max-other-load": { type: "string", default: "0.3" },
    retries: { type: "string", default: "2" },
    "py-no-inplace": { type: "boolean", default: false },
    "memory-format": { type: "string", default: "channels_last" },
  },
});
if (values["memory-format"] !== "channels_last" && values["memory-format"] !== "contiguous")
  throw new RangeError(`--memory-format must be channels_last or contiguous, got ${values["memory-format"]}`);
const memoryFormat: torch.MemoryFormat = values["memory-format"];
const rounds = Number(values.rounds);
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const threads = Number(values.threads);
const maxOtherLoad = Number(values["max-other-load"]);
const retries = Number(values.retries);
for (const [k, v] of Object.entries({ rounds, steps, threads })) {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${k} must be a positive integer, got ${v}`);
}
if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`--warmup must be a non-negative integer, got ${warmup}`);
const names = values.models.split(",").map((m) => m.trim());
for (const m of names) if (!(m in CASES)) throw new RangeError(`--models: unknown model "${m}" (known: ${Object.keys(CASES).join(", ")})`);

/** One timed measurement. */
interface Measurement {
  imgS: number;
  /** Average number of cores other processes kept busy while timing. */
  otherLoad: number;
}

function pythonArgs(c: Case, extra: string[]): string[] {
  const args = [SCRIPT, c.model, "--batch", String(c.batch), "--threads", String(threads), ...extra];
  if (c.width !== 1) args.push("--width", String(c.width));
  if (values["py-no-inplace"]) args.push("--no-inplace");
  return args;
}

function python(c: Case, extra: string[]): Record<string, unknown> {
  const args = pythonArgs(c, extra);
  const r = run(PYTHON, args);
  if (r.status !== 0) throw new Error(`${PYTHON} ${args.join(" ")} failed (${r.status}):\n${r.stderr}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** ferkit's side of one model: the model, its optimizer and a fixed random batch. */
class FerkitRunner {
  readonly model;
  readonly opt;
  readonly x: torch.Tensor;
  readonly y: torch.Tensor;
  readonly #nets: Record<Precision, Classifier>;

  constructor(readonly c: Case) {
    torch.manualSeed(0);
    this.model = createModel(c.model, { memoryFormat, width: c.width });
    this.model.train();
    this.opt = new torch.optim.Adam(this.model.parameters(), { lr: 1e-3 });
    this.x = torch.keep(torch.randn([c.batch, ...defaultInputSize(c.model)]));
    this.y = torch.keep(torch.randint(0, 7, [c.batch]));
    this.#nets = { fp32: atPrecision(this.model, "fp32"), bf16: atPrecision(this.model, "bf16") };
  }

  /** One training step as the trainer takes it at `precision`. */
  step(precision: Precision): void {
    torch.tidy(() => {
      const loss = torch.F.crossEntropy(this.#nets[precision].forward(this.x), this.y);
      this.opt.zeroGrad();
      loss.backward();
      this.opt.step();
    });
  }

  measure(precision: Precision, warmupSteps = warmup): Measurement {
    for (let i = 0; i < warmupSteps; i++) this.step(precision);
    const busy0 = machineBusySeconds();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) this.step(precision);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const own = (cpu.user + cpu.system) / 1e6;
    return { imgS: (this.c.batch * steps) / seconds, otherLoad: Math.max(0, machineBusySeconds() - busy0 - own) / seconds };
  }

  dispose(): void {
    this.opt.dispose();
    this.model.dispose();
    this.x.dispose();
    this.y.dispose();
  }
}

/** PyTorch's side of one model at one precision: a long-lived `engine_pytorch.py --serve` process. */
class PyTorchWorker {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;
  #stderr = "";

  constructor(
    readonly name: string,
    c: Case,
    precision: Precision,
  ) {
    // fp32 as a PyTorch user gets it by default; bf16 as PyTorch's CPU AMP recipe runs fastest.
    const recipe = precision === "bf16" ? ["--precision", "bf16", "--memory-format", "channels_last"] : [];
    this.#child = spawn(PYTHON, pythonArgs(c, [...recipe, "--serve"]));
    this.#child.stderr.on("data", (d: Buffer) => (this.#stderr += d.toString()));
    this.#lines = createInterface({ input: this.#child.stdout })[Symbol.asyncIterator]();
  }

  async #reply(): Promise<Record<string, unknown>> {
    const next = await this.#lines.next();
    if (next.done === true) throw new Error(`the PyTorch worker for ${this.name} exited:\n${this.#stderr}`);
    return JSON.parse(next.value) as Record<string, unknown>;
  }

  /** Waits until the model is built. */
  async ready(): Promise<void> {
    await this.#reply();
  }

  async measure(warmupSteps = warmup): Promise<Measurement> {
    this.#child.stdin.write(`${JSON.stringify({ steps, warmup: warmupSteps })}\n`);
    const r = await this.#reply();
    return { imgS: r.img_s as number, otherLoad: r.other_load as number };
  }

  close(): void {
    this.#child.stdin.end();
  }
}

/** Repeats a measurement disturbed by other processes (up to `retries` times), keeping the least disturbed. */
async function measureQuietly(fn: () => Measurement | Promise<Measurement>): Promise<Measurement> {
  let best = await fn();
  for (let i = 0; i < retries && best.otherLoad > maxOtherLoad; i++) {
    console.log(`    (other processes kept ${best.otherLoad.toFixed(2)} cores busy; measuring again)`);
    const m = await fn();
    if (m.otherLoad < best.otherLoad) best = m;
  }
  return best;
}

// ------------------------------------------------------------------------------- main

ensurePyTorch();
torch.setNumThreads(threads);
const nativeBf16 = torch.cpuHasNativeBf16();
const defaultPrecision = torch.resolvePrecision("auto").precision;
console.log(
  `ferkit engine benchmark: libtorch ${torch.libtorchVersion()}, ${threads} threads, ${rounds} rounds x ${steps} timed steps (+${warmup} warm-up); ` +
    `ferkit weights ${memoryFormat}, default precision ${defaultPrecision} (native bfloat16: ${nativeBf16 ? "yes" : "no"}); ` +
    `PyTorch fp32 contiguous, PyTorch bf16 autocast + channels_last`,
);

const runners = new Map<string, FerkitRunner>();
for (const name of names) {
  const c = CASES[name];
  const runner = new FerkitRunner(c);
  const desc = python(c, ["--describe"]);
  const pyShapes = desc.state_dict as Record<string, number[]>;
  const ours = runner.model.stateDict();
  const problems: string[] = [];
  for (const [k, t] of ours) {
    const theirs = pyShapes[k];
    if (theirs === undefined) problems.push(`${k} only in ferkit`);
    else if (theirs.join(",") !== t.shape.join(",")) problems.push(`${k}: ferkit [${t.shape.join(", ")}], PyTorch [${theirs.join(", ")}]`);
  }
  for (const k of Object.keys(pyShapes)) if (!ours.has(k)) problems.push(`${k} only in PyTorch`);
  const n = runner.model.numParameters();
  console.log(
    `${name}: parameters ferkit ${n}, PyTorch ${String(desc.params)}; state_dict ${ours.size} tensors, names and shapes ${problems.length === 0 ? "identical" : "DIFFER"}`,
  );
  if (n !== desc.params || problems.length > 0)
    throw new Error(`${name}: the ferkit and PyTorch models differ:\n  ${problems.join("\n  ")}`);
  runners.set(name, runner);
}

// One PyTorch process per model and precision; every side runs two untimed steps before round 1.
const workers = new Map<string, Record<Precision, PyTorchWorker>>();
for (const name of names) {
  const c = CASES[name];
  const pair = { fp32: new PyTorchWorker(`${name} fp32`, c, "fp32"), bf16: new PyTorchWorker(`${name} bf16`, c, "bf16") };
  workers.set(name, pair);
  for (const precision of ["fp32", "bf16"] as const) {
    await pair[precision].ready();
    runners.get(name)!.measure(precision, 2);
    await pair[precision].measure(2);
  }
}

function measureSide(name: string, side: Side): Promise<Measurement> {
  const precision: Precision = side.endsWith("bf16") ? "bf16" : "fp32";
  if (side.startsWith("ferkit")) return measureQuietly(() => runners.get(name)!.measure(precision));
  return measureQuietly(() => workers.get(name)![precision].measure());
}

const samples = new Map<string, Record<Side, number[]>>(
  names.map((m) => [m, { "ferkit fp32": [], "ferkit bf16": [], "PyTorch fp32": [], "PyTorch bf16": [] }]),
);
for (let r = 1; r <= rounds; r++) {
  const order = WILLIAMS[(r - 1) % WILLIAMS.length].map((k) => SIDES[k]);
  for (const name of names) {
    const line: string[] = [];
    let load = 0;
    for (const side of order) {
      const m = await measureSide(name, side);
      samples.get(name)![side].push(m.imgS);
      line.push(`${side} ${m.imgS.toFixed(1).padStart(6)}`);
      load = Math.max(load, m.otherLoad);
    }
    console.log(`  round ${r}/${rounds} ${name.padEnd(12)} ${line.join("   ")} img/s   (other load <= ${load.toFixed(2)} cores)`);
  }
}

for (const pair of workers.values()) for (const w of Object.values(pair)) w.close();

const results = names.map((name) => {
  const c = CASES[name];
  const s = samples.get(name)!;
  const med = (side: Side): number => median(s[side]);
  const ferkitDefault = defaultPrecision === "bf16" ? med("ferkit bf16") : med("ferkit fp32");
  const paired = (a: Side, b: Side): number => round3(median(s[a].map((x, i) => x / s[b][i])));
  return {
    model: name,
    width: c.width,
    batch: c.batch,
    threads,
    ferkit_precision: defaultPrecision,
    ferkit_img_s: round1(ferkitDefault),
    ferkit_fp32_img_s: round1(med("ferkit fp32")),
    ferkit_bf16_img_s: round1(med("ferkit bf16")),
    pytorch_img_s: round1(med("PyTorch fp32")),
    pytorch_bf16_img_s: round1(med("PyTorch bf16")),
    ratio: round3(ferkitDefault / med("PyTorch fp32")),
    ratio_bf16: round3(med("ferkit bf16") / med("PyTorch bf16")),
    ratio_fp32: round3(med("ferkit fp32") / med("PyTorch fp32")),
    paired_ratio: paired(defaultPrecision === "bf16" ? "ferkit bf16" : "ferkit fp32", "PyTorch fp32"),
    paired_ratio_bf16: paired("ferkit bf16", "PyTorch bf16"),
    paired_ratio_fp32: paired("ferkit fp32", "PyTorch fp32"),
  };
});
for (const r of results) {
  console.log(
    `${r.model} (batch ${r.batch}, ${r.threads} threads, medians of ${rounds}): ferkit fp32 ${r.ferkit_fp32_img_s}, bf16 ${r.ferkit_bf16_img_s}; ` +
      `PyTorch fp32 ${r.pytorch_img_s}, bf16 ${r.pytorch_bf16_img_s} img/s; ` +
      `ratio ${r.ratio} (ferkit ${r.ferkit_precision} / PyTorch fp32), bf16 ${r.ratio_bf16}, fp32 ${r.ratio_fp32}; ` +
      `medians of per-round ratios ${r.paired_ratio}, ${r.paired_ratio_bf16}, ${r.paired_ratio_fp32}`,
  );
}
const minRatio = Math.min(...results.map((r) => r.ratio));
const minRatioBf16 = Math.min(...results.map((r) => r.ratio_bf16));
const minRatioFp32 = Math.min(...results.map((r) => r.ratio_fp32));
if (nativeBf16) {
  const vgg = results.filter((r) => r.model.startsWith("vgg-fer")).map((r) => r.ratio);
  const met = (ok: boolean): string => (ok ? "met" : "NOT met");
  const vggLine = vgg.length === 0 ? "" : `; VGG-FER ${Math.min(...vgg)}, target >= 2.5: ${met(Math.min(...vgg) >= 2.5)}`;
  console.log(
    `min ratio ${minRatio} (target >= 2.0: ${met(minRatio >= 2)}${vggLine}); ` +
      `min ratio bf16 ${minRatioBf16} (target >= 1.0: ${met(minRatioBf16 >= 1)}); min ratio fp32 ${minRatioFp32}`,
  );
} else {
  console.log(`min ratio ${minRatio}, bf16 ${minRatioBf16}, fp32 ${minRatioFp32} (no native bfloat16 here: the bf16 targets do not apply)`);
}
for (const runner of runners.values()) runner.dispose();
console.log(
  JSON.stringify({
    results,
    min_ratio: minRatio,
    min_ratio_bf16: minRatioBf16,
    min_ratio_fp32: minRatioFp32,
    ferkit_precision: defaultPrecision,
    native_bf16: nativeBf16,
    ferkit_memory_format: memoryFormat,
  }),
);
