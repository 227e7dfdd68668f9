/**
 * The comparison table of several runs, as plain cells: rendered into the HTML report and,
 * with {@link markdownTable}, printed by `ferkit report --markdown` for a README. Every cell
 * comes from the run's own `metrics.json` and `log.jsonl`.
 */
import type { RunData } from "./run_data.js";

/** A probability in [0, 1] as `67.08 %`; `–` when absent. */
export const pct = (x: number | null | undefined, digits = 2): string =>
  x === null || x === undefined || !Number.isFinite(x) ? "–" : `${(100 * x).toFixed(digits)} %`;

/** Seconds as `1 h 02 min`, `12 min 05 s` or `42 s`; `–` when absent. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const two = (n: number): string => String(n).padStart(2, "0");
  if (h > 0) return `${h} h ${two(m)} min`;
  if (m > 0) return `${m} min ${two(s % 60)} s`;
  return `${s} s`;
}

/** Steps the run trained (finished runs: as `metrics.json` says; otherwise the last logged). */
export const lastStep = (r: RunData): number => r.metrics?.steps ?? r.epochs.at(-1)?.step ?? r.steps.at(-1)?.step ?? 0;

/** Training wall time in seconds (finished runs: `metrics.json`; otherwise the last epoch's). */
export const wallTime = (r: RunData): number | null => r.metrics?.wall_time_s ?? r.epochs.at(-1)?.wall_s ?? null;

/** A table as a header row and body rows of display strings. */
export interface Table {
  header: string[];
  rows: string[][];
}

/**
 * One row per run: identity (algorithm, seed, labeled/unlabeled counts), cost (steps, wall
 * time), the test split's accuracy and macro-F1 with per-class F1, and what the unlabeled loss
 * saw in the last epoch (mask rate, accuracy of accepted pseudo-labels on hidden labels).
 */
export function comparisonTable(runs: readonly RunData[]): Table {
  const classes = runs.find((r) => r.metrics?.test)?.metrics?.test?.classes ?? runs[0]?.classes ?? [];
  const header = [
    "run",
    "algorithm",
    "labeled",
    "unlabeled",
    "seed",
    "steps",
    "wall time",
    "split",
    "accuracy",
    "macro-F1",
    "mask rate (last epoch)",
    "pseudo-label acc. (last epoch)",
    ...classes.map((c) => `F1 ${c}`),
  ];
  const rows = runs.map((r) => {
    const t = r.metrics?.test;
    const lastPseudo = r.pseudo.at(-1);
    return [
      r.name,
      r.algorithm,
      r.nLabeled === null ? "–" : String(r.nLabeled),
      r.nUnlabeled === null ? "–" : String(r.nUnlabeled),
      r.seed === null ? "–" : String(r.seed),
      String(lastStep(r)),
      formatDuration(wallTime(r)),
      r.metrics?.split ?? "–",
      pct(t?.accuracy),
      pct(t?.macro_f1),
      pct(lastPseudo?.mask_rate, 1),
      pct(lastPseudo?.accuracy, 1),
      ...classes.map((c) => pct(t?.per_class[c]?.f1)),
    ];
  });
  return { header, rows };
}

/** A GitHub-flavoured Markdown table (pipes in cells escaped). */
export function markdownTable(t: Table): string {
  const line = (cells: string[]): string => `| ${cells.map((c) => c.replace(/\|/g, "\\|")).join(" | ")} |`;
  return [line(t.header), line(t.header.map(() => "---")), ...t.rows.map(line)].join("\n");
}
