// `ferkit serve`'s API on a real server (port 0) with the shipped model: predictions on a real
// LFW photo and a clip made with ffmpeg, every error status, path traversal, the upload folder
// left empty (also after a client that goes away mid-upload), the token, and the live event
// stream of a training that is running.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  copyFileSync,
  statSync,
} from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { stillClip, writeTinyConfig } from "./helpers.js";
import { defaultDataRoot } from "../src/paths.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { Predictor } from "../src/serve/predictor.js";
import { buildServer } from "../src/serve/server.js";

const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-serve-test-"));
const runsRoot = path.join(work, "runs");
const uploadsRoot = path.join(work, "uploads");
mkdirSync(runsRoot);
mkdirSync(uploadsRoot);
const lfw = path.join(defaultDataRoot(), "lfw", "lfw-deepfunneled");
const photo = path.join(lfw, "AJ_Cook", "AJ_Cook_0001.jpg");

let predictor: Predictor;
const servers: FastifyInstance[] = [];
before(async () => {
  predictor = await Predictor.load();
});
after(async () => {
  for (const s of servers) await s.close();
  predictor?.dispose();
  rmSync(work, { recursive: true, force: true });
});

/** A listening server on a free port; its base URL. */
async function serve(o: Partial<Parameters<typeof buildServer>[0]> = {}): Promise<{ url: string; app: FastifyInstance }> {
  const app = await buildServer({ runsDir: runsRoot, uploadsRoot, predictor, pollMs: 100, ...o });
  servers.push(app);
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  return { url, app };
}

async function upload(url: string, file: string, field = "file", headers: Record<string, string> = {}, query = ""): Promise<Response> {
  const form = new FormData();
  form.append(field, new Blob([readFileSync(file)]), path.basename(file));
  return fetch(`${url}/api/predict${query}`, { method: "POST", body: form, headers });
}

/** Files left in the upload folders (each server keeps one empty folder while it runs). */
function leftovers(): string[] {
  return readdirSync(uploadsRoot).flatMap((d) => readdirSync(path.join(uploadsRoot, d)).map((f) => path.join(d, f)));
}

/** A 2-second clip at 12 fps of one LFW photo. */
const clip = (): string => stillClip(photo, path.join(work, "clip.mp4"), 2, 12);

