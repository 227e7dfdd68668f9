/**
 * The training configuration: one JSON document, validated with zod, with a default for
 * every field so a preset only states what differs. A wrong field is reported with its
 * dotted path and the allowed values.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { PACKAGE_ROOT } from "../torch/native.js";

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
      })
      .strict()
      .prefault({}),
    model: z
      .object({
        name: z.enum(["vgg-fer", "resnet18"]).default("vgg-fer"),
        dropout: z.number().min(0).max(1).default(0.5),
        /** vgg-fer: channel multiplier (1 = 64..512 channels). */
        width: z.number().positive().max(4).default(1),
        stem: z.enum(["imagenet", "small"]).default("small"),
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
        /** Evaluate and select with the EMA teacher (true) or the student (false). */
        evalWithEma: z.boolean().default(true),
        labelSmoothing: z.number().min(0).lt(1).default(0),
        /** Weak augmentation of labeled batches (random crop with padding and flip). */
        augment: z.boolean().default(true),
        /** Log the step loss every this many steps. */
        logEvery: z.number().int().positive().default(50),
      })
      .strict()
      .prefault({}),
    eval: z
      .object({
        /** Average predictions over the image and its horizontal flip. */
        tta: z.boolean().default(false),
        batchSize: z.number().int().positive().default(256),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** A complete, validated training configuration. */
export type TrainConfig = z.infer<typeof TrainConfigSchema>;

/** A configuration error: names the field and what is allowed. The CLI exits with code 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Validates `raw` and fills defaults.
 * @throws ConfigError listing each bad field as `path: message` (zod's message names the allowed values)
 */
export function parseConfig(raw: unknown, source = "config"): TrainConfig {
  const r = TrainConfigSchema.safeParse(raw);
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
