// Data-parallel training with real processes on 127.0.0.1 (`ferkit train --nproc-per-node`, and
// workers started by their environment variables as torchrun would): 2 ranks x B/2 take the same
// steps as 1 process x B; a DTM run on 2 ranks writes the files of a one-process run and its
// thresholds come from the whole labeled set; a rank killed with SIGKILL stops the other with a
// clear error, and the run resumes to exactly the uninterrupted result; bad launches fail on one
// line each.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { defaultDataRoot } from "../src/paths.js";
import { createModel } from "../src/models/index.js";
import { classConfidence } from "../src/ssl/thresholds.js";
import { predictProbs } from "../src/eval/evaluate.js";
import { disposeCheckpoint, loadCheckpoint } from "../src/train/checkpoint.js";
import { loadTrainData, readRunConfig } from "../src/train/trainer.js";
import * as torch from "../src/torch/index.js";
import { freePort, runCli, startCli, writeTinyConfig, type CliRun } from "./helpers.js";

const work = mkdtempSync(path.join(tmpdir(), "ferkit-ddp-"));
after(() => rmSync(work, { recursive: true, force: true }));
const quiet = ["--no-progress", "--no-report"];

/** Each event of a run's log. */
function events(run: string): Record<string, unknown>[] {
  return readFileSync(path.join(run, "log.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The largest absolute difference between two checkpoints' student weights. */
function weightDistance(a: string, b: string): number {
  const ca = loadCheckpoint(path.join(a, "checkpoints", "last.safetensors"));
  const cb = loadCheckpoint(path.join(b, "checkpoints", "last.safetensors"));
  try {
    let worst = 0;
    for (const [k, t] of ca.model) {
      const u = cb.model.get(k);
      assert.ok(u !== undefined, k);
      const x = Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
      const y = Array.from(u.toArray() as ArrayLike<number | bigint>, Number);
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
    }
    return worst;
  } finally {
    disposeCheckpoint(ca);
    disposeCheckpoint(cb);
  }
}

/** Two workers started by their environment (as torchrun starts them), each with its own extra arguments. */
async function envWorkers(args: (rank: number) => string[], extraEnv: Record<string, string> = {}): Promise<ReturnType<typeof startCli>[]> {
  const port = String(await freePort());
  return [0, 1].map((rank) =>
    startCli(args(rank), {
      env: {
        RANK: String(rank),
        WORLD_SIZE: "2",
        LOCAL_RANK: String(rank),
        LOCAL_WORLD_SIZE: "2",
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: port,
        ...extraEnv,
      },
    }),
  );
}

const tiny = writeTinyConfig(path.join(work, "tiny.json"));

describe("data-parallel training (c10d, Gloo)", () => {
  /**
   * Trains `steps` SGD steps in one process (B) and in two (B/2 each); returns the largest
   * difference of the step losses and of the final weights and buffers.
   */
  async function compareSteps(
    name: string,
    steps: number,
    lr: number,
    model: string[],
    twoOnly: string[] = [],
  ): Promise<{ loss: number; weights: number }> {
    const common = [
      ...["train", "--config", tiny, "--steps", String(steps), "--precision", "fp32", ...quiet, ...model],
      ...["--set", `train.epochSteps=${steps}`, "--set", "train.logEvery=1", "--set", "train.emaDecay=0", "--set", "train.augment=false"],
      ...["--set", "model.dropout=0", "--set", "optimizer.name=sgd", "--set", `optimizer.lr=${lr}`],
    ];
    const [one, two] = [path.join(work, `${name}-one`), path.join(work, `${name}-two${twoOnly.length > 0 ? "-variant" : ""}`)];
    if (!existsSync(one)) {
      const a = await runCli([...common, "--out", one]);
      assert.equal(a.code, 0, a.stderr);
    }
    const b = await runCli([...common, ...twoOnly, "--out", two, "--nproc-per-node", "2", "--master-port", String(await freePort())]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(events(two).find((e) => e.event === "start")?.world_size, 2);
    const losses = (run: string) => events(run).flatMap((e) => (e.event === "step" ? [e.loss as number] : []));
    assert.equal(losses(two).length, steps);
    return {
      loss: Math.max(...losses(two).map((l, i) => Math.abs(l - losses(one)[i]))),
      weights: weightDistance(one, two),
    };
  }

  test("2 ranks x B/2 take the same steps as 1 process x B (MobileFaceNet: no BatchNorm; no dropout, fp32)", async () => {
    const d = await compareSteps("plain", 6, 0.05, ["--set", "model.name=mobilefacenet", "--set", "model.inputSize=32"]);
    assert.ok(d.loss < 1e-5 && d.weights < 1e-5, JSON.stringify(d));
  });

  test("train.syncBatchNorm: VGG-FER's batch norms over both ranks' halves, as one process over the whole batch", async () => {
    // VGG-FER on 16 images is chaotic at higher learning rates (rounding grows 50x a step): 3 steps at 0.01.
    const synced = await compareSteps("syncbn", 3, 0.01, ["--set", "train.syncBatchNorm=true"]);
    assert.ok(synced.loss < 1e-5 && synced.weights < 1e-3, JSON.stringify(synced));
    // Each rank's own statistics (the default) are another computation: the check can tell.
    const perRank = await compareSteps("syncbn", 3, 0.01, ["--set", "train.syncBatchNorm=true"], ["--set", "train.syncBatchNorm=false"]);
    assert.ok(perRank.loss > 1e-4 && perRank.weights > 1e-2, JSON.stringify(perRank));
  });

  test("DTM on 2 ranks: the files of a one-process run, thresholds from the whole labeled set", async () => {
    const out = path.join(work, "dtm");
    const r = await runCli([
      ...["train", "--config", tiny, "--algorithm", "dtm", "--steps", "10", "--precision", "fp32", ...quiet],
      ...["--set", "train.epochSteps=10", "--set", "data.unlabeled.trainSplit=true", "--set", "algorithm.uratio=2"],
      ...["--out", out, "--nproc-per-node", "2", "--master-port", String(await freePort())],
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(out).sort(), ["checkpoints", "config.json", "log.jsonl", "metrics.json", "model.safetensors"]);
    assert.deepEqual(readdirSync(path.join(out, "checkpoints")).sort(), ["best.safetensors", "last.safetensors"]);
    const metrics = JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8")) as Record<string, unknown>;
    assert.equal(metrics.world_size, 2);
    assert.match(r.stdout, /PrivateTest: accuracy/);
    const log = events(out);
    const thresholds = log.find((e) => e.event === "thresholds") as { mu: (number | null)[]; correct_counts: number[] };
    const pseudo = log.find((e) => e.event === "pseudo_labels") as { n: number };
    assert.equal(pseudo.n, 10 * 2 * 16, "both ranks' pseudo-labels counted");
    // The teacher that set the thresholds is the one in the epoch's last checkpoint: its mu over
    // the whole labeled set, computed here in one process, is what the two ranks agreed on.
    const config = readRunConfig(out);
    const data = await loadTrainData(config, defaultDataRoot(), () => {}, false);
    const c = loadCheckpoint(path.join(out, "checkpoints", "last.safetensors"));
    const model = createModel(config.model.name, {
      numClasses: data.classes.length,
      inChannels: 1,
      width: config.model.width,
      dropout: config.model.dropout,
    });
    try {
      torch.noGrad(() => model.loadStateDict(c.ema ?? c.model));
      const probs = predictProbs(model, data.train.images, data.train.shape, { precision: "fp32" });
      const whole = classConfidence({ probs, labels: data.train.labels, numClasses: data.classes.length });
      assert.deepEqual(thresholds.correct_counts, whole.correctCounts);
      whole.mu.forEach((m, k) =>
        assert.ok(m === null ? thresholds.mu[k] === null : Math.abs((thresholds.mu[k] as number) - m) < 1e-5, `class ${k}`),
      );
    } finally {
      model.dispose();
      disposeCheckpoint(c);
    }
  });

  test("a rank killed with SIGKILL stops the other with a clear error; the run resumes to the uninterrupted result", async () => {
    const args = [...["train", "--config", tiny, "--steps", "30", "--precision", "fp32", ...quiet], "--set", "train.logEvery=1"];
    const reference = path.join(work, "uninterrupted");
    const ok = await runCli([...args, "--out", reference, "--nproc-per-node", "2", "--master-port", String(await freePort())]);
    assert.equal(ok.code, 0, ok.stderr);

    const killed = path.join(work, "killed");
    const ranks = await envWorkers(() => [...args, "--out", killed, "--dist-timeout", "20"]);
    // Kill rank 1 once the first epoch's checkpoint is written and the second epoch is under way.
    const stepped = (): boolean =>
      existsSync(path.join(killed, "log.jsonl")) && events(killed).some((e) => e.event === "step" && (e.step as number) >= 13);
    for (let i = 0; i < 600 && !stepped(); i++) await sleep(50);
    assert.ok(stepped(), "the run reached step 13");
    const t0 = performance.now();
    ranks[1].child.kill("SIGKILL");
    const rank0: CliRun = await ranks[0].done;
    assert.notEqual(rank0.code, 0);
    assert.ok(performance.now() - t0 < 20_000, "rank 0 stopped within the timeout");
    assert.match(
      rank0.stderr,
      /ferkit \[rank 0\]: allReduce failed on rank 0 of 2: .*(Connection reset by peer|Connection closed by peer)/,
    );
    assert.equal(existsSync(path.join(killed, "metrics.json")), false);

    const one = await runCli(["train", "--resume", killed, ...quiet]);
    assert.equal(one.code, 2);
    assert.match(one.stderr, /was trained by 2 process\(es\) and this resume has 1/);

    const resumed = await runCli([
      "train",
      "--resume",
      killed,
      ...quiet,
      "--nproc-per-node",
      "2",
      "--master-port",
      String(await freePort()),
    ]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resumed .* at step 10/);
    assert.equal(weightDistance(reference, killed), 0);
    const test = (run: string) => (JSON.parse(readFileSync(path.join(run, "metrics.json"), "utf8")) as { test: unknown }).test;
    assert.deepEqual(test(killed), test(reference));
  });

  test("two machines: network namespaces joined by a veth pair, one rank each, --nnodes 2", async (t) => {
    if (process.getuid?.() !== 0) return t.skip("network namespaces need root");
    const id = process.pid % 100000;
    const ns = [`fk-a-${id}`, `fk-b-${id}`];
    const dev = [`fka${id}`, `fkb${id}`];
    const ip = [`10.213.${id % 250}.1`, `10.213.${id % 250}.2`];
    const sh = (...args: string[]): string => {
      const r = spawnSync("ip", args, { encoding: "utf8" });
      assert.equal(r.status, 0, `ip ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    const bytes = (k: number): number => {
      const stats = JSON.parse(sh("-n", ns[k], "-s", "-j", "link", "show", dev[k])) as {
        stats64: { rx: { bytes: number }; tx: { bytes: number } };
      }[];
      return stats[0].stats64.rx.bytes + stats[0].stats64.tx.bytes;
    };
    try {
      for (const n of ns) sh("netns", "add", n);
      sh("link", "add", dev[0], "type", "veth", "peer", "name", dev[1]);
      for (const k of [0, 1]) {
        sh("link", "set", dev[k], "netns", ns[k]);
        sh("-n", ns[k], "addr", "add", `${ip[k]}/24`, "dev", dev[k]);
        sh("-n", ns[k], "link", "set", dev[k], "up");
        sh("-n", ns[k], "link", "set", "lo", "up");
      }
      const before = bytes(0);
      const out = path.join(work, "two-machines");
      const args = (node: number) => [
        ...["train", "--config", tiny, "--steps", "10", ...quiet, "--out", node === 0 ? out : path.join(work, "unused")],
        ...["--nnodes", "2", "--node-rank", String(node), "--nproc-per-node", "1", "--master-addr", ip[0], "--master-port", "29500"],
      ];
      const [a, b] = await Promise.all([0, 1].map((k) => runCli(args(k), { wrap: ["ip", "netns", "exec", ns[k]] })));
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      assert.match(a.stdout, /PrivateTest: accuracy/);
      assert.equal(b.stdout, "", "machine 1 prints nothing");
      assert.equal(existsSync(path.join(work, "unused")), false, "machine 1 writes nothing");
      assert.equal((JSON.parse(readFileSync(path.join(out, "metrics.json"), "utf8")) as { world_size: number }).world_size, 2);
      // Every step all-reduced the gradients over the veth pair: at least 10 x the model's float32 bytes crossed it.
      const params = (events(out).find((e) => e.event === "start") as { n_params: number }).n_params;
      assert.ok(params > 1_000_000, `${params} parameters`);
      assert.ok(bytes(0) - before > 10 * params * 4, `${bytes(0) - before} bytes over the veth pair`);
    } finally {
      for (const n of ns) spawnSync("ip", ["netns", "del", n]);
    }
  });

  test("data prepare --nproc-per-node 2: each rank aligns its share, one cache equal to one process's", async () => {
    const orl = path.join(defaultDataRoot(), "orl_att_faces");
    const prepare = (cache: string, ...more: string[]) =>
      runCli(["data", "prepare", orl, "--format", "pool", "--size", "48", "--cache", path.join(work, cache), "--json", ...more]);
    const one = await prepare("cache-one");
    const two = await prepare("cache-two", "--nproc-per-node", "2", "--master-port", String(await freePort()));
    assert.equal(one.code, 0, one.stderr);
    assert.equal(two.code, 0, two.stderr);
    const a = JSON.parse(one.stdout) as Record<string, unknown>;
    const b = JSON.parse(two.stdout) as Record<string, unknown>;
    assert.equal(b.world_size, 2);
    assert.equal(b.from_cache, false);
    assert.deepEqual([b.images, b.skipped], [a.images, a.skipped]);
    assert.ok((a.images as number) >= 390, `${String(a.images)} faces`);
    const files = (cache: string) => {
      const [dir] = readdirSync(path.join(work, cache));
      const manifest = JSON.parse(readFileSync(path.join(work, cache, dir, "manifest.json"), "utf8")) as Record<string, unknown>;
      const shards = readdirSync(path.join(work, cache, dir)).filter((f) => f.startsWith("shard-"));
      return { dir, sourceIndex: manifest.source_index, pixels: shards.map((f) => readFileSync(path.join(work, cache, dir, f))) };
    };
    assert.deepEqual(files("cache-two"), files("cache-one"));
    const again = await prepare("cache-two", "--nproc-per-node", "2", "--master-port", String(await freePort()));
    assert.equal((JSON.parse(again.stdout) as { from_cache: boolean }).from_cache, true);
  });

  test("bad launches: different configs, an uneven batch, a missing rank, a port in use: one line each", async () => {
    const base = ["train", "--config", tiny, "--steps", "4", ...quiet, "--join-timeout", "3"];
    const mismatch = await envWorkers((rank) => [...base, "--out", path.join(work, "mismatch"), "--seed", String(rank)]);
    for (const r of await Promise.all(mismatch.map((w) => w.done))) {
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /launched with different configs \(rank 1 has seed = 1 where rank 0 has 0\)/);
    }
    assert.equal(existsSync(path.join(work, "mismatch")), false);

    const uneven = await runCli([
      ...base,
      "--batch-size",
      "15",
      "--out",
      path.join(work, "uneven"),
      "--nproc-per-node",
      "2",
      "--master-port",
      String(await freePort()),
    ]);
    assert.equal(uneven.code, 2);
    assert.match(uneven.stderr, /train\.batchSize 15 does not split evenly over 2 processes/);

    const port = await freePort();
    const alone = await runCli([...base, "--out", path.join(work, "alone")], {
      env: { RANK: "0", WORLD_SIZE: "2", MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port) },
    });
    assert.equal(alone.code, 1);
    assert.ok(alone.ms < 15_000, `${alone.ms} ms`);
    assert.match(
      alone.stderr,
      /joining the process group at 127\.0\.0\.1:\d+ as rank 0 of 2: .*does every machine run with the same --nnodes/,
    );

    const taken = createServer().listen(0, "127.0.0.1");
    await new Promise((resolve) => taken.once("listening", resolve));
    try {
      const busy = await runCli([
        ...base,
        "--out",
        path.join(work, "busy"),
        "--nproc-per-node",
        "2",
        "--master-port",
        String((taken.address() as { port: number }).port),
      ]);
      assert.notEqual(busy.code, 0);
      assert.ok(busy.ms < 30_000, `${busy.ms} ms`);
      assert.match(busy.stderr, /ferkit \[rank 0\]: joining the process group .*(in use|bind|listen)/i);
    } finally {
      taken.close();
    }
  });
});
