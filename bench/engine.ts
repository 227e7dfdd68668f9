/**
 * Training throughput of ferkit against PyTorch on the same machine, the same
 * libtorch build (Debian's 1.13) and the same models:
 *
 *   (a) VggFer on random 48x48x1 images, batch 64;
 *   (b) ResNet-18 (imagenet stem) on random 112x112x3 images, batch 32;
 *
 * one step = forward + cross-entropy + backward + Adam step (gradients set to none).
 * For each round and each model, ferkit is timed in this process, then PyTorch in a
 * `/usr/bin/python3 bench/engine_pytorch.py <model> --serve` subprocess (one per model,
 * started once, so rounds are short and ferkit and PyTorch are timed close together on
 * a machine whose speed drifts); each measurement runs its own warm-up steps first,
 * which are not timed. The report gives the median img/s per side over the rounds, and
 * the median of the per-round ratios as a paired check.
 *
 *   npm run bench:engine
 *   node dist/bench/engine.js --rounds 3 --steps 5 --warmup 2 --models vgg-fer
 *
 * Options (environment variable in brackets): --rounds (FERKIT_BENCH_ROUNDS, 5),
 * --steps timed steps per measurement (FERKIT_BENCH_STEPS, 4), --warmup untimed steps
 * before each measurement (FERKIT_BENCH_WARMUP, 1; plus 2 once at start),
 * --threads (2), --models (vgg-fer,resnet18), --max-other-load: a measurement during
 * which other processes kept more than this many cores busy is repeated (0.3, up to
 * --retries 2 times), --py-no-inplace: PyTorch twin with out-of-place ReLU,
 * --memory-format of ferkit's convolution weights (channels_last, ferkit's default;
 * contiguous is PyTorch's default, which the twin keeps).
 *
 * The last line printed is one JSON object:
 * `{"results":[{"model","batch","threads","ferkit_img_s","pytorch_img_s","ratio"}],"min_ratio","ferkit_memory_format"}`.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as torch from "../src/torch/index.js";
import { createModel, defaultInputSize, type ModelName as ZooModel } from "../src/models/index.js";
/** The models both sides of the benchmark have. */
type ModelName = Extract<ZooModel, "vgg-fer" | "resnet18">;
import { PYTHON, ensurePyTorch, machineBusySeconds, median, run } from "./common.js";

// This file runs as dist/bench/engine.js; the Python twin stays in bench/.
const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "engine_pytorch.py");
const BATCH: Record<ModelName, number> = { "vgg-fer": 64, resnet18: 32 };

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: process.env.FERKIT_BENCH_ROUNDS ?? "7" },
    steps: { type: "string", default: process.env.FERKIT_BENCH_STEPS ?? "4" },
    warmup: { type: "string", default: process.env.FERKIT_BENCH_WARMUP ?? "1" },
    threads: { type: "string", default: "2" },
    models: { type: "string", default: "vgg-fer,resnet18" },
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
const models = values.models.split(",").map((m) => m.trim()) as ModelName[];
for (const m of models) if (!(m in BATCH)) throw new RangeError(`--models: unknown model "${m}" (known: ${Object.keys(BATCH).join(", ")})`);

/** One timed measurement. */
interface Measurement {
  imgS: number;
  /** Average number of cores other processes kept busy while timing. */
  otherLoad: number;
}

function pythonArgs(model: ModelName, extra: string[]): string[] {
  const args = [SCRIPT, model, "--batch", String(BATCH[model]), "--threads", String(threads), ...extra];
  if (values["py-no-inplace"]) args.push("--no-inplace");
  return args;
}

