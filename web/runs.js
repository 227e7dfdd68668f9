// The runs views: the list of run folders with their state and key metrics (refreshed every few
// seconds), a comparison of selected runs, and a run's page whose charts follow its log live
// (server-sent events from /api/runs/:id/events).
import { api, el, pct, tokenQuery } from "./api.js";

let listTimer = null;
let source = null;
const selected = new Set();

/** The list view: loads now and every 5 s while it is shown. */
export function showRuns() {
  clearInterval(listTimer);
  loadRuns();
  listTimer = setInterval(() => {
    if (document.getElementById("view-runs").hidden) clearInterval(listTimer);
    else loadRuns();
  }, 5000);
  const button = document.getElementById("compare");
  button.onclick = () => compare([...selected]);
}

async function loadRuns() {
  const body = document.querySelector("#runs-table tbody");
  try {
    const { runs } = await api("/api/runs");
    body.replaceChildren(
      ...runs.map((r) => {
        const tr = el("tr");
        const box = el("input");
        box.type = "checkbox";
        box.checked = selected.has(r.id);
        box.onchange = () => {
          if (box.checked) selected.add(r.id);
          else selected.delete(r.id);
          document.getElementById("compare").disabled = selected.size < 2;
        };
        const link = el("a", "", r.id);
        link.href = `#/runs/${encodeURIComponent(r.id)}`;
        const cells = [
          box,
          link,
          el("span", `state-${r.state}`, r.state),
          r.algorithm,
          r.model ?? "-",
          r.seed ?? "-",
          `${r.step ?? "-"} / ${r.target_steps ?? "-"}`,
          pct(r.best_val_macro_f1),
          pct(r.test_accuracy),
          pct(r.test_macro_f1),
          new Date(r.updated).toLocaleString(),
        ];
        for (const c of cells) {
          const td = el("td");
          td.append(c instanceof Node ? c : String(c));
          tr.append(td);
        }
        return tr;
      }),
    );
    if (runs.length === 0) body.replaceChildren(el("tr", "muted", "no run folders yet"));
  } catch (e) {
    body.replaceChildren(el("tr", "error", e.message));
  }
}

/** Selected runs side by side: validation macro-F1 by step, and their test metrics. */
async function compare(ids) {
  const out = document.getElementById("comparison");
  try {
    const runs = await Promise.all(ids.map((id) => api(`/api/runs/${encodeURIComponent(id)}`)));
    const points = runs.flatMap((r) => r.run.epochs.map((e) => ({ run: r.summary.id, step: e.step, macro_f1: e.macro_f1 })));
    const table = el("table");
    table.append(el("tr", "", ""));
    table.firstChild.append(...["run", "state", "test accuracy", "test macro-F1", "best val macro-F1"].map((h) => el("th", "", h)));
    for (const r of runs) {
      const tr = el("tr");
      tr.append(
        ...[
          r.summary.id,
          r.summary.state,
          pct(r.summary.test_accuracy),
          pct(r.summary.test_macro_f1),
          pct(r.summary.best_val_macro_f1),
        ].map((t) => el("td", "", t)),
      );
      table.append(tr);
    }
    out.replaceChildren(
      el("h3", "", "Comparison"),
      chart(
        "validation macro-F1",
        Plot.plot({
          width: 640,
          height: 280,
          color: { legend: true },
          y: { label: "macro-F1" },
          marks: [
            Plot.line(points, { x: "step", y: "macro_f1", stroke: "run" }),
            Plot.dot(points, { x: "step", y: "macro_f1", stroke: "run" }),
          ],
        }),
      ),
      table,
    );
  } catch (e) {
    out.replaceChildren(el("p", "error", e.message));
  }
}

function chart(title, figure) {
  const box = el("div", "chart");
  box.append(el("h4", "", title), figure);
  return box;
}

/** Closes the live stream of the run page (when the page is left). */
export function stopRun() {
  source?.close();
  source = null;
}

