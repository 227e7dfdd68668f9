// Fine-tuning a face-recognition backbone on real FER2013 images through the CLI: the loss goes
// down, a killed run resumes to the same result, and the model file stands on its own.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { loadModelFile } from "../src/train/model_file.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";

const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-finetune-"));
after(() => rmSync(work, { recursive: true, force: true }));
const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });
const readJsonl = (file: string): Record<string, unknown>[] =>
  readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** faceres from its face-recognition weights at 48x48 RGB with batch norm put back: 40 steps of 16 on 600 real FER2013 happy and surprise images. */
function config(): string {
  const file = path.join(work, "cfg.json");
  writeFileSync(
    file,
    JSON.stringify({
      name: "tiny-finetune",
      // Happy against surprise (as first-run): a task 40 steps can show progress on.
      data: { labeled: { classes: ["happy", "surprise"] }, limits: { train: 600, val: 200, test: 200 } },
      // The presets' recipe (batch norm put back, calibrated) at a learning rate scaled to batches of 16.
      model: { name: "faceres", pretrained: "face-recognition", inputSize: 48, batchNorm: true, dropout: 0.2 },
      optimizer: { name: "adam", lr: 0.001, weightDecay: 0, backboneLrFactor: 0.1 },
      schedule: { name: "cosine", warmupSteps: 5 },
      train: { steps: 40, batchSize: 16, epochSteps: 10, emaDecay: 0.9, logEvery: 5 },
    }),
  );
  return file;
}

describe("fine-tuning a pretrained backbone", () => {
  test("lowers the loss, resumes exactly after SIGKILL, and its model file loads without the pretrained source", async () => {
    const cfg = config();
    const full = path.join(work, "full");
    const r = cli("train", "--config", cfg, "--out", full, "--no-progress", "--no-report");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /faceres from its face-recognition weights/);
    const losses = readJsonl(path.join(full, "log.jsonl"))
      .filter((e) => e.event === "step")
      .map((e) => e.loss as number);
    assert.equal(losses.length, 8);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    assert.ok(mean(losses.slice(-3)) < mean(losses.slice(0, 2)) - 0.1, `losses ${losses.map((l) => l.toFixed(3)).join(", ")}`);

    const killed = path.join(work, "killed");
    const child = spawn(process.execPath, [bin, "train", "--config", cfg, "--out", killed, "--no-progress", "--no-report"], {
      stdio: "ignore",
    });
    const last = path.join(killed, "checkpoints", "last.safetensors");
    for (let i = 0; i < 1200 && !existsSync(last); i++) await sleep(100);
    assert.ok(existsSync(last), "the first checkpoint appeared");
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    assert.ok(!existsSync(path.join(killed, "metrics.json")), "killed before the end");
    const resumed = cli("train", "--resume", killed, "--no-progress", "--no-report");
    assert.equal(resumed.status, 0, resumed.stderr);
    const metrics = (run: string) => JSON.parse(readFileSync(path.join(run, "metrics.json"), "utf8")) as { test: unknown };
    assert.deepEqual(metrics(killed).test, metrics(full).test);

    // The model file holds every weight and its input size; its card names no pretrained source
    // (loading it must not need one: the weights came from the run, not from the npm package).
    const { model, card } = loadModelFile(full);
    assert.deepEqual(card.input, [3, 48, 48]);
    assert.ok(!("pretrained" in card.options), JSON.stringify(card.options));
    model.dispose();
    const ev = cli("eval", "--model", full, "--split", "PublicTest", "--json");
    assert.equal(ev.status, 0, ev.stderr);
    assert.equal((JSON.parse(ev.stdout) as { n: number }).n, 1305); // PublicTest's happy and surprise images
  });
});
