/**
 * `npm run bench:predict`: ferkit's shipped model against @vladmandic/human's emotion model.
 *
 * 1. Accuracy and macro-F1 on every FER2013 PrivateTest crop. Each model gets the dataset's own
 *    face crop: ferkit's model the crop at its input size as it was trained (48x48 for VGG-FER,
 *    resized for larger inputs); Human's emotion model the 48x48
 *    crop prepared exactly as Human prepares a face (bilinear to 64x64, its RGB-to-gray weights,
 *    (x - 0.5) * 2). Same seven classes in the same order.
 * 2. Faces/s of the whole pipeline (decode a frame file, detect, align or crop, classify) on the
 *    same video frames: ferkit's `predictImages` (its product path: detection on a pool of 2
 *    worker threads kept between calls, one model batch), with BlazeFace's eyes (the default) and
 *    with FaceMesh's on libtorch (the default engine), with BlazeFace's eyes on tfjs-wasm
 *    (`engine: "wasm"`), and Human's `detect` with its face detector, mesh and emotion models (its
 *    emotion pipeline; iris, description, antispoof and liveness off). Rounds alternate between
 *    the four; the medians of the rates and of each round's ratio are printed.
 *
 * ferkit classifies at its default precision (bf16 on a CPU with native bfloat16) and, for the
 * side-by-side, with the same model at fp32: part 1 gives both accuracies, part 2 both rates (the
 * fp32 one with BlazeFace's eyes on libtorch).
 *
 * Environment: ROUNDS (3), FRAMES (200; 0 skips part 2), SPLITS=all (part 1 also on Training and
 * PublicTest), MODEL (a ferkit model file or run folder instead of the shipped model), PRECISION
 * (auto, bf16 or fp32: ferkit's classification precision).
 *
 * Prints the figures and, on the last line, one JSON object.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse } from "csv-parse/sync";
import sharp from "sharp";
import { openData } from "../src/data/open.js";
import { prepareSplit, resolveCacheDir } from "../src/data/prepare.js";
import { argmaxRows } from "../src/eval/evaluate.js";
import { classificationReport } from "../src/eval/metrics.js";
import { FaceDetector } from "../src/faces/index.js";
import { defaultDataRoot } from "../src/paths.js";
import { FaceClassifier } from "../src/predict/classifier.js";
import { predictImages } from "../src/predict/images.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import * as torch from "../src/torch/index.js";
import { median } from "./common.js";

const require = createRequire(import.meta.url);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const FRAMES = Number(process.env.FRAMES ?? 200);

/* eslint-disable @typescript-eslint/no-explicit-any -- tfjs and Human are driven through their untyped runtime objects here */
type Any = any;

/**
 * FER+'s majority class per FER2013 image name (FER2013's class index), for images where at least
 * 6 of the 10 FER+ annotators chose one of the 7 shared classes.
 */
function ferPlusMajority(labelsCsv: string, classes: readonly string[]): Map<string, number> {
  const ferPlusName: Record<string, string> = { angry: "anger", happy: "happiness", sad: "sadness" };
  const rows = parse(readFileSync(labelsCsv), { columns: true }) as Record<string, string>[];
  const out = new Map<string, number>();
  for (const r of rows) {
    const votes = classes.map((c) => Number(r[ferPlusName[c] ?? c]));
    const top = votes.indexOf(Math.max(...votes));
    if (votes[top] >= 6) out.set(path.basename(r.image), top);
  }
  return out;
}

