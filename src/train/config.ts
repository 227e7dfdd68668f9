/**
 * The training configuration: one JSON document, validated with zod, with a default for
 * every field so a preset only states what differs. A wrong field is reported with its
 * dotted path and the allowed values.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { PACKAGE_ROOT } from "../torch/native.js";
import { PRECISIONS } from "../torch/autocast.js";

const dataSource = z
  .object({
    /** Data layout: see src/data/open.ts. */
    format: z.enum(["auto", "fer2013", "imagefolder", "csv", "abaw"]).default("fer2013"),
    /** Path of the dataset; relative paths are resolved against the shared data folder. */
    path: z.string().default("fer2013"),
    /** ABAW only: the cropped_aligned/ folder. */
    frames: z.string().optional(),
    /** FER2013 only: original labels or the FER+ majority vote. */
    labels: z.enum(["fer2013", "ferplus"]).default("fer2013"),
    /** FER2013 only: drop Training images that also appear in a test split. */
    dedup: z.enum(["none", "exact", "near"]).default("none"),
    /** Train on these classes only (names of the dataset's label space, in the model's output order); null: all. */
    classes: z.array(z.string()).min(2).nullable().default(null),
  })
  .strict();

const lambdaU = (d: number) => z.number().min(0).default(d);
const uratio = (d: number) => z.number().int().positive().default(d);
const probability = (d: number) => z.number().min(0).max(1).default(d);

/**
 * The training algorithm and its constants, with each paper's defaults (GUIDE sections 4
 * and 5; USB's configs for the baselines). `uratio` (mu) is the number of unlabeled images
 * per labeled image in a step.
 */
const algorithmSchema = z.discriminatedUnion("name", [
  z.object({ name: z.literal("supervised") }).strict(),
  z
    .object({
      name: z.literal("fixmatch"),
      /** Fixed confidence threshold tau. */
      tau: probability(0.95),
      lambdaU: lambdaU(1),
      uratio: uratio(7),
    })
    .strict(),
  z
    .object({
      name: z.literal("flexmatch"),
      /** Upper threshold tau, scaled per class by the learning effect. */
      tau: probability(0.95),
      /** Count unrecorded samples in the normalisation (FlexMatch's threshold warm-up). */
      thresholdWarmup: z.boolean().default(true),
      lambdaU: lambdaU(1),
      uratio: uratio(7),
    })
    .strict(),
  z
    .object({
      name: z.literal("freematch"),
      /** Momentum of the running averages of confidence and class probabilities. */
      emaP: z.number().min(0).lt(1).default(0.999),
      /** Weight of the class-fairness loss (USB's ent_loss_ratio). */
      lambdaF: z.number().min(0).default(0.01),
      lambdaU: lambdaU(1),
      uratio: uratio(7),
    })
    .strict(),
  z
    .object({
      name: z.literal("adacm"),
      /** Lowest threshold, and the value of a class with no correct labeled sample. */
      tauMin: probability(0.8),
      /** Scale of mu_c in tau_c = max(tauMin, scale mu_c sigmoid(epoch)). */
      scale: z.number().positive().default(0.97),
      lambdaX: z.number().min(0).default(0.5),
      lambdaU: lambdaU(1),
      /** Weight of the contrastive loss on low-confidence images. */
      lambdaC: z.number().min(0).default(0.1),
      temperature: z.number().positive().default(0.07),
      /** "contrastive" (the paper) or "drop" (low-confidence images are not used). */
      lowConfidence: z.enum(["contrastive", "drop"]).default("contrastive"),
      uratio: uratio(1),
    })
    .strict(),
  z
    .object({
      name: z.literal("dtm"),
      /** Starting threshold of every class. */
      tauInit: probability(0.8),
      /** mu_c must reach this for the moving average to apply. */
      muMin: probability(0.8),
      /** Threshold after an epoch where a class had no correct sample or mu_c < muMin. */
      tauReset: probability(0.8),
      /** Weight of the old threshold: tau_c <- momentum tau_c + (1 - momentum) mu_c. */
      momentum: z.number().min(0).max(1).default(0.9),
      /** false keeps every tau at tauInit (the fixed-threshold ablation). */
      dynamic: z.boolean().default(true),
      /** Weak views averaged into the pseudo-label. */
      weakViews: z.number().int().min(1).max(4).default(2),
      /**
       * A variant, not the paper: state tauInit, muMin and tauReset as probabilities of a model
       * trained without label smoothing and map them into the smoothed model's range,
       * p -> p (1 - eps) + eps / C (eps = train.labelSmoothing), since label smoothing caps the
       * teacher's confidence (and so mu) near 1 - eps + eps / C.
       */
      smoothingCorrection: z.boolean().default(false),
      /**
       * Where the thresholds come from: "mu" (the paper: the teacher's mean confidence on the
       * correctly classified labeled images) or "unlabeled-quantile" (a variant: after each epoch,
       * tau_c is the `quantile` of the confidences of that epoch's unlabeled images pseudo-labeled c).
       */
      tauFrom: z.enum(["mu", "unlabeled-quantile"]).default("mu"),
      /** The quantile of tauFrom "unlabeled-quantile", in [0, 1] (0.5: half of each class's pseudo-labels pass). */
      quantile: probability(0.5),
      lambdaU: lambdaU(0.5),
      uratio: uratio(1),
    })
    .strict(),
  z
    .object({
      name: z.literal("distill"),
      /**
       * The teachers: run folders, ferkit model files or shipped model names, with the student's
       * classes. Their class probabilities (flip-averaged, averaged over the teachers) on every
       * labeled and unlabeled image are the soft targets (knowledge distillation, Hinton et al. 2015).
       */
      teachers: z.array(z.string().min(1)).min(1),
      /** Temperature T: targets p^(1/T) renormalised, student softmax(logits / T), the term scaled by T^2. */
      temperature: z.number().positive().default(1),
      /** Weight of the soft targets on the labeled images: (1 - alpha) CE(label) + alpha T^2 KL(target || student). */
      alpha: probability(0.5),
      /** Weight of T^2 KL(target || student) on the unlabeled images (their weak view). */
      lambdaU: lambdaU(1),
      uratio: uratio(1),
    })
    .strict(),
]);

