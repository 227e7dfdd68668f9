/**
 * TensorFlow.js graph models (`model.json` + `.bin` weight shards, as npm packages ship them) run
 * on ferkit's libtorch engine instead of tfjs: the graph is read once, its weights converted to
 * PyTorch's layouts (convolution filters HWIO -> OIHW, depthwise HWCM -> [C*M, 1, H, W]), and
 * each call executes the nodes in order on `[N, C, H, W]` activations. The op set is what the
 * face models of `@vladmandic/human` use (BlazeFace: `_FusedConv2D`, `DepthwiseConv2dNative`,
 * `AddV2`, `Relu`, `MaxPool`, `Pad`, `Reshape`); an op outside it is refused when the model is
 * loaded, naming the op. Inference only: the weights are constants, not parameters.
 *
 * Formats: https://www.tensorflow.org/js/guide/save_load (graph model JSON: `modelTopology.node`
 * with TensorFlow's NodeDef fields, `weightsManifest` listing each weight's name, shape, dtype and
 * optional quantization).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import * as torch from "../torch/index.js";
import type { Tensor } from "../torch/index.js";
import { samePadding } from "./same_conv.js";

/** A NodeDef of the graph, as tfjs writes it. */
export interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, { s?: string; i?: string; f?: number; list?: { i?: string[]; s?: string[] }; type?: string }>;
}

/** One weight of the manifest. */
export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: "float32" | "int32";
  quantization?: { dtype: "uint8" | "uint16" | "float16"; scale?: number; min?: number };
}

export interface ModelJson {
  modelTopology: { node: GraphNode[] };
  weightsManifest: { paths: string[]; weights: WeightSpec[] }[];
}

/** A value flowing through the graph: a 4-D activation kept as `[N, C, H, W]`, or any tensor in TensorFlow's own layout. */
interface Value {
  t: Tensor;
  /** True when `t` is an NHWC activation held as NCHW. */
  nchw: boolean;
}

const SUPPORTED = new Set([
  "Placeholder",
  "Const",
  "Identity",
  "_FusedConv2D",
  "Conv2D",
  "DepthwiseConv2dNative",
  "FusedDepthwiseConv2dNative",
  "AddV2",
  "Add",
  "Sub",
  "Mul",
  "Relu",
  "Relu6",
  "Abs",
  "Sigmoid",
  "Prelu",
  "MaxPool",
  "Pad",
  "Reshape",
  "ConcatV2",
]);

/** Filters and activations in channels_last: oneDNN's fast layout (BlazeFace 13 ms against 21 ms per photo on one thread). */
const FORMAT = "channels_last";
/** NHWC axis -> NCHW axis. */
const NCHW_AXIS = [0, 2, 3, 1];

function decodeString(s: string | undefined): string {
  return s === undefined ? "" : Buffer.from(s, "base64").toString("latin1");
}

/** One decoded weight of a tfjs weights manifest. */
export interface TfjsWeight {
  spec: WeightSpec;
  /** The values tfjs computes with: dequantised (uint8/uint16 `min + scale * q`, float16 widened) to float32, or int32. */
  data: Float32Array | Int32Array;
}

/**
 * Reads the weights of a manifest into float32 / int32 arrays by name, decoding them as tfjs
 * does (`tfjs-core/src/io/io_utils.ts`, `decodeWeights`).
 * @param dir the folder the shard paths are relative to
 * @throws Error naming the shard files when one is missing, shorter or longer than the manifest says
 */
