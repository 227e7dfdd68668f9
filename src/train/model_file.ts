/**
 * A trained model as one shareable file: its weights (PyTorch state_dict names) in
 * safetensors, with the architecture, its options, the class names and the input shape
 * in the metadata under `ferkit_model`, so `ferkit eval` and `ferkit predict` can
 * rebuild it without the run folder.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { createModel, listModels, type ModelName, type ModelOptions } from "../models/index.js";
import * as torch from "../torch/index.js";
import { PACKAGE_ROOT } from "../torch/native.js";
import { ConfigError } from "./config.js";
import { foreignModelFormat } from "./model_formats.js";
import type { nn } from "../torch/index.js";

/** What a model file says about the model it holds. */
export interface ModelCard {
  /** Registry name, e.g. "vgg-fer". */
  name: string;
  options: ModelOptions;
  /** Class names of the outputs, in order (the label space it was trained on). */
  classes: string[];
  /** `[C, H, W]` input shape. */
  input: number[];
}

/**
 * Writes `model`'s weights and `card` to `file` (atomically).
 * @param o.half store float32 tensors as float16 (half the size; loading converts them back to
 *   float32, PyTorch's `load_state_dict` does the same)
 */
export function saveModelFile(file: string, model: nn.Module, card: ModelCard, o: { half?: boolean } = {}): void {
  const state = model.stateDict();
  if (!o.half) {
    torch.saveSafetensors(file, state, { format: "pt", ferkit_model: JSON.stringify(card) });
    return;
  }
  torch.tidy(() => {
    const halved = new Map([...state].map(([k, t]) => [k, t.dtype === "float32" ? t.to("float16") : t]));
    torch.saveSafetensors(file, halved, { format: "pt", ferkit_model: JSON.stringify(card) });
  });
}

/** The folder of the models that ship with ferkit (`models/<name>.safetensors`, each with its card in `models/README.md`). */
export const SHIPPED_MODELS_DIR = path.join(PACKAGE_ROOT, "models");

/** Names of the shipped models (file names without `.safetensors`), sorted. */
export function shippedModels(): string[] {
  try {
    return readdirSync(SHIPPED_MODELS_DIR)
      .filter((f) => f.endsWith(".safetensors"))
      .map((f) => f.slice(0, -".safetensors".length))
      .sort();
  } catch {
    return [];
  }
}

/**
 * The model file a `--model` argument means: a run folder's `model.safetensors`, a file, or the
 * name of a shipped model (`ferkit-faceres-fer2013` is `models/ferkit-faceres-fer2013.safetensors`; `ferkit-vgg-fer2013` the earlier default).
 * @throws ConfigError naming the argument and the shipped models when none of these exists
 */
export function resolveModelPath(fileOrRun: string): string {
  if (existsSync(fileOrRun)) return statSync(fileOrRun).isDirectory() ? path.join(fileOrRun, "model.safetensors") : fileOrRun;
  const shipped = path.join(SHIPPED_MODELS_DIR, `${fileOrRun}.safetensors`);
  if (/^[\w.-]+$/.test(fileOrRun) && existsSync(shipped)) return shipped;
  throw new ConfigError(
    `model file ${fileOrRun} does not exist (give a finished \`ferkit train\` run folder, a model file, or a shipped model: ${shippedModels().join(", ")})`,
  );
}

/** The model card's fields as a file must state them (options are checked by building the model). */
const ModelCardSchema = z.object({
  name: z.enum(listModels() as [ModelName, ...ModelName[]]),
  options: z.record(z.string(), z.unknown()).default({}),
  classes: z
    .array(z.string().min(1))
    .min(2)
    .refine((c) => new Set(c).size === c.length, "class names must be distinct"),
  // Sides up to 1024 px: the load checks the card with a forward pass of one such image.
  input: z.tuple([z.union([z.literal(1), z.literal(3)]), z.number().int().min(8).max(1024), z.number().int().min(8).max(1024)]),
});

