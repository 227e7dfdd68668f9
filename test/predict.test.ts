// `ferkit predict` with the model shipped in models/: real photos (FER2013 crops, LFW), a video
// made here with ffmpeg from LFW photos, smoothing and tracking on hand-made sequences, the ABAW
// writer's format, and the bad inputs (no face, unreadable files, broken videos, wrong models).
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { parse } from "csv-parse/sync";
import "./helpers.js";
import { defaultDataRoot } from "../src/paths.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { DEFAULT_MODEL } from "../src/predict/classifier.js";
import { abawSubmission, ABAW_HEADER } from "../src/predict/abaw.js";
import { emaProbs, majorityVote, StreamingMajorityVote } from "../src/predict/smoothing.js";
import { FaceTracker, iou, type Box } from "../src/predict/tracker.js";
import { normalize } from "../src/predict/appearance.js";
import { ShotCuts } from "../src/predict/shots.js";
import { Rng } from "../src/data/sampler.js";
import { DetectorPool, FaceDetector } from "../src/faces/index.js";
import { FaceClassifier } from "../src/predict/classifier.js";
import { predictVideo, type VideoRow } from "../src/predict/video.js";

const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-predict-"));
after(() => rmSync(work, { recursive: true, force: true }));
const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
const data = defaultDataRoot();
const lfw = path.join(data, "lfw", "lfw-deepfunneled");
/** The first `n` LFW photos in path order. */
function lfwPhotos(n: number): string[] {
  const out: string[] = [];
  for (const person of readdirSync(lfw).sort()) {
    for (const f of readdirSync(path.join(lfw, person)).sort()) if (f.endsWith(".jpg")) out.push(path.join(lfw, person, f));
    if (out.length >= n) break;
  }
  return out.slice(0, n);
}
const FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];

