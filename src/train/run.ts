/**
 * A training run's pieces, built once from its config: the data, the student model, the
 * EMA teacher, the optimizer and its schedule, and the algorithm. The loop's parts
 * (src/train/parts.ts and its neighbours) act on a {@link Run}; none of them builds anything.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { PreparedSplit } from "../data/prepare.js";
import { atPrecision, createModel, FaceRes, pretrainedFile, type Classifier, type ModelOptions } from "../models/index.js";
import * as torch from "../torch/index.js";
import type { nn, Tensor } from "../torch/index.js";
import { createAlgorithm, type Algorithm } from "../ssl/index.js";
import { ConfigError, parseConfig, type TrainConfig } from "./config.js";
import { DataParallel } from "./data_parallel.js";
import { loadRunData } from "./data.js";
import { SharedMaskRule } from "./shared_mask.js";
import { teacherTargets } from "./teachers.js";
import { EmaTeacher } from "./ema.js";
import { loadModelFile } from "./model_file.js";
import type { UnlabeledSet } from "./unlabeled.js";

const { optim } = torch;

/** The pieces of one training run. */
export interface Run {
  /** The config as the run executes it: "auto" precisions replaced by what they resolved to. */
  readonly config: TrainConfig;
  /** The run folder: config.json, log.jsonl, checkpoints/, metrics.json, model.safetensors. */
  readonly dir: string;
  /** Class names, in the model's output order. */
  readonly classes: string[];
  /** Labeled images trained on (`[n, C, H, W]` uint8): the train split or its few-label subset. */
  readonly labeled: PreparedSplit;
  /** Labeled images held out of training for threshold statistics (`data.labeledHoldout`), or null. */
  readonly heldout: PreparedSplit | null;
  readonly val: PreparedSplit;
  readonly test: PreparedSplit | null;
  readonly unlabeled: UnlabeledSet | null;
  readonly modelOptions: ModelOptions;
  /** The student, trained by the optimizer. */
  readonly model: nn.Module;
  /** The student's forward passes at the training precision (what the algorithm calls). */
  readonly net: Classifier;
  /** What the training forward passes run at on this machine (`train.precision` resolved). */
  readonly precision: "bf16" | "fp32";
  /** What evaluation's forward passes run at (`eval.precision` resolved). */
  readonly evalPrecision: "bf16" | "fp32";
  /** The EMA teacher, or null when `train.emaDecay` is 0. */
  readonly ema: EmaTeacher | null;
  /** The model that is validated, selected, tested and saved (the teacher when `train.evalWithEma`). */
  readonly evalModel: nn.Module;
  readonly optimizer: torch.optim.Optimizer<{ lr: number }>;
  readonly schedule: torch.optim.LambdaLR;
  readonly algorithm: Algorithm;
  /** This process's place among the ranks of a data-parallel run (one process: rank 0 of 1). */
  readonly world: DataParallel;
  /** Optimizer steps done, over every invocation of the run. */
  step: number;
}

/**
 * Reads the resolved config of an existing run. A run from before mixed precision has no
 * precision fields and ran in float32, so it reads as fp32 (not as today's default "auto").
 * @throws ConfigError when the folder holds no run
 */
export function readRunConfig(runDir: string): TrainConfig {
  const file = path.join(runDir, "config.json");
  if (!existsSync(file)) throw new ConfigError(`${runDir} is not a ferkit run (no config.json)`);
  const raw = JSON.parse(readFileSync(file, "utf8")) as unknown;
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    const r = raw as Record<string, unknown>;
    for (const section of ["train", "eval"]) {
      const s = r[section];
      if (s === undefined) r[section] = { precision: "fp32" };
      else if (typeof s === "object" && s !== null && !("precision" in s)) (s as Record<string, unknown>).precision = "fp32";
    }
  }
  return parseConfig(raw, file);
}

/**
 * Builds a run's pieces: seeds libtorch, loads the data, creates the model (from
 * `model.init` for a new run), the teacher, the optimizer, the schedule and the algorithm
 * (for distillation, with the teacher models' soft targets).
 * The order is fixed (it decides which random numbers each piece draws). In a data-parallel
 * run every rank builds its own pieces and then takes rank 0's weights.
 * @param o.fresh false when a checkpoint will overwrite the weights (no `model.init` then)
 * @param o.threads libtorch threads for this process (default: the config's `threads`)
 * @param o.world the process's rank and world size (default: one process)
 * @throws ConfigError when `model.init` does not fit the config; DataError on unusable data
 */
