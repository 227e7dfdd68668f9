/**
 * ResNet with basic blocks (He et al. 2016, "Deep Residual Learning for Image
 * Recognition"), written to match torchvision's `torchvision/models/resnet.py`
 * (v0.14): the same modules, parameter names (`conv1.weight`, `bn1.running_mean`,
 * `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, `fc.weight`, ...) and
 * initialisation, so a torchvision `state_dict` loads unchanged (imagenet stem).
 */
import { F, nn, type Tensor } from "../torch/index.js";
import { globalAvgPool } from "./init.js";

/** The first layers: torchvision's 7x7/2 conv + 3x3/2 max-pool, or 3x3/1 conv without pooling. */
export type ResNetStem = "imagenet" | "small";

/** Options of {@link ResNet} and {@link resnet18}. */
export interface ResNetOptions {
  /** Number of output classes (default 7 for FER; torchvision's default is 1000). */
  numClasses?: number;
  /** Input channels (default 3). */
  inChannels?: number;
  /**
   * `"imagenet"` (default): conv1 7x7 stride 2 padding 3, then max-pool 3x3 stride 2
   * (the standard stem, for 112x112 or larger faces). `"small"`: conv1 3x3 stride 1
   * padding 1 and no max-pool (for 48x48 faces, as CIFAR-style ResNets do).
   */
  stem?: ResNetStem;
}

/**
 * torchvision's BasicBlock: `conv3x3(stride) → BN → ReLU → conv3x3 → BN`, plus the
 * identity (or `downsample` when the shape changes), then ReLU.
 * `[N, inPlanes, H, W]` → `[N, planes, H / stride, W / stride]`.
 */
export class BasicBlock extends nn.Module {
  /** Output channels of the block divided by `planes` (1 for BasicBlock). */
  static readonly expansion = 1;
  readonly conv1: nn.Conv2d;
  readonly bn1: nn.BatchNorm2d;
  readonly conv2: nn.Conv2d;
  readonly bn2: nn.BatchNorm2d;
  /** 1x1 conv (stride) + BN on the shortcut, or null for the identity. */
  readonly downsample: nn.Sequential | null;