function python(model: ModelName, extra: string[]): Record<string, unknown> {
  const args = pythonArgs(model, extra);
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

  constructor(readonly name: ModelName) {
    torch.manualSeed(0);
    this.model = createModel(name, { memoryFormat });
    this.model.train();
    this.opt = new torch.optim.Adam(this.model.parameters(), { lr: 1e-3 });
    this.x = torch.keep(torch.randn([BATCH[name], ...defaultInputSize(name)]));
    this.y = torch.keep(torch.randint(0, 7, [BATCH[name]]));
  }

  step(): void {
    torch.tidy(() => {
      const out = this.model.forward(this.x);
      const loss = torch.F.crossEntropy(out, this.y);
      this.opt.zeroGrad();
      loss.backward();
      this.opt.step();
    });
  }

  measure(warmupSteps = warmup): Measurement {
    for (let i = 0; i < warmupSteps; i++) this.step();
    const busy0 = machineBusySeconds();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) this.step();
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const own = (cpu.user + cpu.system) / 1e6;
    return { imgS: (BATCH[this.name] * steps) / seconds, otherLoad: Math.max(0, machineBusySeconds() - busy0 - own) / seconds };
  }
}

/** PyTorch's side of one model: a long-lived `engine_pytorch.py --serve` process. */
class PyTorchWorker {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;
  #stderr = "";

  constructor(readonly name: ModelName) {
    this.#child = spawn(PYTHON, pythonArgs(name, ["--serve"]));
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
console.log(
  `ferkit engine benchmark: libtorch ${torch.libtorchVersion()}, ${threads} threads, ${rounds} rounds x ${steps} timed steps (+${warmup} warm-up); ferkit weights ${memoryFormat}, PyTorch contiguous`,
);

const runners = new Map<ModelName, FerkitRunner>();
for (const name of models) {
  const runner = new FerkitRunner(name);
  const desc = python(name, ["--describe"]);
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

// One PyTorch process per model; both sides run two untimed steps before round 1.
const workers = new Map<ModelName, PyTorchWorker>(models.map((m) => [m, new PyTorchWorker(m)]));
for (const name of models) {
  await workers.get(name)!.ready();
  runners.get(name)!.measure(2);
  await workers.get(name)!.measure(2);
}

const samples = new Map<ModelName, { ferkit: number[]; pytorch: number[] }>(models.map((m) => [m, { ferkit: [], pytorch: [] }]));
for (let r = 1; r <= rounds; r++) {
  for (const name of models) {
    const s = samples.get(name)!;
    const f = await measureQuietly(() => runners.get(name)!.measure());
    const p = await measureQuietly(() => workers.get(name)!.measure());
    s.ferkit.push(f.imgS);
    s.pytorch.push(p.imgS);
    console.log(
      `  round ${r}/${rounds} ${name.padEnd(9)} ferkit ${f.imgS.toFixed(1).padStart(6)} img/s   PyTorch ${p.imgS.toFixed(1).padStart(6)} img/s` +
        `   (other load ${f.otherLoad.toFixed(2)} / ${p.otherLoad.toFixed(2)} cores)`,
    );
  }
}

for (const w of workers.values()) w.close();

const results = models.map((name) => {
  const s = samples.get(name)!;
  const ferkit = median(s.ferkit);
  const pytorch = median(s.pytorch);
  return {
    model: name,
    batch: BATCH[name],
    threads,
    ferkit_img_s: round1(ferkit),
    pytorch_img_s: round1(pytorch),
    ratio: round3(ferkit / pytorch),
  };
});
for (const r of results) {
  const s = samples.get(r.model)!;
  const paired = median(s.ferkit.map((f, i) => f / s.pytorch[i]));
  console.log(
    `${r.model} (batch ${r.batch}, ${r.threads} threads): ferkit ${r.ferkit_img_s} img/s, PyTorch ${r.pytorch_img_s} img/s (medians of ${rounds}), ` +
      `ratio ${r.ratio} (median of per-round ratios ${round3(paired)})`,
  );
}
const minRatio = Math.min(...results.map((r) => r.ratio));
console.log(`min ratio ${minRatio} (target >= 0.95: ${minRatio >= 0.95 ? "met" : "NOT met"})`);
for (const runner of runners.values()) {
  runner.opt.dispose();
  runner.model.dispose();
  runner.x.dispose();
  runner.y.dispose();
}
console.log(JSON.stringify({ results, min_ratio: minRatio, ferkit_memory_format: memoryFormat }));