export async function buildRun(
  requested: TrainConfig,
  o: {
    dir: string;
    dataRoot: string;
    fresh: boolean;
    log: (line: string) => void;
    progress: boolean;
    threads?: number;
    world?: DataParallel;
  },
): Promise<Run> {
  let config = requested;
  const world = o.world ?? DataParallel.single;
  const threads = o.threads ?? config.threads;
  torch.setNumThreads(threads);
  torch.manualSeed(config.seed);
  // Pretrained weights only for a new run's student: a checkpoint or model.init overwrites them,
  // and the teacher copies the student. They are not a model option (model files hold all weights).
  const pretrained = o.fresh && config.model.init === null ? config.model.pretrained : null;
  if (pretrained !== null) {
    try {
      pretrainedFile(config.model.name); // before the data, which can take minutes to prepare
    } catch (err) {
      throw new ConfigError(`model.pretrained: ${(err as Error).message}`, { cause: err });
    }
  } else if (o.fresh && config.model.pretrained !== null)
    o.log(`model: model.init given, so the ${config.model.pretrained} weights are not imported (model.init holds every weight)`);
  const data = await loadRunData(config, o.dataRoot, o.log, o.progress, {
    ...(world.distributed ? { group: world, workers: threads } : {}),
  });
  // Preparing a face pool on detection workers leaves libtorch's thread count behind it wrong
  // for this thread (measured: a fresh quick start trained at 2.2 steps/s, a cached one at 4.2).
  torch.setNumThreads(threads);
  const modelOptions: ModelOptions = {
    numClasses: data.classes.length,
    inChannels: data.labeled.shape[0],
    dropout: config.model.dropout,
    width: config.model.width,
    stem: config.model.stem,
    ...(config.model.inputSize === null ? {} : { inputSize: config.model.inputSize }),
    ...(config.model.batchNorm ? { batchNorm: true } : {}),
  };
  const model = createModel(config.model.name, { ...modelOptions, pretrained });
  if (pretrained !== null) {
    o.log(`model: ${config.model.name} from its ${pretrained} weights (${pretrainedFile(config.model.name)})`);
    if (model instanceof FaceRes && config.model.batchNorm) calibrateOn(model, data.labeled, o.log);
  }
  const precision = choosePrecision(config.train.precision, o.fresh, o.log);
  const evalPrecision =
    config.eval.precision === config.train.precision ? precision : choosePrecision(config.eval.precision, o.fresh, o.log);
  o.log(`precision: training ${precision}, evaluation ${evalPrecision}`);
  // From here on the config says what runs: config.json, checkpoints and the log record it.
  config = { ...config, train: { ...config.train, precision }, eval: { ...config.eval, precision: evalPrecision } };
  if (config.model.init !== null && o.fresh) initWeights(model, config.model.init, config, data.classes, data.labeled.shape[0]);
  world.broadcastModule(model);
  if (world.distributed && config.train.syncBatchNorm)
    o.log(`model: ${torch.nn.convertSyncBatchNorm(model)} batch norms synchronised across the ranks`);
  // Ranks other than 0 draw their own dropout masks (rank 0 keeps the one-process stream).
  if (world.rank > 0) torch.manualSeed(config.seed + 1_000_003 * world.rank);
  const ema = config.train.emaDecay > 0 ? new EmaTeacher(model, createModel(config.model.name, modelOptions), config.train.emaDecay) : null;
  const optimizer = buildOptimizer(model, config.optimizer);
  const a = config.algorithm;
  const softTargets =
    a.name === "distill"
      ? teacherTargets({
          teachers: a.teachers,
          classes: data.classes,
          labeled: data.labeled,
          unlabeled: data.unlabeled,
          runDir: o.dir,
          write: world.isMain,
          precision: evalPrecision,
          log: o.log,
        })
      : undefined;
  return {
    config,
    dir: o.dir,
    classes: data.classes,
    labeled: data.labeled,
    heldout: data.heldout,
    val: data.val,
    test: data.test,
    unlabeled: data.unlabeled,
    modelOptions,
    model,
    net: atPrecision(model, precision),
    precision,
    evalPrecision,
    ema,
    evalModel: ema !== null && config.train.evalWithEma ? ema.teacher : model,
    optimizer,
    schedule: new optim.LambdaLR(optimizer, buildSchedule(config)),
    algorithm: createAlgorithm(config.algorithm, {
      numClasses: data.classes.length,
      numUnlabeled: data.unlabeled?.n ?? 0,
      labelSmoothing: config.train.labelSmoothing,
      ...(world.distributed ? { shareRule: (rule) => new SharedMaskRule(rule, world) } : {}),
      ...(softTargets === undefined ? {} : { softTargets }),
    }),
    world,
    step: 0,
  };
}

/**
 * Calibrates a pretrained FaceRes' added batch norms on 512 labeled training images taken at an
 * even stride through the split (a dataset listed class by class still gives every class).
 */
