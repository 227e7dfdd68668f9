/**
 * The training loop shared by every algorithm: step-based, with epochs as the unit of
 * evaluation and checkpoints; an EMA teacher; the best checkpoint by validation
 * macro-F1 and the last one; exact resume (model, teacher, optimizer, schedule, data
 * order, augmentation and libtorch RNG states); a clean stop on Ctrl-C; a NaN/Inf loss
 * stops the run and keeps the last good checkpoint.
 *
 * A run folder holds `config.json` (the resolved config), `log.jsonl` (one JSON event per
 * line), `checkpoints/{last,best}.safetensors` and, at the end, `metrics.json`.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { makeViews } from "../augment/views.js";
import { selectClasses } from "../data/dataset.js";
import { openData } from "../data/open.js";
import { gatherImages, prepareSplit, resolveCacheDir, type PreparedSplit } from "../data/prepare.js";
import { ClassBalancedSampler, RandomSampler, Rng, fewLabelSplit, type SamplerState } from "../data/sampler.js";
import { evalJson, evaluate, predictProbs, type EvalResult } from "../eval/evaluate.js";
import { createModel, defaultInputSize } from "../models/index.js";
import * as torch from "../torch/index.js";
import type { nn } from "../torch/index.js";
import { PACKAGE_ROOT } from "../torch/native.js";
import { createProgress, silentProgress, type Progress } from "../util/progress.js";
import { createAlgorithm, type Algorithm, type LabeledPredictions, type UnlabeledBatch } from "../ssl/index.js";
import { disposeCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
import { ConfigError, parseConfig, type TrainConfig } from "./config.js";
import { EmaTeacher } from "./ema.js";
import { loadModelFile, saveModelFile } from "./model_file.js";
import { PseudoStats, type PseudoCounters } from "./pseudo_stats.js";
import { loadUnlabeledSet, subsetSplit, type UnlabeledSet } from "./unlabeled.js";

const { optim } = torch;

/** Options of {@link train}. */
export interface TrainOptions {
  /** The resolved config (ignored when resuming: the run's own config.json is used). */
  config?: TrainConfig;
  /** The run folder (created when new). */
  runDir: string;
  /** Continue the run in `runDir` from its last checkpoint. */
  resume?: boolean;
  /** The shared data folder that relative dataset paths are resolved against. */
  dataRoot: string;
  /** Progress lines and warnings. */
  log?: (line: string) => void;
  /** Show a progress bar (default true). */
  progress?: boolean;
  /** Stop after this many steps of this invocation (tests use it to simulate a kill). */
  stopAfter?: number;
}

/** Outcome of {@link train}. */
export interface TrainResult {
  runDir: string;
  /** "completed", "interrupted" (Ctrl-C or stopAfter: resume to continue). */
  status: "completed" | "interrupted";
  step: number;
  /** Test-split metrics of the best checkpoint (null when interrupted or no test split). */
  test: EvalResult | null;
  /** Name of the split `test` was measured on (config `data.testSplit`). */
  testSplit: string | null;
  best: { metric: number; step: number } | null;
  /** Training wall time over all invocations, in seconds. */
  wallSeconds: number;
}

/** A NaN or Inf loss: the run stops and keeps its last good checkpoint. */
export class NonFiniteLossError extends Error {
  override name = "NonFiniteLossError";
}

interface LoopState {
  sampler: SamplerState | null;
  augmentRng: number[];
  balancedRng: number[] | null;
  unlabeledSampler: SamplerState | null;
  pseudo: PseudoCounters | null;
  wallSeconds: number;
}

/** Appends one JSON event per line to the run's log.jsonl. */
class RunLog {
  constructor(readonly file: string) {}
  write(event: Record<string, unknown>): void {
    appendFileSync(this.file, JSON.stringify({ time: new Date().toISOString(), ...event }) + "\n");
  }
}