  constructor(inPlanes: number, planes: number, stride = 1, downsample: nn.Sequential | null = null) {
    super();
    this.conv1 = this.registerModule("conv1", new nn.Conv2d(inPlanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.registerModule("bn1", new nn.BatchNorm2d(planes));
    this.registerModule("relu", new nn.ReLU(true));
    this.conv2 = this.registerModule("conv2", new nn.Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule("bn2", new nn.BatchNorm2d(planes));
    this.downsample = downsample === null ? null : this.registerModule("downsample", downsample);
  }

  /**
   * @param x `[N, inPlanes, H, W]`
   * @returns `[N, planes, H / stride, W / stride]`
   */
  forward(x: Tensor): Tensor {
    // Each JS handle is dropped as soon as the next op has consumed it; autograd keeps
    // its own references to whatever the backward pass needs.
    const a = this.conv1.forward(x);
    const b = this.bn1.forward(a);
    a.dispose();
    F.relu_(b); // in place, as torchvision's ReLU(inplace=True)
    const d = this.conv2.forward(b);
    b.dispose();
    const out = this.bn2.forward(d);
    d.dispose();
    const identity = this.downsample === null ? x : this.downsample.forward(x);
    // In place, as torchvision's `out += identity`: BatchNorm's backward does not read its output.
    out.add_(identity);
    if (identity !== x) identity.dispose();
    return F.relu_(out);
  }
}

/**
 * ResNet of {@link BasicBlock}s: `[N, inChannels, H, W]` float32 → `[N, numClasses]` logits.
 *
 * Modules in torchvision's order: `conv1`, `bn1`, `relu`, `maxpool` (imagenet stem only),
 * `layer1`..`layer4` (nn.Sequential of blocks with 64, 128, 256, 512 channels, stride 2
 * from layer2 on), `avgpool` (global average), `fc`. Initialisation as torchvision:
 * conv weights Kaiming normal (fan_out, ReLU), BatchNorm weight 1 and bias 0, `fc` with
 * PyTorch's default Linear initialisation.
 */
export class ResNet extends nn.Module {
  readonly conv1: nn.Conv2d;
  readonly bn1: nn.BatchNorm2d;
  readonly maxpool: nn.MaxPool2d | null;
  readonly layer1: nn.Sequential;
  readonly layer2: nn.Sequential;
  readonly layer3: nn.Sequential;
  readonly layer4: nn.Sequential;
  readonly fc: nn.Linear;
  readonly numClasses: number;
  readonly inChannels: number;
  readonly stem: ResNetStem;
  #inPlanes = 64;

  /**
   * @param layers number of blocks in each of the four stages, e.g. `[2, 2, 2, 2]` for ResNet-18
   */
  constructor(layers: readonly [number, number, number, number], options: ResNetOptions = {}) {
    super();
    const numClasses = options.numClasses ?? 7;
    const inChannels = options.inChannels ?? 3;
    const stem = options.stem ?? "imagenet";
    if (!Number.isInteger(numClasses) || numClasses < 1)
      throw new RangeError(`ResNet: numClasses must be a positive integer, got ${numClasses}`);
    if (!Number.isInteger(inChannels) || inChannels < 1)
      throw new RangeError(`ResNet: inChannels must be a positive integer, got ${inChannels}`);
    if (stem !== "imagenet" && stem !== "small") throw new RangeError(`ResNet: stem must be "imagenet" or "small", got ${String(stem)}`);
    this.numClasses = numClasses;
    this.inChannels = inChannels;
    this.stem = stem;

    this.conv1 = this.registerModule(
      "conv1",
      stem === "imagenet"
        ? new nn.Conv2d(inChannels, 64, 7, { stride: 2, padding: 3, bias: false })
        : new nn.Conv2d(inChannels, 64, 3, { stride: 1, padding: 1, bias: false }),
    );
    this.bn1 = this.registerModule("bn1", new nn.BatchNorm2d(64));
    this.registerModule("relu", new nn.ReLU(true));
    this.maxpool = stem === "imagenet" ? this.registerModule("maxpool", new nn.MaxPool2d(3, { stride: 2, padding: 1 })) : null;
    this.layer1 = this.registerModule("layer1", this.makeLayer(64, layers[0], 1));
    this.layer2 = this.registerModule("layer2", this.makeLayer(128, layers[1], 2));
    this.layer3 = this.registerModule("layer3", this.makeLayer(256, layers[2], 2));
    this.layer4 = this.registerModule("layer4", this.makeLayer(512, layers[3], 2));
    this.registerModule("avgpool", new nn.AdaptiveAvgPool2d(1));
    this.fc = this.registerModule("fc", new nn.Linear(512 * BasicBlock.expansion, numClasses));

    for (const [, m] of this.namedModules()) {
      if (m instanceof nn.Conv2d) {
        nn.init.kaimingNormal_(m.weight, 0, "fan_out", "relu");
      } else if (m instanceof nn.BatchNorm2d) {
        if (m.weight !== null) nn.init.constant_(m.weight, 1);
        if (m.bias !== null) nn.init.constant_(m.bias, 0);
      }
    }
  }

  private makeLayer(planes: number, blocks: number, stride: number): nn.Sequential {
    let downsample: nn.Sequential | null = null;
    const out = planes * BasicBlock.expansion;
    if (stride !== 1 || this.#inPlanes !== out) {
      downsample = new nn.Sequential(new nn.Conv2d(this.#inPlanes, out, 1, { stride, bias: false }), new nn.BatchNorm2d(out));
    }
    const list: nn.Module[] = [new BasicBlock(this.#inPlanes, planes, stride, downsample)];
    this.#inPlanes = out;
    for (let i = 1; i < blocks; i++) list.push(new BasicBlock(this.#inPlanes, planes));
    return new nn.Sequential(...list);
  }

  /** The globally pooled features `[N, 512]` of `x` `[N, inChannels, H, W]`. */
  private pooledFeatures(x: Tensor): Tensor {
    const a = this.conv1.forward(x);
    const b = this.bn1.forward(a);
    a.dispose();
    let h = F.relu_(b);
    if (this.maxpool !== null) {
      const p = this.maxpool.forward(h);
      h.dispose();
      h = p;
    }
    for (const layer of [this.layer1, this.layer2, this.layer3, this.layer4]) {
      const next = layer.forward(h);
      h.dispose();
      h = next;
    }
    return globalAvgPool(h);
  }

  /**
   * @param x `[N, inChannels, H, W]` float32; 112x112 for the imagenet stem (3x3 before
   *   pooling), 48x48 for the small stem (6x6 before pooling); any size works thanks to
   *   the global average pooling
   * @returns `[N, numClasses]` logits
   */
  forward(x: Tensor): Tensor {
    const flat = this.pooledFeatures(x);
    const out = this.fc.forward(flat);
    flat.dispose();
    return out;
  }

  /**
   * The logits and the globally pooled features, for losses on features such as Ada-CM's
   * contrastive loss.
   * @returns logits `[N, numClasses]`, features `[N, 512]`
   */
  forwardWithFeatures(x: Tensor): { logits: Tensor; features: Tensor } {
    const features = this.pooledFeatures(x);
    return { logits: this.fc.forward(features), features };
  }
}

/**
 * ResNet-18 (`[2, 2, 2, 2]` basic blocks, 11.2 M parameters with 7 classes and 3 input
 * channels): `[N, inChannels, 112, 112]` (imagenet stem) or `[N, inChannels, 48, 48]`
 * (small stem) float32 → `[N, numClasses]` logits.
 */
export function resnet18(options: ResNetOptions = {}): ResNet {
  return new ResNet([2, 2, 2, 2], options);
}