export function readTfjsWeights(dir: string, manifest: ModelJson["weightsManifest"]): Map<string, TfjsWeight> {
  const out = new Map<string, TfjsWeight>();
  for (const group of manifest) {
    const files = group.paths.map((p) => path.join(dir, p));
    const buf = Buffer.concat(
      files.map((f) => {
        try {
          return readFileSync(f);
        } catch (err) {
          throw new Error(`tfjs weights: cannot read ${f}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
            cause: err,
          });
        }
      }),
    );
    let offset = 0;
    for (const spec of group.weights) {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const q = spec.quantization;
      const bytes = n * (q === undefined ? 4 : q.dtype === "uint8" ? 1 : 2);
      if (offset + bytes > buf.length)
        throw new Error(`tfjs weights: ${files.join(", ")} is truncated: weight ${spec.name} runs past its end (${buf.length} bytes)`);
      const raw = buf.subarray(offset, offset + bytes);
      offset += bytes;
      let data: Float32Array | Int32Array;
      if (q === undefined) {
        const copy = new Uint8Array(raw); // aligned copy
        data = spec.dtype === "int32" ? new Int32Array(copy.buffer) : new Float32Array(copy.buffer);
      } else if (q.dtype === "float16") {
        data = Float32Array.from({ length: n }, (_, i) => halfToFloat(raw.readUInt16LE(2 * i)));
      } else {
        const get = q.dtype === "uint8" ? (i: number) => raw[i] : (i: number) => raw.readUInt16LE(2 * i);
        data = Float32Array.from({ length: n }, (_, i) => (q.min ?? 0) + (q.scale ?? 1) * get(i));
        if (spec.dtype === "int32") data = Int32Array.from(data, Math.round);
      }
      out.set(spec.name, { spec, data });
    }
    if (offset !== buf.length)
      throw new Error(
        `tfjs weights: ${files.join(", ")} holds ${buf.length} bytes but its manifest describes ${offset}: not the weights of this model`,
      );
  }
  return out;
}

/**
 * Reads a tfjs model's `model.json` (graph or layers model) and its weights.
 * @throws Error naming the file when it is missing, not JSON, has no weights manifest, or its shards do not match
 */
export function readTfjsModel(modelJson: string): { json: ModelJson; weights: Map<string, TfjsWeight> } {
  let json: ModelJson;
  try {
    json = JSON.parse(readFileSync(modelJson, "utf8")) as ModelJson;
  } catch (err) {
    throw new Error(`tfjs model: cannot read ${modelJson}: ${(err as Error).message}`, { cause: err });
  }
  if (!Array.isArray(json?.weightsManifest)) throw new Error(`tfjs model: ${modelJson} has no weightsManifest`);
  return { json, weights: readTfjsWeights(path.dirname(modelJson), json.weightsManifest) };
}

/** IEEE 754 half precision to a number. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/** A tfjs graph model, ready to run on libtorch. Dispose it to free its weights. */
export class TfjsGraph {
  readonly #nodes: GraphNode[];
  readonly #consts = new Map<string, Value>();
  /** Convolution weights converted once, by node name. */
  readonly #filters = new Map<string, Tensor>();
  readonly #ints = new Map<string, number[]>();
  /** Names of the graph's inputs (`Placeholder` nodes) and outputs (nodes nothing else reads). */
  readonly inputs: string[];
  readonly outputs: string[];

  private constructor(json: ModelJson, dir: string) {
    const weights = readTfjsWeights(dir, json.weightsManifest);
    const nodes = json.modelTopology.node;
    const unknown = [...new Set(nodes.map((n) => n.op).filter((op) => !SUPPORTED.has(op)))];
    if (unknown.length > 0) throw new Error(`tfjs graph: unsupported ops ${unknown.join(", ")}`);
    for (const n of nodes) checkAttributes(n);
    const byName = new Map(nodes.map((n) => [n.name, n]));
    const read = new Set(nodes.flatMap((n) => (n.input ?? []).map((i) => i.split(":")[0])));
    this.inputs = nodes.filter((n) => n.op === "Placeholder").map((n) => n.name);
    this.outputs = nodes.filter((n) => n.op !== "Const" && !read.has(n.name)).map((n) => n.name);
    // Execution order: depth-first from the outputs, so every input comes before its reader.
    const order: GraphNode[] = [];
    const seen = new Set<string>();
    const visit = (name: string): void => {
      if (seen.has(name)) return;
      seen.add(name);
      const n = byName.get(name);
      if (n === undefined) throw new Error(`tfjs graph: node ${name} is read but not defined`);
      for (const i of n.input ?? []) if (!i.startsWith("^")) visit(i.split(":")[0]);
      order.push(n);
    };
    this.outputs.forEach(visit);
    this.#nodes = order.filter((n) => n.op !== "Const" && n.op !== "Placeholder");
    for (const n of order.filter((x) => x.op === "Const")) {
      const w = weights.get(n.name);
      if (w === undefined) throw new Error(`tfjs graph: constant ${n.name} has no weights`);
      if (w.spec.dtype === "int32") this.#ints.set(n.name, Array.from(w.data));
      this.#consts.set(n.name, { t: torch.fromArray(w.data, w.spec.shape, w.spec.dtype === "int32" ? "int32" : "float32"), nchw: false });
    }
    for (const n of this.#nodes) {
      const filter = n.input?.[1];
      if (filter === undefined) continue;
      const w = this.#consts.get(filter)?.t;
      if (n.op === "_FusedConv2D" || n.op === "Conv2D") this.#filters.set(n.name, w!.permute(3, 2, 0, 1).contiguous(FORMAT));
      else if (n.op.endsWith("DepthwiseConv2dNative")) {
        const [kh, kw, c, m] = w!.shape;
        this.#filters.set(
          n.name,
          w!
            .permute(2, 3, 0, 1)
            .reshape(c * m, 1, kh, kw)
            .contiguous(FORMAT),
        );
      }
    }
  }

  /**
   * Reads `model.json` and its weight shards.
   * @throws Error naming the file when it is missing or malformed, or the graph uses an unsupported op
   */
  static load(modelJson: string): TfjsGraph {
    let json: ModelJson;
    try {
      json = JSON.parse(readFileSync(modelJson, "utf8")) as ModelJson;
    } catch (err) {
      throw new Error(`tfjs graph: cannot read ${modelJson}: ${(err as Error).message}`, { cause: err });
    }
    if (!Array.isArray(json?.modelTopology?.node) || !Array.isArray(json.weightsManifest))
      throw new Error(`tfjs graph: ${modelJson} is not a tfjs graph model (no modelTopology.node / weightsManifest)`);
    try {
      return torch.noGrad(() => new TfjsGraph(json, path.dirname(modelJson)));
    } catch (err) {
      throw new Error(`${(err as Error).message} (${modelJson})`, { cause: err });
    }
  }

  /**
   * Runs the graph on its single input.
   * @param x `[N, C, H, W]` float32, the NCHW form of the graph's NHWC input
   * @returns every output by node name, in TensorFlow's layout (4-D outputs as NCHW); call
   *   inside a `tidy` scope or dispose them
   */
  run(x: Tensor): Map<string, Tensor> {
    return torch.inferenceMode(() =>
      torch.tidy(() => {
        const values = new Map<string, Value>([[this.inputs[0], { t: x, nchw: true }]]);
        const get = (name: string): Value => {
          const v = values.get(name.split(":")[0]) ?? this.#consts.get(name.split(":")[0]);
          if (v === undefined) throw new Error(`tfjs graph: no value for ${name}`);
          return v;
        };
        for (const n of this.#nodes) values.set(n.name, this.#exec(n, (n.input ?? []).filter((i) => !i.startsWith("^")).map(get)));
        return new Map(this.outputs.map((o) => [o, (values.get(o) as Value).t]));
      }),
    );
  }

  #exec(n: GraphNode, ins: Value[]): Value {
    const a = n.attr ?? {};
    const ints = (k: string): number[] => (a[k]?.list?.i ?? []).map(Number);
    switch (n.op) {
      case "Identity":
        return ins[0];
      case "Conv2D":
      case "_FusedConv2D":
      case "DepthwiseConv2dNative":
      case "FusedDepthwiseConv2dNative": {
        if (!ins[0].nchw) throw new Error(`tfjs graph: ${n.op} ${n.name} reads a tensor that is not an image activation`);
        const depthwise = n.op.endsWith("DepthwiseConv2dNative");
        const w = this.#filters.get(n.name) as Tensor;
        const [s, d] = [ints("strides"), ints("dilations")];
        const [sh, sw] = [s[1] ?? 1, s[2] ?? 1];
        const [dh, dw] = [d[1] ?? 1, d[2] ?? 1];
        let x = ins[0].t;
        let padding: [number, number] = [0, 0];
        if (decodeString(a.padding?.s) === "SAME") {
          const [t, b] = samePadding(x.shape[2], w.shape[2], sh, dh);
          const [l, r] = samePadding(x.shape[3], w.shape[3], sw, dw);
          // Symmetric padding goes to the convolution; TensorFlow's extra row/column after (stride 2) to a pad.
          if (t === b && l === r) padding = [t, l];
          else x = torch.F.pad(x, [l, r, t, b]);
        }
        const fused = (a.fused_ops?.list?.s ?? []).map(decodeString);
        const bias = fused[0] === "BiasAdd" ? ins[2].t : null;
        const y = torch.F.conv2d(x, w, bias, { stride: [sh, sw], padding, dilation: [dh, dw], groups: depthwise ? x.shape[1] : 1 });
        const act = fused[1];
        if (act === undefined) return { t: y, nchw: true };
        return { t: act === "Prelu" ? prelu(y, ins[3].t) : activation(act, y, n), nchw: true };
      }
      case "AddV2":
      case "Add":
      case "Sub":
      case "Mul": {
        const [x, y] = ins.map((v, i) => broadcastable(v, ins[1 - i]));
        return { t: n.op === "Mul" ? x.mul(y) : n.op === "Sub" ? x.sub(y) : x.add(y), nchw: ins[0].nchw || ins[1].nchw };
      }
      case "Relu":
      case "Relu6":
      case "Abs":
      case "Sigmoid":
        return { t: activation(n.op, ins[0].t, n), nchw: ins[0].nchw };
      case "Prelu":
        return { t: ins[0].nchw ? prelu(ins[0].t, ins[1].t) : prelu(ins[0].t, ins[1].t, false), nchw: ins[0].nchw };
      case "MaxPool": {
        if (!ins[0].nchw) throw new Error(`tfjs graph: MaxPool ${n.name} reads a tensor that is not an image activation`);
        const [k, s] = [ints("ksize"), ints("strides")];
        let x = ins[0].t;
        if (decodeString(a.padding?.s) === "SAME") {
          const [t, b] = samePadding(x.shape[2], k[1], s[1], 1);
          const [l, r] = samePadding(x.shape[3], k[2], s[2], 1);
          if (t || b || l || r) x = torch.F.pad(x, [l, r, t, b], "constant", -Infinity);
        }
        return { t: torch.F.maxPool2d(x, [k[1], k[2]], { stride: [s[1], s[2]] }), nchw: true };
      }
      case "Pad": {
        const p = this.#ints.get(n.input![1]) as number[]; // [before, after] per NHWC dim; torch pads W, H, C from the last
        const dims = ins[0].nchw ? [2, 1, 3] : [...Array(p.length / 2).keys()].reverse();
        return {
          t: torch.F.pad(
            ins[0].t,
            dims.flatMap((dim) => [p[2 * dim], p[2 * dim + 1]]),
          ),
          nchw: ins[0].nchw,
        };
      }
      case "Reshape": {
        const shape = this.#ints.get(n.input![1]) as number[];
        const x = ins[0].nchw ? ins[0].t.permute(0, 2, 3, 1).contiguous() : ins[0].t;
        // The batch dimension was fixed at export (1): keep the input's.
        return { t: x.reshape(x.shape[0], ...shape.slice(1)), nchw: false };
      }
      case "ConcatV2": {
        const axisName = n.input![n.input!.length - 1];
        let axis = (this.#ints.get(axisName) as number[])[0];
        const parts = ins.slice(0, -1);
        const nchw = parts[0].nchw;
        if (parts.some((v) => v.nchw !== nchw)) throw new Error(`tfjs graph: ConcatV2 ${n.name} mixes image activations and other tensors`);
        if (nchw) axis = NCHW_AXIS[axis < 0 ? axis + 4 : axis];
        return {
          t: torch.cat(
            parts.map((v) => v.t),
            axis,
          ),
          nchw,
        };
      }
      default:
        throw new Error(`tfjs graph: unsupported op ${n.op} (${n.name})`);
    }
  }

  /** Frees the weights. */
  dispose(): void {
    torch.dispose([...this.#consts.values()].map((v) => v.t));
    torch.dispose([...this.#filters.values()]);
  }
}

/**
 * Refuses, at load, what the interpreter would run wrongly: padding other than SAME/VALID, a
 * fused activation it lacks, a data format other than NHWC.
 * @throws Error naming the node
 */
function checkAttributes(n: GraphNode): void {
  const a = n.attr ?? {};
  const padding = decodeString(a.padding?.s);
  if (padding !== "" && padding !== "SAME" && padding !== "VALID") throw new Error(`tfjs graph: ${n.op} ${n.name} has ${padding} padding`);
  const format = decodeString(a.data_format?.s);
  if (format !== "" && format !== "NHWC") throw new Error(`tfjs graph: ${n.op} ${n.name} has data format ${format}`);
  const fused = (a.fused_ops?.list?.s ?? []).map(decodeString);
  if (fused.length > 0 && fused[0] !== "BiasAdd") throw new Error(`tfjs graph: ${n.name} fuses ${fused.join("+")}`);
  for (const f of fused.slice(1))
    if (!["Relu", "Relu6", "Prelu"].includes(f)) throw new Error(`tfjs graph: unsupported fused activation ${f} (${n.name})`);
}

function activation(op: string, x: Tensor, n: GraphNode): Tensor {
  if (op === "Relu") return torch.F.relu(x);
  if (op === "Relu6") return torch.F.relu6(x);
  if (op === "Abs") return x.abs();
  if (op === "Sigmoid") return torch.F.sigmoid(x);
  throw new Error(`tfjs graph: unsupported activation ${op} (${n.name})`);
}

/**
 * PReLU, `x > 0 ? x : alpha * x` (He et al. 2015), with one alpha per channel.
 * @param nchw true when `x` is an NCHW activation (alpha, stored per NHWC channel, is reshaped to `[C, 1, 1]`)
 */
function prelu(x: Tensor, alpha: Tensor, nchw = true): Tensor {
  const a = nchw ? alpha.reshape(alpha.numel, 1, 1) : alpha;
  return torch.F.relu(x).sub(torch.F.relu(x.neg()).mul(a));
}

/**
 * An operand of an elementwise op against an NCHW activation: a scalar or a 1-D constant `[C]`
 * (broadcast over channels, so `[C, 1, 1]`); a higher-rank tensor in TensorFlow's layout would
 * broadcast differently and is refused.
 * @throws Error naming the case
 */
function broadcastable(v: Value, other: Value): Tensor {
  if (v.nchw || !other.nchw || v.t.ndim === 0) return v.t;
  if (v.t.ndim === 1) return v.t.reshape(v.t.shape[0], 1, 1);
  throw new Error(`tfjs graph: an elementwise op mixes an image activation with a [${v.t.shape}] tensor`);
}
