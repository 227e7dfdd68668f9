#!/usr/bin/env node
/**
 * The `ferkit` command. It only parses and validates options, then calls the library.
 * Exit codes: 0 success, 1 an internal error, 2 a user mistake (bad data or options).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Command, Option } from "commander";
import { PACKAGE_ROOT } from "../torch/native.js";
import { PRECISIONS, resolvePrecision, type Precision } from "../torch/autocast.js";
import { defaultDataRoot, defaultRunsDir } from "../paths.js";
import { DataError } from "../data/dataset.js";
import { dataCommand } from "./data.js";
import { evalCommand, trainCommand } from "./train.js";
import { reportCommand } from "./report.js";
import { predictCommand } from "./predict.js";
import { exportCommand } from "./export.js";
import { modelsCommand } from "./models.js";
import { serveCommand } from "./serve.js";
import { experimentCommand } from "./experiment.js";
import { ReportError } from "../report/run_data.js";
import { ConfigError } from "../train/config.js";
import { nonNegativeInt, positiveInt, positiveNumber } from "./options.js";

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

const program = new Command()
  .name("ferkit")
  .description("Facial expression recognition that learns from unlabeled faces (libtorch from TypeScript).")
  .version(packageVersion(), "-V, --version", "print the ferkit version")
  .showHelpAfterError();

program
  .command("first-run")
  .description("train a tiny CNN on real FER2013 images (two classes by default) and report PublicTest accuracy and macro-F1")
  .addOption(
    new Option("--data <dir>", "the shared data folder holding fer2013/").default(defaultDataRoot(), "$FERKIT_DATA or ../shared/data"),
  )
  .option("--classes <names>", "comma-separated FER2013 classes (angry, disgust, fear, happy, sad, surprise, neutral)", "happy,surprise")
  .option("--steps <n>", "optimizer steps", positiveInt("--steps"), 300)
  .option("--batch-size <n>", "images per step", positiveInt("--batch-size"), 64)
  .option("--lr <x>", "Adam learning rate", positiveNumber("--lr"), 0.002)
  .option("--seed <n>", "random seed", nonNegativeInt("--seed"), 0)
  .option("--threads <n>", "CPU threads for libtorch", positiveInt("--threads"), 2)
  .option("--max-per-class <n>", "cap on Training images per class", positiveInt("--max-per-class"), 3000)
  .addOption(
    new Option("--precision <p>", "forward passes in bf16 (autocast) or fp32; auto: bf16 where the CPU has native bfloat16")
      .choices(PRECISIONS)
      .default("auto"),
  )
  .addOption(
    new Option("--out <dir>", "where to write model.safetensors and metrics.json").default(
      path.join(defaultRunsDir(), "first-run"),
      "runs/first-run",
    ),
  )
  .option("--json", "print the result as one JSON object", false)
  .action(
    async (o: {
      data: string;
      classes: string;
      steps: number;
      batchSize: number;
      lr: number;
      seed: number;
      threads: number;
      maxPerClass: number;
      precision: Precision;
      out: string;
      json: boolean;
    }) => {
      const { firstRun } = await import("../train/first_run.js");
      const precision = resolvePrecision(o.precision);
      if (o.precision === "bf16" && precision.note !== undefined) console.error(precision.note);
      const r = await firstRun({
        fer2013Dir: path.join(o.data, "fer2013"),
        classes: o.classes.split(",").map((s) => s.trim()),
        steps: o.steps,
        batchSize: o.batchSize,
        lr: o.lr,
        seed: o.seed,
        threads: o.threads,
        maxPerClass: o.maxPerClass,
        precision: precision.precision,
        outDir: o.out,
        log: (line) => console.error(line),
      });
      if (o.json) {
        console.log(JSON.stringify(r));
        return;
      }
      const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
      console.log(
        `PublicTest (${r.classes.join(" vs ")}, n=${r.nTest}): accuracy ${pct(r.test.accuracy)}, macro-F1 ${pct(r.test.macroF1)}`,
      );
      console.log(
        `majority-class baseline accuracy ${pct(r.majorityBaseline)}; seed ${r.seed}, ${r.steps} steps, ${r.trainSeconds.toFixed(1)} s training (${r.precision}), OpenBLAS kernel ${r.openblasCoretype}`,
      );
      r.classes.forEach((c, i) =>
        console.log(`  ${c.padEnd(9)} F1 ${pct(r.test.perClass[i].f1)}  (support ${r.test.perClass[i].support})`),
      );
      console.log(`weights and metrics in ${o.out}`);
    },
  );

program
  .command("augment-preview")
  .description("write a PNG grid of FER2013 Training images with their weak and strong views")
  .addOption(
    new Option("--data <dir>", "the shared data folder holding fer2013/").default(defaultDataRoot(), "$FERKIT_DATA or ../shared/data"),
  )
  .option("--n <rows>", "number of images (rows)", positiveInt("--n"), 8)
  .option("--seed <n>", "seed of the image choice and of the views", nonNegativeInt("--seed"), 0)
  .option("--out <file>", "output PNG", "augment-preview.png")
  .action(async (o: { data: string; n: number; seed: number; out: string }) => {
    const { augmentPreviewFer2013 } = await import("../augment/preview.js");
    const r = await augmentPreviewFer2013({ fer2013Dir: path.join(o.data, "fer2013"), n: o.n, seed: o.seed, out: o.out });
    console.log(`wrote ${r.out} (${r.width}x${r.height} px; columns: ${r.columns.join(", ")})`);
  });

program.addCommand(trainCommand());
program.addCommand(evalCommand());
program.addCommand(dataCommand());
program.addCommand(reportCommand());
program.addCommand(predictCommand());
program.addCommand(exportCommand());
program.addCommand(modelsCommand());
program.addCommand(serveCommand());
program.addCommand(experimentCommand());

// commander's own errors (unknown option, bad value) are user mistakes: exit code 2.
const everyCommand = (c: Command): Command[] => [c, ...c.commands.flatMap(everyCommand)];
for (const c of everyCommand(program)) c.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

// `ferkit predict ... | head`: a closed pipe ends the output, it is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

program.parseAsync().catch((err: unknown) => {
  const userMistake = err instanceof DataError || err instanceof ConfigError || err instanceof RangeError || err instanceof ReportError;
  // A worker of a data-parallel run says which rank it is (every rank writes to the same terminal).
  const rank = process.env.RANK !== undefined && process.env.WORLD_SIZE !== undefined ? ` [rank ${process.env.RANK}]` : "";
  console.error(`ferkit${rank}: ${err instanceof Error ? err.message : String(err)}`);
  if (!userMistake && process.env.FERKIT_DEBUG && err instanceof Error) console.error(err.stack);
  process.exitCode = userMistake ? 2 : 1;
});
