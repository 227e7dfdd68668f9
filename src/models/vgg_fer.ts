/**
 * VGG-style network for 48x48 grayscale faces, the architecture family behind the
 * published FER2013 VGG results (Khaireddin & Chen 2021, "Facial Emotion Recognition:
 * State of the Art Performance on FER2013", arXiv:2105.03588, which reaches 73.28%
 * test accuracy with a VGG of four conv stages of two 3x3 conv + BN + ReLU and 2x2
 * max-pooling; after Simonyan & Zisserman 2015, "Very Deep Convolutional Networks").
 *
 * Names follow torchvision's `VGG` (`features.<i>.*`, `classifier.<i>.*`), so the
 * state dict loads into the PyTorch twin in bench/engine_pytorch.py.
 */
import { torchvisionInit } from "./init.js";
import { nn, type Tensor } from "../torch/index.js";

/** Options of {@link VggFer}. */
export interface VggFerOptions {
  /** Number of output classes (default 7, FER2013's label space). */
  numClasses?: number;
  /** Input channels (default 1, grayscale). */
  inChannels?: number;
  /** Dropout probability after each hidden classifier layer (default 0.5). */
  dropout?: number;
  /** Side of the square input in pixels, a multiple of 16 (default 48). */
  inputSize?: number;
  /**
   * Channel multiplier of every conv stage and hidden layer (default 1: 64..512 channels,
   * 1024 hidden units). 0.5 gives 32..256 and 512, about 4x fewer multiply-adds.
   */
  width?: number;
}

/** Output channels of the four conv stages. */
export const VGG_FER_STAGES: readonly number[] = [64, 128, 256, 512];

/** Width of the two hidden classifier layers. */
export const VGG_FER_HIDDEN = 1024;

/**
 * VGG for facial expressions: `[N, inChannels, 48, 48]` float32 → `[N, numClasses]` logits.
 *
 * - `features` (nn.Sequential, 28 children): for each stage with `c` in 64, 128, 256, 512:
 *   Conv2d(3x3, padding 1) → BatchNorm2d → ReLU → Conv2d(3x3, padding 1) → BatchNorm2d →
 *   ReLU → MaxPool2d(2). The spatial size halves per stage: 48 → 24 → 12 → 6 → 3,
 *   giving `[N, 512, 3, 3]`.
 * - flattened to `[N, 4608]` in `forward` (as torchvision's VGG does, so the first
 *   classifier layer is `classifier.0`).
 * - `classifier` (nn.Sequential): Linear(4608, 1024) → ReLU → Dropout → Linear(1024, 1024) →
 *   ReLU → Dropout → Linear(1024, numClasses).
 *
 * About 10.5 M parameters with the defaults. Initialisation as torchvision's VGG:
 * conv weights Kaiming normal (fan_out, ReLU) with zero bias, BatchNorm weight 1 and
 * bias 0, linear weights N(0, 0.01) with zero bias.
 */
export class VggFer extends nn.Module {
  /** The conv stages: `[N, inChannels, S, S]` → `[N, 512, S/16, S/16]`. */
  readonly features: nn.Sequential;
  /** The head: `[N, 512 * (S/16)^2]` → `[N, numClasses]`. */
  readonly classifier: nn.Sequential;
  readonly numClasses: number;
  readonly inChannels: number;
  readonly inputSize: number;

  constructor(options: VggFerOptions = {}) {
    super();
    const numClasses = options.numClasses ?? 7;
    const inChannels = options.inChannels ?? 1;
    const dropout = options.dropout ?? 0.5;
    const inputSize = options.inputSize ?? 48;
    const width = options.width ?? 1;
    if (!(width > 0 && width <= 4)) throw new RangeError(`VggFer: width must be in (0, 4], got ${width}`);
    const scaled = (n: number): number => Math.max(1, Math.round(n * width));
    const hidden = scaled(VGG_FER_HIDDEN);
    if (!Number.isInteger(numClasses) || numClasses < 1)
      throw new RangeError(`VggFer: numClasses must be a positive integer, got ${numClasses}`);
    if (!Number.isInteger(inChannels) || inChannels < 1)
      throw new RangeError(`VggFer: inChannels must be a positive integer, got ${inChannels}`);
    if (!Number.isInteger(inputSize) || inputSize < 16 || inputSize % 16 !== 0) {
      throw new RangeError(`VggFer: inputSize must be a positive multiple of 16 (four 2x2 poolings), got ${inputSize}`);
    }
    this.numClasses = numClasses;
    this.inChannels = inChannels;
    this.inputSize = inputSize;

    const layers: nn.Module[] = [];
    let c = inChannels;
    for (const stage of VGG_FER_STAGES) {
      const out = scaled(stage);
      for (let k = 0; k < 2; k++) {
        layers.push(new nn.Conv2d(c, out, 3, { padding: 1 }), new nn.BatchNorm2d(out), new nn.ReLU(true));
        c = out;
      }
      layers.push(new nn.MaxPool2d(2));
    }
    this.features = this.registerModule("features", new nn.Sequential(...layers));

    const side = inputSize / 16;
    const flat = c * side * side;
    this.classifier = this.registerModule(
      "classifier",
      new nn.Sequential(
        new nn.Linear(flat, hidden),
        new nn.ReLU(true),
        new nn.Dropout(dropout),
        new nn.Linear(hidden, hidden),
        new nn.ReLU(true),
        new nn.Dropout(dropout),
        new nn.Linear(hidden, numClasses),
      ),
    );
    torchvisionInit(this);
  }

  /**
   * @param x `[N, inChannels, inputSize, inputSize]` float32 images (48x48 by default)
   * @returns `[N, numClasses]` logits
   */
  forward(x: Tensor): Tensor {
    const f = this.features.forward(x);
    const flat = f.flatten(1);
    f.dispose();
    const out = this.classifier.forward(flat);
    flat.dispose();
    return out;
  }

  /**
   * The logits and the penultimate representation (the last hidden layer, after its ReLU
   * and dropout), for losses on features such as Ada-CM's contrastive loss.
   * @param x `[N, inChannels, inputSize, inputSize]` float32
   * @returns logits `[N, numClasses]`, features `[N, hidden]`
   */
  forwardWithFeatures(x: Tensor): { logits: Tensor; features: Tensor } {
    const f = this.features.forward(x);
    let h = f.flatten(1);
    f.dispose();
    const layers = this.classifier.layers;
    for (const layer of layers.slice(0, -1)) {
      const next = layer.forward(h);
      if (next !== h) h.dispose();
      h = next;
    }
    return { logits: layers[layers.length - 1].forward(h), features: h };
  }
}