/**
 * Reads the model card of a file's metadata.
 * @throws ConfigError naming the file and each bad field (with the allowed values)
 */
function parseCard(file: string, raw: string): ModelCard {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new ConfigError(`${file}: its model card (metadata 'ferkit_model') is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const r = ModelCardSchema.safeParse(json);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join(".") || "(card)"}: ${i.message}`);
    throw new ConfigError(`${file}: bad model card (metadata 'ferkit_model'): ${problems.join("; ")}`);
  }
  return { ...r.data, options: r.data.options as ModelOptions };
}

/**
 * Checks the card against the weights by one forward pass of a blank `[1, C, H, W]` image: the
 * card's input shape must run, and the last layer must have one output per class name.
 * @throws ConfigError naming the file and the card field that disagrees
 */
function checkCardAgainstWeights(file: string, model: nn.Module, card: ModelCard): void {
  let outputs: number;
  try {
    outputs = torch.tidy(() => torch.noGrad(() => (model.forward(torch.zeros([1, ...card.input])) as torch.Tensor).shape.at(-1) ?? 0));
  } catch (err) {
    throw new ConfigError(
      `${file}: the model card's input [${card.input.join(", ")}] ([C, H, W]) does not fit the weights of its ${card.name}: ${(err as Error).message.split("\n")[0]}`,
      { cause: err },
    );
  }
  if (outputs !== card.classes.length)
    throw new ConfigError(
      `${file}: the model card names ${card.classes.length} classes (${card.classes.join(", ")}) but the weights' last layer has ${outputs} outputs`,
    );
}

/**
 * Rebuilds a model from a model file, or from a run folder (its `model.safetensors`).
 * @throws ConfigError naming the file when it is missing, is another tool's model format (PyTorch,
 *   TorchScript, ONNX, Keras, tfjs: said so, with what ferkit accepts), is not safetensors, is a
 *   checkpoint, has no model card or a malformed one (naming the field), or its weights do not
 *   fit the card (architecture and options, input shape, class count)
 */
export function loadModelFile(fileOrRun: string): { model: nn.Module; card: ModelCard; file: string } {
  const file = resolveModelPath(fileOrRun);
  if (!existsSync(file))
    throw new ConfigError(`model file ${file} does not exist (a finished \`ferkit train\` run folder holds model.safetensors)`);
  const foreign = foreignModelFormat(file);
  if (foreign !== null) throw new ConfigError(`${file} is not a ferkit model file: ${foreign}`);
  let loaded;
  try {
    loaded = torch.loadSafetensors(file);
  } catch (err) {
    throw new ConfigError((err as Error).message, { cause: err });
  }
  const { tensors, metadata } = loaded;
  try {
    if (metadata.ferkit_checkpoint !== undefined)
      throw new ConfigError(`${file} is a training checkpoint; pass the run folder or its model.safetensors`);
    if (metadata.ferkit_model === undefined) {
      throw new ConfigError(
        `${file} has no model card (architecture and classes in its metadata); models written by \`ferkit train\` have one`,
      );
    }
    const card = parseCard(file, metadata.ferkit_model);
    // The memory layout is this process's choice, not part of the card; the file holds every
    // weight, so nothing is imported from a pretrained source.
    let model: nn.Module;
    try {
      model = createModel(card.name, { ...card.options, pretrained: null, memoryFormat: "channels_last" });
    } catch (err) {
      throw new ConfigError(`${file}: the model card's options do not make a ${card.name}: ${(err as Error).message}`, { cause: err });
    }
    try {
      model.loadStateDict(tensors);
      model.eval();
      checkCardAgainstWeights(file, model, card);
    } catch (err) {
      model.dispose();
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`${file}: the weights do not fit a ${card.name}: ${(err as Error).message}`, { cause: err });
    }
    return { model, card, file };
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
