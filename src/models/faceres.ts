/**
 * FaceRes: the face-recognition MobileNet (Howard et al. 2017, "MobileNets"; width 1, 13
 * depthwise-separable blocks, ReLU6) of Savchenko's HSE_FaceRec_tf, trained for face
 * identification on VGGFace2 and then given age and gender heads; `@vladmandic/human` ships it as
 * `models/faceres.json` (float16 weights). Batch norm is folded into each convolution (weight
 * scale and bias), as in the shipped graph, so the backbone has no BatchNorm layers unless
 * `batchNorm` puts them back (see {@link FaceResOptions.batchNorm}). The first
 * convolution's weights are multiplied by 255 at import: the graph reads pixel values in
 * [0, 255], ferkit feeds pixel values / 255, and a convolution is linear in its input.
 *
 * For expressions the network ends in global average pooling of its last layer's 1024 channels
 * taken before that layer's ReLU6 (see {@link FaceRes.forward}) and a new `classifier` (batch
 * norm, dropout, linear); the age
 * and gender heads are not imported. {@link FaceRes.descriptor} gives the graph's face descriptor.
 */
import * as torch from "../torch/index.js";
import { F, nn, type Tensor } from "../torch/index.js";
import { globalAvgPool, torchvisionInit } from "./init.js";
import { SameConv2d } from "./same_conv.js";
import type { StateDictBuilder } from "./tfjs_import.js";

/** (output channels, stride of the depthwise convolution) of the 13 blocks (the paper's Table 1). */
const BLOCKS: readonly (readonly [number, 1 | 2])[] = [
  [64, 1],
  [128, 2],
  [128, 1],
  [256, 2],
  [256, 1],
  [512, 2],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [1024, 2],
  [1024, 1],
];

/** Width of the pooled descriptor the classifier reads. */
export const FACERES_FEATURES = 1024;

/** Convolution with bias (folded batch norm), optionally batch norm, then ReLU6. */
class ConvRelu6 extends nn.Module {
  readonly conv: SameConv2d;
  readonly bn: nn.BatchNorm2d | null;
  constructor(inp: number, out: number, kernel: number, stride: number, groups: number, batchNorm: boolean) {
    super();
    this.conv = this.registerModule("conv", new SameConv2d(inp, out, kernel, stride, groups));
    this.bn = batchNorm ? this.registerModule("bn", new nn.BatchNorm2d(out)) : null;
  }
  forward(x: Tensor): Tensor {
    const y = this.conv.forward(x);
    const z = this.bn === null ? y : this.bn.forward(y);
    if (z !== y) y.dispose();
    const out = F.relu6(z);
    z.dispose();
    return out;
  }

  /**
   * Sets the batch norm to the identity (in eval mode, for every input) with the statistics of
   * the convolution outputs it would see: weight = their standard deviation, bias and running
   * mean = their mean, running variance = their variance (per channel).
   * @param sum per-channel sum of the convolution outputs `[C]`; `sumSq` of their squares; `count` values per channel
   */
  setIdentity(sum: Tensor, sumSq: Tensor, count: number): void {
    const bn = this.bn;
    if (bn === null) return;
    torch.tidy(() => {
      const mean = sum.div(count);
      const variance = sumSq.div(count).sub(mean.mul(mean)).clamp(0, Infinity);
      bn.runningMean!.copy_(mean);
      bn.runningVar!.copy_(variance);
      bn.weight!.copy_(variance.add(bn.eps).sqrt());
      bn.bias!.copy_(mean);
    });
  }
}

/** Options of {@link FaceRes}. */
export interface FaceResOptions {
  /** Output classes (default 7). */
  numClasses?: number;
  /** Input channels (default 3; 1 makes a gray model, whose imported first filter is summed over RGB). */
  inChannels?: number;
  /** Dropout before the classifier's linear layer (default 0.2; training runs pass `model.dropout`). */
  dropout?: number;
  /**
   * Batch norm after every convolution (default false). The imported network has its batch norm
   * folded away; put back and set to the identity on the training data by
   * {@link FaceRes.calibrateBatchNorm}, it starts as the imported network and trains at learning
   * rates the folded one does not survive.
   */
  batchNorm?: boolean;
}

