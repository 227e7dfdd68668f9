/** `ferkit report`: one self-contained HTML file per run or comparison of runs. */
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { renderReport } from "./html.js";
import { readRuns, ReportError, type RunData } from "./run_data.js";
import { comparisonTable, markdownTable } from "./table.js";

export { ReportError, readRun, readRuns, type RunData } from "./run_data.js";
export { renderReport, escapeHtml } from "./html.js";
export { comparisonTable, formatDuration, markdownTable, type Table } from "./table.js";

/**
 * Writes `text` to `file` atomically (a temporary file beside it, then a rename), creating its
 * folder. A file name with another extension than `extensions` is refused, so a mistyped
 * `--out` cannot overwrite a run's `log.jsonl` or `metrics.json`.
 * @throws ReportError naming the file when it is a folder, has another extension, or cannot be written
 */
function writeOutput(file: string, text: string, extensions: readonly string[]): void {
  if (existsSync(file) && statSync(file).isDirectory())
    throw new ReportError(`--out ${file}: is a folder; give a file name such as ${path.join(file, `report${extensions[0]}`)}`);
  if (!extensions.includes(path.extname(file).toLowerCase()))
    throw new ReportError(`--out ${file}: give a file name ending in ${extensions.join(" or ")}`);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    writeFileSync(tmp, text);
    renameSync(tmp, file); // a viewer never sees half a report
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    throw new ReportError(`--out ${file}: cannot write it (${e.code ?? e.message})`, { cause: err });
  }
}

/**
 * Reads the run folders and writes their HTML report.
 * @param runDirs one or more run folders written by `ferkit train`
 * @param outFile where to write (`.html` or `.htm`); default `<run>/report.html` for one run, `report.html` for several
 * @returns the path written and the runs it shows
 * @throws ReportError when a folder is not a readable run, or the file cannot be written
 */
export function writeReport(runDirs: string[], outFile?: string): { file: string; runs: RunData[] } {
  const runs = readRuns(runDirs);
  const file = outFile ?? (runs.length === 1 ? path.join(runDirs[0], "report.html") : "report.html");
  writeOutput(file, renderReport(runs), [".html", ".htm"]);
  return { file, runs };
}

/**
 * The comparison table of the runs as Markdown; written to `outFile` (`.md`) when given.
 * @returns the Markdown text
 * @throws ReportError as {@link writeReport}
 */
export function markdownReport(runDirs: string[], outFile?: string): string {
  const text = markdownTable(comparisonTable(readRuns(runDirs))) + "\n";
  if (outFile !== undefined) writeOutput(outFile, text, [".md", ".markdown"]);
  return text;
}
