// `ferkit experiment` on tiny real trainings: a 2-row x 2-seed grid, its results against the
// run folders' own metrics (means, sample standard deviations, paired differences), a grid
// killed mid-cell that continues where it stopped, and a bad grid named by field.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parse } from "csv-parse/sync";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { writeTinyConfig } from "./helpers.js";
import { lockAlive, readRunLock } from "../src/train/run_lock.js";

const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-experiment-"));
after(() => rmSync(work, { recursive: true, force: true }));
const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });

writeTinyConfig(path.join(work, "tiny.json"));

function grid(name: string, seeds: number[]): string {
  const file = path.join(work, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      name,
      seeds,
      reference: "base",
      out: path.join(work, name),
      rows: [
        { id: "base", config: "tiny.json" },
        { id: "faster", config: "tiny.json", set: { "optimizer.lr": 0.003 } },
      ],
    }),
  );
  return file;
}

const metrics = (dir: string) =>
  JSON.parse(readFileSync(path.join(dir, "metrics.json"), "utf8")) as { test: { accuracy: number; macro_f1: number }; steps: number };

describe("ferkit experiment", () => {
  test("rows x seeds: each cell its run folder; results are the seeds' mean, sd and paired difference", () => {
    const r = cli("experiment", grid("g", [0, 1]));
    assert.equal(r.status, 0, r.stderr);
    const out = path.join(work, "g");
    for (const cell of ["base-s0", "base-s1", "faster-s0", "faster-s1"]) assert.ok(existsSync(path.join(out, cell, "metrics.json")), cell);
    assert.equal((JSON.parse(readFileSync(path.join(out, "faster-s1", "config.json"), "utf8")) as { seed: number }).seed, 1);
    const rows = parse(readFileSync(path.join(out, "results.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    assert.deepEqual(
      rows.map((x) => x.row),
      ["base", "faster"],
    );
    const f1 = (cell: string) => metrics(path.join(out, cell)).test.macro_f1;
    const [b0, b1, f0, fa1] = [f1("base-s0"), f1("base-s1"), f1("faster-s0"), f1("faster-s1")];
    const close = (a: string, b: number) => assert.ok(Math.abs(Number(a) - b) < 1e-9, `${a} vs ${b}`);
    close(rows[0].macro_f1_mean, (b0 + b1) / 2);
    close(rows[0].macro_f1_sd, Math.abs(b0 - b1) / Math.SQRT2);
    const [d0, d1] = [f0 - b0, fa1 - b1];
    close(rows[1].d_macro_f1_mean, (d0 + d1) / 2);
    close(rows[1].d_macro_f1_sd, Math.abs(d0 - d1) / Math.SQRT2);
    assert.equal(rows[0].d_macro_f1_mean, "", "the reference has no difference with itself");
    assert.equal(rows[1].seeds, "0 1");
    assert.equal(rows[1].steps, "30");
    assert.deepEqual([rows[0].versus, rows[1].versus], ["", ""]);
    const md = readFileSync(path.join(out, "results.md"), "utf8");
    assert.match(md, /\| faster \| 0, 1 \| \d+\.\d\d ± \d+\.\d\d \|/);

    // A row compared with another row than the reference (`versus`), tabulated from the same cells.
    const g = JSON.parse(readFileSync(path.join(work, "g.json"), "utf8")) as { rows: Record<string, unknown>[] };
    g.rows[0].versus = "faster";
    const vs = path.join(work, "g-versus.json");
    writeFileSync(vs, JSON.stringify({ ...g, name: "g-versus" }));
    const again = cli("experiment", vs, "--results-only");
    assert.equal(again.status, 0, again.stderr);
    const swapped = parse(readFileSync(path.join(out, "results.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    assert.equal(swapped[0].versus, "faster");
    close(swapped[0].d_versus_macro_f1_mean, -(d0 + d1) / 2);
    close(swapped[0].d_versus_macro_f1_sd, Math.abs(d0 - d1) / Math.SQRT2);
    assert.equal(swapped[0].d_macro_f1_mean, "", "still no difference with the reference itself");
    close(swapped[1].d_macro_f1_mean, (d0 + d1) / 2);
    assert.equal(swapped[1].d_versus_macro_f1_mean, "");
  });

  test("--reference tabulates against another row into results-vs-<row>.*, leaving results.* alone", () => {
    const before = readFileSync(path.join(work, "g", "results.csv"), "utf8");
    const r = cli("experiment", path.join(work, "g.json"), "--results-only", "--reference", "faster");
    assert.equal(r.status, 0, r.stderr);
    const rows = parse(readFileSync(path.join(work, "g", "results-vs-faster.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    const byRef = parse(before, { columns: true }) as Record<string, string>[];
    assert.ok(Math.abs(Number(rows[0].d_macro_f1_mean) + Number(byRef[1].d_macro_f1_mean)) < 1e-9, "base - faster = -(faster - base)");
    assert.equal(rows[1].d_macro_f1_mean, "");
    assert.match(readFileSync(path.join(work, "g", "results-vs-faster.md"), "utf8"), /Δ is each row minus `faster`/);
    assert.equal(readFileSync(path.join(work, "g", "results.csv"), "utf8"), before);
    const bad = cli("experiment", path.join(work, "g.json"), "--results-only", "--reference", "nope");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /'nope' is not a row/);
  });

  test("a grid edited after its cells ran is refused, naming the cells and fields, before anything trains", () => {
    const g = JSON.parse(readFileSync(path.join(work, "g.json"), "utf8")) as { rows: { set?: Record<string, unknown> }[] };
    g.rows[1].set = { "optimizer.lr": 0.004 };
    const edited = path.join(work, "g-edited.json");
    writeFileSync(edited, JSON.stringify({ ...g, name: "g-edited" }));
    const before = statSync(path.join(work, "g", "results.csv")).mtimeMs;
    for (const args of [[], ["--results-only"]]) {
      const r = cli("experiment", edited, ...args);
      assert.equal(r.status, 2, r.stderr);
      for (const seed of [0, 1])
        assert.ok(r.stderr.includes(`${path.join(work, "g", `faster-s${seed}`)}: optimizer.lr: 0.003 -> 0.004`), r.stderr);
      assert.doesNotMatch(r.stderr, /base-s0/, "cells that agree are not named");
    }
    assert.equal(statSync(path.join(work, "g", "results.csv")).mtimeMs, before, "no results were written from mixed settings");
  });

  test("a grid killed in the middle of a cell continues where it stopped", async () => {
    const file = grid("k", [0, 1]);
    const out = path.join(work, "k");
    const child = spawn(process.execPath, [bin, "experiment", file], { stdio: "ignore", detached: true });
    // Kill the grid and its training while the third cell (base, seed 1) has a checkpoint.
    const third = path.join(out, "base-s1", "checkpoints", "last.safetensors");
    for (let i = 0; i < 6000 && !existsSync(third); i++) await sleep(100); // up to 10 minutes on a loaded machine
    assert.ok(existsSync(third), "the third cell started");
    process.kill(-(child.pid as number), "SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    // The killed training may take a moment to be gone (its lock then counts as stale).
    const lock = readRunLock(path.join(out, "base-s1"));
    for (let i = 0; i < 100 && lock !== null && lockAlive(lock); i++) await sleep(50);
    assert.ok(!existsSync(path.join(out, "base-s1", "metrics.json")), "killed before the cell finished");
    const firstDone = statSync(path.join(out, "base-s0", "metrics.json")).mtimeMs;
    const r = cli("experiment", file);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /base seed 0: done/);
    assert.match(r.stderr, /base seed 1: resuming/);
    assert.equal(statSync(path.join(out, "base-s0", "metrics.json")).mtimeMs, firstDone, "finished cells are not trained again");
    // The resumed cell ends as an uninterrupted one does (exact resume).
    assert.deepEqual(metrics(path.join(out, "base-s1")).test, metrics(path.join(work, "g", "base-s1")).test);
  });

  test("--rows trains only those rows' cells; an unknown row is refused before anything trains", () => {
    const file = grid("r", [0]);
    const unknown = cli("experiment", file, "--rows", "nope");
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /'nope' is not a row \(rows: base, faster\)/);
    assert.ok(!existsSync(path.join(work, "r", "base-s0")), "nothing trained");
    const r = cli("experiment", file, "--rows", "faster");
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(path.join(work, "r", "faster-s0", "metrics.json")));
    assert.ok(!existsSync(path.join(work, "r", "base-s0")), "the other row waits");
  });

  test("a bad grid is refused naming the field", () => {
    const bad = path.join(work, "bad.json");
    writeFileSync(
      bad,
      JSON.stringify({ name: "bad", seeds: [0], reference: "nope", rows: [{ id: "a", preset: "smoke", after: ["a"], versus: "b" }] }),
    );
    const r = cli("experiment", bad);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /reference: 'nope' is not a row/);
    assert.match(r.stderr, /after: 'a' is not another row/);
    assert.match(r.stderr, /versus: 'b' is not another row/);
  });
});
