/** `ferkit report`: HTML reports of run folders. */
import { Command } from "commander";

/** The `report` command. */
export function reportCommand(): Command {
  return new Command("report")
    .description(
      "write a self-contained HTML report (curves, thresholds, pseudo-labels, confusion matrix, per-class table) of one run, or a comparison of several",
    )
    .argument("<runs...>", "run folders written by ferkit train")
    .option(
      "--out <file>",
      "the file to write: .html (default: <run>/report.html for one run, ./report.html for several), or .md with --markdown",
    )
    .option("--markdown", "the comparison table as Markdown instead of HTML: printed, or written to --out", false)
    .action(async (runs: string[], o: { out?: string; markdown: boolean }) => {
      // Loaded on use: the charting library and its DOM are only needed here.
      const { writeReport, markdownReport } = await import("../report/index.js");
      if (o.markdown) {
        const text = markdownReport(runs, o.out);
        if (o.out === undefined) process.stdout.write(text);
        else console.log(`wrote ${o.out} (${runs.length} run${runs.length === 1 ? "" : "s"})`);
        return;
      }
      const r = writeReport(runs, o.out);
      console.log(`wrote ${r.file} (${r.runs.length} run${r.runs.length === 1 ? "" : "s"})`);
    });
}