/**
 * FaceRes' MobileNet: `[N, inChannels, H, W]` float32, pixel values / 255 (224x224 as trained;
 * any size, thanks to the global pooling) → `[N, numClasses]` logits. 3.20 M parameters in the backbone.
 */
export class FaceRes extends nn.Module {
  /** `conv1` and the 13 blocks' `dw` and `pw` layers, in order, as `features.0` ... `features.26`. */
  readonly features: nn.Sequential;
  readonly classifier: nn.Sequential;

  constructor(o: FaceResOptions = {}) {
    super();
    const bn = o.batchNorm ?? false;
    const layers: nn.Module[] = [new ConvRelu6(o.inChannels ?? 3, 32, 3, 2, 1, bn)];
    let c = 32;
    for (const [out, stride] of BLOCKS) {
      layers.push(new ConvRelu6(c, c, 3, stride, c, bn), new ConvRelu6(c, out, 1, 1, 1, bn));
      c = out;
    }
    this.features = this.registerModule("features", new nn.Sequential(...layers));
    this.classifier = this.registerModule(
      "classifier",
      new nn.Sequential(
        new nn.BatchNorm1d(FACERES_FEATURES),
        new nn.Dropout(o.dropout ?? 0.2),
        new nn.Linear(FACERES_FEATURES, o.numClasses ?? 7),
      ),
    );
    torchvisionInit(this);
  }

  /**
   * Data-dependent initialisation of the batch norms (with `batchNorm`): each is set to the
   * identity with the statistics of its inputs over `x`, so the network computes what it computed
   * without them (in eval mode for any input; in training mode on batches like `x`). The
   * statistics are gathered with the batch norms bypassed, which is what they then compute, in
   * chunks of 64 images (memory: one chunk's activations). Without `batchNorm` it does nothing.
   * @param x `[N, C, H, W]` float32 training images, pixel values / 255
   */
  calibrateBatchNorm(x: Tensor): void {
    const layers = this.features.layers as ConvRelu6[];
    if (layers[0].bn === null) return;
    const sums: Tensor[] = [];
    const sumSqs: Tensor[] = [];
    const counts: number[] = layers.map(() => 0);
    torch.noGrad(() => {
      for (let start = 0; start < x.shape[0]; start += 64) {
        let h = x.narrow(0, start, Math.min(64, x.shape[0] - start));
        layers.forEach((layer, i) => {
          const y = layer.conv.forward(h);
          h.dispose();
          counts[i] += y.shape[0] * y.shape[2] * y.shape[3];
          torch.tidy(() => {
            const [s, q] = [y.sum([0, 2, 3]), y.mul(y).sum([0, 2, 3])];
            if (sums[i] === undefined) [sums[i], sumSqs[i]] = [torch.keep(s), torch.keep(q)];
            else {
              sums[i].add_(s);
              sumSqs[i].add_(q);
            }
          });
          h = F.relu6(y);
          y.dispose();
        });
        h.dispose();
      }
    });
    torch.noGrad(() => layers.forEach((layer, i) => layer.setIdentity(sums[i], sumSqs[i], counts[i])));
    torch.dispose([...sums, ...sumSqs]);
  }

