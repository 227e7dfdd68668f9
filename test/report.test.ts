// `ferkit report`: the run-folder reader on hand-written logs, then a smoke-sized
// fer2013-dtm run on real data (FER2013 + detected LFW and ORL faces) whose report is
// opened in headless Chromium to check that every plot rendered.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import "./helpers.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { readRun, readRuns, ReportError, escapeHtml, formatDuration } from "../src/report/index.js";

const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-report-"));
after(() => rmSync(work, { recursive: true, force: true }));
const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });

/** Debian's Chromium, which `scripts/setup.sh --test` installs. */
const CHROMIUM = process.env.FERKIT_CHROMIUM ?? "/usr/bin/chromium";

describe("run folder reader", () => {
  test("keeps the latest event of a step logged twice by a resume, and skips a cut line", () => {
    const dir = path.join(work, "hand");
    mkdirSync(dir);
    const lines = [
      { event: "start", config: { seed: 3, train: { steps: 20 }, algorithm: { name: "dtm" } }, classes: ["a", "b"] },
      { event: "step", step: 10, loss: 2, lr: 0.1, steps_s: 1 },
      { event: "epoch", epoch: 1, step: 10, val: { accuracy: 0.5, macro_f1: 0.4, ece: 0.1 }, wall_s: 5 },
      { event: "step", step: 20, loss: 1.5, lr: 0.1, steps_s: 1 },
      { event: "resume", step: 10 },
      { event: "step", step: 20, loss: 1.25, lr: 0.1, steps_s: 1 },
    ].map((e) => JSON.stringify(e));
    writeFileSync(path.join(dir, "log.jsonl"), lines.join("\n") + '\n{"event":"st');
    const r = readRun(dir);
    assert.deepEqual(
      r.steps.map((s) => [s.step, s.loss]),
      [
        [10, 2],
        [20, 1.25],
      ],
    );
    assert.equal(r.skippedLines, 1);
    assert.equal(r.algorithm, "dtm");
    assert.equal(r.seed, 3);
    assert.equal(r.targetSteps, 20);
    assert.deepEqual(r.classes, ["a", "b"]);
    assert.equal(r.metrics, null);
  });

  test("a folder that is not a run is a clear error (exit code 2 from the CLI)", () => {
    assert.throws(
      () => readRun(path.join(work, "missing")),
      (e: Error) => e instanceof ReportError && /no such run folder/.test(e.message),
    );
    const empty = path.join(work, "empty");
    mkdirSync(empty);
    assert.throws(() => readRun(empty), /not a ferkit run folder \(no log\.jsonl file\)/);
    const p = cli("report", empty);
    assert.equal(p.status, 2);
    assert.match(p.stderr, /no log\.jsonl/);
  });

  test("metrics come from metrics.json, else the log's end event; a malformed one is named; same-named runs are told apart", () => {
    const metrics = {
      split: "PrivateTest",
      test: null,
      best_val_macro_f1: 0.4,
      best_step: 10,
      steps: 20,
      seed: 3,
      wall_time_s: 12,
      model: "vgg-fer",
      algorithm: "dtm",
      n_labeled: 7,
      n_unlabeled: 9,
    };
    const events = [
      {
        event: "start",
        config: { seed: 3, train: { steps: 20 }, algorithm: { name: "dtm" } },
        classes: ["a", "b"],
        n_train: 7,
        n_unlabeled: 9,
      },
      { event: "step", step: 10, loss: 2, lr: 0.1, steps_s: 1 },
    ];
    const make = (dir: string, lines: unknown[]): string => {
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, "log.jsonl"), lines.map((e) => JSON.stringify(e)).join("\n") + "\n");
      return dir;
    };
    const running = readRun(make(path.join(work, "x", "run"), events));
    assert.equal(running.metrics, null);
    assert.deepEqual([running.nLabeled, running.nUnlabeled], [7, 9], "counts from the start event while running");
    const ended = readRun(make(path.join(work, "y", "run"), [...events, { event: "end", ...metrics }]));
    assert.equal(ended.metricsSource, "log");
    assert.equal(ended.metrics?.wall_time_s, 12);
    writeFileSync(path.join(work, "y", "run", "metrics.json"), JSON.stringify({ ...metrics, wall_time_s: 13 }));
    assert.equal(readRun(path.join(work, "y", "run")).metrics?.wall_time_s, 13, "metrics.json wins");
    writeFileSync(path.join(work, "y", "run", "metrics.json"), "{}");
    assert.throws(() => readRun(path.join(work, "y", "run")), /metrics\.json: not a ferkit metrics file \(split/);
    const notEvents = readRun(make(path.join(work, "z"), [events[0], [1], "x", null]));
    assert.equal(notEvents.skippedLines, 3);
    assert.deepEqual(
      readRuns([path.join(work, "x", "run"), path.join(work, "z")]).map((r) => r.name),
      ["run", "z"],
    );
    rmSync(path.join(work, "y", "run", "metrics.json"));
    assert.deepEqual(
      readRuns([path.join(work, "x", "run"), path.join(work, "y", "run")]).map((r) => r.name),
      ["x/run", "y/run"],
    );
    // --out must be a report file, so a slip cannot overwrite the run's own files.
    const p = cli("report", path.join(work, "x", "run"), "--out", path.join(work, "x", "run", "log.jsonl"));
    assert.equal(p.status, 2);
    assert.match(p.stderr, /give a file name ending in \.html/);
    assert.match(readFileSync(path.join(work, "x", "run", "log.jsonl"), "utf8"), /"event":"start"/);
  });

  test("text is escaped and durations read like a person writes them", () => {
    assert.equal(escapeHtml(`<b a="1">&'`), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    assert.equal(formatDuration(3725), "1 h 02 min");
    assert.equal(formatDuration(725), "12 min 05 s");
    assert.equal(formatDuration(42.4), "42 s");
    assert.equal(formatDuration(null), "–");
  });
});