describe("smoothing, tracking and the ABAW writer on hand-made sequences", () => {
  test("majority vote: windows with the later one winning, ties to the lower class, -1 kept", () => {
    // size 4, stride 2: windows [0,4) [2,6) [4,8) [6,8)
    assert.deepEqual(majorityVote([1, 1, 2, 2, 2, 3, 3, 3], 4, 2), [1, 1, 2, 2, 3, 3, 3, 3]);
    assert.deepEqual(majorityVote([5, -1, 5, 4], 4, 4), [5, -1, 5, 5]);
    assert.deepEqual(majorityVote([2, 1], 2, 2), [1, 1], "a tie goes to the lower class");
    assert.deepEqual(majorityVote([], 200, 100), []);
    assert.throws(() => majorityVote([1], 0, 1), /window size must be a positive integer/);
  });

  test("the streaming vote gives exactly the batch vote, with bounded delay", () => {
    const rng = new Rng(7);
    const label = (): number => (rng.next() < 0.05 ? -1 : rng.int(4));
    for (const [size, stride, n] of [
      [200, 100, 1000],
      [5, 2, 23],
      [4, 4, 16],
      [3, 5, 17],
      [7, 1, 30],
      [10, 10, 10],
    ]) {
      const labels = Array.from({ length: n }, label);
      const s = new StreamingMajorityVote<number>(size, stride);
      const got: { item: number; label: number }[] = [];
      labels.forEach((l, i) => {
        got.push(...s.push(i, l));
        assert.ok(i + 1 - got.length <= size + stride, `delay ${i + 1 - got.length} <= ${size + stride}`);
      });
      got.push(...s.flush());
      assert.deepEqual(
        got.map((g) => g.item),
        labels.map((_, i) => i),
      );
      assert.deepEqual(
        got.map((g) => g.label),
        majorityVote(labels, size, stride),
        `size ${size} stride ${stride} n ${n}`,
      );
    }
  });

  test("EMA of probabilities", () => {
    const s = emaProbs(
      [
        [1, 0],
        [0, 1],
        [0, 1],
      ],
      0.5,
    );
    assert.deepEqual(s, [
      [1, 0],
      [0.5, 0.5],
      [0.25, 0.75],
    ]);
    assert.throws(() => emaProbs([], 0), /alpha must be in \(0, 1\]/);
  });

  test("the tracker keeps ids of moving faces, and a face gone too long gets a new id", () => {
    assert.equal(iou([0, 0, 10, 10], [5, 0, 10, 10]), 50 / 150);
    const t = new FaceTracker({ maxAge: 2 });
    assert.deepEqual(
      t.update(0, [
        [0, 0, 50, 50],
        [100, 0, 50, 50],
      ]),
      [0, 1],
    );
    // Both move right by 5 px, given in the other order.
    assert.deepEqual(
      t.update(1, [
        [105, 0, 50, 50],
        [5, 0, 50, 50],
      ]),
      [1, 0],
    );
    assert.deepEqual(t.update(2, [[10, 0, 50, 50]]), [0]);
    assert.deepEqual(t.update(6, [[110, 0, 50, 50]]), [2], "track 1 unseen for 5 > 2 frames ended");
    assert.deepEqual(t.takeEnded().sort(), [0, 1]);
  });

  test("with descriptors, tracks follow appearance: across a cut, past a look-alike position, and a clearly different face is never continued", () => {
    const unit = (...v: number[]) => normalize(Float32Array.from(v));
    const [pa, pb] = [unit(1, 0.2, 0), unit(0.2, 1, 0)];
    const left: Box = [0, 0, 50, 50];
    const right: Box = [200, 0, 50, 50];
    const t = new FaceTracker({ maxAge: 10 });
    assert.deepEqual(t.update(0, [left, right], { descriptors: [pa, pb] }), [0, 1]);
    // The two swap places at a cut: ids follow the descriptors, not the boxes.
    assert.deepEqual(t.update(1, [left, right], { descriptors: [pb, pa], cut: true }), [1, 0]);
    // The same swap without a cut flag: appearance outweighs the overlap.
    assert.deepEqual(t.update(2, [left, right], { descriptors: [pa, pb] }), [0, 1]);
    // A far jump is continued only by a look-alike (cosine >= reidSimilarity).
    assert.deepEqual(t.update(3, [[600, 0, 50, 50]], { descriptors: [pb] }), [1]);
    // A different face (cosine < minSimilarity) at a track's very place starts a new track.
    assert.deepEqual(t.update(4, [left], { descriptors: [unit(0, 0, 1)] }), [2]);
    // At a cut without descriptors every track ends.
    const p = new FaceTracker();
    p.update(0, [left]);
    assert.deepEqual(p.update(1, [left], { cut: true }), [1]);
    assert.deepEqual(p.takeEnded(), [0]);
    assert.throws(() => p.update(2, [left], { descriptors: [] }), /0 descriptors for 1 boxes/);
  });

  test("shot cuts: a new photo is a cut, the same one moved a little is not", async () => {
    const [a, b] = lfwPhotos(2);
    const rgb = async (f: string, dx = 0) => ({
      data: new Uint8Array(
        await sharp(f)
          .extend({ left: dx, right: 10 - dx, top: 0, bottom: 0, background: "#787878" })
          .removeAlpha()
          .raw()
          .toBuffer(),
      ),
      width: 260,
      height: 250,
    });
    const shots = new ShotCuts();
    assert.deepEqual(shots.next(await rgb(a)), { difference: 0, cut: false });
    assert.equal(shots.next(await rgb(a, 4)).cut, false);
    const change = shots.next(await rgb(b, 4));
    assert.ok(change.cut && change.difference > 0.1, `difference ${change.difference}`);
  });

  test("ABAW file: header, ABAW class order, frames without a face filled from the last prediction", () => {
    // Model classes in FER2013 order: 3 happy -> Happiness 4, 0 angry -> Anger 1, 6 neutral -> Neutral 0.
    const { text, filled } = abawSubmission([-1, 3, 3, -1, 0, -1, 6], FER_CLASSES);
    assert.equal(text, [ABAW_HEADER, 4, 4, 4, 4, 1, 1, 0].join("\n") + "\n");
    assert.equal(ABAW_HEADER, "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other");
    assert.equal(filled, 3);
    assert.equal(abawSubmission([-1, -1], FER_CLASSES).text, `${ABAW_HEADER}\n0\n0\n`);
  });
});

