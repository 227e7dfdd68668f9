/**
 * The results of an experiment grid: per row, the mean and standard deviation over its seeds of
 * the test accuracy and macro-F1, each class's F1, the paired difference against the reference
 * row (seed by seed) and against the row it names in `versus`, steps and wall time, and from the logs
 * the last epoch's mask rate and accepted pseudo-label accuracy, overall and per class, and the
 * per-class thresholds. Written as results.csv and results.md.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { stringify } from "csv-stringify/sync";
import { readRun } from "../report/run_data.js";
import { cells, cellState, type Grid } from "./grid.js";

/** One row of the results (metrics in [0, 1]; null where no seed has it). */
export interface RowResult {
  row: string;
  seeds: number[];
  /** The row this row names in `versus` (null: none). */
  versus: string | null;
  accuracy: Stat;
  macro_f1: Stat;
  /** Row minus reference, over the seeds both have (null for the reference itself or without one). */
  d_accuracy: Stat | null;
  d_macro_f1: Stat | null;
  /** The paired macro-F1 difference is above zero by more than two of its standard deviations. */
  beats_reference: boolean | null;
  /** Row minus its `versus` row, over the seeds both have (null without `versus`). */
  d_versus_macro_f1: Stat | null;
  /** d_versus_macro_f1 is above zero by more than two of its standard deviations. */
  beats_versus: boolean | null;
  per_class_f1: Record<string, number>;
  steps: number | null;
  wall_s: number | null;
  mask_rate: number | null;
  pseudo_accuracy: number | null;
  /** Per class: accepted / all pseudo-labels of that class in the last epoch (mean over seeds). */
  mask_rate_by_class: Record<string, number | null>;
  /** Per class: accuracy of the accepted pseudo-labels of that class with hidden labels (mean over seeds). */
  pseudo_accuracy_by_class: Record<string, number | null>;
  tau: Record<string, number> | null;
}

/** Mean and sample standard deviation (n - 1; 0 for one value) of n values. */
export interface Stat {
  mean: number;
  sd: number;
  n: number;
}

/** Mean and sample standard deviation; null for no value. */
export function stat(values: readonly number[]): Stat | null {
  const n = values.length;
  if (n === 0) return null;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, n };
}

interface CellMetrics {
  seed: number;
  accuracy: number;
  macro_f1: number;
  f1: Record<string, number>;
  steps: number;
  wall_s: number;
  mask_rate: number | null;
  pseudo_accuracy: number | null;
  mask_rate_by_class: Record<string, number | null>;
  pseudo_accuracy_by_class: Record<string, number | null>;
  tau: Record<string, number> | null;
}

function readCell(dir: string, seed: number): CellMetrics | null {
  const file = path.join(dir, "metrics.json");
  if (!existsSync(file)) return null;
  const m = JSON.parse(readFileSync(file, "utf8")) as {
    test: { accuracy: number; macro_f1: number; per_class: Record<string, { f1: number }> } | null;
    steps: number;
    wall_time_s: number;
  };
  if (m.test === null) return null;
  const run = readRun(dir);
  const lastPseudo = run.pseudo.at(-1);
  const lastTau = run.thresholds.at(-1);
  const byClass = (f: (c: number) => number | null) => Object.fromEntries(run.classes.map((name, c) => [name, lastPseudo ? f(c) : null]));
  return {
    seed,
    accuracy: m.test.accuracy,
    macro_f1: m.test.macro_f1,
    f1: Object.fromEntries(Object.entries(m.test.per_class).map(([c, v]) => [c, v.f1])),
    steps: m.steps,
    wall_s: m.wall_time_s,
    mask_rate: lastPseudo?.mask_rate ?? null,
    pseudo_accuracy: lastPseudo?.accuracy ?? null,
    mask_rate_by_class: byClass((c) => {
      const all = lastPseudo?.histogram_all[c] ?? 0;
      return all > 0 ? (lastPseudo?.histogram[c] ?? 0) / all : null;
    }),
    pseudo_accuracy_by_class: byClass((c) => lastPseudo?.per_class_accuracy[c] ?? null),
    tau: lastTau ? Object.fromEntries(lastTau.tau.map((t, c) => [run.classes[c] ?? String(c), t])) : null,
  };
}

const meanOf = (xs: (number | null)[]): number | null => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length;
};

