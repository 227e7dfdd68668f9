/** `ferkit data ...`: inspect datasets and pools. */
import { Command, Option } from "commander";
import { DATA_FORMATS, openData, type DataFormat } from "../data/open.js";
import { formatSummary, summarize } from "../data/summary.js";
import { createProgress } from "../util/progress.js";
import { splitNames } from "../data/dataset.js";
import { prepareSplit, resolveCacheDir } from "../data/prepare.js";
import { preparePool } from "../data/pool_prepare.js";
import { PACKAGE_ROOT } from "../torch/native.js";
import { positiveInt } from "./options.js";
import { addLaunchOptions, joinFromEnv, launchWorkers, type LaunchFlags } from "./launch.js";
import type { DataParallel } from "../train/data_parallel.js";

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
        const summary = await summarize(target, (done) => progress?.update(done), warn);
        progress?.stop();
        console.log(o.json ? JSON.stringify(summary) : formatSummary(summary));
      },
    );
  const prepare = data
    .command("prepare")
    .description(
      "decode (and, for pools of photos, detect and align faces) into the image cache, with a progress bar; pools can be shared out over processes and machines",
    )
    .argument("<paths...>", "dataset folder or CSV file (several folders for a pool)")
    .addOption(new Option("--format <name>", "data layout").choices(DATA_FORMATS).default("auto"))
    .option("--frames <dir>", "abaw: the cropped_aligned/ folder")
    .option("--size <px>", "output side in pixels", positiveInt("--size"), 48)
    .addOption(new Option("--channels <n>", "1 (grayscale) or 3 (RGB)").choices(["1", "3"]).default("1"))
    .addOption(
      new Option("--align <mode>", "pools: detect and align faces, or resize photos that are already face crops")
        .choices(["detect", "resize"])
        .default("detect"),
    )
    .option("--cache <dir>", "cache folder", ".cache")
    .option("--json", "print the counts as one JSON object", false);
  addLaunchOptions(prepare).action(
    async (
      paths: string[],
      o: LaunchFlags & {
        format: DataFormat;
        frames?: string;
        size: number;
        channels: "1" | "3";
        align: "detect" | "resize";
        cache: string;
        json: boolean;
      },
    ) => {
      if (o.nprocPerNode !== undefined) {
        process.exitCode = await launchWorkers(o);
        return;
      }
      const { world, threads } = await joinFromEnv(o);
      try {
        await prepareAction(paths, o, world, threads);
      } finally {
        if (world.distributed) (await import("../torch/index.js")).distributed.destroyProcessGroup();
      }
    },
  );
  return data;
}

async function prepareAction(
  paths: string[],
  o: { format: DataFormat; frames?: string; size: number; channels: "1" | "3"; align: "detect" | "resize"; cache: string; json: boolean },
  world: DataParallel,
  threads: number | undefined,
): Promise<void> {
  // The other ranks of a shared preparation detect their share quietly: rank 0 prints.
  const warn = (m: string): void => {
    if (world.isMain) console.error(`warning: ${m}`);
  };
  const opened = openData({ paths, format: o.format, frames: o.frames, warn });
  const common = {
    size: o.size,
    channels: Number(o.channels) as 1 | 3,
    cacheDir: resolveCacheDir(o.cache, PACKAGE_ROOT),
    progress: !o.json && world.isMain,
    warn,
  };
  const t0 = performance.now();
  const out: Record<string, unknown> = {};
  if (opened.kind === "pool") {
    const p = await preparePool(opened.pool, {
      ...common,
      align: o.align,
      ...(world.distributed ? { group: world, workers: threads } : {}),
    });
    // Summed, not merged: the reader and the decoder can skip different files for one reason.
    const skipped: Record<string, number> = { ...opened.pool.skipped.counts };
    for (const [k, v] of Object.entries(p.skipped)) skipped[k] = (skipped[k] ?? 0) + v;
    Object.assign(out, { images: p.n, skipped, from_cache: p.fromCache });
  } else {
    // Labeled sets decode quickly and are not shared out: rank 0 prepares them.
    if (!world.isMain) return;
    for (const split of splitNames(opened.dataset)) {
      const s = await prepareSplit(opened.dataset, split, common);
      out[split] = { images: s.n, skipped: s.skipped };
    }
  }
  out.seconds = (performance.now() - t0) / 1000;
  if (world.distributed) out.world_size = world.worldSize;
  if (!world.isMain) return;
  if (o.json) console.log(JSON.stringify(out));
  else
    console.log(
      Object.entries(out)
        .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
        .join("\n"),
    );
}
