/** `ferkit report`: one self-contained HTML file per run or comparison of runs. */
import { existsSync, mkdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { renderReport } from "./html.js";
import { readRun, ReportError, type RunData } from "./run_data.js";

export { ReportError, readRun, type RunData } from "./run_data.js";
export { renderReport, escapeHtml } from "./html.js";
export { comparisonTable, formatDuration, markdownTable, type Table } from "./table.js";

/**
 * Reads the run folders and writes their HTML report.
 * @param runDirs one or more run folders written by `ferkit train`
 * @param outFile where to write; default `<run>/report.html` for one run, `report.html` for several
 * @returns the path written and the runs it shows
 * @throws ReportError when a folder is not a readable run
 */
export function writeReport(runDirs: string[], outFile?: string): { file: string; runs: RunData[] } {
  const runs = runDirs.map((d) => readRun(d));
  const file = outFile ?? (runs.length === 1 ? path.join(runDirs[0], "report.html") : "report.html");
  if (existsSync(file) && statSync(file).isDirectory())
    throw new ReportError(`--out ${file}: is a folder; give a file name such as ${path.join(file, "report.html")}`);
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  // Written beside and renamed, so a viewer never sees half a report.
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, renderReport(runs));
  renameSync(tmp, file);
  return { file, runs };
}
