// tfjs graph models on libtorch (src/models/tfjs_graph.ts) and the libtorch face detector
// (src/faces/blazeface.ts) against the same models on tfjs-wasm, on real LFW photos.
import "./helpers.js"; // collects garbage before each test, so live-tensor counts hold only this test's
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { nonMaxSuppression } from "../src/faces/blazeface.js";
import { FaceDetector, type RgbImage } from "../src/faces/index.js";
import { TfjsGraph } from "../src/models/tfjs_graph.js";
import { defaultDataRoot } from "../src/paths.js";
import * as torch from "../src/torch/index.js";

const require = createRequire(import.meta.url);
const MODELS = path.join(path.dirname(require.resolve("@vladmandic/human")), "..", "models");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-tfjs-graph-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** 40 LFW photos (the first photo of 40 people, in name order from the 400th). */
function lfwPhotos(): string[] {
  const root = path.join(defaultDataRoot(), "lfw", "lfw-deepfunneled");
  return readdirSync(root)
    .sort()
    .slice(400, 440)
    .map((p) => path.join(root, p, readdirSync(path.join(root, p)).sort()[0]));
}

async function rgb(file: string): Promise<RgbImage> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

describe("tfjs graph models on libtorch", () => {
  test("the detector on libtorch finds what it finds on tfjs-wasm: the same faces, eyes within 3 px, scores within 0.06", async () => {
    // Faces within 0.06 of the score threshold (0.5) may be kept by one engine and not the other
    // (a second face at 0.50 on libtorch and 0.52 on wasm in one photo); every other face must match.
    const clear = (f: { score: number }) => f.score >= 0.56;
    for (const landmarks of ["blazeface", "mesh"] as const) {
      const before = torch.liveTensors();
      const onTorch = await FaceDetector.create({ landmarks, engine: "libtorch" });
      const onWasm = await FaceDetector.create({ landmarks, engine: "wasm" });
      const eyeErrors: number[] = [];
      try {
        for (const file of lfwPhotos()) {
          const image = await rgb(file);
          const [a, b] = [await onTorch.detect(image), await onWasm.detect(image)];
          for (const [mine, theirs] of [
            [a, b],
            [b, a],
          ])
            for (const f of mine.filter(clear)) {
              const centre = (x: typeof f) => [x.box[0] + x.box[2] / 2, x.box[1] + x.box[3] / 2];
              const g = theirs.find((x) => Math.hypot(centre(x)[0] - centre(f)[0], centre(x)[1] - centre(f)[1]) < 8);
              assert.ok(g, `${landmarks}: a face at ${f.box} (score ${f.score}) in ${file} found by one engine only`);
              assert.equal(f.landmarkSource, g.landmarkSource, file);
              assert.ok(Math.abs(f.score - g.score) <= 0.06, `${file}: score ${f.score} vs ${g.score}`);
              for (const eye of ["leftEye", "rightEye"] as const) eyeErrors.push(Math.hypot(f[eye][0] - g[eye][0], f[eye][1] - g[eye][1]));
            }
        }
        eyeErrors.sort((x, y) => x - y);
        const median = eyeErrors[Math.floor(eyeErrors.length / 2)];
        assert.ok(eyeErrors.length >= 160, `${eyeErrors.length / 4} faces compared`);
        assert.ok(median < 1, `${landmarks}: median eye difference ${median} px`);
        assert.ok(eyeErrors.at(-1)! < 3, `${landmarks}: largest eye difference ${eyeErrors.at(-1)} px`);
      } finally {
        onTorch.dispose();
        onWasm.dispose();
      }
      assert.equal(torch.liveTensors(), before, "a disposed detector leaves no tensor behind");
    }
  });

  test("a graph with an op ferkit does not run, or weights that are missing, is refused naming it", () => {
    const model = (op: string) => ({
      modelTopology: {
        node: [
          { name: "x", op: "Placeholder" },
          { name: "w", op: "Const" },
          { name: "y", op, input: ["x", "w"] },
        ],
      },
      weightsManifest: [{ paths: ["w.bin"], weights: [{ name: "w", shape: [4], dtype: "float32" }] }],
    });
    const file = path.join(work, "model.json");
    writeFileSync(file, JSON.stringify(model("Einsum")));
    writeFileSync(path.join(work, "w.bin"), Buffer.alloc(16));
    assert.throws(() => TfjsGraph.load(file), /unsupported ops Einsum .*model\.json/);
    writeFileSync(file, JSON.stringify(model("AddV2")));
    writeFileSync(path.join(work, "w.bin"), Buffer.alloc(8));
    assert.throws(() => TfjsGraph.load(file), /w\.bin is truncated: weight w runs past its end/);
    writeFileSync(file, "{}");
    assert.throws(() => TfjsGraph.load(file), /not a tfjs graph model/);
    assert.throws(() => TfjsGraph.load(path.join(work, "nope.json")), /cannot read .*nope\.json/);
  });

  test("BlazeFace's graph: four outputs of the model's shapes, in inference mode and without leaks", () => {
    const g = TfjsGraph.load(path.join(MODELS, "blazeface.json"));
    const before = torch.liveTensors();
    const shapes = torch.tidy(() => [...g.run(torch.zeros([2, 3, 256, 256])).values()].map((t) => t.shape.join("x")).sort());
    assert.deepEqual(shapes, ["2x384x1", "2x384x16", "2x512x1", "2x512x16"]);
    assert.equal(torch.liveTensors(), before);
    g.dispose();
  });

  test("non-maximum suppression keeps the best of overlapping boxes, as tfjs's does", () => {
    const boxes = Float32Array.from([0, 0, 10, 10, 1, 1, 11, 11, 20, 20, 30, 30, 0, 0, 10, 10]);
    const scores = Float32Array.from([0.9, 0.95, 0.8, 0.4]);
    assert.deepEqual(nonMaxSuppression(boxes, scores, 10, 0.3, 0.5), [1, 2]);
    assert.deepEqual(nonMaxSuppression(boxes, scores, 1, 0.3, 0.5), [1]);
    assert.deepEqual(nonMaxSuppression(boxes, scores, 10, 0.99, 0.5), [1, 0, 2]);
  });

  test("OpenBLAS's thread count can be read and set (or is reported missing)", () => {
    const n = torch.getBlasThreads();
    if (n === -1) return assert.equal(torch.setBlasThreads(1), false);
    assert.equal(torch.setBlasThreads(1), true);
    assert.equal(torch.getBlasThreads(), 1);
    torch.setBlasThreads(n);
    assert.equal(torch.getBlasThreads(), n);
    assert.throws(() => torch.setBlasThreads(0), /at least 1 thread/);
  });
});