/** Names of the training algorithms. */
export const ALGORITHMS = ["supervised", "fixmatch", "flexmatch", "freematch", "adacm", "dtm", "distill"] as const;

/** An external pool of unlabeled face photos. */
const poolSource = z
  .object({
    /** Folder of photos; relative paths are resolved against the shared data folder. */
    path: z.string(),
    /** "detect": find, align and crop the largest face; "resize": the photos are face crops already. */
    align: z.enum(["detect", "resize"]).default("detect"),
    /** Use at most this many photos of the folder (evenly spaced in path order, the same for every seed); null for all. */
    maxPhotos: z.number().int().positive().nullable().default(null),
  })
  .strict();

/** Schema of a training configuration. */
export const TrainConfigSchema = z
  .object({
    /** Free-form name of the run (the run folder is named after it and the start time). */
    name: z.string().default("run"),
    seed: z.number().int().nonnegative().default(0),
    /** CPU threads for libtorch. */
    threads: z.number().int().positive().default(2),
    data: z
      .object({
        labeled: dataSource.prefault({}),
        trainSplit: z.string().default("Training"),
        valSplit: z.string().default("PublicTest"),
        /** Split reported at the end; null for none. */
        testSplit: z.string().nullable().default("PrivateTest"),
        /** Where decoded images are cached; relative to the checkout. */
        cacheDir: z.string().default(".cache"),
        /** Use at most this many images per split (seeded choice), e.g. for smoke runs; null for all. */
        limits: z
          .object({
            train: z.number().int().positive().nullable().default(null),
            val: z.number().int().positive().nullable().default(null),
            test: z.number().int().positive().nullable().default(null),
          })
          .strict()
          .prefault({}),
        /** Draw labeled batches class-balanced instead of uniformly. */
        balanced: z.boolean().default(false),
        /** Keep only this many labels per class of the train split (seeded choice); null keeps all. */
        labelsPerClass: z.number().int().positive().nullable().default(null),
        /**
         * Fraction of each class's labeled images held out of training (seeded choice, at least one
         * image of each class with two or more): the threshold statistics of DTM and Ada-CM (mu, the
         * teacher's confidence on labeled images) are then measured on these unseen images instead
         * of on the images the model trains on. 0 holds none out (the papers). A supervised stage (a)
         * with the same fraction and seed holds out the same images.
         */
        labeledHoldout: z.number().min(0).max(0.5).default(0),
        /** Unlabeled data for semi-supervised algorithms. */
        unlabeled: z
          .object({
            /** The train split's images with labels hidden (with labelsPerClass: the images whose labels were dropped). */
            trainSplit: z.boolean().default(false),
            /** External pools of face photos. */
            pools: z.array(poolSource).default([]),
            /** Use at most this many unlabeled images (seeded choice); null for all. */
            limit: z.number().int().positive().nullable().default(null),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    algorithm: algorithmSchema.prefault({ name: "supervised" }),
    model: z
      .object({
        name: z.enum(["vgg-fer", "resnet18", "mobilenetv2", "mobilefacenet", "faceres"]).default("vgg-fer"),
        /**
         * mobilefacenet and faceres: start from the face-recognition weights their npm package ships
         * ("face-recognition") or from random weights (null). A new classification head either way.
         */
        pretrained: z.enum(["face-recognition"]).nullable().default(null),
        /**
         * Input channels: 1 (gray) or 3 (RGB); null: the model's own (1 for vgg-fer, 3 for the
         * others). A gray run of a face-recognition model sums its RGB first filter over the
         * channels, which gives exactly what the RGB network gives on a gray image.
         */
        inChannels: z
          .union([z.literal(1), z.literal(3)])
          .nullable()
          .default(null),
        /**
         * faceres: batch norm after every convolution, put back into the imported network (whose
         * batch norm is folded away) and set to the identity on the first 512 training images, so
         * it starts as imported and fine-tunes at a higher learning rate.
         */
        batchNorm: z.boolean().default(false),
        /** mobilefacenet and faceres: input side in pixels (null: 112 and 224, their training size); images are resized to it. */
        inputSize: z.number().int().min(32).max(512).nullable().default(null),
        dropout: z.number().min(0).max(1).default(0.5),
        /** vgg-fer and mobilenetv2: channel multiplier (vgg-fer 1 = 64..512 channels). */
        width: z.number().positive().max(4).default(1),
        stem: z.enum(["imagenet", "small"]).default("small"),
        /** Start from these weights: a finished run folder or a model.safetensors (same architecture and classes); null: random init. */
        init: z.string().nullable().default(null),
      })
      .strict()
      .prefault({}),
    optimizer: z
      .object({
        name: z.enum(["sgd", "adam", "adamw"]).default("sgd"),
        lr: z.number().positive().default(0.01),
        momentum: z.number().min(0).default(0.9),
        nesterov: z.boolean().default(true),
        weightDecay: z.number().min(0).default(5e-4),
        betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
        /**
         * Learning rate of the backbone (everything but the `classifier` head) as a fraction of lr,
         * for fine-tuning a pretrained model: 1 trains all alike; 0 leaves the backbone's weights
         * where they are (gradients are still computed, and batch norm statistics still move).
         * Models whose head is not `classifier` (resnet18) take only 1.
         */
        backboneLrFactor: z.number().min(0).max(1).default(1),
      })
      .strict()
      .refine((o) => !(o.name === "sgd" && o.nesterov && o.momentum === 0), {
        message: "Nesterov momentum needs momentum > 0 (set nesterov: false or a momentum)",
        path: ["nesterov"],
      })
      .prefault({}),
    schedule: z
      .object({
        name: z.enum(["cosine", "constant", "fixmatch-cosine"]).default("cosine"),
        warmupSteps: z.number().int().nonnegative().default(500),
        /** Final lr as a fraction of the initial one (cosine only). */
        minFactor: z.number().min(0).max(1).default(0),
      })
      .strict()
      .prefault({}),
    train: z
      .object({
        steps: z.number().int().positive().default(20000),
        batchSize: z.number().int().positive().default(64),
        /** Steps per epoch: the unit of evaluation, checkpoints and epoch logs. */
        epochSteps: z.number().int().positive().default(1000),
        /** Decay of the EMA teacher (0 disables it). */
        emaDecay: z.number().min(0).lt(1).default(0.999),
        /** Warm the EMA decay up as min(emaDecay, (1 + step) / (10 + step)) (TensorFlow's num_updates rule); false: a fixed decay from step 1, as the reference code. */
        emaWarmup: z.boolean().default(true),
        /** Evaluate and select with the EMA teacher (true) or the student (false). */
        evalWithEma: z.boolean().default(true),
        labelSmoothing: z.number().min(0).lt(1).default(0),
        /**
         * Augmentation of labeled batches: true or "weak" = the weak view (random crop with
         * reflect padding, flip); "strong" = the strong view (RandAugment, 3 ops, Cutout, then
         * the weak view), for long supervised fine-tuning; false = the plain images.
         */
        augment: z.union([z.boolean(), z.enum(["weak", "strong"])]).default(true),
        /**
         * Data-parallel runs: batch norms normalise over every rank's batch together (PyTorch's
         * SyncBatchNorm) instead of each rank's own; no effect in one process.
         */
        syncBatchNorm: z.boolean().default(false),
        /** Log the step loss every this many steps. */
        logEvery: z.number().int().positive().default(50),
        /**
         * Forward passes under bfloat16 autocast ("bf16") or in float32; "auto" is bf16 where the
         * CPU has native bfloat16 (avx512_bf16, amx_bf16). A new run stores what it resolved to.
         */
        precision: z.enum(PRECISIONS).default("auto"),
      })
      .strict()
      .prefault({}),
    eval: z
      .object({
        /** Average predictions over the image and its horizontal flip. */
        tta: z.boolean().default(false),
        batchSize: z.number().int().positive().default(256),
        /** Precision of validation, test and threshold statistics' forward passes, as train.precision. */
        precision: z.enum(PRECISIONS).default("auto"),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    const withWeights = ["mobilefacenet", "faceres"];
    if (!withWeights.includes(c.model.name))
      for (const field of ["pretrained", "inputSize"] as const)
        if (c.model[field] !== null)
          ctx.addIssue({
            code: "custom",
            path: ["model", field],
            message: `model '${c.model.name}' has no ${field} setting; models that do: ${withWeights.join(", ")} (set it to null)`,
          });
    if (c.model.name === "faceres" && c.train.batchSize < 2)
      ctx.addIssue({
        code: "custom",
        path: ["train", "batchSize"],
        message: "faceres' classifier starts with batch norm, which needs batches of 2 or more",
      });
    if (c.model.batchNorm && c.model.name !== "faceres")
      ctx.addIssue({
        code: "custom",
        path: ["model", "batchNorm"],
        message: `model '${c.model.name}' has no batchNorm setting; only faceres does`,
      });
    const a = c.algorithm;
    if (a.name === "dtm" && a.tauFrom === "unlabeled-quantile" && !a.dynamic)
      ctx.addIssue({
        code: "custom",
        path: ["algorithm", "dynamic"],
        message: 'tauFrom "unlabeled-quantile" moves the thresholds every epoch; dynamic: false is for tauFrom "mu"',
      });
    // Supervised runs may hold the same images out, so that a later stage measures mu on images neither stage trained on.
    const usesMu = (a.name === "dtm" && a.tauFrom === "mu" && a.dynamic) || a.name === "adacm" || a.name === "supervised";
    if (c.data.labeledHoldout > 0 && !usesMu)
      ctx.addIssue({
        code: "custom",
        path: ["data", "labeledHoldout"],
        message:
          'held-out labeled images serve the thresholds of dtm (tauFrom "mu", dynamic) and adacm, and supervised runs that stage b starts from; set it to 0',
      });
    // Distillation can teach from the labeled images alone.
    if (c.algorithm.name !== "supervised" && c.algorithm.name !== "distill" && !hasUnlabeledData(c))
      ctx.addIssue({
        code: "custom",
        path: ["data", "unlabeled"],
        message: `algorithm '${c.algorithm.name}' needs unlabeled data: set data.unlabeled.trainSplit to true or list data.unlabeled.pools`,
      });
  });

/** The config names unlabeled images: the training split's, or face pools. */
export function hasUnlabeledData(c: { data: { unlabeled: { trainSplit: boolean; pools: unknown[] } } }): boolean {
  return c.data.unlabeled.trainSplit || c.data.unlabeled.pools.length > 0;
}

/** A complete, validated training configuration. */
export type TrainConfig = z.infer<typeof TrainConfigSchema>;

/** A configuration error: names the field and what is allowed. The CLI exits with code 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Defaults that depend on the algorithm, applied where a config leaves the whole section
 * out: DTM and Ada-CM train with Adam at a constant 5e-4 as their reference codes do; the
 * FixMatch family with SGD (Nesterov, momentum 0.9, lr 0.03, weight decay 5e-4) and
 * FixMatch's cosine decay, as USB does.
 */
export const ALGORITHM_DEFAULTS: Record<(typeof ALGORITHMS)[number], { optimizer?: object; schedule?: object }> = {
  supervised: {},
  fixmatch: {
    optimizer: { name: "sgd", lr: 0.03, momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    schedule: { name: "fixmatch-cosine" },
  },
  flexmatch: {
    optimizer: { name: "sgd", lr: 0.03, momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    schedule: { name: "fixmatch-cosine" },
  },
  freematch: {
    optimizer: { name: "sgd", lr: 0.03, momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    schedule: { name: "fixmatch-cosine" },
  },
  adacm: { optimizer: { name: "adam", lr: 5e-4, weightDecay: 0 }, schedule: { name: "constant" } },
  dtm: { optimizer: { name: "adam", lr: 5e-4, weightDecay: 0 }, schedule: { name: "constant" } },
  distill: {},
};

function withAlgorithmDefaults(raw: unknown): unknown {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return raw;
  const r = raw as Record<string, unknown>;
  const name = (r.algorithm as { name?: unknown } | undefined)?.name;
  if (typeof name !== "string" || !(name in ALGORITHM_DEFAULTS)) return raw;
  const d = ALGORITHM_DEFAULTS[name as keyof typeof ALGORITHM_DEFAULTS];
  return { ...r, optimizer: r.optimizer ?? d.optimizer, schedule: r.schedule ?? d.schedule };
}

/**
 * Validates `raw` and fills defaults (including {@link ALGORITHM_DEFAULTS}).
 * @throws ConfigError listing each bad field as `path: message` (zod's message names the allowed values)
 */
export function parseConfig(raw: unknown, source = "config"): TrainConfig {
  const r = TrainConfigSchema.safeParse(withAlgorithmDefaults(raw));
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
  throw new ConfigError(`${source}: invalid configuration: ${problems.join("; ")}`);
}

/** Folder of the presets shipped with ferkit. */
export const PRESETS_DIR = path.join(PACKAGE_ROOT, "configs");

/**
 * Reads a JSON config file (or a preset by name from configs/).
 * @throws ConfigError when the file is missing, not JSON, or invalid
 */
export function loadConfigFile(fileOrPreset: string, isPreset = false): TrainConfig {
  const file = isPreset ? path.join(PRESETS_DIR, `${fileOrPreset}.json`) : fileOrPreset;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    const what = isPreset ? `preset '${fileOrPreset}' (${file})` : file;
    throw new ConfigError(`cannot read ${what}: ${(err as Error).message}`, { cause: err });
  }
  return parseConfig(raw, file);
}

/** Names of the presets shipped in configs/ (without `.json`). */
export function presetNames(): string[] {
  return existsSync(PRESETS_DIR)
    ? readdirSync(PRESETS_DIR)
        .filter((f) => f.endsWith(".json"))
        .map((f) => f.slice(0, -5))
    : [];
}

/** Where a config starts: a preset by name or a JSON file. */
export type ConfigSource = { preset: string } | { config: string };

/** Changes on top of a {@link ConfigSource}, applied in this order. */
export interface ConfigChanges {
  /** Another algorithm replaces the whole algorithm section (its constants take that algorithm's defaults). */
  algorithm?: string;
  /** Fields by dotted path; `undefined` values are skipped (`ferkit train --steps` and the like). */
  overrides?: [string, unknown][];
  /** `key=value` strings, the value parsed as JSON when it is JSON (`ferkit train --set`). */
  sets?: string[];
}

/**
 * The resolved config of a preset or config file with changes on top: what `ferkit train` runs
 * (and what an experiment grid expects a cell's run folder to hold).
 * @throws ConfigError for an unknown preset, an unreadable file, a `--set` without `=`, or an invalid result (naming each field)
 */
export function buildConfig(source: ConfigSource, changes: ConfigChanges = {}): TrainConfig {
  let raw: Record<string, unknown>;
  let name: string;
  if ("preset" in source) {
    name = source.preset;
    const file = path.join(PRESETS_DIR, `${source.preset}.json`);
    if (!existsSync(file)) throw new ConfigError(`unknown preset '${source.preset}' (allowed: ${presetNames().join(", ")})`);
    raw = readRawJson(file, "preset");
  } else {
    name = source.config;
    raw = readRawJson(source.config, "config");
  }
  const current = (raw.algorithm as { name?: unknown } | undefined)?.name ?? "supervised";
  if (changes.algorithm !== undefined && changes.algorithm !== current) raw.algorithm = { name: changes.algorithm };
  for (const [k, v] of changes.overrides ?? []) if (v !== undefined) setField(raw, k, JSON.stringify(v));
  for (const kv of changes.sets ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--set expects key=value, got '${kv}'`);
    setField(raw, kv.slice(0, eq), kv.slice(eq + 1));
  }
  return parseConfig(raw, name);
}

function readRawJson(file: string, what: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Sets `value` at the dotted `key` of a raw config object (for `--set train.steps=500`),
 * parsing the value as JSON when it is valid JSON, else as a string.
 */
export function setField(raw: Record<string, unknown>, key: string, value: string): void {
  const parts = key.split(".");
  let node = raw;
  for (const p of parts.slice(0, -1)) {
    if (typeof node[p] !== "object" || node[p] === null) node[p] = {};
    node = node[p] as Record<string, unknown>;
  }
  let v: unknown = value;
  try {
    v = JSON.parse(value);
  } catch {
    // a bare string
  }
  node[parts[parts.length - 1]] = v;
}