describe("predict on real photos with the shipped model", () => {
  test("the shipped model is a small ferkit model file", () => {
    assert.ok(existsSync(DEFAULT_MODEL), `${DEFAULT_MODEL} ships with ferkit`);
    assert.ok(statSync(DEFAULT_MODEL).size < 10e6, "under 10 MB");
    assert.ok(existsSync(path.join(PACKAGE_ROOT, "models", "README.md")), "with its model card");
  });

  test("eval without --model evaluates the default model; shipped models go by name; an unknown one is listed", () => {
    const byDefault = cli("eval", "--split", "PublicTest", "--json");
    assert.equal(byDefault.status, 0, byDefault.stderr);
    const byName = cli("eval", "--model", path.basename(DEFAULT_MODEL, ".safetensors"), "--split", "PublicTest", "--json");
    assert.equal(byName.status, 0, byName.stderr);
    assert.deepEqual(JSON.parse(byName.stdout), JSON.parse(byDefault.stdout));
    assert.equal((JSON.parse(byDefault.stdout) as { n: number }).n, 3577);
    const vgg = cli("eval", "--model", "ferkit-vgg-fer2013", "--split", "PublicTest", "--json");
    assert.equal(vgg.status, 0, vgg.stderr);
    const unknown = cli("eval", "--model", "no-such-model");
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /no-such-model does not exist .*shipped model: .*ferkit-vgg-fer2013/);
  });

  test("eval of an ensemble averages the models' probabilities; models with other classes are refused", () => {
    const json = (r: ReturnType<typeof cli>) => {
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { accuracy: number; macro_f1: number; n: number; confusion_matrix: number[][]; models?: string[] };
    };
    const one = json(cli("eval", "--model", "ferkit-vgg-fer2013", "--split", "PublicTest", "--json"));
    const twice = json(cli("eval", "--model", "ferkit-vgg-fer2013", "--model", "ferkit-vgg-fer2013", "--split", "PublicTest", "--json"));
    assert.deepEqual(twice.confusion_matrix, one.confusion_matrix, "the mean of one model's probabilities with themselves is the model");
    assert.deepEqual(twice.models, ["ferkit-vgg-fer2013", "ferkit-vgg-fer2013"]);
    // Two input sizes (96x96 and 48x48): each model reads the split at its own size.
    const both = json(cli("eval", "--model", "ferkit-faceres-fer2013", "--model", "ferkit-vgg-fer2013", "--split", "PublicTest", "--json"));
    assert.equal(both.n, 3577);
    assert.notDeepEqual(both.confusion_matrix, one.confusion_matrix);
    // The same model file with its classes listed in another order cannot be averaged with it.
    const bytes = readFileSync(path.join(PACKAGE_ROOT, "models", "ferkit-vgg-fer2013.safetensors"));
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as { __metadata__: { ferkit_model: string } };
    const card = JSON.parse(header.__metadata__.ferkit_model) as { classes: string[] };
    card.classes = [...card.classes].reverse();
    header.__metadata__.ferkit_model = JSON.stringify(card);
    const newHeader = Buffer.from(JSON.stringify(header), "utf8");
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(newHeader.length));
    const reversed = path.join(work, "reversed.safetensors");
    writeFileSync(reversed, Buffer.concat([length, newHeader, bytes.subarray(8 + n)]));
    const mixed = cli("eval", "--model", "ferkit-vgg-fer2013", "--model", reversed, "--split", "PublicTest");
    assert.equal(mixed.status, 2);
    assert.match(
      mixed.stderr,
      /reversed\.safetensors: its classes \(neutral, surprise.*\) are not those of ferkit-vgg-fer2013 \(angry, disgust/,
    );
  });

  test("LFW photos and FER2013 crops: JSON faces with box, landmarks, probs, label, score", () => {
    const photos = lfwPhotos(3);
    const labels = readFileSync(path.join(data, "fer2013", "labels.csv"), "utf8").split("\n");
    const crops = labels
      .filter((l) => l.includes(",PrivateTest,FER2013Test/"))
      .slice(0, 4)
      .map((l) => path.join(data, "fer2013", l.split(",")[2]));
    const r = cli("predict", ...photos, ...crops, "--json");
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            file: string;
            faces: { box: number[]; landmarks: Record<string, number[]>; probs: Record<string, number>; label: string; score: number }[];
          },
      );
    assert.deepEqual(
      lines.map((l) => l.file),
      [...photos, ...crops],
    );
    for (const l of lines.slice(0, 3)) {
      assert.ok(l.faces.length >= 1, `a face in ${l.file}`);
      const f = l.faces[0];
      // LFW photos are 250x250 with the face in the middle.
      assert.ok(f.box[0] > 30 && f.box[0] + f.box[2] < 220 && f.box[2] > 50, `box ${f.box} inside the 250 px photo`);
      assert.ok(f.landmarks.left_eye[0] > f.landmarks.right_eye[0], "the subject's left eye is on the image's right");
      assert.deepEqual(Object.keys(f.probs), FER_CLASSES);
      assert.ok(Math.abs(Object.values(f.probs).reduce((a, b) => a + b, 0) - 1) < 1e-4);
      assert.equal(f.label, FER_CLASSES[Object.values(f.probs).indexOf(Math.max(...Object.values(f.probs)))]);
      assert.equal(f.score, f.probs[f.label]);
    }
    // 48x48 crops are upscaled for detection; boxes come back in the crop's own pixels.
    const found = lines.slice(3).filter((l) => l.faces.length > 0);
    assert.ok(found.length >= 3, `faces found in ${found.length} of 4 FER2013 crops`);
    for (const l of found)
      assert.ok(
        l.faces[0].box.every((v) => v >= 0 && v <= 48),
        `box ${l.faces[0].box} within 48 px`,
      );
  });

  test("CSV: one row per face, probability columns named after the classes; --annotate draws them", () => {
    const photos = lfwPhotos(2);
    const ann = path.join(work, "ann-photos");
    const r = cli("predict", ...photos, "--csv", "--annotate", ann);
    assert.equal(r.status, 0, r.stderr);
    const rows = parse(r.stdout, { columns: true }) as Record<string, string>[];
    assert.ok(rows.length >= 2);
    assert.deepEqual(Object.keys(rows[0]).slice(0, 4), ["file", "frame", "time_s", "face"]);
    assert.ok(FER_CLASSES.every((c) => `p_${c}` in rows[0]));
    assert.ok(FER_CLASSES.includes(rows[0].label));
    assert.deepEqual(readdirSync(ann).sort(), photos.map((p) => path.basename(p)).sort());
  });

  test("non-square photos: boxes and eyes in the photo's pixels, as for the square original", async () => {
    const [photo] = lfwPhotos(1);
    const wide = path.join(work, "wide.png");
    const tall = path.join(work, "tall.png");
    const grey = { r: 128, g: 128, b: 128 };
    await sharp(photo).extend({ right: 250, background: grey }).png().toFile(wide);
    await sharp(photo).extend({ bottom: 250, background: grey }).png().toFile(tall);
    const r = cli("predict", photo, wide, tall, "--json");
    assert.equal(r.status, 0, r.stderr);
    const [square, w, t] = r.stdout
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { faces: { box: number[]; landmarks: { left_eye: number[]; right_eye: number[] } }[] }).faces[0]);
    for (const f of [w, t]) {
      f.box.forEach((v, i) => assert.ok(Math.abs(v - square.box[i]) < 8, `box ${f.box} vs ${square.box} in the square photo`));
      [...f.landmarks.left_eye, ...f.landmarks.right_eye].forEach((v, i) =>
        assert.ok(
          Math.abs(v - [...square.landmarks.left_eye, ...square.landmarks.right_eye][i]) < 5,
          `eyes ${JSON.stringify(f.landmarks)}`,
        ),
      );
    }
  });

  test("annotated copies of photos with the same name do not overwrite each other", () => {
    const [a, b] = lfwPhotos(2);
    for (const [dir, src] of [
      ["d1", a],
      ["d2", b],
    ]) {
      mkdirSync(path.join(work, "same", dir), { recursive: true });
      copyFileSync(src, path.join(work, "same", dir, "x.jpg"));
    }
    const ann = path.join(work, "ann-same");
    const r = cli("predict", path.join(work, "same"), "--annotate", ann);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(ann).sort(), ["x-1.jpg", "x.jpg"]);
    const notDir = path.join(work, "ann-file");
    writeFileSync(notDir, "");
    const bad = cli("predict", a, "--annotate", notDir);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--annotate .*ann-file: is a file, not a folder/);
  });

  test("bad inputs: no face is an empty list; unreadable and missing files are named; the rest is kept", async () => {
    const gray = path.join(work, "gray.png");
    await sharp({ create: { width: 200, height: 200, channels: 3, background: { r: 128, g: 128, b: 128 } } })
      .png()
      .toFile(gray);
    const broken = path.join(work, "broken.jpg");
    writeFileSync(broken, "not a jpeg at all");
    const [photo] = lfwPhotos(1);
    const r = cli("predict", gray, broken, path.join(work, "missing.png"), photo, "--json");
    assert.equal(r.status, 2, "some input could not be read");
    assert.match(r.stderr, /broken\.jpg: not a readable image/);
    assert.match(r.stderr, /missing\.png: no such file or folder/);
    const byFile = new Map(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { file: string; faces?: unknown[]; error?: string })
        .map((l) => [path.basename(l.file), l]),
    );
    assert.deepEqual(byFile.get("gray.png"), { file: gray, width: 200, height: 200, faces: [] }, "a photo without a face keeps its size");
    assert.ok(byFile.get("broken.jpg")?.error);
    assert.ok(byFile.get("missing.png")?.error);
    assert.ok((byFile.get(path.basename(photo))?.faces ?? []).length >= 1, "the good photo is still predicted");
    const brokenLine = r.stderr.split("\n").find((l) => l.includes("broken.jpg")) ?? "";
    assert.equal(brokenLine.split(broken).length - 1, 1, `the file is named once: ${brokenLine}`);

    // A named pipe among photos would block a decoder forever: it is named and skipped.
    const mixed = path.join(work, "with-pipe");
    mkdirSync(mixed);
    copyFileSync(photo, path.join(mixed, "a.jpg"));
    copyFileSync(gray, path.join(mixed, "b.png"));
    execFileSync("mkfifo", [path.join(mixed, "c.png")]);
    const ann = path.join(work, "ann-nofaces");
    const p = cli("predict", mixed, "--json", "--annotate", ann);
    assert.equal(p.status, 2, p.stderr);
    assert.match(p.stderr, /c\.png: not a regular file/);
    assert.equal(p.stdout.trim().split("\n").length, 3, p.stdout);
    assert.deepEqual(readdirSync(ann).sort(), ["a.jpg", "b.png"], "a photo without a face is copied unannotated");

    // Nothing to predict is an error, not an empty success.
    const empty = path.join(work, "no-photos");
    mkdirSync(empty);
    const e = cli("predict", empty);
    assert.equal(e.status, 2);
    assert.match(e.stderr, /no image or video files in .*no-photos/);
  });

  /** A copy of the shipped model whose card (metadata) `edit` rewrites; `raw` replaces the card's JSON text. */
  function editedModel(name: string, edit: (card: Record<string, unknown>) => void, raw?: string): string {
    const file = path.join(work, name);
    const bytes = readFileSync(DEFAULT_MODEL);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString("utf8")) as { __metadata__: Record<string, string> };
    const card = JSON.parse(header.__metadata__.ferkit_model) as Record<string, unknown>;
    edit(card);
    header.__metadata__.ferkit_model = raw ?? JSON.stringify(card);
    const h = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    writeFileSync(file, Buffer.concat([len, h, bytes.subarray(8 + headerLen)]));
    return file;
  }

  /** Runs predict with `model` on one LFW photo: exit code 2 and one error line naming the file. */
  function refused(model: string, why: RegExp): void {
    const r = cli("predict", lfwPhotos(1)[0], "--model", model);
    assert.equal(r.status, 2, `${model}: exit ${r.status}, ${r.stderr}`);
    assert.ok(r.stderr.includes(model), `${model}: the message names the file: ${r.stderr}`);
    assert.match(r.stderr, why);
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
  }

  test("a model file of the wrong kind, or whose card does not fit its weights, is refused naming the file and the field", () => {
    const notModel = path.join(work, "notes.safetensors");
    writeFileSync(notModel, "hello");
    refused(notModel, /notes\.safetensors/);
    refused(
      editedModel("wrong-arch.safetensors", (c) => (c.name = "resnet18")),
      /wrong-arch\.safetensors: the weights do not fit a resnet18/,
    );
    // Six class names on seven outputs would silently drop a class from every prediction.
    refused(
      editedModel("six-classes.safetensors", (c) => (c.classes = (c.classes as string[]).slice(0, 6))),
      /names 6 classes \(angry, disgust, fear, happy, sad, surprise\) but the weights' last layer has 7 outputs/,
    );
    refused(
      editedModel("rgb-input.safetensors", (c) => (c.input = [3, 48, 48])),
      /the model card's input \[3, 48, 48\] \(\[C, H, W\]\) does not fit the weights of its faceres: .*1 channels/,
    );
    refused(
      editedModel("bad-json.safetensors", () => undefined, '{"name": "vgg-fer", '),
      /model card \(metadata 'ferkit_model'\) is not valid JSON/,
    );
    refused(
      editedModel("bad-field.safetensors", (c) => {
        c.name = "vgg-19";
        c.classes = ["happy", "happy"];
      }),
      /bad model card .*name: Invalid option: expected one of "vgg-fer".*classes: class names must be distinct/,
    );
    refused(
      editedModel("no-input.safetensors", (c) => delete c.input),
      /bad model card .*input/,
    );
    // A huge input is refused by the schema before any forward pass could allocate it.
    refused(
      editedModel("huge-input.safetensors", (c) => (c.input = [1, 100000, 100000])),
      /bad model card .*input\.1: Too big: expected number to be <=1024/,
    );
  });

  test("PyTorch, TorchScript, ONNX and Keras files are named as such, with what ferkit reads", () => {
    // Real files from Debian's PyTorch (python3-torch, installed by scripts/setup.sh --test).
    const dir = path.join(work, "foreign");
    mkdirSync(dir, { recursive: true });
    execFileSync("/usr/bin/python3", [
      "-c",
      [
        "import sys, torch",
        "m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 46 * 46, 7))",
        "d = sys.argv[1]",
        "torch.save(m.state_dict(), d + '/model.pth')",
        "torch.save(m.state_dict(), d + '/legacy.pth', _use_new_zipfile_serialization=False)",
        "torch.jit.save(torch.jit.script(m), d + '/scripted.pt')",
        "torch.onnx.export(m, torch.zeros(1, 1, 48, 48), d + '/model.onnx')",
      ].join("\n"),
      dir,
    ]);
    refused(
      path.join(dir, "model.pth"),
      /a PyTorch checkpoint \(torch\.save zip archive\); ferkit reads safetensors model files .*save_file\(state_dict/,
    );
    refused(path.join(dir, "legacy.pth"), /a Python pickle \(a PyTorch checkpoint in the legacy torch\.save format\)/);
    refused(path.join(dir, "scripted.pt"), /a TorchScript archive \(torch\.jit\.save\), which ferkit cannot run/);
    refused(path.join(dir, "model.onnx"), /an ONNX model, which ferkit cannot run/);
    const h5 = path.join(dir, "model.h5");
    writeFileSync(h5, Buffer.concat([Buffer.from("\x89HDF\r\n\x1a\n", "latin1"), Buffer.alloc(600)]));
    refused(h5, /an HDF5 file \(a Keras \.h5 model\?\)/);
  });
});