/** The results of every row of a grid, from the cells that are done. */
export function gridResults(grid: Grid): RowResult[] {
  const byRow = new Map<string, CellMetrics[]>();
  for (const cell of cells(grid)) {
    const m = cellState(cell) === "done" ? readCell(cell.dir, cell.seed) : null;
    if (m !== null) byRow.set(cell.row.id, [...(byRow.get(cell.row.id) ?? []), m]);
  }
  return grid.rows.map((r) => {
    const ms = byRow.get(r.id) ?? [];
    const paired = (other: string | undefined, key: "accuracy" | "macro_f1") =>
      other === undefined || other === r.id
        ? null
        : stat(ms.flatMap((m) => (byRow.get(other) ?? []).filter((x) => x.seed === m.seed).map((x) => m[key] - x[key])));
    const beats = (d: Stat | null) => (d === null || d.n < 2 ? null : d.mean > 2 * d.sd);
    const d_macro_f1 = paired(grid.reference, "macro_f1");
    const d_versus_macro_f1 = paired(r.versus, "macro_f1");
    const classes = ms.length > 0 ? Object.keys(ms[0].f1) : [];
    const taus = ms.map((m) => m.tau).filter((t): t is Record<string, number> => t !== null);
    return {
      row: r.id,
      seeds: ms.map((m) => m.seed),
      versus: r.versus ?? null,
      accuracy: stat(ms.map((m) => m.accuracy)) ?? { mean: NaN, sd: NaN, n: 0 },
      macro_f1: stat(ms.map((m) => m.macro_f1)) ?? { mean: NaN, sd: NaN, n: 0 },
      d_accuracy: paired(grid.reference, "accuracy"),
      d_macro_f1,
      beats_reference: beats(d_macro_f1),
      d_versus_macro_f1,
      beats_versus: beats(d_versus_macro_f1),
      per_class_f1: Object.fromEntries(classes.map((c) => [c, meanOf(ms.map((m) => m.f1[c])) as number])),
      steps: meanOf(ms.map((m) => m.steps)),
      wall_s: meanOf(ms.map((m) => m.wall_s)),
      mask_rate: meanOf(ms.map((m) => m.mask_rate)),
      pseudo_accuracy: meanOf(ms.map((m) => m.pseudo_accuracy)),
      mask_rate_by_class: Object.fromEntries(classes.map((c) => [c, meanOf(ms.map((m) => m.mask_rate_by_class[c] ?? null))])),
      pseudo_accuracy_by_class: Object.fromEntries(classes.map((c) => [c, meanOf(ms.map((m) => m.pseudo_accuracy_by_class[c] ?? null))])),
      tau: taus.length === 0 ? null : Object.fromEntries(Object.keys(taus[0]).map((c) => [c, meanOf(taus.map((t) => t[c])) as number])),
    };
  });
}

const pc = (x: number | null | undefined, digits = 2): string =>
  x === null || x === undefined || Number.isNaN(x) ? "" : (100 * x).toFixed(digits);
const yesNo = (b: boolean | null): string => (b === null ? "" : b ? "yes" : "no");
const pm = (s: Stat | null): string => (s === null || s.n === 0 ? "-" : `${pc(s.mean)} ± ${pc(s.sd)}`);

/**
 * Writes `<base>.csv` and `<base>.md` into the grid's output folder.
 * @param base the files' name without extension (`results`; another reference's tables go beside it)
 * @returns the two files' paths
 */
