/**
 * Data-parallel training on this machine, measured on real trainings (the quick start's preset
 * by default: FaceRes at 64x64, DTM, 64 labeled + 64 unlabeled images per step):
 *
 *   (a) one process with 2 threads against (b) `--nproc-per-node 2`, one thread each: steps/s
 *       from the runs' `step` events (the first window left out as warm-up), alternated over
 *       `--rounds` so drift hits both; for (b) also the share of rank 0's wall time spent in
 *       collectives (waiting for the other rank included) and the bytes it hands to them per step;
 *   (c) one process with 2 threads at the per-rank batch of N machines (B / N for N = 2, 4, 8):
 *       the compute of one step on N machines.
 *
 * From (c) and the bytes all-reduced per step it prints, labeled as an estimate, the step time on
 * N such machines (one process of 2 threads each) at 1, 10 and 25 Gbit/s: compute(B / N) plus a
 * ring all-reduce, 2 (N - 1) / N x bytes / bandwidth + 2 (N - 1) x 50 us of latency.
 *
 *   npm run bench:dist
 *   node dist/bench/dist.js --rounds 1 --steps 60
 *
 * Options: --preset (fer2013-ft-faceres-dtm-quick), --steps per run (100), --rounds (2). The last
 * line printed is one JSON object with every figure.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { median } from "./common.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "fer2013-ft-faceres-dtm-quick" },
    steps: { type: "string", default: "100" },
    rounds: { type: "string", default: "2" },
  },
});
const steps = Number(values.steps);
const logEvery = 20;
const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-bench-dist-"));

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Window {
  steps_s: number;
  comm_share?: number;
  comm_bytes?: number;
}

/** Trains the preset for `steps` and returns its step windows after the first. */
function run(name: string, extra: string[]): Window[] {
  const out = path.join(work, name);
  const r = spawnSync(
    process.execPath,
    [bin, "train", "--preset", values.preset as string, "--steps", String(steps), "--out", out, "--no-progress", "--no-report", ...extra],
    { encoding: "utf8", env: { ...process.env } },
  );
  if (r.status !== 0) throw new Error(`${name}: ${r.stderr}`);
  const events = readFileSync(path.join(out, "log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  rmSync(out, { recursive: true, force: true });
  return events.filter((e) => e.event === "step").slice(1) as unknown as Window[];
}

const common = ["--set", `train.logEvery=${logEvery}`, "--set", `train.epochSteps=${steps}`];
const single: number[] = [];
const two: number[] = [];
const share: number[] = [];
const bytes: number[] = [];
for (let round = 0; round < Number(values.rounds); round++) {
  for (const w of run(`single-${round}`, [...common, "--threads", "2"])) single.push(w.steps_s);
  const port = String(await freePort());
  for (const w of run(`two-${round}`, [...common, "--nproc-per-node", "2", "--master-port", port])) {
    two.push(w.steps_s);
    share.push(w.comm_share as number);
    bytes.push(w.comm_bytes as number);
  }
  console.log(
    `round ${round + 1}: 1 process x 2 threads ${median(single).toFixed(2)} steps/s, 2 processes x 1 thread ${median(two).toFixed(2)} steps/s`,
  );
}

const preset = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "configs", `${values.preset}.json`), "utf8")) as {
  train: { batchSize: number };
};
const B = preset.train.batchSize;
const computeMs: Record<number, number> = { 1: 1000 / median(single) };
for (const n of [2, 4, 8])
  computeMs[n] = 1000 / median(run(`batch-${n}`, [...common, "--threads", "2", "--batch-size", String(B / n)]).map((w) => w.steps_s));
const bytesPerStep = median(bytes);
const ring = (n: number, gbit: number): number => ((2 * (n - 1)) / n) * ((bytesPerStep * 8) / (gbit * 1e9)) * 1000 + 2 * (n - 1) * 0.05;

console.log(`\n${values.preset}, global batch ${B}, ${steps} steps per run, windows of ${logEvery} steps (first left out)`);
console.log(`1 process x 2 threads:   ${median(single).toFixed(2)} steps/s`);
console.log(`2 processes x 1 thread:  ${median(two).toFixed(2)} steps/s (ratio ${(median(two) / median(single)).toFixed(2)})`);
console.log(`  rank 0 in collectives: ${(100 * median(share)).toFixed(1)} % of its wall time (waiting for the other rank included)`);
console.log(`  handed to collectives: ${(bytesPerStep / 1e6).toFixed(2)} MB per step per rank`);
console.log(`\nEstimate (not measured): N machines like this one, one process x 2 threads each, ring all-reduce`);
console.log(
  `| machines | compute ms (batch B/N, measured) | step ms at 1 / 10 / 25 Gbit/s | speed-up vs 1 machine at 1 / 10 / 25 Gbit/s |`,
);
console.log(`|---|---|---|---|`);
const estimates: Record<string, unknown>[] = [];
for (const n of [2, 4, 8]) {
  const stepMs = [1, 10, 25].map((g) => computeMs[n] + ring(n, g));
  estimates.push({ machines: n, compute_ms: computeMs[n], step_ms: stepMs });
  console.log(
    `| ${n} | ${computeMs[n].toFixed(1)} | ${stepMs.map((s) => s.toFixed(1)).join(" / ")} | ${stepMs.map((s) => (computeMs[1] / s).toFixed(2)).join(" / ")} |`,
  );
}
rmSync(work, { recursive: true, force: true });
console.log(
  JSON.stringify({
    preset: values.preset,
    single_steps_s: median(single),
    two_process_steps_s: median(two),
    comm_share: median(share),
    comm_bytes_per_step: bytesPerStep,
    compute_ms: computeMs,
    estimates,
  }),
);
