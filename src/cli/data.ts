/** `ferkit data ...`: inspect datasets and pools. */
import { Command, Option } from "commander";
import { DATA_FORMATS, openData, type DataFormat } from "../data/open.js";
import { formatSummary, summarize } from "../data/summary.js";
import { createProgress } from "../util/progress.js";

/** The `data` command group. */
export function dataCommand(): Command {
  const data = new Command("data").description("inspect datasets and unlabeled pools");
  data
    .command("summary")
    .description("counts per split and class, image sizes, skipped files by reason, duplicate files")
    .argument("<paths...>", "dataset folder or CSV file (several folders for a pool)")
    .addOption(new Option("--format <name>", "data layout").choices(DATA_FORMATS).default("auto"))
    .option("--frames <dir>", "abaw: the cropped_aligned/ folder")
    .addOption(
      new Option("--labels <space>", "fer2013: original labels or the FER+ majority vote")
        .choices(["fer2013", "ferplus"])
        .default("fer2013"),
    )
    .addOption(
      new Option("--dedup <mode>", "fer2013: drop Training images duplicated in a test split")
        .choices(["none", "exact", "near"])
        .default("none"),
    )
    .option("--json", "print one JSON object (keys: splits, skipped, total, sizes, duplicates)", false)
    .action(
      async (
        paths: string[],
        o: { format: DataFormat; frames?: string; labels: "fer2013" | "ferplus"; dedup: "none" | "exact" | "near"; json: boolean },
      ) => {
        const warn = (m: string): void => console.error(`warning: ${m}`);
        const opened = openData({ paths, format: o.format, frames: o.frames, fer2013: { labels: o.labels, dedup: o.dedup }, warn });
        const target = opened.kind === "labeled" ? opened.dataset : opened.pool;
        const total = target.samples.length;
        const progress = o.json ? null : createProgress("reading", total);
        const summary = await summarize(target, (done) => progress?.update(done));
        progress?.stop();
        console.log(o.json ? JSON.stringify(summary) : formatSummary(summary));
      },
    );
  return data;
}
