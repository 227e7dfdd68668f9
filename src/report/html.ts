/**
 * Assembles a self-contained HTML report (inline CSS and SVG, no script, no network) of one
 * run or a comparison of several runs.
 */
import { ChartRenderer, type Series } from "./charts.js";
import type { RunData } from "./run_data.js";
import { comparisonTable, formatDuration, lastStep, pct, wallTime } from "./table.js";

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]!);
}

function table(header: string[], rows: string[][], cls = ""): string {
  const th = header.map((h) => `<th>${escapeHtml(h)}</th>`).join("");
  const tr = rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join("")}</tr>`).join("\n");
  return `<table class="${cls}"><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`;
}

function chart(id: string, title: string, svg: string, note = ""): string {
  const caption = note === "" ? "" : `<p class="note">${escapeHtml(note)}</p>`;
  return `<figure class="chart" data-chart="${escapeHtml(id)}"><h3>${escapeHtml(title)}</h3>${svg}${caption}</figure>`;
}

function summary(r: RunData): string {
  const m = r.metrics;
  const steps = r.targetSteps === null ? String(lastStep(r)) : `${lastStep(r)} of ${r.targetSteps}`;
  const rows: [string, string][] = [
    ["algorithm", r.algorithm],
    ["model", m?.model ?? String((r.config?.model as { name?: string } | undefined)?.name ?? "–")],
    ["seed", r.seed === null ? "–" : String(r.seed)],
    ["steps", steps],
    ["training wall time", formatDuration(wallTime(r))],
    ["labeled / unlabeled images", `${r.nLabeled ?? "–"} / ${r.nUnlabeled ?? "–"}`],
    [
      "best validation macro-F1",
      m === null ? pct(Math.max(...r.epochs.map((e) => e.macro_f1))) : `${pct(m.best_val_macro_f1)} (step ${m.best_step})`,
    ],
  ];
  if (m?.test) {
    rows.push([`${m.split} accuracy`, pct(m.test.accuracy)], [`${m.split} macro-F1`, pct(m.test.macro_f1)]);
    if (m.test.ece !== undefined) rows.push([`${m.split} expected calibration error`, pct(m.test.ece)]);
  }
  if (m === null) rows.push(["status", "not finished (no metrics.json, no end event in the log): curves so far"]);
  else if (r.metricsSource === "log") rows.push(["status", "finished (metrics from the log's end event; metrics.json is missing)"]);
  if (r.skippedLines > 0) rows.push(["log lines skipped", `${r.skippedLines} (not log events; e.g. cut by a kill)`]);
  return table(
    ["", ""],
    rows.map(([k, v]) => [k, v]),
    "summary",
  );
}

function runSection(r: RunData, charts: ChartRenderer): string {
  const parts: string[] = [`<section class="run"><h2>${escapeHtml(r.name)}</h2>`, `<p class="path">${escapeHtml(r.dir)}</p>`, summary(r)];
  const c = r.classes;

  if (r.steps.length > 0) {
    const series: Series[] = [{ name: "loss", points: r.steps.map((s) => ({ x: s.step, y: s.loss })) }];
    if (r.steps.some((s) => s.loss_x !== undefined)) {
      series.push({ name: "loss_x (labeled)", points: r.steps.map((s) => ({ x: s.step, y: s.loss_x ?? null })) });
      series.push({ name: "loss_u (unlabeled)", points: r.steps.map((s) => ({ x: s.step, y: s.loss_u ?? null })) });
    }
    parts.push(chart("loss", "Training loss", charts.lines({ xLabel: "step", yLabel: "loss", series })));
  }
  if (r.epochs.length > 0) {
    const series: Series[] = [
      { name: "macro-F1", points: r.epochs.map((e) => ({ x: e.step, y: e.macro_f1 })) },
      { name: "accuracy", points: r.epochs.map((e) => ({ x: e.step, y: e.accuracy })) },
    ];
    parts.push(chart("validation", "Validation", charts.lines({ xLabel: "step", yLabel: "validation", series, percent: true })));
  }
  if (r.steps.some((s) => s.mask_rate !== undefined)) {
    const series: Series[] = [{ name: "mask rate", points: r.steps.map((s) => ({ x: s.step, y: s.mask_rate ?? null })) }];
    parts.push(
      chart(
        "mask_rate",
        "Mask rate",
        charts.lines({ xLabel: "step", yLabel: "accepted pseudo-labels", series, yDomain: [0, 1], percent: true }),
        "Share of the unlabeled batch whose pseudo-label passed its class threshold.",
      ),
    );
  }
  if (r.thresholds.length > 0) {
    const first = r.thresholds[0];
    const series: Series[] = c.map((name, k) => ({
      name,
      points: [
        ...(first.tau_before ? [{ x: r.thresholds[0].epoch - 1, y: first.tau_before[k] }] : []),
        ...r.thresholds.map((t) => ({ x: t.epoch, y: t.tau[k] })),
      ],
    }));
    const lowest = Math.min(...series.flatMap((x) => x.points.map((p) => p.y ?? 1)));
    parts.push(
      chart(
        "thresholds",
        "Per-class thresholds (tau)",
        charts.lines({ xLabel: "epoch", yLabel: "tau", series, yDomain: [Math.min(0.5, Math.floor(lowest * 10) / 10), 1], integerX: true }),
        "Classes with the same threshold draw over each other.",
      ),
    );
  }
  if (r.pseudo.length > 0) {
    const series: Series[] = [
      { name: "accepted", points: r.pseudo.map((p) => ({ x: p.epoch, y: p.accuracy })) },
      { name: "all (accepted or not)", points: r.pseudo.map((p) => ({ x: p.epoch, y: p.accuracy_all })) },
    ];
    if (r.pseudo.some((p) => p.accuracy !== null || p.accuracy_all !== null)) {
      parts.push(
        chart(
          "pseudo_accuracy",
          "Pseudo-label accuracy",
          charts.lines({ xLabel: "epoch", yLabel: "accuracy", series, yDomain: [0, 1], percent: true, integerX: true }),
          "Measured on unlabeled images whose label is hidden (labeled-set images used as unlabeled).",
        ),
      );
      const perClass: Series[] = c.map((name, k) => ({
        name,
        points: r.pseudo.map((p) => ({ x: p.epoch, y: p.per_class_accuracy[k] })),
      }));
      // Only once some pseudo-label was accepted (before, every class's accuracy is undefined).
      if (perClass.some((x) => x.points.some((p) => p.y !== null)))
        parts.push(
          chart(
            "pseudo_accuracy_per_class",
            "Accepted pseudo-label accuracy per class",
            charts.lines({ xLabel: "epoch", yLabel: "accuracy", series: perClass, yDomain: [0, 1], percent: true, integerX: true }),
          ),
        );
    }
    const last = r.pseudo[r.pseudo.length - 1];
    parts.push(
      chart(
        "pseudo_histogram",
        `Pseudo-label classes in epoch ${last.epoch}`,
        charts.groupedBars(
          c,
          [
            { name: "accepted", values: last.histogram },
            { name: "all", values: last.histogram_all },
          ],
          "pseudo-labels",
        ),
      ),
    );
  }
  const test = r.metrics?.test;
  if (test) {
    parts.push(
      chart(
        "confusion",
        `Confusion matrix (${r.metrics?.split})`,
        charts.confusion(test.confusion_matrix, test.classes),
        "Counts; the shade is the share of the true class (recall on the diagonal).",
      ),
    );
    parts.push(
      `<h3>Per class (${escapeHtml(String(r.metrics?.split))})</h3>` +
        table(
          ["class", "precision", "recall", "F1", "support"],
          test.classes.map((name) => {
            const s = test.per_class[name];
            return [name, pct(s.precision), pct(s.recall), pct(s.f1), String(s.support)];
          }),
          "per-class",
        ),
    );
  }
  parts.push("</section>");
  return parts.join("\n");
}

function comparison(runs: RunData[], charts: ChartRenderer): string {
  const { header, rows } = comparisonTable(runs);
  const parts = ['<section class="comparison"><h2>Comparison</h2>', table(header, rows, "comparison")];
  const f1ByStep: Series[] = runs.map((r) => ({ name: r.name, points: r.epochs.map((e) => ({ x: e.step, y: e.macro_f1 })) }));
  parts.push(
    chart(
      "compare_f1_step",
      "Validation macro-F1 by step",
      charts.lines({ xLabel: "step", yLabel: "macro-F1", series: f1ByStep, percent: true }),
    ),
  );
  const f1ByTime: Series[] = runs.map((r) => ({ name: r.name, points: r.epochs.map((e) => ({ x: e.wall_s / 60, y: e.macro_f1 })) }));
  parts.push(
    chart(
      "compare_f1_time",
      "Validation macro-F1 by training time",
      charts.lines({ xLabel: "minutes", yLabel: "macro-F1", series: f1ByTime, percent: true }),
    ),
  );
  const withMask = runs.filter((r) => r.steps.some((s) => s.mask_rate !== undefined));
  if (withMask.length > 0) {
    const series: Series[] = withMask.map((r) => ({ name: r.name, points: r.steps.map((s) => ({ x: s.step, y: s.mask_rate ?? null })) }));
    parts.push(
      chart(
        "compare_mask_rate",
        "Mask rate",
        charts.lines({ xLabel: "step", yLabel: "mask rate", series, yDomain: [0, 1], percent: true }),
      ),
    );
  }
  const withPseudo = runs.filter((r) => r.pseudo.some((p) => p.accuracy !== null));
  if (withPseudo.length > 0) {
    const series: Series[] = withPseudo.map((r) => ({ name: r.name, points: r.pseudo.map((p) => ({ x: p.step, y: p.accuracy })) }));
    parts.push(
      chart(
        "compare_pseudo_accuracy",
        "Accuracy of accepted pseudo-labels",
        charts.lines({ xLabel: "step", yLabel: "accuracy", series, yDomain: [0, 1], percent: true }),
        "On the unlabeled images whose labels are hidden (the labeled set's own images), per epoch.",
      ),
    );
  }
  parts.push("</section>");
  return parts.join("\n");
}

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1360px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; } h3 { font-size: 1em; margin: .4em 0; }
.path { color: #666; font-family: monospace; margin-top: -.5em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; } td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
td:first-child, th:first-child { text-align: left; } .summary thead { display: none; }
figure.chart { display: inline-block; vertical-align: top; margin: .5em 1.5em 1em 0; }
.note { color: #666; font-size: .9em; max-width: 640px; margin: .2em 0; }
`;

/**
 * The HTML report of one or more runs: a comparison table and overlaid curves when there
 * are several, then each run's summary, curves, thresholds, pseudo-label statistics,
 * confusion matrix and per-class table.
 * @param runs runs read by `readRun`, in the order to show
 * @throws Error when `runs` is empty
 */
export function renderReport(runs: RunData[], o: { generatedAt?: Date } = {}): string {
  if (runs.length === 0) throw new Error("renderReport: no runs");
  const charts = new ChartRenderer();
  const title = runs.length === 1 ? `ferkit report: ${runs[0].name}` : `ferkit report: ${runs.length} runs`;
  const when = (o.generatedAt ?? new Date()).toISOString();
  const body = [
    `<h1>${escapeHtml(title)}</h1>`,
    `<p class="note">Written by ferkit on ${escapeHtml(when)}. Every number is read from the runs' own logs.</p>`,
    runs.length > 1 ? comparison(runs, charts) : "",
    ...runs.map((r) => runSection(r, charts)),
  ].join("\n");
  return `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head>\n<body>\n${body}\n</body></html>\n`;
}
