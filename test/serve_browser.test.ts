// `ferkit serve`'s web app in headless Chromium (Debian's, driven by playwright-core): the predict
// page with a real LFW photo, the webcam mode on Chromium's fake camera fed a Y4M clip made by
// ffmpeg from LFW photos, and the page of a training that is still running, which updates
// without a reload. Each test saves a screenshot to a temporary folder and fails on any console
// error of the page.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import type { FastifyInstance } from "fastify";
import { stillClip, writeTinyConfig } from "./helpers.js";
import { defaultDataRoot } from "../src/paths.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { buildServer } from "../src/serve/server.js";

const CHROMIUM = process.env.FERKIT_CHROMIUM ?? "/usr/bin/chromium";
const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-serve-browser-"));
const shots = path.join(work, "screenshots");
const runsRoot = path.join(work, "runs");
mkdirSync(shots);
mkdirSync(runsRoot);
const lfw = path.join(defaultDataRoot(), "lfw", "lfw-deepfunneled");
const photo = path.join(lfw, "AJ_Cook", "AJ_Cook_0001.jpg");

let app: FastifyInstance;
let url: string;
let browser: Browser;
/** A Y4M clip for the fake camera: one LFW photo, 640x480, 2 s at 10 fps. */
const camera = path.join(work, "camera.y4m");

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run 'bash scripts/setup.sh --test' (installs Debian's chromium)`);
  stillClip(photo, camera, 2, 10, "scale=480:480,pad=640:480:80:0");
  app = await buildServer({ runsDir: runsRoot, pollMs: 100 });
  url = await app.listen({ host: "127.0.0.1", port: 0 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-video-capture=${camera}`,
    ],
  });
});
after(async () => {
  await browser?.close();
  await app?.close();
  rmSync(work, { recursive: true, force: true });
});

/** A new page that records console errors and uncaught exceptions. */
async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ permissions: ["camera"] });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  return { page, errors };
}

describe("ferkit serve in a browser", () => {
  test("the predict page shows a box and a label on a real LFW photo", async () => {
    const { page, errors } = await openPage();
    await page.goto(`${url}/#/predict`);
    await page.setInputFiles("#files", photo);
    await page.waitForSelector(".result canvas", { timeout: 60_000 });
    const text = await page.textContent(".result");
    assert.match(text ?? "", /AJ_Cook_0001\.jpg/);
    assert.match(text ?? "", /face #0: (angry|disgust|fear|happy|sad|surprise|neutral) \(\d+\.\d %\)/);
    // The box is drawn: green pixels on the canvas.
    const green = await page.$eval(".result canvas", (c) => {
      const d = (c as HTMLCanvasElement)
        .getContext("2d")!
        .getImageData(0, 0, (c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] < 60 && d[i + 1] > 180 && d[i + 2] < 120) n++;
      return n;
    });
    assert.ok(green > 100, `box pixels: ${green}`);
    assert.equal(await page.locator(".bars").count(), 1);
    await page.screenshot({ path: path.join(shots, "predict.png"), fullPage: true });
    assert.deepEqual(errors, []);
  });

  test("the webcam mode, fed LFW photos by the fake camera, shows live labels with a track id and a chart", async () => {
    const { page, errors } = await openPage();
    await page.goto(`${url}/#/predict`);
    await page.click("#webcam");
    await page.waitForFunction(
      () =>
        /[3-9]\d* frames sent; 1 face\(s\)|\d{2,} frames sent; 1 face\(s\)/.test(document.getElementById("live-status")?.textContent ?? ""),
      null,
      {
        timeout: 60_000,
      },
    );
    await page.waitForSelector("#live-chart svg", { timeout: 30_000 });
    assert.match((await page.textContent("#live-chart h4")) ?? "", /track #0: smoothed probabilities/);
    await page.screenshot({ path: path.join(shots, "webcam.png"), fullPage: true });
    await page.click("#webcam");
    assert.deepEqual(errors, []);
  });

  test("the page of a training that is still running updates without a reload", { timeout: 300_000 }, async () => {
    const cfg = writeTinyConfig(path.join(work, "smoke.json"), { steps: 80, epochSteps: 20 });
    const child = spawn(process.execPath, [bin, "train", "--config", cfg, "--out", path.join(runsRoot, "smoke"), "--no-progress"], {
      stdio: "ignore",
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    const { page, errors } = await openPage();
    // The run appears in the list once its log exists.
    await page.goto(`${url}/#/runs`);
    await page.waitForSelector("#runs-table a[href='#/runs/smoke']", { timeout: 120_000 });
    await page.click("#runs-table a[href='#/runs/smoke']");
    await page.waitForFunction(() => /running/.test(document.getElementById("run-summary")?.textContent ?? ""), null, { timeout: 60_000 });
    // "step - of 80" until the first step is logged.
    const stepOf = async () => Number(/step (\d+) of/.exec((await page.textContent("#run-summary")) ?? "")?.[1] ?? 0);
    const first = await stepOf();
    await page.waitForFunction(
      (s) => Number(/step (\d+) of/.exec(document.getElementById("run-summary")?.textContent ?? "")?.[1] ?? 0) > s,
      first,
      { timeout: 120_000 },
    );
    assert.ok((await stepOf()) > first, "the step advanced without a reload");
    await page.waitForSelector("#run-charts svg", { timeout: 60_000 });
    await page.screenshot({ path: path.join(shots, "run-running.png"), fullPage: true });
    await exited;
    await page.waitForFunction(() => /finished/.test(document.getElementById("run-summary")?.textContent ?? ""), null, { timeout: 60_000 });
    assert.ok((await page.locator("#run-charts .chart").count()) >= 3, "loss, validation and confusion matrix charts");
    await page.screenshot({ path: path.join(shots, "run-finished.png"), fullPage: true });
    assert.deepEqual(errors, []);
  });
});
