/**
 * Memory stability of a long training run: VggFer at batch 64, one tidy() scope per
 * step (forward, cross-entropy, backward, Adam step), fresh random inputs every step.
 * Samples the process RSS every `--every` steps; the growth is measured from the
 * sample at `--warmup` steps (allocator pools, optimizer state and oneDNN caches are
 * in place by then) to the end. Target: within 5%.
 *
 * A single RSS reading also shows how much freed memory the C allocator (glibc malloc)
 * happens to keep at that moment, which swings by a few hundred MB from step to step
 * without any leak. So a sample due at a step where the free pages are returned to the
 * OS (see --trim-every) is read right after that release, as the trainer leaves the
 * process, and the JSON judges those readings. Each sample line also gives the minimum
 * RSS over the last `--every` steps (read after every step), which rises only when
 * memory is really retained; the summary reports the growth of both.
 *
 *   npm run bench:memory                      # 2,000 steps (about an hour on 2 cores)
 *   node dist/bench/memory.js --steps 300     # quicker
 *
 * Options: --steps (2000), --batch (64), --threads (2), --every (100), --warmup (200), --precision
 * (bf16 or fp32, default ferkit's own: bf16 on a CPU with native bfloat16; bf16 also exercises
 * the autocast regions' weight-cast cache, released at the end of each),
 * --trim-every (50; 0 = never): return the C allocator's free pages to the OS every that
 * many steps with `torch.releaseFreeMemory()`, as the trainer does every `train.logEvery`
 * (default 50) steps. A sample due at the same step is read after the trim.
 * The last line printed is one JSON object:
 * `{"steps","rss_mb_after_warmup","rss_mb_end","growth_pct","live_tensors_end","trim_every","read_after_trim"}`.
 */
import { parseArgs } from "node:util";
import * as torch from "../src/torch/index.js";
import { atPrecision, createModel } from "../src/models/index.js";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: process.env.FERKIT_BENCH_STEPS ?? "2000" },
    batch: { type: "string", default: "64" },
    threads: { type: "string", default: "2" },
    every: { type: "string", default: "100" },
    warmup: { type: "string", default: "200" },
    "trim-every": { type: "string", default: "50" },
    precision: { type: "string", default: torch.resolvePrecision("auto").precision },
  },
});
if (values.precision !== "bf16" && values.precision !== "fp32")
  throw new RangeError(`--precision must be bf16 or fp32, got ${values.precision}`);
const precision: "bf16" | "fp32" = values.precision;
const steps = Number(values.steps);
const batch = Number(values.batch);
const threads = Number(values.threads);
const every = Number(values.every);
const warmup = Math.min(Number(values.warmup), steps);
const trimEvery = Number(values["trim-every"]);
if (!Number.isInteger(trimEvery) || trimEvery < 0) throw new RangeError(`--trim-every must be a non-negative integer, got ${trimEvery}`);
for (const [k, v] of Object.entries({ steps, batch, threads, every, warmup })) {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${k} must be a positive integer, got ${v}`);
}

const mb = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

torch.setNumThreads(threads);
torch.manualSeed(0);
const model = createModel("vgg-fer");
model.train();
const net = atPrecision(model, precision);
const opt = new torch.optim.Adam(model.parameters(), { lr: 1e-3 });

interface Sample {
  step: number;
  rssMb: number;
  /** Lowest RSS read after any step since the previous sample. */
  minRssMb: number;
  heapMb: number;
  liveTensors: number;
  loss: number;
  seconds: number;
}
const samples: Sample[] = [];
const t0 = performance.now();
let windowMin = Infinity;
const take = (step: number, loss: number): void => {
  const rss = process.memoryUsage.rss();
  const s: Sample = {
    step,
    rssMb: mb(rss),
    minRssMb: mb(Math.min(windowMin, rss)),
    heapMb: mb(process.memoryUsage().heapUsed),
    liveTensors: torch.liveTensors(),
    loss,
    seconds: (performance.now() - t0) / 1000,
  };
  windowMin = Infinity;
  samples.push(s);
  console.log(
    `step ${String(s.step).padStart(5)}  rss ${s.rssMb.toFixed(1).padStart(7)} MB  (min ${s.minRssMb.toFixed(1).padStart(7)})  js heap ${s.heapMb.toFixed(1).padStart(6)} MB  ` +
      `live tensors ${s.liveTensors}  loss ${s.loss.toFixed(4)}  ${s.seconds.toFixed(0)} s`,
  );
};

console.log(
  `VggFer (${model.numParameters()} parameters), batch ${batch}, ${precision}, ${threads} threads, ${steps} steps, ${trimEvery > 0 ? `free memory released every ${trimEvery} steps` : "free memory never released"}`,
);
take(0, NaN);
for (let step = 1; step <= steps; step++) {
  const loss = torch.tidy(() => {
    const x = torch.randn([batch, 1, 48, 48]);
    const y = torch.randint(0, 7, [batch]);
    const out = net.forward(x);
    const l = torch.F.crossEntropy(out, y);
    opt.zeroGrad();
    l.backward();
    opt.step();
    return l.item();
  });
  windowMin = Math.min(windowMin, process.memoryUsage.rss());
  if (trimEvery > 0 && step % trimEvery === 0) torch.releaseFreeMemory();
  if (step % every === 0 || step === steps || step === warmup) {
    if (samples[samples.length - 1].step !== step) take(step, loss);
  }
}

const base = samples.find((s) => s.step === warmup) ?? samples[0];
const end = samples[samples.length - 1];
const pct = (a: number, b: number): number => Math.round(((b - a) / a) * 1000) / 10;
const growthPct = pct(base.rssMb, end.rssMb);
const sign = (x: number): string => (x >= 0 ? `+${x}` : String(x));
const after = samples.filter((s) => s.step >= base.step);
console.log(
  `after warm-up: RSS readings ${Math.min(...after.map((s) => s.rssMb))}..${Math.max(...after.map((s) => s.rssMb))} MB; ` +
    `minimum over the window ${base.minRssMb} MB at step ${base.step} -> ${end.minRssMb} MB at step ${end.step}: ${sign(pct(base.minRssMb, end.minRssMb))}%`,
);
console.log(
  `RSS ${base.rssMb} MB at step ${base.step} -> ${end.rssMb} MB at step ${end.step}: ${sign(growthPct)}% ` +
    `(target within 5%: ${Math.abs(growthPct) <= 5 ? "met" : "NOT met"}); live tensors ${end.liveTensors}`,
);
console.log(
  JSON.stringify({
    steps,
    rss_mb_after_warmup: base.rssMb,
    rss_mb_end: end.rssMb,
    growth_pct: growthPct,
    live_tensors_end: end.liveTensors,
    trim_every: trimEvery,
    read_after_trim: trimEvery > 0 && [every, warmup, steps].every((k) => k % trimEvery === 0),
  }),
);
