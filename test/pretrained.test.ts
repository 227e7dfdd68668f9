// Face-recognition backbones imported from the tfjs models their npm packages ship, checked
// against those models run by tfjs itself (wasm backend) on real LFW faces.
import "./helpers.js";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { createModel, FaceRes, importTfjsWeights, MobileFaceNet, pretrainedFile } from "../src/models/index.js";
import { mobileFaceNetFromTfjs } from "../src/models/mobilefacenet.js";
import { readTfjsModel } from "../src/models/tfjs_graph.js";
import { identification, orlFaces } from "../src/eval/identification.js";
import { defaultDataRoot } from "../src/paths.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import * as torch from "../src/torch/index.js";

const require = createRequire(import.meta.url);
const lfw = path.join(defaultDataRoot(), "lfw", "lfw-deepfunneled");

/** tfjs-core with the wasm backend, and the converter's graph-model loader (CommonJS builds). */
type Tf = {
  setBackend(name: string): Promise<boolean>;
  getBackend(): string;
  tensor(values: Float32Array, shape: number[], dtype: string): { dispose(): void };
};
type TfTensor = { data(): Promise<Float32Array>; dispose(): void };
type GraphModel = { execute(x: unknown, outputs?: string | string[]): TfTensor | TfTensor[]; dispose(): void };
const tf = require("@tensorflow/tfjs-core") as Tf;
const wasm = require("@tensorflow/tfjs-backend-wasm") as { setWasmPaths(p: string): void };
const converter = require("@tensorflow/tfjs-converter") as { loadGraphModel(io: unknown): Promise<GraphModel> };

/** Loads a tfjs graph model from disk through an in-memory IO handler. */
async function loadOnTfjs(modelJson: string): Promise<GraphModel> {
  const json = JSON.parse(readFileSync(modelJson, "utf8")) as {
    modelTopology: unknown;
    weightsManifest: { paths: string[]; weights: unknown[] }[];
  };
  const shards = json.weightsManifest.flatMap((g) => g.paths.map((p) => readFileSync(path.join(path.dirname(modelJson), p))));
  const all = Buffer.concat(shards);
  return converter.loadGraphModel({
    load: async () => ({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
    }),
  });
}

/** `n` LFW faces (deep-funneled, so aligned) as `[n, size, size, 3]` pixel values / 255: the central 150x150, resized. */
async function lfwFaces(n: number, size: number): Promise<Float32Array> {
  const people = readdirSync(lfw).sort().slice(0, n);
  const out = new Float32Array(n * size * size * 3);
  for (const [i, person] of people.entries()) {
    const file = path.join(lfw, person, readdirSync(path.join(lfw, person)).sort()[0]);
    const px = await sharp(file).extract({ left: 50, top: 50, width: 150, height: 150 }).resize(size, size).removeAlpha().raw().toBuffer();
    for (let j = 0; j < px.length; j++) out[i * px.length + j] = px[j] / 255;
  }
  return out;
}

/** Row-wise cosine similarities of two `[n, d]` arrays. */
function cosines(a: Float32Array, b: Float32Array, n: number): number[] {
  const d = a.length / n;
  return Array.from({ length: n }, (_, i) => {
    let [ab, aa, bb] = [0, 0, 0];
    for (let j = i * d; j < (i + 1) * d; j++) [ab, aa, bb] = [ab + a[j] * b[j], aa + a[j] * a[j], bb + b[j] * b[j]];
    return ab / Math.sqrt(aa * bb);
  });
}

/** Runs `model` on NHWC pixels: the NCHW view of the same faces. */
function onFerkit(nhwc: Float32Array, n: number, size: number, run: (x: torch.Tensor) => torch.Tensor): Float32Array {
  return torch.tidy(() =>
    torch.noGrad(() => run(torch.fromArray(nhwc, [n, size, size, 3]).permute(0, 3, 1, 2).contiguous()).toArray() as Float32Array),
  );
}

const N = 16;
let tmp: string;

