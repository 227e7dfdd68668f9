/** `ferkit report`: HTML reports of run folders. */
import { Command } from "commander";

/** The `report` command. */
export function reportCommand(): Command {
  return new Command("report")
    .description(
      "write a self-contained HTML report (curves, thresholds, pseudo-labels, confusion matrix, per-class table) of one run, or a comparison of several",
    )
    .argument("<runs...>", "run folders written by ferkit train")
    .option("--out <file>", "the HTML file to write (default: <run>/report.html for one run, ./report.html for several)")
    .option("--markdown", "print the comparison table as Markdown instead of writing HTML", false)
    .action(async (runs: string[], o: { out?: string; markdown: boolean }) => {
      if (o.markdown) {
        const { readRun, comparisonTable, markdownTable } = await import("../report/index.js");
        console.log(markdownTable(comparisonTable(runs.map((d) => readRun(d)))));
        return;
      }
      // Loaded on use: the charting library and its DOM are only needed here.
      const { writeReport } = await import("../report/index.js");
      const r = writeReport(runs, o.out);
      console.log(`wrote ${r.file} (${r.runs.length} run${r.runs.length === 1 ? "" : "s"})`);
    });
}
