/**
 * MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
 * Bottlenecks"), written to match torchvision's `torchvision/models/mobilenetv2.py`
 * (v0.14): the same modules, `state_dict` names (`features.0.0.weight`,
 * `features.1.conv.0.0.weight`, `features.2.conv.3.running_mean`, `classifier.1.weight`, ...),
 * width multiplier rounding and initialisation, so a torchvision `state_dict` loads
 * unchanged at width 1 with 3 input channels.
 */
import { nn, type Tensor } from "../torch/index.js";
import { globalAvgPool, torchvisionInit } from "./init.js";

/** torchvision's `_make_divisible`: round `v` to a multiple of `divisor`, never more than 10 % down. */
export function makeDivisible(v: number, divisor = 8): number {
  const rounded = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  return rounded < 0.9 * v ? rounded + divisor : rounded;
}

/** Conv (no bias) + BatchNorm + ReLU6, torchvision's `Conv2dNormActivation`: children "0", "1", "2". */
function convBnRelu6(inp: number, out: number, kernel: number, stride = 1, groups = 1): nn.Sequential {
  return new nn.Sequential(
    new nn.Conv2d(inp, out, kernel, { stride, padding: (kernel - 1) >> 1, groups, bias: false }),
    new nn.BatchNorm2d(out),
    new nn.ReLU6(),
  );
}

/**
 * The inverted residual block: 1x1 expansion (when `expandRatio` > 1), 3x3 depthwise conv
 * (stride), 1x1 linear projection + BN; the input is added back when the shapes match.
 * `[N, inp, H, W]` → `[N, oup, H / stride, W / stride]`.
 */
export class InvertedResidual extends nn.Module {
  readonly conv: nn.Sequential;
  readonly useResidual: boolean;

  constructor(inp: number, oup: number, stride: 1 | 2, expandRatio: number) {
    super();
    const hidden = Math.round(inp * expandRatio);
    this.useResidual = stride === 1 && inp === oup;
    const layers: nn.Module[] = [];
    if (expandRatio !== 1) layers.push(convBnRelu6(inp, hidden, 1));
    layers.push(convBnRelu6(hidden, hidden, 3, stride, hidden));
    layers.push(new nn.Conv2d(hidden, oup, 1, { bias: false }), new nn.BatchNorm2d(oup));
    this.conv = this.registerModule("conv", new nn.Sequential(...layers));
  }

  forward(x: Tensor): Tensor {
    const y = this.conv.forward(x);
    if (!this.useResidual) return y;
    const out = y.add(x);
    y.dispose();
    return out;
  }
}

/** Options of {@link MobileNetV2}. */
export interface MobileNetV2Options {
  /** Output classes (default 7). */
  numClasses?: number;
  /** Input channels (default 3). */
  inChannels?: number;
  /** Width multiplier (default 1). */
  width?: number;
  /** Dropout before the classifier (default 0.2). */
  dropout?: number;
  /**
   * `"imagenet"` (default): the first conv has stride 2 (overall stride 32, for 112x112 and
   * larger); `"small"`: stride 1 (overall stride 16, for 48x48 faces).
   */
  stem?: "imagenet" | "small";
}

/** The (expansion t, channels c, repeats n, stride s) table of the paper's Table 2. */
const SETTINGS: readonly (readonly [number, number, number, 1 | 2])[] = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

/** MobileNetV2: `[N, inChannels, H, W]` float32 → `[N, numClasses]` logits (3.5 M parameters at width 1 with 1000 classes). */
export class MobileNetV2 extends nn.Module {
  readonly features: nn.Sequential;
  readonly classifier: nn.Sequential;

  constructor(o: MobileNetV2Options = {}) {
    super();
    const width = o.width ?? 1;
    let inp = makeDivisible(32 * width);
    const last = makeDivisible(1280 * Math.max(1, width));
    const layers: nn.Module[] = [convBnRelu6(o.inChannels ?? 3, inp, 3, o.stem === "small" ? 1 : 2)];
    for (const [t, c, n, s] of SETTINGS) {
      const out = makeDivisible(c * width);
      for (let i = 0; i < n; i++) {
        layers.push(new InvertedResidual(inp, out, i === 0 ? s : 1, t));
        inp = out;
      }
    }
    layers.push(convBnRelu6(inp, last, 1));
    this.features = this.registerModule("features", new nn.Sequential(...layers));
    this.classifier = this.registerModule(
      "classifier",
      new nn.Sequential(new nn.Dropout(o.dropout ?? 0.2), new nn.Linear(last, o.numClasses ?? 7)),
    );
    torchvisionInit(this);
  }

  /** The globally pooled features `[N, last]`. */
  private pooled(x: Tensor): Tensor {
    return globalAvgPool(this.features.forward(x));
  }

  /**
   * @param x `[N, inChannels, H, W]` float32 (any size, thanks to the global pooling)
   * @returns `[N, numClasses]` logits
   */
  forward(x: Tensor): Tensor {
    const flat = this.pooled(x);
    const out = this.classifier.forward(flat);
    flat.dispose();
    return out;
  }

  /** The logits and the pooled features `[N, 1280]` (at width <= 1). */
  forwardWithFeatures(x: Tensor): { logits: Tensor; features: Tensor } {
    const features = this.pooled(x);
    return { logits: this.classifier.forward(features), features };
  }
}