async function main(): Promise<void> {
  torch.setNumThreads(2);
  const dataRoot = defaultDataRoot();
  const requested = process.env.PRECISION ?? "auto";
  if (!(torch.PRECISIONS as readonly string[]).includes(requested))
    throw new RangeError(`PRECISION must be auto, bf16 or fp32, got ${requested}`);
  // MODEL: another model file or run folder.
  const classifier = FaceClassifier.load(process.env.MODEL, { precision: requested as torch.Precision });
  const classifierFp32 = FaceClassifier.load(process.env.MODEL, { precision: "fp32" });
  console.log(
    `ferkit model: ${path.relative(PACKAGE_ROOT, classifier.file)} (${classifier.card.name}, classes ${classifier.classes.join(", ")}), classified at ${classifier.precision} (and at fp32 alongside)`,
  );

  const opened = openData({ paths: [path.join(dataRoot, "fer2013")], format: "fer2013" });
  if (opened.kind !== "labeled") throw new Error("fer2013 is a labeled dataset");
  const classes = opened.dataset.space.classes;

  // Human's emotion model, loaded from the installed package through tfjs (wasm backend).
  const detector = await FaceDetector.create({ engine: "wasm" }); // starts tfjs-wasm and its file:// model loader, which Human uses below
  const humanDist = path.dirname(require.resolve("@vladmandic/human"));
  const { Human } = require(path.join(humanDist, "human.node-wasm.js")) as { Human: new (c: Any) => Any };
  const modelDir = path.join(humanDist, "..", "models");
  const human = new Human({
    backend: "wasm",
    wasmPath: path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + path.sep,
    modelBasePath: "file://" + modelDir + path.sep,
    debug: false,
    warmup: "none",
    cacheSensitivity: 0,
    skipAllowed: false,
    filter: { enabled: false },
    gesture: { enabled: false },
    body: { enabled: false },
    hand: { enabled: false },
    object: { enabled: false },
    segmentation: { enabled: false },
    face: {
      enabled: true,
      detector: { rotation: false, maxDetected: 20 },
      mesh: { enabled: true },
      iris: { enabled: false },
      attention: { enabled: false },
      emotion: { enabled: true, minConfidence: 0 },
      description: { enabled: false },
      antispoof: { enabled: false },
      liveness: { enabled: false },
      gear: { enabled: false },
    },
  });
  await human.load();
  const tf = human.tf as Any;
  const emotion = await tf.loadGraphModel("file://" + path.join(modelDir, "emotion.json"));
  /** Human's labels for `[n, 1, 48, 48]` uint8 crops. */
  const humanClassify = async (images: Uint8Array, n: number): Promise<number[]> => {
    const labels: number[] = [];
    const per = 48 * 48;
    for (let start = 0; start < n; start += 256) {
      const m = Math.min(256, n - start);
      const probs = tf.tidy(() => {
        const pixels = tf.tensor(images.subarray(start * per, (start + m) * per), [m, 48, 48, 1], "int32");
        const gray = tf.div(tf.cast(pixels, "float32"), 255);
        const rgb = tf.tile(gray, [1, 1, 1, 3]); // the crop as Human receives a face: RGB in [0, 1]
        const resized = tf.image.resizeBilinear(rgb, [64, 64], false);
        const g = tf.sum(tf.mul(resized, [0.2989, 0.587, 0.114]), 3, true);
        return emotion.execute(tf.mul(tf.sub(g, 0.5), 2));
      });
      const values = (await probs.data()) as Float32Array;
      probs.dispose();
      labels.push(...argmaxRows(values, 7));
    }
    return labels;
  };

  // 1. Accuracy and macro-F1 on dataset crops: PrivateTest, and with SPLITS=all also Training and
  // PublicTest, to see which images each model has fitted. A model reproduces a *noisy* label (one
  // that FER+'s ten annotators overrule) far more often on images it was trained on.
  const plusMajority = ferPlusMajority(path.join(dataRoot, "fer2013", "labels.csv"), classes);
  const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
  const splitNames = process.env.SPLITS === "all" ? ["Training", "PublicTest", "PrivateTest"] : ["PrivateTest"];
  // The JSON line carries the last split's figures (PrivateTest).
  let ferkitNoFlip!: ReturnType<typeof classificationReport>;
  let humanReport!: ReturnType<typeof classificationReport>;
  let ferkitTta!: ReturnType<typeof classificationReport>;
  let ferkitFp32!: ReturnType<typeof classificationReport>;
  for (const name of splitNames) {
    // Human's model reads the 48x48 crop; ferkit's the crop resized to its own input (48x48 gray for VGG-FER).
    const prepare = (size: number, channels: 1 | 3) =>
      prepareSplit(opened.dataset, name, { size, channels, cacheDir: resolveCacheDir(".cache", PACKAGE_ROOT), progress: false });
    const split = await prepare(48, 1);
    const own = classifier.size === 48 && classifier.channels === 1 ? split : await prepare(classifier.size, classifier.channels);
    const f = argmaxRows(classifier.classifyPlanar(own.images, { tta: true }), classes.length);
    const fNoFlip = argmaxRows(classifier.classifyPlanar(own.images), classes.length);
    const f32 = argmaxRows(classifierFp32.classifyPlanar(own.images, { tta: true }), classes.length);
    const h = await humanClassify(split.images, split.n);
    ferkitTta = classificationReport(split.labels, f, classes.length);
    ferkitNoFlip = classificationReport(split.labels, fNoFlip, classes.length);
    ferkitFp32 = classificationReport(split.labels, f32, classes.length);
    humanReport = classificationReport(split.labels, h, classes.length);
    const perClass = (r: typeof ferkitTta): string => classes.map((c, k) => `${c} ${(100 * r.perClass[k].f1).toFixed(1)}`).join(", ");
    console.log(`\nFER2013 ${name}, ${split.n} crops:`);
    console.log(
      `  ferkit default model (flip averaging, predict's default, ${classifier.precision}): accuracy ${pct(ferkitTta.accuracy)}, macro-F1 ${pct(ferkitTta.macroF1)} (F1 ${perClass(ferkitTta)})`,
    );
    console.log(
      `  ferkit default model at fp32 (flip averaging): accuracy ${pct(ferkitFp32.accuracy)}, macro-F1 ${pct(ferkitFp32.macroF1)}; ${f.filter((c, i) => c !== f32[i]).length} of ${split.n} predictions differ`,
    );
    console.log(`  ferkit without flip (predict --no-tta): accuracy ${pct(ferkitNoFlip.accuracy)}, macro-F1 ${pct(ferkitNoFlip.macroF1)}`);
    console.log(
      `  Human emotion model:  accuracy ${pct(humanReport.accuracy)}, macro-F1 ${pct(humanReport.macroF1)} (F1 ${perClass(humanReport)})`,
    );
    const noisy = split.paths.flatMap((p, i) => {
      const plus = plusMajority.get(path.basename(p));
      return plus !== undefined && plus !== split.labels[i] ? [i] : [];
    });
    const share = (pred: number[]): string => pct(noisy.filter((i) => pred[i] === split.labels[i]).length / noisy.length);
    console.log(
      `  ${noisy.length} crops whose FER+ majority (>= 6 of 10 votes) overrules the label: the label predicted by ferkit ${share(f)}, by Human ${share(h)}`,
    );
  }

  const accuracy = {
    split: splitNames.at(-1),
    ferkit_accuracy: ferkitTta.accuracy,
    ferkit_macro_f1: ferkitTta.macroF1,
    ferkit_no_tta_accuracy: ferkitNoFlip.accuracy,
    ferkit_no_tta_macro_f1: ferkitNoFlip.macroF1,
    ferkit_precision: classifier.precision,
    ferkit_fp32_accuracy: ferkitFp32.accuracy,
    ferkit_fp32_macro_f1: ferkitFp32.macroF1,
    human_accuracy: humanReport.accuracy,
    human_macro_f1: humanReport.macroF1,
  };
  if (FRAMES === 0) {
    console.log(JSON.stringify(accuracy));
    detector.dispose();
    emotion.dispose();
    classifier.dispose();
    classifierFp32.dispose();
    return;
  }

  // 2. Faces/s on video frames: a video made from LFW photos, decoded to PNG frames.
  const work = mkdtempSync(path.join(tmpdir(), "ferkit-bench-predict-"));
  try {
    const lfw = path.join(dataRoot, "lfw", "lfw-deepfunneled");
    const photos = readdirSync(lfw)
      .sort()
      .flatMap((p) => readdirSync(path.join(lfw, p)).map((f) => path.join(lfw, p, f)))
      .filter((f) => f.endsWith(".jpg"))
      .slice(0, FRAMES);
    const list = path.join(work, "list.txt");
    writeFileSync(list, photos.map((p) => `file '${p}'\nduration 0.04`).join("\n") + "\n");
    const video = path.join(work, "clip.mp4");
    const enc = spawnSync("ffmpeg", [
      "-v",
      "error",
      "-y",
      "-f",
      "concat",
      "-safe",
      "0",
      "-i",
      list,
      "-r",
      "25",
      "-c:v",
      "libx264",
      "-pix_fmt",
      "yuv420p",
      video,
    ]);
    if (enc.status !== 0) throw new Error(`ffmpeg: ${String(enc.stderr)}`);
    const framesDir = path.join(work, "frames");
    mkdirSync(framesDir);
    const dec = spawnSync("ffmpeg", ["-v", "error", "-i", video, "-vsync", "passthrough", path.join(framesDir, "%05d.png")]);
    if (dec.status !== 0) throw new Error(`ffmpeg: ${String(dec.stderr)}`);
    const frames = readdirSync(framesDir)
      .sort()
      .map((f) => path.join(framesDir, f));

    // ferkit's two landmark sources: BlazeFace's own eyes (predict's default) and FaceMesh's
    // (`--landmarks mesh`), both on libtorch (the default engine); the default on tfjs-wasm; and
    // the default with fp32 classification.
    const sources = ["blazeface", "mesh", "wasm", "fp32"] as const;
    const runFerkit = async (source: (typeof sources)[number]): Promise<{ faces: number; seconds: number }> => {
      const t = performance.now();
      const detector =
        source === "wasm"
          ? { landmarks: "blazeface" as const, engine: "wasm" as const }
          : { landmarks: source === "mesh" ? ("mesh" as const) : ("blazeface" as const) };
      const r = await predictImages(frames, source === "fp32" ? classifierFp32 : classifier, { tta: true, detector });
      return { faces: r.reduce((a, x) => a + x.faces.length, 0), seconds: (performance.now() - t) / 1000 };
    };
    const runHuman = async (): Promise<{ faces: number; seconds: number }> => {
      const t = performance.now();
      let faces = 0;
      for (const f of frames) {
        const { data, info } = await sharp(f).removeAlpha().raw().toBuffer({ resolveWithObject: true });
        const input = tf.tensor(new Uint8Array(data.buffer, data.byteOffset, data.length), [1, info.height, info.width, 3], "int32");
        const r = await human.detect(input);
        input.dispose();
        faces += r.face.filter((x: Any) => (x.emotion ?? []).length > 0).length;
      }
      return { faces, seconds: (performance.now() - t) / 1000 };
    };
    // Warm-up: models loaded and the detection workers started (they are kept between calls, as
    // Human's models are).
    await runHuman();
    for (const s of sources) await runFerkit(s);
    type Rate = (typeof sources)[number] | "human";
    const rates: Record<Rate, number[]> = { mesh: [], blazeface: [], wasm: [], fp32: [], human: [] };
    const faces: Record<Rate, number> = { mesh: 0, blazeface: 0, wasm: 0, fp32: 0, human: 0 };
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, run] of [
        ["blazeface", () => runFerkit("blazeface")],
        ["mesh", () => runFerkit("mesh")],
        ["wasm", () => runFerkit("wasm")],
        ["fp32", () => runFerkit("fp32")],
        ["human", runHuman],
      ] as const) {
        const x = await run();
        faces[name] = x.faces;
        rates[name].push(x.faces / x.seconds);
      }
      console.log(
        `  round ${r + 1}: ferkit ${rates.blazeface[r].toFixed(1)} faces/s (BlazeFace eyes), ${rates.mesh[r].toFixed(1)} (FaceMesh eyes), ${rates.wasm[r].toFixed(1)} (BlazeFace eyes on tfjs-wasm), ${rates.fp32[r].toFixed(1)} (BlazeFace eyes, fp32 classification); Human ${rates.human[r].toFixed(1)} faces/s`,
      );
    }
    // The machine's speed drifts between rounds; a round's ratio compares runs made back to back.
    const f = median(rates.blazeface);
    const fm = median(rates.mesh);
    const h = median(rates.human);
    const ratio = median(rates.blazeface.map((x, r) => x / rates.human[r]));
    const ratioMesh = median(rates.mesh.map((x, r) => x / rates.human[r]));
    const fw = median(rates.wasm);
    const ratioWasm = median(rates.wasm.map((x, r) => x / rates.human[r]));
    const f32 = median(rates.fp32);
    const precisionSpeedup = median(rates.blazeface.map((x, r) => x / rates.fp32[r]));
    console.log(
      `\nfull pipeline on ${frames.length} frames (faces found by ferkit ${faces.blazeface} / ${faces.mesh}, classified by Human ${faces.human}), medians of ${ROUNDS} rounds:`,
    );
    console.log(`  ferkit, BlazeFace eyes (default, ${classifier.precision}): ${f.toFixed(1)} faces/s, ratio to Human ${ratio.toFixed(2)}`);
    console.log(`  ferkit, FaceMesh eyes:            ${fm.toFixed(1)} faces/s, ratio to Human ${ratioMesh.toFixed(2)}`);
    console.log(`  ferkit, BlazeFace eyes on wasm:   ${fw.toFixed(1)} faces/s, ratio to Human ${ratioWasm.toFixed(2)}`);
    console.log(
      `  ferkit, BlazeFace eyes, fp32:     ${f32.toFixed(1)} faces/s (the default is ${precisionSpeedup.toFixed(2)}x this, median of rounds)`,
    );
    console.log(`  Human:                            ${h.toFixed(1)} faces/s`);
    console.log(
      JSON.stringify({
        ...accuracy,
        frames: frames.length,
        ferkit_faces_s: f,
        ferkit_mesh_faces_s: fm,
        human_faces_s: h,
        ratio,
        ratio_mesh: ratioMesh,
        ferkit_wasm_faces_s: fw,
        ratio_wasm: ratioWasm,
        ferkit_fp32_faces_s: f32,
        precision_speedup: precisionSpeedup,
      }),
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
    detector.dispose();
    emotion.dispose();
    classifier.dispose();
    classifierFp32.dispose();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