describe("face-recognition backbones imported from tfjs", () => {
  before(async () => {
    wasm.setWasmPaths(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + path.sep);
    await tf.setBackend("wasm");
    assert.equal(tf.getBackend(), "wasm");
    tmp = mkdtempSync(path.join(tmpdir(), "ferkit-pretrained-"));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test("mobilefacenet: the 192-d embeddings of 16 LFW faces agree with tfjs-wasm (cosine >= 0.9999)", async () => {
    const file = pretrainedFile("mobilefacenet");
    const x = await lfwFaces(N, 112);
    const graph = await loadOnTfjs(file);
    const input = tf.tensor(x, [N, 112, 112, 3], "float32");
    const ref = await (graph.execute(input) as TfTensor).data();
    input.dispose();
    graph.dispose();
    const model = createModel("mobilefacenet", { pretrained: "face-recognition", embedding: true }) as MobileFaceNet;
    model.eval();
    const ours = onFerkit(x, N, 112, (t) => model.embed(t));
    const cos = cosines(ours, ref, N);
    assert.ok(Math.min(...cos) >= 0.9999, `cosines ${cos.map((c) => c.toFixed(6)).join(", ")}`);
    // L2-normalised, as the graph's last op makes them.
    for (let i = 0; i < N; i++) assert.ok(Math.abs(Math.hypot(...ours.subarray(192 * i, 192 * (i + 1))) - 1) < 1e-5);
    model.dispose();
  });

  test("faceres: the 1024-d descriptors of 16 LFW faces agree with tfjs-wasm (cosine >= 0.9999)", async () => {
    const file = pretrainedFile("faceres");
    const x = await lfwFaces(N, 224);
    const graph = await loadOnTfjs(file);
    // The graph reads pixel values in [0, 255] (Human multiplies by 255); ferkit's import folds that in.
    const input = tf.tensor(
      x.map((v) => v * 255),
      [N, 224, 224, 3],
      "float32",
    );
    const ref = await (graph.execute(input, "global_pooling/Mean") as TfTensor).data();
    input.dispose();
    graph.dispose();
    const model = createModel("faceres", { pretrained: "face-recognition" }) as FaceRes;
    model.eval();
    const ours = onFerkit(x, N, 224, (t) => model.descriptor(t));
    const cos = cosines(ours, ref, N);
    assert.ok(Math.min(...cos) >= 0.9999, `cosines ${cos.map((c) => c.toFixed(6)).join(", ")}`);
    model.dispose();
  });

  test("faceres' descriptor tells ORL's people apart: nearest neighbour finds the same person for >= 95 % of 100 faces", async () => {
    // 20 subjects x 5 photos (gray PGM, given as RGB): a check that the imported weights are a
    // working face-recognition network, not only equal to tfjs'.
    const { x, people } = await orlFaces(224);
    const model = createModel("faceres", { pretrained: "face-recognition" }) as FaceRes;
    model.eval();
    const d = torch.tidy(() => torch.noGrad(() => model.descriptor(x).toArray() as Float32Array));
    model.dispose();
    x.dispose();
    const { nn_accuracy } = identification(d, people);
    assert.ok(nn_accuracy >= 0.95, `${Math.round(100 * nn_accuracy)} of 100 nearest neighbours are the same person`);
  });

  test("a gray model (first filter summed over RGB) gives on a gray image what the RGB model gives on it", () => {
    torch.tidy(() => {
      for (const name of ["faceres", "mobilefacenet"]) {
        const rgb = createModel(name, { pretrained: "face-recognition", inChannels: 3 }).eval();
        const gray = createModel(name, { pretrained: "face-recognition", inChannels: 1 }).eval();
        torch.noGrad(() => gray.loadStateDict(new Map([...rgb.stateDict()].filter(([k]) => k.startsWith("classifier."))), false));
        const x = torch.rand([2, 1, 64, 64]);
        const [a, b] = torch.noGrad(() => [rgb.forward(x.expand(2, 3, 64, 64)), gray.forward(x)]);
        assert.ok(a.sub(b).abs().max().item() < 1e-3 * Math.max(1, a.abs().max().item()), name);
        rgb.dispose();
        gray.dispose();
      }
    });
  });

  test("faceres with batch norm put back and calibrated computes what the imported network computes", () => {
    torch.tidy(() => {
      torch.manualSeed(3);
      const plain = createModel("faceres", { pretrained: "face-recognition", inChannels: 1 }) as FaceRes;
      const withBn = createModel("faceres", { pretrained: "face-recognition", inChannels: 1, batchNorm: true }) as FaceRes;
      assert.ok(withBn.stateDict().has("features.26.bn.running_var"));
      const x = torch.rand([16, 1, 64, 64]);
      withBn.calibrateBatchNorm(x);
      const ref = torch.noGrad(() => plain.eval().descriptor(x));
      // eval first: a training-mode pass moves the running statistics.
      for (const mode of ["eval", "train"] as const) {
        const got = torch.noGrad(() => (mode === "train" ? withBn.train() : withBn.eval()).descriptor(x));
        const err = got.sub(ref).abs().max().item();
        assert.ok(err < 1e-3 * Math.max(1, ref.abs().max().item()), `${mode}: max difference ${err}`);
      }
      plain.dispose();
      withBn.dispose();
    });
  });

  test("ferkit models lists every zoo model, and each pretrained source with its installed version and card", () => {
    const r = spawnSync(process.execPath, [path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js"), "models", "--json"], {
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    const { models } = JSON.parse(r.stdout) as {
      models: {
        name: string;
        input: number[];
        pretrained: null | { package: string; version: string; trainedOn: string; terms: string };
      }[];
    };
    assert.deepEqual(
      models.map((m) => m.name),
      ["vgg-fer", "resnet18", "mobilenetv2", "mobilefacenet", "faceres"],
    );
    const faceres = models.find((m) => m.name === "faceres")!;
    assert.deepEqual(faceres.input, [3, 224, 224]);
    assert.equal(faceres.pretrained?.package, "@vladmandic/human");
    assert.match(faceres.pretrained?.version ?? "", /^\d+\.\d+\.\d+$/);
    assert.match(faceres.pretrained?.trainedOn ?? "", /VGGFace2/);
    assert.equal(models.find((m) => m.name === "vgg-fer")!.pretrained, null);
  });

  test("float16 weights decode to the values tfjs uses", () => {
    // faceres.json stores float16: 0x3c00 is 1, 0xc000 is -2, 0x0001 the smallest subnormal, 0x7bff the largest normal.
    const dir = mkdtempSync(path.join(tmp, "f16-"));
    const halves = [0x3c00, 0xc000, 0x0001, 0x7bff, 0x3555];
    const buf = Buffer.alloc(halves.length * 2);
    halves.forEach((h, i) => buf.writeUInt16LE(h, 2 * i));
    writeFileSync(path.join(dir, "w.bin"), buf);
    const q = { dtype: "uint8", scale: 0.5, min: -1 };
    writeFileSync(path.join(dir, "q.bin"), Buffer.from([0, 1, 255]));
    const manifest = [
      { paths: ["w.bin"], weights: [{ name: "h", shape: [5], dtype: "float32", quantization: { dtype: "float16" } }] },
      { paths: ["q.bin"], weights: [{ name: "q", shape: [3], dtype: "float32", quantization: q }] },
    ];
    writeFileSync(path.join(dir, "model.json"), JSON.stringify({ modelTopology: {}, weightsManifest: manifest }));
    const { weights } = readTfjsModel(path.join(dir, "model.json"));
    assert.deepEqual(Array.from(weights.get("h")!.data), [1, -2, 2 ** -24, 65504, Math.fround(0.333251953125)]);
    assert.deepEqual(Array.from(weights.get("q")!.data), [-1, -0.5, 126.5]);
  });

  test("a truncated, longer or foreign weight file is refused with an error naming the file", () => {
    const src = pretrainedFile("mobilefacenet");
    const dir = mkdtempSync(path.join(tmp, "bad-"));
    const json = path.join(dir, "mobilefacenet.json");
    copyFileSync(src, json);
    const bin = path.join(dir, "mobilefacenet.bin");
    const load = () => readTfjsModel(json);
    copyFileSync(src.replace(/\.json$/, ".bin"), bin);
    truncateSync(bin, 1_000_000);
    assert.throws(load, (e: Error) => e.message.includes(bin) && /truncated/.test(e.message));
    writeFileSync(bin, Buffer.concat([readFileSync(src.replace(/\.json$/, ".bin")), Buffer.alloc(8)]));
    assert.throws(load, (e: Error) => e.message.includes(bin) && /not the weights of this model/.test(e.message));
    rmSync(bin);
    assert.throws(load, (e: Error) => e.message.includes(bin) && /ENOENT/.test(e.message));
    // faceres' weights offered to MobileFaceNet: refused, naming the file and a weight it does not know.
    const model = new MobileFaceNet();
    const faceres = pretrainedFile("faceres");
    assert.throws(
      () => importTfjsWeights(model, faceres, mobileFaceNetFromTfjs, (k) => k.startsWith("classifier.")),
      (e: Error) => e.message.includes(faceres) && /unknown weight/.test(e.message),
    );
    model.dispose();
  });
});