function calibrateOn(model: FaceRes, labeled: PreparedSplit, log: (line: string) => void): void {
  const n = Math.min(512, labeled.n);
  const per = labeled.shape.reduce((a, b) => a * b, 1);
  const pixels = new Uint8Array(n * per);
  for (let k = 0; k < n; k++) {
    const i = Math.floor((k * labeled.n) / n);
    pixels.set(labeled.images.subarray(i * per, (i + 1) * per), k * per);
  }
  torch.tidy(() =>
    model.calibrateBatchNorm(
      torch
        .fromArray(pixels, [n, ...labeled.shape], "uint8")
        .float()
        .div(255),
    ),
  );
  log(`model: batch norms set to the identity on ${n} training images`);
}

/**
 * The precision a run executes at. A new run resolves its setting on this CPU, saying in one
 * line when that is not bf16. A resumed run keeps the precision it started with, so it stays
 * exact: bf16 on a CPU without native bfloat16 still runs, emulated and slower, and says so.
 */
function choosePrecision(setting: torch.Precision, fresh: boolean, log: (line: string) => void): "bf16" | "fp32" {
  if (!fresh && setting !== "auto") {
    if (setting === "bf16" && !torch.cpuHasNativeBf16())
      log("this run started in bf16 and continues in bf16 to stay exact, emulated on this CPU (no native bfloat16): slower than its start");
    return setting;
  }
  const r = torch.resolvePrecision(setting);
  if (r.note !== undefined) log(r.note);
  return r.precision;
}

/** Frees a run's native memory (models and optimizer state). */
export function disposeRun(run: Run): void {
  run.optimizer.dispose();
  run.model.dispose();
  run.ema?.teacher.dispose();
}

function buildOptimizer(model: nn.Module, c: TrainConfig["optimizer"]): torch.optim.Optimizer<{ lr: number }> {
  // No weight decay on biases and BatchNorm parameters (1-D tensors), as in USB; with a backbone
  // learning-rate factor, the backbone's groups run at lr * factor (the schedule scales every group alike).
  const named = model.namedParameters();
  const part = (head: boolean) => named.filter(([n]) => n.startsWith("classifier.") === head).map(([, p]) => p);
  const split = (params: Tensor[], lr: number) => [
    { params: params.filter((p) => p.ndim > 1), weightDecay: c.weightDecay, lr },
    { params: params.filter((p) => p.ndim <= 1), weightDecay: 0, lr },
  ];
  if (c.backboneLrFactor !== 1 && part(true).length === 0)
    throw new ConfigError(
      `optimizer.backboneLrFactor: this model has no \`classifier\` head to tell from its backbone; leave the factor at 1`,
    );
  const groups = (
    c.backboneLrFactor === 1
      ? split(model.parameters(), c.lr)
      : [...split(part(false), c.lr * c.backboneLrFactor), ...split(part(true), c.lr)]
  ).filter((g) => g.params.length > 0);
  if (c.name === "sgd") return new optim.SGD(groups, { lr: c.lr, momentum: c.momentum, nesterov: c.nesterov });
  const Cls = c.name === "adamw" ? optim.AdamW : optim.Adam;
  return new Cls(groups, { lr: c.lr, betas: c.betas });
}

function buildSchedule(c: TrainConfig): torch.optim.LrLambda {
  if (c.schedule.name === "constant") return optim.constantSchedule();
  if (c.schedule.name === "fixmatch-cosine") return optim.fixmatchCosine(c.train.steps);
  return optim.cosineWithWarmup(c.train.steps, c.schedule.warmupSteps, c.schedule.minFactor);
}

/**
 * Copies the weights of a trained model (run folder or model file) into `model`.
 * @throws ConfigError when the file is missing or holds another architecture, width or label space
 */
function initWeights(model: nn.Module, from: string, config: TrainConfig, classes: string[], inChannels: number): void {
  const init = loadModelFile(from);
  try {
    const c = init.card;
    const bn = (c.options.batchNorm ?? false) !== config.model.batchNorm;
    if (bn || (c.options.inChannels !== undefined && c.options.inChannels !== inChannels))
      throw new ConfigError(
        `model.init ${init.file} has ${c.options.inChannels ?? "?"} input channel(s) and batchNorm ${c.options.batchNorm ?? false}; this run's model has ${inChannels} and batchNorm ${config.model.batchNorm} (set model.inChannels and model.batchNorm as the run that made it)`,
      );
    if (c.name !== config.model.name || c.classes.join(",") !== classes.join(",") || (c.options.width ?? 1) !== config.model.width)
      throw new ConfigError(
        `model.init ${init.file} is a ${c.name} (width ${c.options.width ?? 1}) over [${c.classes.join(", ")}]; this run trains a ${config.model.name} (width ${config.model.width}) over [${classes.join(", ")}]`,
      );
    torch.noGrad(() => model.loadStateDict(init.model.stateDict()));
  } finally {
    init.model.dispose();
  }
}