describe("ferkit serve: the API", () => {
  test("health; a photo gives what `ferkit predict --json` prints; a video gives its rows and summary", async () => {
    const { url } = await serve();
    const health = (await (await fetch(`${url}/api/health`)).json()) as { status: string; model: { classes: string[] } };
    assert.equal(health.status, "ok");
    assert.equal(health.model.classes.length, 7);

    const r = await upload(url, photo);
    assert.equal(r.status, 200);
    const got = (await r.json()) as { file: string; faces: { label: string; probs: Record<string, number> }[] };
    const cli = spawnSync(process.execPath, [bin, "predict", photo, "--json"], { encoding: "utf8" });
    const expected = JSON.parse(cli.stdout) as typeof got;
    assert.equal(got.file, "AJ_Cook_0001.jpg");
    assert.deepEqual(got.faces, expected.faces);

    // A named job: its progress can be followed while the frames are processed.
    const pending = upload(url, clip(), "file", {}, "?job=clip-1");
    let seen = 0;
    for (let i = 0; i < 400 && seen === 0; i++) {
      const p = await fetch(`${url}/api/progress/clip-1`);
      if (p.status === 200) {
        const body = (await p.json()) as { stage: string; frame: number; frames: number };
        if (body.stage === "processing" && body.frame > 0) seen = body.frame;
        assert.ok(body.frames === 0 || body.frames === 24, `estimated frames ${body.frames}`);
      }
      if (seen === 0) await sleep(25);
    }
    assert.ok(seen > 0, "progress was reported while the video was processed");
    const v = await pending;
    assert.equal(v.status, 200);
    assert.equal(((await (await fetch(`${url}/api/progress/clip-1`)).json()) as { stage: string }).stage, "done");
    assert.equal((await fetch(`${url}/api/progress/nope`)).status, 404);
    const video = (await v.json()) as { type: string; rows: { face: number }[]; summary: { frames: number; tracks: number } };
    assert.equal(video.type, "video");
    assert.equal(video.summary.frames, 24);
    assert.equal(video.rows.length, 24);
    assert.equal(video.summary.tracks, 1);
    assert.deepEqual(leftovers(), [], "uploads are deleted after use");
  });

  test("errors: 400 malformed, 413 too large, 415 not an image or video, 404 unknown run or path; nothing left on disk", async () => {
    const { url } = await serve({ maxUploadBytes: 5000 });
    const json = async (r: Response) => ({ status: r.status, body: (await r.json()) as { error: string } });
    let e = await json(await fetch(`${url}/api/predict`, { method: "POST", body: "hello", headers: { "content-type": "text/plain" } }));
    assert.equal(e.status, 400);
    assert.match(e.body.error, /multipart\/form-data .* field 'file'/);
    e = await json(await upload(url, photo, "photo"));
    assert.equal(e.status, 400);
    e = await json(await upload(url, photo)); // 8 kB against a 5 kB limit
    assert.equal(e.status, 413);
    assert.match(e.body.error, /too large: at most 5000 bytes/);
    const text = path.join(work, "notes.jpg");
    writeFileSync(text, "not a photo at all");
    e = await json(await upload(url, text));
    assert.equal(e.status, 415);
    assert.match(e.body.error, /notes\.jpg: not an image or video/);
    e = await json(await fetch(`${url}/api/runs/nope`));
    assert.equal(e.status, 404);
    assert.deepEqual(leftovers(), []);
  });

  test("a truncated video gives the frames before the damage and says so; an HEIC photo is 415 with the reason", async () => {
    const { url } = await serve();
    const heic = path.join(work, "photo.heic");
    assert.equal(spawnSync("heif-enc", ["-q", "60", "-o", heic, photo]).status, 0, "heif-enc (libheif-examples)");
    const h = await upload(url, heic);
    assert.equal(h.status, 415);
    assert.match(((await h.json()) as { error: string }).error, /photo\.heic: an HEIC \(HEVC-coded HEIF\) image/);
    const cut = path.join(work, "cut.mp4");
    copyFileSync(clip(), cut);
    truncateSync(cut, Math.floor(statSync(cut).size * 0.6));
    const r = await upload(url, cut);
    const body = (await r.json()) as { rows?: unknown[]; error?: string; summary?: { frames: number } };
    if (r.status === 200) {
      assert.ok(body.rows !== undefined && body.rows.length < 24, `rows ${body.rows?.length}`);
      assert.match(body.error ?? "", /cut\.mp4/);
    } else {
      assert.equal(r.status, 415, JSON.stringify(body));
      assert.match(body.error ?? "", /cut\.mp4/);
    }
    assert.ok(!JSON.stringify(body).includes(uploadsRoot), "the server's paths are not shown");
  });

  test("503 when the work queue is full", async () => {
    const { url } = await serve({ concurrency: 1, maxWaiting: 0 });
    const video = clip();
    const first = upload(url, video);
    let running = false;
    for (let i = 0; i < 200 && !running; i++) {
      const h = (await (await fetch(`${url}/api/health`)).json()) as { queue: { running: number } };
      running = h.queue.running > 0;
      if (!running) await sleep(20);
    }
    assert.ok(running, "the first prediction is running");
    const second = await upload(url, photo);
    assert.equal(second.status, 503);
    assert.match(((await second.json()) as { error: string }).error, /busy/);
    assert.equal((await first).status, 200);
  });

  test("run ids cannot reach outside --runs: .., encoded slashes, absolute paths, links out", async () => {
    const { url } = await serve();
    const outside = path.join(work, "secret-run");
    mkdirSync(outside);
    writeFileSync(path.join(outside, "log.jsonl"), JSON.stringify({ event: "start", config: {} }) + "\n");
    symlinkSync(outside, path.join(runsRoot, "link-out"));
    for (const id of ["..", "..%2F..%2Fetc", "%2Fetc%2Fpasswd", "link-out", "..%2Fsecret-run", "%2E%2E"]) {
      const r = await fetch(`${url}/api/runs/${id}`);
      assert.equal(r.status, 404, `${id}: ${r.status}`);
    }
    const list = (await (await fetch(`${url}/api/runs`)).json()) as { runs: { id: string }[] };
    assert.ok(!list.runs.some((r) => r.id === "link-out"));
  });

  test("a client that goes away mid-upload leaves nothing on disk", async () => {
    const { url } = await serve();
    const { port } = new URL(url);
    const body = readFileSync(photo);
    const boundary = "ferkitboundary";
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
    );
    await new Promise<void>((resolve) => {
      const req = request({
        host: "127.0.0.1",
        port: Number(port),
        method: "POST",
        path: "/api/predict",
        headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "content-length": String(head.length + 10 * body.length) },
      });
      req.on("error", () => resolve());
      req.write(head);
      req.write(body);
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    for (let i = 0; i < 50 && leftovers().length > 0; i++) await sleep(50);
    assert.deepEqual(leftovers(), []);
    assert.equal((await fetch(`${url}/api/health`)).status, 200, "the server is still up");
  });

  test("with a token: 401 without it, 200 with it (header or query); a CSP header on the page", async () => {
    const { url } = await serve({ token: "s3cret" });
    assert.equal((await fetch(`${url}/api/runs`)).status, 401);
    assert.equal((await fetch(`${url}/api/runs`, { headers: { authorization: "Bearer wrong" } })).status, 401);
    assert.equal((await fetch(`${url}/api/runs`, { headers: { authorization: "Bearer s3cret" } })).status, 200);
    assert.equal((await fetch(`${url}/api/runs?token=s3cret`)).status, 200);
    assert.equal((await upload(url, photo)).status, 401);
    const page = await fetch(`${url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  });

  test("a training that is running: state 'running', live events with new steps, then 'finished'", { timeout: 300_000 }, async () => {
    const { url } = await serve();
    const cfg = writeTinyConfig(path.join(work, "tiny.json"), { steps: 60 });
    const child = spawn(process.execPath, [bin, "train", "--config", cfg, "--out", path.join(runsRoot, "live"), "--no-progress"], {
      stdio: "ignore",
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    let summary: { state: string; step: number | null } | null = null;
    for (let i = 0; i < 600; i++) {
      const runs = (await (await fetch(`${url}/api/runs`)).json()) as { runs: { id: string; state: string; step: number | null }[] };
      summary = runs.runs.find((r) => r.id === "live") ?? null;
      if (summary !== null) break;
      await sleep(100);
    }
    assert.equal(summary?.state, "running");
    // The event stream: a snapshot on connect, then one per change of the log.
    const controller = new AbortController();
    const res = await fetch(`${url}/api/runs/live/events`, { signal: controller.signal });
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const reader = res.body!.getReader();
    const steps: number[] = [];
    let text = "";
    while (steps.length < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString("utf8");
      let k;
      while ((k = text.indexOf("\n\n")) >= 0) {
        const message = text.slice(0, k);
        text = text.slice(k + 2);
        const data = message.split("\n").find((l) => l.startsWith("data: "));
        if (!message.startsWith("event: run") || data === undefined) continue;
        const payload = JSON.parse(data.slice(6)) as { summary: { step: number | null } };
        if (payload.summary.step !== null && (steps.length === 0 || payload.summary.step > steps[steps.length - 1]))
          steps.push(payload.summary.step);
      }
    }
    controller.abort();
    assert.ok(steps.length >= 3, `steps seen live: ${steps}`);
    await exited;
    const done = (await (await fetch(`${url}/api/runs/live`)).json()) as { summary: { state: string; test_accuracy: number | null } };
    assert.equal(done.summary.state, "finished");
    assert.ok(done.summary.test_accuracy !== null);
  });
});