export function writeResults(grid: Grid, results: RowResult[], base = "results"): { csv: string; md: string } {
  const classes = [...new Set(results.flatMap((r) => Object.keys(r.per_class_f1)))];
  const header = [
    "row",
    "seeds",
    "accuracy_mean",
    "accuracy_sd",
    "macro_f1_mean",
    "macro_f1_sd",
    "d_accuracy_mean",
    "d_accuracy_sd",
    "d_macro_f1_mean",
    "d_macro_f1_sd",
    "beats_reference_by_2sd",
    "versus",
    "d_versus_macro_f1_mean",
    "d_versus_macro_f1_sd",
    "beats_versus_by_2sd",
    "steps",
    "wall_s_mean",
    "mask_rate",
    "pseudo_accuracy",
    ...classes.map((c) => `f1_${c}`),
    ...classes.map((c) => `tau_${c}`),
    ...classes.map((c) => `mask_rate_${c}`),
    ...classes.map((c) => `pseudo_accuracy_${c}`),
  ];
  const rows = results.map((r) => [
    r.row,
    r.seeds.join(" "),
    r.accuracy.mean,
    r.accuracy.sd,
    r.macro_f1.mean,
    r.macro_f1.sd,
    r.d_accuracy?.mean ?? "",
    r.d_accuracy?.sd ?? "",
    r.d_macro_f1?.mean ?? "",
    r.d_macro_f1?.sd ?? "",
    r.beats_reference ?? "",
    r.versus ?? "",
    r.d_versus_macro_f1?.mean ?? "",
    r.d_versus_macro_f1?.sd ?? "",
    r.beats_versus ?? "",
    r.steps ?? "",
    r.wall_s ?? "",
    r.mask_rate ?? "",
    r.pseudo_accuracy ?? "",
    ...classes.map((c) => r.per_class_f1[c] ?? ""),
    ...classes.map((c) => r.tau?.[c] ?? ""),
    ...classes.map((c) => r.mask_rate_by_class[c] ?? ""),
    ...classes.map((c) => r.pseudo_accuracy_by_class[c] ?? ""),
  ]);
  const csv = path.join(grid.outDir, `${base}.csv`);
  writeFileSync(csv, stringify([header, ...rows.map((row) => row.map((v) => (typeof v === "number" && Number.isNaN(v) ? "" : v)))]));
  const ref = grid.reference;
  const lines = [
    `# ${grid.name}`,
    "",
    ...(grid.description ? [grid.description, ""] : []),
    `Test metrics in %, mean ± standard deviation over seeds; Δ is each row minus \`${ref ?? "-"}\` on the same seed (mean ± sd of the paired differences); "> 2 sd" when the macro-F1 difference is above zero by more than two of its standard deviations; "vs" names the row a row is also compared with (its own paired macro-F1 difference beside it). Mask rate and pseudo-label accuracy (of the accepted pseudo-labels whose hidden label is known) are the last epoch's. Grid: \`${grid.file}\`.`,
    "",
    `| row | seeds | accuracy | macro-F1 | Δ accuracy | Δ macro-F1 | > 2 sd | vs | Δ macro-F1 vs | > 2 sd | steps | wall time (min) | mask rate | pseudo-label accuracy |`,
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...results.map(
      (r) =>
        `| ${r.row} | ${r.seeds.join(", ") || "-"} | ${pm(r.accuracy)} | ${pm(r.macro_f1)} | ${pm(r.d_accuracy)} | ${pm(r.d_macro_f1)} | ${yesNo(r.beats_reference)} | ${r.versus ?? ""} | ${r.versus === null ? "" : pm(r.d_versus_macro_f1)} | ${yesNo(r.beats_versus)} | ${r.steps ?? "-"} | ${r.wall_s === null ? "-" : (r.wall_s / 60).toFixed(1)} | ${pc(r.mask_rate, 1)} | ${pc(r.pseudo_accuracy, 1)} |`,
    ),
    "",
    "Per-class F1 (%, mean over seeds):",
    "",
    `| row | ${classes.join(" | ")} |`,
    `|---|${classes.map(() => "---").join("|")}|`,
    ...results.map((r) => `| ${r.row} | ${classes.map((c) => pc(r.per_class_f1[c], 1)).join(" | ")} |`),
  ];
  if (results.some((r) => r.tau !== null))
    lines.push(
      "",
      "Thresholds tau after the last epoch (mean over seeds):",
      "",
      `| row | ${classes.join(" | ")} |`,
      `|---|${classes.map(() => "---").join("|")}|`,
      ...results
        .filter((r) => r.tau !== null)
        .map((r) => `| ${r.row} | ${classes.map((c) => (r.tau?.[c] ?? NaN).toFixed(3)).join(" | ")} |`),
    );
  const semi = results.filter((r) => Object.values(r.mask_rate_by_class).some((v) => v !== null));
  const byClassTable = (title: string, f: (r: RowResult) => Record<string, number | null>) => [
    "",
    title,
    "",
    `| row | ${classes.join(" | ")} |`,
    `|---|${classes.map(() => "---").join("|")}|`,
    ...semi.map((r) => `| ${r.row} | ${classes.map((c) => pc(f(r)[c], 1)).join(" | ")} |`),
  ];
  if (semi.length > 0)
    lines.push(
      ...byClassTable(
        "Mask rate by class (%, accepted / all pseudo-labels of the class, last epoch, mean over seeds):",
        (r) => r.mask_rate_by_class,
      ),
      ...byClassTable(
        "Accepted pseudo-label accuracy by class (%, images with hidden labels, last epoch, mean over seeds):",
        (r) => r.pseudo_accuracy_by_class,
      ),
    );
  const md = path.join(grid.outDir, `${base}.md`);
  writeFileSync(md, lines.join("\n") + "\n");
  return { csv, md };
}
