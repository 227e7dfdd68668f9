// The trainer on real FER2013 data: smoke preset end to end, resume after SIGKILL,
// atomic checkpoints, a non-finite loss, config validation, and `ferkit eval --json`.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseConfig, ConfigError } from "../src/train/config.js";
import { loadCheckpoint, disposeCheckpoint } from "../src/train/checkpoint.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { acquireRunLock, readRunLock } from "../src/train/run_lock.js";
import { hostname } from "node:os";

const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-train-"));
after(() => rmSync(work, { recursive: true, force: true }));

const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });

/** A tiny config so a run takes seconds: 30 steps of 16 on 600 real FER2013 images. */
function tinyConfig(extra: Record<string, unknown> = {}): string {
  const file = path.join(work, `cfg-${Math.random().toString(36).slice(2)}.json`);
  const cfg = {
    name: "tiny",
    data: { limits: { train: 600, val: 200, test: 200 } },
    optimizer: { name: "adam", lr: 0.001, weightDecay: 0 },
    schedule: { name: "cosine", warmupSteps: 5 },
    train: { steps: 30, batchSize: 16, epochSteps: 10, emaDecay: 0.9, logEvery: 5 },
    ...extra,
  };
  writeFileSync(file, JSON.stringify(cfg));
  return file;
}

const readJsonl = (file: string): Record<string, unknown>[] =>
  readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe("config validation", () => {
  test("defaults fill every field; presets validate", () => {
    const c = parseConfig({});
    assert.equal(c.optimizer.name, "sgd");
    assert.equal(c.train.emaDecay, 0.999);
    const presets = readdirSync(path.join(PACKAGE_ROOT, "configs")).filter((f) => f.endsWith(".json"));
    assert.ok(presets.includes("fer2013-dtm.json") && presets.includes("smoke.json"));
    for (const preset of presets) {
      const c = parseConfig(JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "configs", preset), "utf8")), preset);
      assert.equal(`${c.name}.json`, preset, "a preset is named after its file");
    }
  });

  test("a wrong field names the field and the allowed values", () => {
    assert.throws(
      () => parseConfig({ optimizer: { name: "rmsprop" } }),
      (e: unknown) => e instanceof ConfigError && e.message.includes("optimizer.name") && e.message.includes('"sgd"|"adam"|"adamw"'),
    );
    assert.throws(() => parseConfig({ train: { steps: 0 } }), /train\.steps/);
    assert.throws(() => parseConfig({ trian: {} }), /Unrecognized key.*trian/);
    assert.throws(() => parseConfig({ train: { augment: "medium" } }), /train\.augment/);
    assert.equal(parseConfig({ train: { augment: "strong" } }).train.augment, "strong");
    assert.throws(() => parseConfig({ optimizer: { momentum: 0 } }), /optimizer\.nesterov: Nesterov momentum needs momentum > 0/);
    const r = cli("train", "--config", tinyConfig({ model: { name: "vgg-19" } }), "--out", path.join(work, "bad"));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /model\.name: Invalid option: expected one of "vgg-fer"\|"resnet18"/);
    const p = cli("train", "--preset", "nope");
    assert.equal(p.status, 2);
    assert.match(p.stderr, /unknown preset 'nope' \(allowed: .*smoke/);
  });
});

describe("the run lock (train.pid)", () => {
  test("a live process's lock refuses a second trainer; a dead or zombie process's lock is taken over; release removes it", async () => {
    const dir = mkdtempSync(path.join(work, "lock-"));
    const lockFile = path.join(dir, "train.pid");
    // Another live process (the test runner's parent) holds it.
    writeFileSync(lockFile, JSON.stringify({ pid: process.ppid, host: hostname(), started: "2026-01-01T00:00:00Z" }));
    assert.throws(
      () => acquireRunLock(dir),
      (e: unknown) => e instanceof ConfigError && /being trained by process \d+/.test(e.message),
    );
    // A process that has exited.
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    writeFileSync(lockFile, JSON.stringify({ pid: Number(dead.stdout), host: hostname(), started: "2026-01-01T00:00:00Z" }));
    let release = acquireRunLock(dir);
    assert.equal(readRunLock(dir)?.pid, process.pid);
    release();
    // A killed process its parent has not reaped yet (a zombie) is gone too.
    // (A parent that forks a child which exits, and sleeps without waiting for it.)
    const parent = spawn(
      "python3",
      ["-c", "import os, time\npid = os.fork()\nif pid == 0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(10)"],
      {
        stdio: ["ignore", "pipe", "ignore"],
      },
    );
    const zombiePid = Number(await new Promise<string>((resolve) => parent.stdout.once("data", (d) => resolve(String(d)))));
    await new Promise((resolve) => setTimeout(resolve, 300));
    writeFileSync(lockFile, JSON.stringify({ pid: zombiePid, host: hostname(), started: "2026-01-01T00:00:00Z" }));
    assert.match(readFileSync(`/proc/${zombiePid}/stat`, "utf8"), /\) Z /, "the child is a zombie");
    release = acquireRunLock(dir);
    assert.equal(readRunLock(dir)?.pid, process.pid);
    release();
    parent.kill();
    assert.ok(!existsSync(lockFile));
  });
});

