/**
 * The data of a training run, read as its config says: the labeled train/val/test splits
 * at the model's input size, the few-label subset when `data.labelsPerClass` is set, and
 * the unlabeled set of semi-supervised algorithms.
 */
import path from "node:path";
import { selectClasses } from "../data/dataset.js";
import { openData } from "../data/open.js";
import { prepareSplit, resolveCacheDir, type PreparedSplit } from "../data/prepare.js";
import { fewLabelSplit, holdoutSplit } from "../data/sampler.js";
import { defaultInputSize } from "../models/index.js";
import { PACKAGE_ROOT } from "../torch/native.js";
import { hasUnlabeledData, type TrainConfig } from "./config.js";
import { loadUnlabeledSet, subsetSplit, type UnlabeledSet } from "./unlabeled.js";
import type { ShardGroup } from "../data/pool_prepare.js";

/** The labeled splits of a config, each `[n, C, H, W]` uint8 at the model's input size. */
export interface LabeledData {
  /** Class names of the label space, in the model's output order. */
  classes: string[];
  train: PreparedSplit;
  val: PreparedSplit;
  /** Null when `data.testSplit` is null. */
  test: PreparedSplit | null;
}

/**
 * Loads the data of a config: labeled train/val/test splits at the model's input size.
 * @param dataRoot the folder that relative dataset paths are resolved against
 * @throws DataError (from the readers) on a wrong layout or when nothing usable remains;
 *   Error when the dataset is not labeled
 */
export async function loadTrainData(
  config: TrainConfig,
  dataRoot: string,
  log: (line: string) => void,
  progress = true,
): Promise<LabeledData> {
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
  const [channels, size] = defaultInputSize(config.model.name, {
    stem: config.model.stem,
    inputSize: config.model.inputSize ?? undefined,
    inChannels: config.model.inChannels ?? undefined,
  });
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

/** Everything a run trains and is judged on. */
export interface RunData extends LabeledData {
  /** The labeled images trained on: the whole train split, or its few-label subset, less the held-out part. */
  labeled: PreparedSplit;
  /** The labeled images held out of training for threshold statistics (`data.labeledHoldout`); null when none. */
  heldout: PreparedSplit | null;
  /** The unlabeled set (null for supervised training). */
  unlabeled: UnlabeledSet | null;
}

/**
 * Loads the labeled splits, takes the few-label subset when the config asks for one (its
 * other images join the unlabeled set with their labels hidden) and, for semi-supervised
 * algorithms, builds the unlabeled set; logs one line of counts.
 * @param pools how face pools are prepared: detection threads, and the ranks that share the work
 * @throws as {@link loadTrainData} and {@link loadUnlabeledSet}
 */
export async function loadRunData(
  config: TrainConfig,
  dataRoot: string,
  log: (line: string) => void,
  progress: boolean,
  pools: { workers?: number; group?: ShardGroup } = {},
): Promise<RunData> {
  const data = await loadTrainData(config, dataRoot, log, progress);
  const perClass = config.data.labelsPerClass;
  const few = perClass === null ? null : fewLabelSplit([...data.train.labels], perClass, config.seed);
  const chosen = few === null ? data.train : subsetSplit(data.train, few.labeled);
  const hold = config.data.labeledHoldout > 0 ? holdoutSplit([...chosen.labels], config.data.labeledHoldout, config.seed) : null;
  const labeled = hold === null ? chosen : subsetSplit(chosen, hold.train);
  const heldout = hold === null ? null : subsetSplit(chosen, hold.heldout);
  const unlabeled =
    config.algorithm.name === "supervised" || !hasUnlabeledData(config)
      ? null
      : await loadUnlabeledSet({
          config,
          dataRoot,
          cacheDir: resolveCacheDir(config.data.cacheDir, PACKAGE_ROOT),
          train: data.train,
          trainIndices: few === null ? [...data.train.labels.keys()] : few.unlabeled,
          log,
          progress,
          ...pools,
        });
  const d = config.data;
  const sources = Object.entries(unlabeled?.sources ?? {})
    .map(([k, v]) => `${v} ${k}`)
    .join(", ");
  log(
    `data: ${labeled.n} ${d.trainSplit}${perClass === null ? "" : ` (${perClass} labels per class)`}` +
      `${heldout === null ? "" : ` (+${heldout.n} held out for threshold statistics)`}, ${data.val.n} ${d.valSplit}` +
      `${data.test ? `, ${data.test.n} ${d.testSplit}` : ""} images of [${labeled.shape.join(", ")}]` +
      (unlabeled === null ? "" : `; ${unlabeled.n} unlabeled (${sources})`),
  );
  return { ...data, labeled, heldout, unlabeled };
}