  /**
   * The last layer's map `[N, 1024, H / 32, W / 32]`, before its ReLU6 when `activate` is false.
   * Why the classifier reads it before: after the ReLU6 over 99 % of the face-recognition
   * descriptor is zero (measured on random and face inputs at 64-224 px), so a head on it would
   * see almost nothing and pass gradients to almost nothing (fine-tuning from it stayed at the
   * class prior, loss 1.85 after 200 steps). Before the ReLU6 the values are large and
   * unbounded, so the classifier starts with batch norm (a "BN neck", Luo et al. 2019).
   */
  private lastMap(x: Tensor, activate: boolean): Tensor {
    const layers = this.features.layers;
    let h = x;
    for (const layer of layers.slice(0, -1)) {
      const next = layer.forward(h);
      if (h !== x) h.dispose();
      h = next;
    }
    const last = layers[layers.length - 1] as ConvRelu6;
    let out: Tensor;
    if (activate) out = last.forward(h);
    else {
      // Convolution and, with `batchNorm`, its batch norm: everything but the ReLU6.
      const y = last.conv.forward(h);
      out = last.bn === null ? y : last.bn.forward(y);
      if (out !== y) y.dispose();
    }
    if (h !== x) h.dispose();
    return out;
  }

  private pooled(x: Tensor, activate: boolean): Tensor {
    return globalAvgPool(this.lastMap(x, activate));
  }

  /** The face-recognition descriptor `[N, 1024]` (the graph's `global_pooling/Mean`, after the last ReLU6). */
  descriptor(x: Tensor): Tensor {
    return this.pooled(x, true);
  }

  /** `[N, C, H, W]` → `[N, numClasses]` logits, from the pooled last layer before its ReLU6. */
  forward(x: Tensor): Tensor {
    const flat = this.pooled(x, false);
    const out = this.classifier.forward(flat);
    flat.dispose();
    return out;
  }

  /** The logits and the pooled last layer before its ReLU6 `[N, 1024]` (what the classifier's batch norm reads). */
  forwardWithFeatures(x: Tensor): { logits: Tensor; features: Tensor } {
    const features = this.pooled(x, false);
    return { logits: this.classifier.forward(features), features };
  }
}

/**
 * Maps `@vladmandic/human`'s `faceres.json` onto {@link FaceRes}: `conv1` and `conv_pw_i` filters
 * (batch-norm scale already merged by the converter) with their offsets (`*_bn/batchnorm_1/sub`);
 * `conv_dw_i` filters times their batch-norm scale (`*_bn/batchnorm_1/mul`); `conv1` times 255
 * (see the module comment). The ReLU6 bounds are checked to be 0 and 6; the age, gender and
 * `feats` layers are skipped.
 * @throws Error naming the file when a weight is missing or the ReLU bounds differ
 */
export function faceResFromTfjs(sd: StateDictBuilder): void {
  for (const name of sd.names()) {
    if (/^(feats|age_pred|gender_pred|global_pooling)\//.test(name)) sd.skip(name);
    else if (/_relu\/(Cast|Const_1)$/.test(name)) {
      const v = sd.scalar(name);
      const want = name.endsWith("Cast") ? 6 : 0;
      if (v !== want) throw new Error(`${sd.file}: ${name} is ${v}, expected ${want} (ReLU6 bounds)`);
    }
  }
  const conv1 = sd.filter("conv1/convolution/merged_input");
  sd.set("features.0.conv.weight", conv1.mul(255));
  conv1.dispose();
  sd.vector("conv1_bn/batchnorm_1/sub", "features.0.conv.bias");
  for (let i = 1; i <= BLOCKS.length; i++) {
    const [dw, pw] = [`features.${2 * i - 1}.conv`, `features.${2 * i}.conv`];
    const filter = sd.filter(`conv_dw_${i}/depthwise_kernel`);
    const scale = sd.raw(`conv_dw_${i}_bn/batchnorm_1/mul`);
    const s4 = scale.reshape(scale.shape[0], 1, 1, 1);
    sd.set(`${dw}.weight`, filter.mul(s4));
    [filter, scale, s4].forEach((t) => t.dispose());
    sd.vector(`conv_dw_${i}_bn/batchnorm_1/sub`, `${dw}.bias`);
    sd.convParam(`conv_pw_${i}/convolution/merged_input`, pw, "merged_input");
    sd.vector(`conv_pw_${i}_bn/batchnorm_1/sub`, `${pw}.bias`);
  }
}