describe("predict on a video made from LFW photos", () => {
  const video = path.join(work, "clip.mp4");
  const FRAMES = 24;

  test("per-frame rows with a stable face id, smoothed labels, an annotated MP4 and an ABAW file", () => {
    // 4 photos x 6 frames at 12 fps: four people one after the other at the same place, each a shot.
    const frames = path.join(work, "frames");
    mkdirSync(frames);
    lfwPhotos(4).forEach((p, i) => {
      for (let k = 0; k < 6; k++) copyFileSync(p, path.join(frames, `${String(i * 6 + k).padStart(4, "0")}.jpg`));
    });
    const ff = spawnSync("ffmpeg", [
      "-v",
      "error",
      "-y",
      "-framerate",
      "12",
      "-i",
      path.join(frames, "%04d.jpg"),
      "-c:v",
      "libx264",
      "-pix_fmt",
      "yuv420p",
      "-movflags",
      "+faststart",
      video,
    ]);
    assert.equal(ff.status, 0, String(ff.stderr));
    const ann = path.join(work, "ann-video");
    const abaw = path.join(work, "abaw");
    const r = cli("predict", video, "--csv", "--annotate", ann, "--abaw", abaw, "--vote-window", "12", "--vote-stride", "6");
    assert.equal(r.status, 0, r.stderr);
    const rows = parse(r.stdout, { columns: true }) as Record<string, string>[];
    assert.equal(rows.length, FRAMES, "one face in each frame");
    assert.deepEqual(
      rows.map((x) => Number(x.frame)),
      Array.from({ length: FRAMES }, (_, i) => i),
    );
    assert.deepEqual(
      rows.map((x) => Number(x.face)),
      Array.from({ length: FRAMES }, (_, i) => Math.floor(i / 6)),
      "one track per person: ids follow people, not the place",
    );
    assert.equal(Number(rows[12].time_s), 1);
    // The vote runs per track: each person's labels from their own frames only.
    for (let person = 0; person < 4; person++) {
      const own = rows.slice(6 * person, 6 * person + 6);
      assert.deepEqual(
        own.map((x) => FER_CLASSES.indexOf(x.label_vote)),
        majorityVote(
          own.map((x) => FER_CLASSES.indexOf(x.label)),
          12,
          6,
        ),
      );
    }
    const probe = spawnSync(
      "ffprobe",
      ["-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames,width,height", "-of", "csv=p=0", path.join(ann, "clip.mp4")],
      { encoding: "utf8" },
    );
    assert.equal(probe.stdout.trim(), `250,250,${FRAMES}`);
    const lines = readFileSync(path.join(abaw, "clip.txt"), "utf8").trim().split("\n");
    assert.equal(lines[0], ABAW_HEADER);
    assert.equal(lines.length, FRAMES + 1);
    assert.ok(lines.slice(1).every((l) => /^[0-7]$/.test(l)));
  });

  /** An H.264 clip at 25 fps from frames that `frame(i)` composes on a grey canvas of `width` x 250. */
  async function composedClip(name: string, width: number, n: number, frame: (i: number) => sharp.OverlayOptions[]): Promise<string> {
    const dir = path.join(work, `${name}-frames`);
    mkdirSync(dir);
    for (let i = 0; i < n; i++)
      await sharp({ create: { width, height: 250, channels: 3, background: { r: 120, g: 120, b: 120 } } })
        .composite(frame(i))
        .png()
        .toFile(path.join(dir, `${String(i).padStart(4, "0")}.png`));
    const file = path.join(work, `${name}.mp4`);
    const ff = spawnSync("ffmpeg", [
      "-v",
      "error",
      "-y",
      "-framerate",
      "25",
      "-i",
      path.join(dir, "%04d.png"),
      "-c:v",
      "libx264",
      "-pix_fmt",
      "yuv420p",
      file,
    ]);
    assert.equal(ff.status, 0, String(ff.stderr));
    return file;
  }

  /** The track ids each person got: `who(frame, centreX)` says which person a row's face is. */
  function idsByPerson(stdout: string, who: (frame: number, x: number) => string): Record<string, string[]> {
    const out: Record<string, Set<string>> = {};
    for (const r of parse(stdout, { columns: true }) as Record<string, string>[])
      (out[who(Number(r.frame), Number(r.x) + Number(r.w) / 2)] ??= new Set()).add(r.face);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v].sort()]));
  }

  test("two people who swap places at a cut, or slide past each other, keep one id each", async () => {
    const [a, b] = [lfwPhotos(1)[0], path.join(lfw, "Aaron_Eckhart", "Aaron_Eckhart_0001.jpg")];
    // A|B for 2 s, then B|A: the ids must follow the people across the cut.
    const cut = await composedClip("swap", 500, 100, (i) => [
      { input: i < 50 ? a : b, left: 0, top: 0 },
      { input: i < 50 ? b : a, left: 250, top: 0 },
    ]);
    const swapped = (f: number, x: number) => (x < 250 === f < 50 ? "A" : "B");
    const r = cli("predict", cut, "--csv");
    assert.equal(r.status, 0, r.stderr);
    const ids = idsByPerson(r.stdout, swapped);
    assert.equal(ids.A.length, 1, `A's ids ${ids.A}`);
    assert.equal(ids.B.length, 1, `B's ids ${ids.B}`);
    assert.notDeepEqual(ids.A, ids.B);
    // By position alone the cut ends both tracks: new ids, never the other person's.
    const byPosition = idsByPerson(cli("predict", cut, "--csv", "--no-appearance").stdout, swapped);
    assert.equal(byPosition.A.length + byPosition.B.length, 4);
    assert.ok(
      byPosition.A.every((id) => !byPosition.B.includes(id)),
      "no id shared by the two people",
    );

    // A slides right over B, who slides left and is hidden for about a second.
    const slide = await composedClip("slide", 700, 100, (i) => {
      const x = Math.round((i / 99) * 450);
      return [
        { input: b, left: 450 - x, top: 0 },
        { input: a, left: x, top: 0 },
      ];
    });
    const s = cli("predict", slide, "--csv");
    assert.equal(s.status, 0, s.stderr);
    const slid = idsByPerson(s.stdout, (f, x) => (Math.abs(x - ((f / 99) * 450 + 125)) < 60 ? "A" : "B"));
    assert.deepEqual([slid.A.length, slid.B.length], [1, 1], JSON.stringify(slid));
    assert.notDeepEqual(slid.A, slid.B);
  });

  test("frames detected ahead on a worker pool give the same rows, in the same order, as one detector", async () => {
    const classifier = FaceClassifier.load();
    const detector = await FaceDetector.create();
    const pool = new DetectorPool(2);
    try {
      const run = async (d: FaceDetector | DetectorPool, detectAhead: number): Promise<VideoRow[]> => {
        const rows: VideoRow[] = [];
        await predictVideo(video, classifier, d, { detectAhead, voteWindow: 12, voteStride: 6, onRow: (r) => rows.push(r) });
        return rows;
      };
      const one = await run(detector, 1);
      assert.equal(one.length, FRAMES);
      assert.deepEqual(await run(pool, 4), one);
    } finally {
      detector.dispose();
      await pool.close();
      classifier.dispose();
    }
  });

  test("a video of odd size is annotated (scaled to even) with boxes in its own pixels", () => {
    const odd = path.join(work, "odd.mp4");
    const ff = spawnSync("ffmpeg", [
      "-v",
      "error",
      "-y",
      "-i",
      video,
      "-vf",
      "scale=251:187",
      "-c:v",
      "libx264",
      "-pix_fmt",
      "yuv444p",
      odd,
    ]);
    assert.equal(ff.status, 0, String(ff.stderr));
    const ann = path.join(work, "ann-odd");
    const r = cli("predict", odd, "--csv", "--annotate", ann);
    assert.equal(r.status, 0, r.stderr);
    const rows = parse(r.stdout, { columns: true }) as Record<string, string>[];
    assert.equal(rows.length, FRAMES);
    assert.ok(rows.every((x) => Number(x.x) + Number(x.w) <= 251.5 && Number(x.y) + Number(x.h) <= 187.5));
    const probe = spawnSync(
      "ffprobe",
      ["-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", path.join(ann, "odd.mp4")],
      { encoding: "utf8" },
    );
    assert.equal(probe.stdout.trim(), "250,186");
  });

  test("a truncated video gives the frames before the damage and says so; a text file named .mp4 is named as not a video", () => {
    const cut = path.join(work, "cut.mp4");
    copyFileSync(video, cut);
    truncateSync(cut, Math.floor(statSync(video).size * 0.6));
    const fake = path.join(work, "fake.mp4");
    writeFileSync(fake, "this is not a video");
    const r = cli("predict", cut, fake, "--json");
    assert.equal(r.status, 2);
    assert.match(r.stderr, /fake\.mp4: not a readable video/);
    const out = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { file: string; rows: unknown[]; error?: string });
    const fakeOut = out.find((o) => o.file === fake);
    assert.ok(fakeOut?.error, "the broken video has an error entry");
    // The index is at the start (faststart), so ffmpeg decodes the frames before the cut.
    const cutOut = out.find((o) => o.file === cut);
    assert.ok(cutOut && cutOut.error === undefined, "the cut video is read up to the damage");
    assert.ok(cutOut.rows.length > 0 && cutOut.rows.length < FRAMES, `${cutOut.rows.length} rows of ${FRAMES} frames`);
    assert.match(r.stderr, /cut\.mp4: ffmpeg stopped after \d+ frames/);
  });
});
