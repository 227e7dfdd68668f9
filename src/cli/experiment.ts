/** `ferkit experiment <grid.json>`: runs a grid of trainings (rows x seeds) and tabulates them. */
import { mkdirSync } from "node:fs";
import { Command } from "commander";

/** The `experiment` command. */
export function experimentCommand(): Command {
  return new Command("experiment")
    .description(
      "train every cell of a grid (rows x seeds) one after the other, resuming what was interrupted, then write results.csv and results.md",
    )
    .argument("<grid>", "a grid file (JSON: name, seeds, reference, rows of a preset or config with --set overrides)")
    .option("--results-only", "only tabulate the cells that are done; train nothing", false)
    .option(
      "--rows <ids...>",
      "train only these rows' cells (and those of the rows they start from), e.g. to run one row's seeds first; results cover every done cell",
    )
    .option(
      "--reference <row>",
      "tabulate the differences against this row instead of the grid's reference (written to results-vs-<row>.csv and .md beside results.*)",
    )
    .action(async (file: string, o: { resultsOnly: boolean; rows?: string[]; reference?: string }) => {
      const { readGrid, runGrid, checkCells, withStarts } = await import("../experiment/grid.js");
      const { gridResults, writeResults } = await import("../experiment/results.js");
      const grid = readGrid(file);
      checkCells(grid); // the row order, and every started cell against the grid, before anything runs
      if (o.rows !== undefined) withStarts(grid, o.rows); // unknown row ids, before anything runs
      if (o.reference !== undefined) withStarts(grid, [o.reference]);
      mkdirSync(grid.outDir, { recursive: true });
      if (!o.resultsOnly)
        try {
          await runGrid(grid, undefined, o.rows);
        } catch (err) {
          // The finished cells' results are still written; the exit code says the grid is not complete.
          console.error(`ferkit: ${(err as Error).message}`);
          process.exitCode = 2;
        }
      const other = o.reference !== undefined && o.reference !== grid.reference;
      const tabulated = other ? { ...grid, reference: o.reference } : grid;
      const { csv, md } = writeResults(tabulated, gridResults(tabulated), other ? `results-vs-${o.reference}` : "results");
      console.log(`results: ${csv}\n         ${md}`);
    });
}