/** A run's page: its charts, redrawn on every event of its stream. */
export function showRun(id) {
  stopRun();
  document.getElementById("run-title").textContent = id;
  document.getElementById("run-summary").textContent = "loading...";
  document.getElementById("run-charts").replaceChildren();
  source = new EventSource(`/api/runs/${encodeURIComponent(id)}/events${tokenQuery()}`);
  source.addEventListener("run", (e) => renderRun(JSON.parse(e.data)));
  source.addEventListener("problem", (e) => (document.getElementById("run-summary").textContent = JSON.parse(e.data).error));
  source.onerror = () => {
    if (source?.readyState === EventSource.CLOSED) document.getElementById("run-summary").textContent = `run '${id}' could not be loaded`;
  };
}

function renderRun({ summary, run }) {
  const s = summary;
  document
    .getElementById("run-summary")
    .replaceChildren(
      el("span", `state-${s.state}`, s.state),
      ` · ${s.algorithm} · ${s.model ?? "-"} · seed ${s.seed ?? "-"} · step ${s.step ?? "-"} of ${s.target_steps ?? "-"}` +
        (s.test_accuracy !== null ? ` · test accuracy ${pct(s.test_accuracy)}, macro-F1 ${pct(s.test_macro_f1)}` : ""),
    );
  const charts = [];
  const w = 420;
  const h = 240;
  if (run.steps.length > 0)
    charts.push(chart("loss", Plot.plot({ width: w, height: h, marks: [Plot.line(run.steps, { x: "step", y: "loss" })] })));
  if (run.epochs.length > 0) {
    const val = run.epochs.flatMap((e) => [
      { step: e.step, metric: "accuracy", value: e.accuracy },
      { step: e.step, metric: "macro-F1", value: e.macro_f1 },
    ]);
    charts.push(
      chart(
        "validation",
        Plot.plot({
          width: w,
          height: h,
          color: { legend: true },
          marks: [Plot.line(val, { x: "step", y: "value", stroke: "metric" }), Plot.dot(val, { x: "step", y: "value", stroke: "metric" })],
        }),
      ),
    );
  }
  const masks = run.steps.filter((p) => p.mask_rate !== undefined);
  if (masks.length > 0)
    charts.push(
      chart(
        "mask rate (unlabeled images above their threshold)",
        Plot.plot({ width: w, height: h, y: { domain: [0, 1] }, marks: [Plot.line(masks, { x: "step", y: "mask_rate" })] }),
      ),
    );
  if (run.thresholds.length > 0) {
    const tau = run.thresholds.flatMap((t) => t.tau.map((v, c) => ({ epoch: t.epoch, class: run.classes[c] ?? c, tau: v })));
    charts.push(
      chart(
        "per-class thresholds (tau)",
        Plot.plot({
          width: w,
          height: h,
          color: { legend: true },
          y: { domain: [0, 1] },
          marks: [Plot.line(tau, { x: "epoch", y: "tau", stroke: "class" })],
        }),
      ),
    );
  }
  const pseudo = run.pseudo.filter((p) => p.accuracy !== null);
  if (pseudo.length > 0)
    charts.push(
      chart(
        "pseudo-label accuracy (accepted)",
        Plot.plot({
          width: w,
          height: h,
          y: { domain: [0, 1] },
          marks: [Plot.line(pseudo, { x: "epoch", y: "accuracy" }), Plot.dot(pseudo, { x: "epoch", y: "accuracy" })],
        }),
      ),
    );
  const test = run.metrics?.test;
  if (test) {
    const cells = test.confusion_matrix.flatMap((row, i) => row.map((n, j) => ({ true: test.classes[i], predicted: test.classes[j], n })));
    charts.push(
      chart(
        `confusion matrix (${run.metrics.split})`,
        Plot.plot({
          width: w,
          height: h + 40,
          marginLeft: 70,
          color: { scheme: "blues" },
          x: { domain: test.classes, tickRotate: -30 },
          y: { domain: test.classes },
          marks: [
            Plot.cell(cells, { x: "predicted", y: "true", fill: "n" }),
            Plot.text(cells, {
              x: "predicted",
              y: "true",
              text: "n",
              fill: (d) => (d.n > 0.5 * Math.max(...cells.map((c) => c.n)) ? "white" : "black"),
            }),
          ],
        }),
      ),
    );
  }
  document.getElementById("run-charts").replaceChildren(...charts);
}