function buildOptimizer(model: nn.Module, c: TrainConfig["optimizer"]): torch.optim.Optimizer<{ lr: number }> {
  // No weight decay on biases and BatchNorm parameters (1-D tensors), as in USB.
  const decay = model.parameters().filter((p) => p.ndim > 1);
  const noDecay = model.parameters().filter((p) => p.ndim <= 1);
  if (c.name === "sgd") {
    return new optim.SGD(
      [
        { params: decay, weightDecay: c.weightDecay },
        { params: noDecay, weightDecay: 0 },
      ],
      { lr: c.lr, momentum: c.momentum, nesterov: c.nesterov },
    );
  }
  const Cls = c.name === "adamw" ? optim.AdamW : optim.Adam;
  return new Cls(
    [
      { params: decay, weightDecay: c.weightDecay },
      { params: noDecay, weightDecay: 0 },
    ],
    { lr: c.lr, betas: c.betas },
  );
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
function initWeights(model: nn.Module, from: string, config: TrainConfig, classes: string[]): void {
  const init = loadModelFile(from);
  try {
    const c = init.card;
    if (c.name !== config.model.name || c.classes.join(",") !== classes.join(",") || (c.options.width ?? 1) !== config.model.width)
      throw new ConfigError(
        `model.init ${init.file} is a ${c.name} (width ${c.options.width ?? 1}) over [${c.classes.join(", ")}]; this run trains a ${config.model.name} (width ${config.model.width}) over [${classes.join(", ")}]`,
      );
    torch.noGrad(() => model.loadStateDict(init.model.stateDict()));
  } finally {
    init.model.dispose();
  }
}

/** Reads the resolved config of an existing run. @throws Error when the folder holds no run */
export function readRunConfig(runDir: string): TrainConfig {
  const file = path.join(runDir, "config.json");
  if (!existsSync(file)) throw new ConfigError(`${runDir} is not a ferkit run (no config.json)`);
  return parseConfig(JSON.parse(readFileSync(file, "utf8")), file);
}

/** Loads the data of a config: labeled train/val/test splits at the model's input size. */
export async function loadTrainData(
  config: TrainConfig,
  dataRoot: string,
  log: (line: string) => void,
  progress = true,
): Promise<{ classes: string[]; train: PreparedSplit; val: PreparedSplit; test: PreparedSplit | null }> {
  const src = config.data.labeled;
  const resolve = (p: string): string => (path.isAbsolute(p) ? p : path.join(dataRoot, p));
  const opened = openData({
    paths: [resolve(src.path)],
    format: src.format,
    frames: src.frames === undefined ? undefined : resolve(src.frames),
    fer2013: { labels: src.labels, dedup: src.dedup },
    warn: (m) => log(`warning: ${m}`),
  });
  if (opened.kind !== "labeled") throw new Error("training data must be a labeled dataset");
  const ds = src.classes === null ? opened.dataset : selectClasses(opened.dataset, src.classes);
  const [channels, size] = defaultInputSize(config.model.name, { stem: config.model.stem });
  const o = {
    size,
    channels: channels as 1 | 3,
    cacheDir: resolveCacheDir(config.data.cacheDir, PACKAGE_ROOT),
    progress,
    warn: (m: string) => log(`warning: ${m}`),
  };
  const lim = config.data.limits;
  const limited = (limit: number | null) => ({ ...o, limit: limit ?? undefined, limitSeed: config.seed });
  const train = await prepareSplit(ds, config.data.trainSplit, limited(lim.train));
  const val = await prepareSplit(ds, config.data.valSplit, limited(lim.val));
  const test = config.data.testSplit === null ? null : await prepareSplit(ds, config.data.testSplit, limited(lim.test));
  return { classes: [...ds.space.classes], train, val, test };
}

/**
 * Trains (or resumes) a run as its config says and, when it completes, evaluates the
 * best checkpoint on the test split.
 * @throws NonFiniteLossError when the loss becomes NaN or Inf; Error on bad data or a bad run folder
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const log = o.log ?? (() => {});
  const ckptDir = path.join(o.runDir, "checkpoints");
  const lastFile = path.join(ckptDir, "last.safetensors");
  const bestFile = path.join(ckptDir, "best.safetensors");
  let config: TrainConfig;
  if (o.resume) {
    config = readRunConfig(o.runDir);
    if (!existsSync(lastFile)) throw new ConfigError(`${o.runDir} has no checkpoint to resume from (${lastFile}); start a new run instead`);
    if (existsSync(path.join(o.runDir, "metrics.json")))
      throw new ConfigError(`${o.runDir} has already finished (see its metrics.json); nothing to resume`);
  } else {
    if (o.config === undefined) throw new Error("train: a config is needed for a new run");
    config = o.config;
    if (existsSync(path.join(o.runDir, "config.json")))
      throw new ConfigError(`${o.runDir} already holds a run; resume it with --resume or choose another --out`);
  }
  const runLog = new RunLog(path.join(o.runDir, "log.jsonl"));
  torch.setNumThreads(config.threads);
  torch.manualSeed(config.seed);

  const data = await loadTrainData(config, o.dataRoot, log, o.progress !== false);
  if (!o.resume) {
    // Written only once the data loaded, so a run that could not start leaves no run folder behind.
    mkdirSync(ckptDir, { recursive: true });
    writeFileSync(path.join(o.runDir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  }
  const { classes, val } = data;
  const perClass = config.data.labelsPerClass;
  const few = perClass === null ? null : fewLabelSplit([...data.train.labels], perClass, config.seed);
  const trainSplit = few === null ? data.train : subsetSplit(data.train, few.labeled);
  const usesUnlabeled = config.algorithm.name !== "supervised";
  const unlabeled: UnlabeledSet | null = usesUnlabeled
    ? await loadUnlabeledSet({
        config,
        dataRoot: o.dataRoot,
        cacheDir: resolveCacheDir(config.data.cacheDir, PACKAGE_ROOT),
        train: data.train,
        trainIndices: few === null ? [...data.train.labels.keys()] : few.unlabeled,
        log,
        progress: o.progress !== false,
      })
    : null;
  log(
    `data: ${trainSplit.n} ${config.data.trainSplit}${few === null ? "" : ` (${perClass} labels per class)`}, ${val.n} ${config.data.valSplit}${data.test ? `, ${data.test.n} ${config.data.testSplit}` : ""} images of [${trainSplit.shape.join(", ")}]` +
      (unlabeled === null
        ? ""
        : `; ${unlabeled.n} unlabeled (${Object.entries(unlabeled.sources)
            .map(([k, v]) => `${v} ${k}`)
            .join(", ")})`),
  );

  const modelOptions = {
    numClasses: classes.length,
    inChannels: trainSplit.shape[0],
    dropout: config.model.dropout,
    width: config.model.width,
    stem: config.model.stem,
  };
  const model = createModel(config.model.name, modelOptions);
  if (config.model.init !== null && !o.resume) initWeights(model, config.model.init, config, classes);
  const teacher = config.train.emaDecay > 0 ? createModel(config.model.name, modelOptions) : null;
  const ema = teacher === null ? null : new EmaTeacher(model, teacher, config.train.emaDecay);
  const opt = buildOptimizer(model, config.optimizer);
  const schedule = new optim.LambdaLR(opt, buildSchedule(config));
  const algorithm: Algorithm = createAlgorithm(config.algorithm, {
    numClasses: classes.length,
    numUnlabeled: unlabeled?.n ?? 0,
    labelSmoothing: config.train.labelSmoothing,
  });
  const unlabeledSampler = unlabeled === null ? null : new RandomSampler(unlabeled.n, config.seed + 2);
  const uratio = "uratio" in config.algorithm ? config.algorithm.uratio : 0;
  const pseudoStats = new PseudoStats(classes.length);
  const sampler = config.data.balanced ? null : new RandomSampler(trainSplit.n, config.seed);
  const balanced = config.data.balanced ? new ClassBalancedSampler([...trainSplit.labels], config.seed) : null;
  const augmentRng = new Rng(config.seed + 1);
  let step = 0;
  let best: TrainResult["best"] = null;
  let wallBefore = 0;

  if (o.resume) {
    const c = loadCheckpoint(lastFile);
    try {
      model.loadStateDict(c.model);
      if (ema !== null && c.ema !== null) ema.teacher.loadStateDict(c.ema);
      opt.loadStateDict(c.optimizer);
      schedule.loadStateDict(c.state.scheduler as { last_step: number; base_lrs: number[] });
      algorithm.loadStateDict(c.state.algorithm);
      const loop = c.state.loop as LoopState;
      if (sampler !== null && loop.sampler !== null) sampler.loadState(loop.sampler);
      if (balanced !== null && loop.balancedRng !== null) balanced.rng.setState(loop.balancedRng);
      if (unlabeledSampler !== null && loop.unlabeledSampler) unlabeledSampler.loadState(loop.unlabeledSampler);
      if (loop.pseudo) pseudoStats.loadState(loop.pseudo);
      augmentRng.setState(loop.augmentRng);
      if (c.rngState !== null) torch.setRngState(c.rngState);
      step = c.state.step;
      best = c.state.best;
      wallBefore = loop.wallSeconds;
    } finally {
      disposeCheckpoint(c);
    }
    runLog.write({ event: "resume", step });
    log(`resumed ${o.runDir} at step ${step}`);
  } else {
    runLog.write({
      event: "start",
      config,
      classes,
      n_train: trainSplit.n,
      n_val: val.n,
      n_unlabeled: unlabeled?.n ?? 0,
      unlabeled_sources: unlabeled?.sources ?? {},
      unlabeled_skipped: unlabeled?.skipped ?? {},
      libtorch: torch.libtorchVersion(),
    });
  }

  const save = (file: string): void => {
    const loop: LoopState = {
      sampler: sampler?.state() ?? null,
      augmentRng: augmentRng.getState(),
      balancedRng: balanced?.rng.getState() ?? null,
      unlabeledSampler: unlabeledSampler?.state() ?? null,
      pseudo: unlabeled === null ? null : pseudoStats.state(),
      wallSeconds: wallBefore + (performance.now() - started) / 1000,
    };
    saveCheckpoint(file, {
      model: model.stateDict(),
      ema: ema?.teacher.stateDict() ?? null,
      optimizer: opt.stateDict(),
      state: { step, config, classes, scheduler: schedule.stateDict(), loop, algorithm: algorithm.stateDict(), best },
    });
  };

  let interrupted = false;
  const onSigint = (): void => {
    interrupted = true;
  };
  process.on("SIGINT", onSigint);
  const started = performance.now();
  const progress: Progress = o.progress === false ? silentProgress : createProgress(`train ${config.name}`, config.train.steps);
  const evalModel = ema !== null && config.train.evalWithEma ? ema.teacher : model;
  const B = config.train.batchSize;
  let windowStart = performance.now();
  let windowLoss = 0;
  let windowSteps = 0;
  let windowLogs: Record<string, number> = {};
  const U = Math.round(uratio * B);
  const labeledPredictions = (): LabeledPredictions => ({
    probs: predictProbs(evalModel, trainSplit.images, trainSplit.shape, { batchSize: config.eval.batchSize }),
    labels: trainSplit.labels,
    numClasses: classes.length,
  });
  let stepsThisRun = 0;
  model.train();
  try {
    while (step < config.train.steps) {
      // Let the event loop run (a few microseconds) so a Ctrl-C handler can set its flag.
      await new Promise((resolve) => setImmediate(resolve));
      if (interrupted || (o.stopAfter !== undefined && stepsThisRun >= o.stopAfter)) {
        save(lastFile);
        runLog.write({ event: "interrupted", step });
        log(`stopped at step ${step}; checkpoint saved. Continue with: ferkit train --resume ${o.runDir}`);
        return {
          runDir: o.runDir,
          status: "interrupted",
          step,
          test: null,
          testSplit: config.data.testSplit,
          best,
          wallSeconds: wallBefore + (performance.now() - started) / 1000,
        };
      }
      const indices = sampler !== null ? sampler.nextBatch(B) : (balanced as ClassBalancedSampler).nextBatch(B);
      const pixels = gatherImages(trainSplit, indices);
      const uIndices = unlabeledSampler === null ? null : unlabeledSampler.nextBatch(U);
      const stepLogs: Record<string, number> = {};
      const lossValue = torch.tidy(() => {
        const batch = { data: pixels, shape: [B, ...trainSplit.shape] as const };
        const x = config.train.augment
          ? makeViews(batch, augmentRng, { weak: 1, strong: 0 }).weak[0]
          : torch
              .fromArray(pixels, [B, ...trainSplit.shape])
              .float()
              .div(255);
        const y = torch.fromArray(
          Int32Array.from(indices, (i) => trainSplit.labels[i]),
          [B],
          "int64",
        );
        let u: UnlabeledBatch | null = null;
        if (unlabeled !== null && uIndices !== null) {
          const views = makeViews({ data: gatherImages(unlabeled, uIndices), shape: [U, ...unlabeled.shape] }, augmentRng, {
            weak: algorithm.weakViews,
            strong: algorithm.strongViews,
          });
          u = { weak: views.weak, strong: views.strong, index: Int32Array.from(uIndices) };
        }
        const out = algorithm.step(model, { x, y }, u);
        Object.assign(stepLogs, out.logs);
        if (out.pseudo !== undefined && unlabeled !== null && uIndices !== null)
          pseudoStats.add(
            out.pseudo,
            uIndices.map((i) => unlabeled.hiddenLabels[i]),
          );
        const value = out.loss.item();
        if (!Number.isFinite(value)) return value;
        opt.zeroGrad();
        out.loss.backward();
        opt.step();
        return value;
      });
      if (!Number.isFinite(lossValue)) {
        runLog.write({ event: "nonfinite_loss", step: step + 1, loss: String(lossValue) });
        throw new NonFiniteLossError(
          `the loss became ${lossValue} at step ${step + 1}; the run stopped. ${existsSync(lastFile) ? `Its last good checkpoint is ${lastFile}.` : "It had no checkpoint yet."} Lower the learning rate and start a new run.`,
        );
      }
      schedule.step();
      step++;
      ema?.update(config.train.emaWarmup ? step : undefined);
      stepsThisRun++;
      windowLoss += lossValue;
      windowSteps++;
      for (const [k, v] of Object.entries(stepLogs)) windowLogs[k] = (windowLogs[k] ?? 0) + v;
      progress.update(step, {
        loss: lossValue.toFixed(3),
        lr: opt.paramGroups[0].lr.toExponential(2),
        ...(stepLogs.mask_rate === undefined ? {} : { mask: stepLogs.mask_rate.toFixed(2) }),
      });
      if (step % config.train.logEvery === 0) {
        const secs = (performance.now() - windowStart) / 1000;
        const means = Object.fromEntries(Object.entries(windowLogs).map(([k, v]) => [k, v / windowSteps]));
        runLog.write({
          event: "step",
          step,
          loss: windowLoss / windowSteps,
          ...means,
          lr: opt.paramGroups[0].lr,
          img_s: (windowSteps * B) / secs,
          steps_s: windowSteps / secs,
        });
        windowStart = performance.now();
        windowLoss = 0;
        windowSteps = 0;
        windowLogs = {};
        torch.releaseFreeMemory();
      }
      if (step % config.train.epochSteps === 0 || step === config.train.steps) {
        const epoch = Math.ceil(step / config.train.epochSteps);
        const v = evaluate(evalModel, val, classes, { batchSize: config.eval.batchSize, tta: config.eval.tta });
        model.train();
        const improved = best === null || v.macroF1 > best.metric;
        if (improved) best = { metric: v.macroF1, step };
        runLog.write({
          event: "epoch",
          epoch,
          step,
          val: { accuracy: v.accuracy, macro_f1: v.macroF1, ece: v.ece },
          best,
          wall_s: wallBefore + (performance.now() - started) / 1000,
        });
        log(
          `epoch ${epoch} (step ${step}): ${config.data.valSplit} accuracy ${(100 * v.accuracy).toFixed(2)} %, macro-F1 ${(100 * v.macroF1).toFixed(2)} %${improved ? " (best)" : ""}`,
        );
        for (const event of algorithm.epochEnd({ epoch, classes, labeledPredictions })) runLog.write(event);
        if (unlabeled !== null) {
          const p = pseudoStats.flush(epoch, step, classes);
          runLog.write(p);
          const pct = (x: unknown): string => (typeof x === "number" ? `${(100 * x).toFixed(1)} %` : "n/a");
          const tau = algorithm.thresholds();
          log(
            `  pseudo-labels: mask rate ${pct(p.mask_rate)}, accuracy ${pct(p.accuracy)} (all: ${pct(p.accuracy_all)})` +
              (tau === null ? "" : `; tau ${tau.map((t, c) => `${classes[c]} ${t.toFixed(3)}`).join(", ")}`),
          );
        }
        model.train();
        if (improved) save(bestFile);
        save(lastFile);
      }
    }
  } finally {
    progress.stop();
    process.off("SIGINT", onSigint);
  }
  const wallSeconds = wallBefore + (performance.now() - started) / 1000;

  let test: EvalResult | null = null;
  if (data.test !== null) {
    const c = loadCheckpoint(bestFile);
    try {
      evalModel.loadStateDict(evalModel === model ? c.model : (c.ema ?? c.model));
    } finally {
      disposeCheckpoint(c);
    }
    test = evaluate(evalModel, data.test, classes, { batchSize: config.eval.batchSize, tta: config.eval.tta });
  } else {
    const c = loadCheckpoint(bestFile);
    evalModel.loadStateDict(evalModel === model ? c.model : (c.ema ?? c.model));
    disposeCheckpoint(c);
  }
  saveModelFile(path.join(o.runDir, "model.safetensors"), evalModel, {
    name: config.model.name,
    options: modelOptions,
    classes,
    input: [...trainSplit.shape],
  });
  const metrics = {
    split: config.data.testSplit,
    test: test === null ? null : evalJson(test),
    best_val_macro_f1: best?.metric ?? null,
    best_step: best?.step ?? null,
    steps: step,
    seed: config.seed,
    wall_time_s: wallSeconds,
    model: config.model.name,
    algorithm: algorithm.name,
    n_labeled: trainSplit.n,
    n_unlabeled: unlabeled?.n ?? 0,
  };
  writeFileSync(path.join(o.runDir, "metrics.json"), JSON.stringify(metrics, null, 2) + "\n");
  runLog.write({ event: "end", ...metrics });
  opt.dispose();
  model.dispose();
  teacher?.dispose();
  return { runDir: o.runDir, status: "completed", step, test, testSplit: config.data.testSplit, best, wallSeconds };
}
