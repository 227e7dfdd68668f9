/** `ferkit train` and `ferkit eval`. */
import path from "node:path";
import { Command, Option } from "commander";
import { DATA_FORMATS, openData, type DataFormat } from "../data/open.js";
import type { LabeledDataset } from "../data/dataset.js";
import { labelMapping, labelSpaceFromNames } from "../data/labels.js";
import { prepareSplit, resolveCacheDir } from "../data/prepare.js";
import { evalJson, predictProbs, scoreProbs } from "../eval/evaluate.js";
import { defaultDataRoot, defaultRunsDir } from "../paths.js";
import { PACKAGE_ROOT } from "../torch/native.js";
import { PRECISIONS, resolvePrecision, type Precision } from "../torch/autocast.js";
import { ALGORITHMS, ConfigError, buildConfig, presetNames } from "../train/config.js";
import type { DataParallel } from "../train/data_parallel.js";
import { nonNegativeInt, positiveInt, positiveNumber } from "./options.js";
import { addLaunchOptions, joinFromEnv, launchWorkers, type LaunchFlags } from "./launch.js";

interface TrainFlags extends LaunchFlags {
  preset?: string;
  config?: string;
  resume?: string;
  out?: string;
  data: string;
  steps?: number;
  seed?: number;
  lr?: number;
  batchSize?: number;
  threads?: number;
  precision?: Precision;
  algorithm?: string;
  set: string[];
  progress: boolean;
  report: boolean;
}

