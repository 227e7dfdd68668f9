// The ferkit command: version, help, and clear errors for bad options.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import sharp from "sharp";
import path from "node:path";
import { PACKAGE_ROOT } from "../src/torch/native.js";

const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });

test("--version prints the package version", () => {
  const r = run("--version");
  const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), pkg.version);
});

test("--help lists the commands, and first-run --help lists every option with its default", () => {
  const top = run("--help");
  assert.equal(top.status, 0);
  assert.match(top.stdout, /first-run/);
  const sub = run("first-run", "--help");
  for (const opt of [
    "--data",
    "--classes",
    "--steps",
    "--batch-size",
    "--lr",
    "--seed",
    "--threads",
    "--max-per-class",
    "--out",
    "--json",
  ]) {
    assert.match(sub.stdout, new RegExp(opt));
  }
  assert.match(sub.stdout, /default: 300/);
});

test("bad options fail with a message naming the option", () => {
  const r = run("first-run", "--steps", "-3");
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--steps must be a positive integer/);
  const c = run("first-run", "--classes", "happy,smug", "--steps", "1");
  assert.notEqual(c.status, 0);
  assert.match(c.stderr, /unknown fer2013 class 'smug'/);
});

test("augment-preview writes a PNG grid: a row per image, four columns", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ferkit-preview-"));
  try {
    const out = path.join(dir, "grid.png");
    const r = run("augment-preview", "--n", "3", "--out", out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /columns: original, weak 1, weak 2, strong/);
    const meta = await sharp(out).metadata();
    assert.equal(meta.format, "png");
    assert.ok(meta.width !== undefined && meta.height !== undefined && meta.width > 4 * 48 && meta.height > 3 * 48);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