describe("training runs", () => {
  test("a run killed with SIGKILL and resumed ends with the same metrics as an uninterrupted run", async () => {
    const cfg = tinyConfig();
    const full = path.join(work, "full");
    const r = cli("train", "--config", cfg, "--out", full, "--no-progress");
    assert.equal(r.status, 0, r.stderr);
    const expected = JSON.parse(readFileSync(path.join(full, "metrics.json"), "utf8")) as {
      test: { accuracy: number; macro_f1: number };
      steps: number;
    };
    assert.equal(expected.steps, 30);

    const killed = path.join(work, "killed");
    const child = spawn(process.execPath, [bin, "train", "--config", cfg, "--out", killed, "--no-progress"], { stdio: "ignore" });
    const last = path.join(killed, "checkpoints", "last.safetensors");
    for (let i = 0; i < 600 && !existsSync(last); i++) await sleep(100);
    assert.ok(existsSync(last), "the first checkpoint appeared");
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    assert.ok(!existsSync(path.join(killed, "metrics.json")), "killed before the end");
    const resumed = cli("train", "--resume", killed, "--no-progress");
    assert.equal(resumed.status, 0, resumed.stderr);
    const got = JSON.parse(readFileSync(path.join(killed, "metrics.json"), "utf8")) as typeof expected;
    assert.deepEqual(got.test, expected.test);
    assert.ok(readJsonl(path.join(killed, "log.jsonl")).some((e) => e.event === "resume"));

    // The run folder: config, log events, checkpoints, metrics, model file.
    const events = readJsonl(path.join(full, "log.jsonl"));
    assert.deepEqual([...new Set(events.map((e) => e.event))], ["start", "step", "epoch", "end"]);
    assert.equal(events.filter((e) => e.event === "epoch").length, 3);
    for (const f of ["config.json", "checkpoints/best.safetensors", "checkpoints/last.safetensors", "model.safetensors"])
      assert.ok(existsSync(path.join(full, f)), f);

    // ferkit eval on the finished run reproduces the reported test metrics' shape.
    const ev = cli("eval", "--model", full, "--split", "PublicTest", "--json");
    assert.equal(ev.status, 0, ev.stderr);
    const j = JSON.parse(ev.stdout) as {
      accuracy: number;
      macro_f1: number;
      per_class: Record<string, { f1: number; support: number }>;
      confusion_matrix: number[][];
      classes: string[];
      n: number;
    };
    assert.deepEqual(j.classes, ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]);
    assert.equal(j.n, 3577);
    assert.equal(
      j.confusion_matrix.flat().reduce((a, b) => a + b, 0),
      3577,
    );
    assert.equal(j.per_class.happy.support, 891);
    assert.ok(j.accuracy > 0 && j.accuracy <= 1);
  });

  test("strong labeled augmentation (RandAugment + Cutout) trains and resumes to the same end", async () => {
    const cfg = tinyConfig({ train: { steps: 20, batchSize: 16, epochSteps: 10, emaDecay: 0.9, logEvery: 5, augment: "strong" } });
    const full = path.join(work, "strong-full");
    const r = cli("train", "--config", cfg, "--out", full, "--no-progress");
    assert.equal(r.status, 0, r.stderr);
    const steps = readJsonl(path.join(full, "log.jsonl")).filter((e) => e.event === "step");
    assert.ok(steps.length >= 4 && steps.every((e) => Number.isFinite(e.loss)));
    const weak = path.join(work, "strong-weak");
    assert.equal(
      cli(
        "train",
        "--config",
        tinyConfig({ train: { steps: 20, batchSize: 16, epochSteps: 10, emaDecay: 0.9, logEvery: 5 } }),
        "--out",
        weak,
        "--no-progress",
      ).status,
      0,
    );
    const loss = (dir: string) => readJsonl(path.join(dir, "log.jsonl")).find((e) => e.event === "step")?.loss;
    assert.notEqual(loss(full), loss(weak), "the strong view is another batch than the weak one");
    const killed = path.join(work, "strong-killed");
    const child = spawn(process.execPath, [bin, "train", "--config", cfg, "--out", killed, "--no-progress"], { stdio: "ignore" });
    const last = path.join(killed, "checkpoints", "last.safetensors");
    for (let i = 0; i < 600 && !existsSync(last); i++) await sleep(100);
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(cli("train", "--resume", killed, "--no-progress").status, 0);
    const metrics = (dir: string) => (JSON.parse(readFileSync(path.join(dir, "metrics.json"), "utf8")) as { test: unknown }).test;
    assert.deepEqual(metrics(killed), metrics(full));
  });

  test("Ctrl-C (SIGINT) saves a checkpoint and exits 130; the run then resumes to the end", async () => {
    const run = path.join(work, "sigint");
    const child = spawn(process.execPath, [bin, "train", "--config", tinyConfig(), "--out", run, "--no-progress"], { stdio: "ignore" });
    const last = path.join(run, "checkpoints", "last.safetensors");
    for (let i = 0; i < 600 && !existsSync(last); i++) await sleep(100);
    child.kill("SIGINT");
    const code = await new Promise((resolve) => child.once("exit", (c) => resolve(c)));
    assert.equal(code, 130);
    assert.ok(readJsonl(path.join(run, "log.jsonl")).some((e) => e.event === "interrupted"));
    const resumed = cli("train", "--resume", run, "--no-progress");
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.ok(existsSync(path.join(run, "metrics.json")));
    const again = cli("train", "--resume", run);
    assert.equal(again.status, 2);
    assert.match(again.stderr, /already finished/);
  });

  test("a checkpoint write killed halfway leaves the previous checkpoint valid", async () => {
    const run = path.join(work, "full");
    const file = path.join(run, "checkpoints", "last.safetensors");
    const writer = path.join(work, "writer.mjs");
    writeFileSync(
      writer,
      `import { loadCheckpoint, saveCheckpoint } from ${JSON.stringify(path.join(PACKAGE_ROOT, "dist/src/train/checkpoint.js"))};
       const c = loadCheckpoint(${JSON.stringify(file)});
       for (;;) saveCheckpoint(${JSON.stringify(file)}, { model: c.model, ema: c.ema, optimizer: c.optimizer, state: c.state });`,
    );
    const child = spawn(process.execPath, [writer], { stdio: "ignore" });
    await sleep(1500);
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    const c = loadCheckpoint(file);
    assert.equal(c.state.step, 30);
    disposeCheckpoint(c);
  });

  test("a NaN loss stops the run with a clear message and keeps the last good checkpoint", () => {
    const run = path.join(work, "nan");
    const r = cli(
      "train",
      "--config",
      tinyConfig({ optimizer: { name: "sgd", lr: 1e30, momentum: 0, nesterov: false }, schedule: { name: "constant" } }),
      "--out",
      run,
      "--no-progress",
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, /the loss became (NaN|Infinity|-Infinity) at step \d+/);
    assert.ok(readJsonl(path.join(run, "log.jsonl")).some((e) => e.event === "nonfinite_loss"));
    assert.ok(!existsSync(path.join(run, "metrics.json")));
  });

  test("the smoke preset runs end to end on real data", () => {
    const run = path.join(work, "smoke");
    const r = cli("train", "--preset", "smoke", "--out", run, "--no-progress");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^PrivateTest: accuracy \d+\.\d+ %, macro-F1 \d+\.\d+ %/m);
    assert.match(r.stdout, /^report: .*smoke[/\\]report\.html$/m);
    assert.ok(existsSync(path.join(run, "report.html")), "the run ends with its report");
    const m = JSON.parse(readFileSync(path.join(run, "metrics.json"), "utf8")) as { test: { n: number }; steps: number; seed: number };
    assert.equal(m.test.n, 500);
    assert.equal(m.steps, 60);
  });
});