/** The `train` command. */
export function trainCommand(): Command {
  const command = new Command("train")
    .description("train a model from a config file or a preset; resume an interrupted run; data-parallel over processes and machines")
    .addOption(new Option("--preset <name>", `a preset from configs/ (${presetNames().join(", ")})`).conflicts("config"))
    .option("--config <file>", "a JSON config file")
    .option("--resume <run>", "continue the run in this folder from its last checkpoint")
    .addOption(new Option("--out <dir>", "the run folder").default(undefined, "runs/<name>-<time>"))
    .addOption(
      new Option("--data <dir>", "the shared data folder that dataset paths are relative to").default(
        defaultDataRoot(),
        "$FERKIT_DATA or ../shared/data",
      ),
    )
    .option("--steps <n>", "override train.steps", positiveInt("--steps"))
    .option("--seed <n>", "override seed", nonNegativeInt("--seed"))
    .option("--lr <x>", "override optimizer.lr", positiveNumber("--lr"))
    .option("--batch-size <n>", "override train.batchSize", positiveInt("--batch-size"))
    .option("--threads <n>", "override threads", positiveInt("--threads"))
    .addOption(
      new Option(
        "--precision <p>",
        "override train.precision and eval.precision: bf16 autocast, fp32, or auto (bf16 where the CPU has native bfloat16)",
      ).choices(PRECISIONS),
    )
    .addOption(
      new Option("--algorithm <name>", "override the algorithm (its constants take that algorithm's defaults)").choices(ALGORITHMS),
    )
    .option(
      "--set <key=value>",
      "override any config field by its dotted path (repeatable), e.g. --set train.emaDecay=0.99",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option("--no-progress", "plain log lines instead of a progress bar")
    .option("--no-report", "do not write <run>/report.html when the run ends");
  return addLaunchOptions(command).action(async (o: TrainFlags) => {
    if (o.nprocPerNode !== undefined) {
      process.exitCode = await launchWorkers(o);
      return;
    }
    const { train } = await import("../train/trainer.js");
    const { world, threads } = await joinFromEnv(o);
    try {
      await trainAction(o, train, world, threads);
    } finally {
      if (world.distributed) (await import("../torch/index.js")).distributed.destroyProcessGroup();
    }
  });
}

async function trainAction(
  o: TrainFlags,
  train: typeof import("../train/trainer.js").train,
  world: DataParallel,
  threads: number | undefined,
): Promise<void> {
  const log = (line: string): void => {
    if (world.isMain) console.error(line);
  };
  const dist = { world, threads };
  let result;
  if (o.resume !== undefined) {
    if (o.preset || o.config || o.steps || o.seed !== undefined || o.lr || o.batchSize || o.algorithm || o.precision || o.set.length > 0) {
      throw new ConfigError("--resume continues a run with its own config; it takes no config, preset or override");
    }
    result = await train({ runDir: o.resume, resume: true, dataRoot: o.data, log, progress: o.progress, ...dist });
  } else {
    if (o.preset === undefined && o.config === undefined)
      throw new ConfigError(`give --preset <name> (${presetNames().join(", ")}) or --config <file>`);
    const config = buildConfig(o.preset !== undefined ? { preset: o.preset } : { config: o.config as string }, {
      algorithm: o.algorithm,
      overrides: [
        ["train.steps", o.steps],
        ["seed", o.seed],
        ["optimizer.lr", o.lr],
        ["train.batchSize", o.batchSize],
        ["threads", o.threads],
        ["train.precision", o.precision],
        ["eval.precision", o.precision],
      ],
      sets: o.set,
    });
    const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
    const runDir = o.out ?? path.join(defaultRunsDir(), `${config.name}-${stamp}`);
    log(`run folder: ${runDir}`);
    result = await train({ config, runDir, dataRoot: o.data, log, progress: o.progress, ...dist });
  }
  if (!world.isMain) return; // rank 0 prints the results and writes the report
  if (result.status === "interrupted") {
    process.exitCode = 130;
    return;
  }
  if (result.test !== null) {
    const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
    console.log(
      `${result.testSplit}: accuracy ${pct(result.test.accuracy)}, macro-F1 ${pct(result.test.macroF1)} (n=${result.test.n}); best step ${result.best?.step}`,
    );
  }
  console.log(`${result.step} steps, ${result.wallSeconds.toFixed(0)} s (${result.precision}); run folder ${result.runDir}`);
  if (o.report) {
    const { writeReport } = await import("../report/index.js");
    console.log(`report: ${writeReport([result.runDir]).file}`);
  }
}

interface EvalFlags {
  model: string[];
  data: string;
  format: DataFormat;
  frames?: string;
  split: string;
  tta: boolean;
  precision: Precision;
  json: boolean;
}

/** The `eval` command. */
export function evalCommand(): Command {
  return new Command("eval")
    .description("evaluate a trained model (run folder or model file), or an ensemble of them, on a dataset split")
    .option(
      "--model <path>",
      "a run folder, a model .safetensors file written by ferkit, or a shipped model's name (default: the default model in models/); " +
        "repeat it to evaluate an ensemble: the models' class probabilities are averaged (same classes, any input sizes)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .addOption(
      new Option("--data <path>", "dataset folder or CSV").default(path.join(defaultDataRoot(), "fer2013"), "../shared/data/fer2013"),
    )
    .addOption(new Option("--format <name>", "data layout").choices(DATA_FORMATS.filter((f) => f !== "pool")).default("auto"))
    .option("--frames <dir>", "abaw: the cropped_aligned/ folder")
    .option("--split <name>", "split to evaluate", "PrivateTest")
    .option("--tta", "average predictions with the horizontal flip", false)
    .addOption(
      new Option("--precision <p>", "forward passes in bf16 (autocast) or fp32; auto: bf16 where the CPU has native bfloat16")
        .choices(PRECISIONS)
        .default("auto"),
    )
    .option(
      "--json",
      "print one JSON object: accuracy, macro_f1, per_class, confusion_matrix, classes, n, ece, precision (and models, for an ensemble)",
      false,
    )
    .action(async (o: EvalFlags) => {
      const { loadModelFile } = await import("../train/model_file.js");
      const { DEFAULT_MODEL } = await import("../predict/classifier.js");
      const paths = o.model.length > 0 ? o.model : [DEFAULT_MODEL];
      const opened = openData({ paths: [o.data], format: o.format, frames: o.frames, warn: (m) => console.error(`warning: ${m}`) });
      if (opened.kind !== "labeled") throw new ConfigError("eval needs a labeled dataset");
      const ds = opened.dataset;
      const precision = resolvePrecision(o.precision);
      if (o.precision === "bf16" && precision.note !== undefined) console.error(precision.note);
      let classes: string[] | undefined;
      let labels: number[] = [];
      let sum: Float32Array | undefined;
      const splits = new Map<string, { images: Uint8Array; shape: [number, number, number] }>();
      for (const file of paths) {
        const { model, card } = loadModelFile(file);
        try {
          if (classes === undefined) {
            classes = card.classes;
          } else if (card.classes.join() !== classes.join()) {
            throw new ConfigError(
              `${file}: its classes (${card.classes.join(", ")}) are not those of ${paths[0]} (${classes.join(", ")}): an ensemble averages the same classes`,
            );
          }
          const [channels, size] = card.input;
          const key = `${channels}x${size}`;
          if (!splits.has(key)) {
            const s = await modelSplit(ds, o, card.classes, channels as 1 | 3, size, splits.size === 0);
            splits.set(key, s);
            labels = s.labels;
          }
          const split = splits.get(key) as { images: Uint8Array; shape: [number, number, number] };
          const probs = predictProbs(model, split.images, split.shape, { tta: o.tta, precision: precision.precision });
          if (sum === undefined) sum = probs;
          else for (let i = 0; i < sum.length; i++) sum[i] += probs[i];
        } finally {
          model.dispose();
        }
      }
      const probs = (sum as Float32Array).map((p) => p / paths.length);
      const r = scoreProbs(probs, labels, classes as string[]);
      if (o.json) {
        console.log(JSON.stringify({ ...evalJson(r), precision: precision.precision, ...(paths.length > 1 ? { models: paths } : {}) }));
        return;
      }
      const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
      const what = paths.length > 1 ? `, ensemble of ${paths.length} models` : "";
      console.log(
        `${o.split} (n=${r.n}, ${precision.precision}${what}): accuracy ${pct(r.accuracy)}, macro-F1 ${pct(r.macroF1)}, ECE ${r.ece.toFixed(4)}`,
      );
      r.classes.forEach((c, i) => {
        const s = r.perClass[i];
        console.log(
          `  ${c.padEnd(10)} P ${pct(s.precision).padStart(8)}  R ${pct(s.recall).padStart(8)}  F1 ${pct(s.f1).padStart(8)}  n ${s.support}`,
        );
      });
    });
}

/**
 * The split's images at a model's input (`[n, channels, size, size]` uint8) and their labels in
 * the model's label space (by expression name); images of classes the model lacks are left out,
 * with a warning when `warn`.
 * @throws ConfigError when the model's classes share none with the dataset's
 */
async function modelSplit(
  ds: LabeledDataset,
  o: EvalFlags,
  modelClasses: string[],
  channels: 1 | 3,
  size: number,
  warn: boolean,
): Promise<{ images: Uint8Array; labels: number[]; shape: [number, number, number] }> {
  const mapping = labelMapping(ds.space, labelSpaceFromNames("model", modelClasses));
  const unmapped = ds.space.classes.filter((_, i) => mapping[i] < 0);
  if (unmapped.length === ds.space.classes.length)
    throw new ConfigError(
      `the model's classes (${modelClasses.join(", ")}) share none with the dataset's (${ds.space.classes.join(", ")})`,
    );
  const split = await prepareSplit(ds, o.split, {
    size,
    channels,
    cacheDir: resolveCacheDir(".cache", PACKAGE_ROOT),
    progress: !o.json,
  });
  const keep = [...split.labels.keys()].filter((i) => mapping[split.labels[i]] >= 0);
  const per = channels * size * size;
  const images = new Uint8Array(keep.length * per);
  keep.forEach((i, k) => images.set(split.images.subarray(i * per, (i + 1) * per), k * per));
  if (warn && unmapped.length > 0)
    console.error(`warning: ${split.n - keep.length} images of classes the model lacks (${unmapped.join(", ")}) are left out`);
  return { images, labels: keep.map((i) => mapping[split.labels[i]]), shape: [channels, size, size] };
}