describe("fer2013-dtm, smoke-sized, end to end with its report", () => {
  const run = path.join(work, "dtm-smoke");
  const supervised = path.join(work, "supervised-smoke");

  /** The fer2013-dtm preset with sizes cut down to a test's time; everything else as the preset says. */
  function smokeConfig(name: string, algorithm: string): string {
    const preset = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "configs", "fer2013-dtm.json"), "utf8")) as Record<string, never>;
    const data = preset.data as Record<string, unknown>;
    const cfg = {
      ...preset,
      name,
      // Thresholds low enough for a barely trained model, so pseudo-labels are accepted and tau moves.
      algorithm: algorithm === "dtm" ? { name: "dtm", tauInit: 0.3, muMin: 0.3, tauReset: 0.3 } : { name: algorithm },
      data: {
        ...data,
        limits: { train: 1500, val: 300, test: 300 },
        unlabeled: {
          trainSplit: true,
          limit: 1200,
          pools: [
            { path: "lfw", maxPhotos: 60 },
            { path: "orl_att_faces", maxPhotos: 40 },
          ],
        },
      },
      model: { name: "vgg-fer", width: 0.25, dropout: 0.3 },
      train: { steps: 30, batchSize: 16, epochSteps: 10, emaDecay: 0.9, logEvery: 5 },
    };
    if (algorithm === "supervised") delete (cfg.data as { unlabeled?: unknown }).unlabeled;
    const file = path.join(work, `${name}.json`);
    writeFileSync(file, JSON.stringify(cfg));
    return file;
  }

  test("trains on FER2013 plus detected external faces and logs what DTM did", () => {
    const r = cli("train", "--config", smokeConfig("dtm-smoke", "dtm"), "--out", run, "--no-progress");
    assert.equal(r.status, 0, r.stderr);
    const events = readFileSync(path.join(run, "log.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const start = events.find((e) => e.event === "start") as { unlabeled_sources: Record<string, number> };
    assert.ok(start.unlabeled_sources.lfw > 40, `LFW faces found: ${JSON.stringify(start.unlabeled_sources)}`);
    assert.ok(start.unlabeled_sources.orl_att_faces > 0, `ORL faces found: ${JSON.stringify(start.unlabeled_sources)}`);
    assert.equal(events.filter((e) => e.event === "thresholds").length, 3);
    assert.equal(events.filter((e) => e.event === "pseudo_labels").length, 3);
    const metrics = JSON.parse(readFileSync(path.join(run, "metrics.json"), "utf8")) as { split: string; test: { n: number } };
    assert.equal(metrics.split, "PrivateTest");
    assert.equal(metrics.test.n, 300);
    const s = cli("train", "--config", smokeConfig("supervised-smoke", "supervised"), "--out", supervised, "--no-progress");
    assert.equal(s.status, 0, s.stderr);
  });

  test("the report of one run and of a comparison render every plot in headless Chromium", async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run 'bash scripts/setup.sh --test' (installs Debian's chromium)`);
    const single = cli("report", run);
    assert.equal(single.status, 0, single.stderr);
    const singleFile = path.join(run, "report.html");
    assert.match(single.stdout, /report\.html/);
    const compareFile = path.join(work, "compare.html");
    const compare = cli("report", supervised, run, "--out", compareFile);
    assert.equal(compare.status, 0, compare.stderr);
    const html = readFileSync(singleFile, "utf8");
    assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, "self-contained: no script, no network address");

    // The same comparison as a Markdown table (for a README): a header, a rule, a row per run.
    const md = cli("report", supervised, run, "--markdown");
    assert.equal(md.status, 0, md.stderr);
    const mdLines = md.stdout.trim().split("\n");
    assert.equal(mdLines.length, 4, md.stdout);
    assert.match(mdLines[0], /^\| run \| algorithm \|.*\| accuracy \| macro-F1 \|/);
    assert.match(mdLines[1], /^\| --- \|/);
    const dtmCells = mdLines[3].split(" | ");
    assert.equal(dtmCells[1], "dtm");
    assert.match(mdLines[3], /\| PrivateTest \| \d+\.\d\d % \| \d+\.\d\d % \|/);

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage();
      const charts = async (file: string) => {
        await page.goto(`file://${file}`);
        return page.$$eval("figure.chart", (figures) =>
          figures.map((f) => {
            // The plot is the largest SVG of the figure (a legend's swatches are small SVGs too).
            const area = (e: Element) => e.getBoundingClientRect().width * e.getBoundingClientRect().height;
            const svg = [...f.querySelectorAll("svg")].sort((a, b) => area(b) - area(a))[0] as SVGSVGElement | undefined;
            const box = svg?.getBoundingClientRect();
            // Drawn marks: lines with a path, bars and cells with an area, dots.
            const paths = [...(svg?.querySelectorAll("path") ?? [])].filter((p) => (p.getAttribute("d") ?? "").length > 10).length;
            const rects = [...(svg?.querySelectorAll("rect") ?? [])].filter((r) => r.getBBox().width > 0 && r.getBBox().height > 0).length;
            // Marks drawn outside the plot (data off its scale) are a rendering bug.
            const outside = [...(svg?.querySelectorAll("path, rect, circle") ?? [])].filter((e) => {
              const b = (e as SVGGraphicsElement).getBoundingClientRect();
              return box !== undefined && b.height > 0 && (b.top < box.top - 1 || b.bottom > box.bottom + 1);
            }).length;
            return { id: f.getAttribute("data-chart"), width: box?.width ?? 0, height: box?.height ?? 0, marks: paths + rects, outside };
          }),
        );
      };
      const one = await charts(singleFile);
      const ids = one.map((c) => c.id);
      for (const id of [
        "loss",
        "validation",
        "mask_rate",
        "thresholds",
        "pseudo_accuracy",
        "pseudo_accuracy_per_class",
        "pseudo_histogram",
        "confusion",
      ]) {
        assert.ok(ids.includes(id), `chart ${id} in the report (has ${ids.join(", ")})`);
      }
      for (const c of one) {
        assert.ok(c.width > 200 && c.height > 100, `chart ${c.id} has a size: ${c.width}x${c.height}`);
        assert.ok(c.marks > 0, `chart ${c.id} drew marks`);
        assert.equal(c.outside, 0, `chart ${c.id}: marks outside the plot`);
      }
      const cmp = await charts(compareFile);
      assert.ok(cmp.some((c) => c.id === "compare_f1_step" && c.marks > 0));
      assert.ok(cmp.some((c) => c.id === "compare_f1_time" && c.marks > 0));
      assert.ok(cmp.some((c) => c.id === "compare_pseudo_accuracy" && c.marks > 0));
      const rows = await page.$$eval("table.comparison tbody tr", (trs) => trs.map((tr) => tr.querySelector("td")?.textContent));
      assert.deepEqual(rows, ["supervised-smoke", "dtm-smoke"]);
    } finally {
      await browser.close();
    }
  });
});
