// `ferkit predict --crops / --boxes / --max-faces / --save-crops` (issue #21, items 4 and 6) with
// the shipped model on real data: FER2013 PrivateTest crops, LFW photos (one composed here from
// two, side by side), a short video made from it; and the bad inputs (box files with malformed
// rows, boxes outside the image, a negative --max-faces, an unwritable --save-crops folder).
import { test, describe, after, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { parse } from "csv-parse/sync";
import "./helpers.js";
import { defaultDataRoot } from "../src/paths.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { FaceClassifier } from "../src/predict/classifier.js";
import { decodeGray } from "../src/data/image.js";
import { argmax } from "../src/predict/smoothing.js";
import { predictCrops, predictBoxes } from "../src/predict/given.js";
import { predictImages, type ImagePrediction } from "../src/predict/images.js";
import { matchBoxes, parseBoxCsv, parseBoxJson } from "../src/predict/boxes.js";
import { boxFrame, closeSharedDetectorPools } from "../src/faces/index.js";
import { CropWriter } from "../src/predict/crops.js";

const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-predict-crops-"));
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", maxBuffer: 64 << 20, cwd: work, timeout: 180_000 });
const data = defaultDataRoot();
const fer = path.join(data, "fer2013");
const lfw = path.join(data, "lfw", "lfw-deepfunneled");
/** PrivateTest crops, the first `n` in labels.csv order. */
const privateTest = (n: number): string[] =>
  readFileSync(path.join(fer, "labels.csv"), "utf8")
    .split("\n")
    .filter((l) => l.includes(",PrivateTest,FER2013Test/"))
    .slice(0, n)
    .map((l) => path.join(fer, l.split(",")[2]));
const photo1 = path.join(lfw, "Aaron_Eckhart", "Aaron_Eckhart_0001.jpg");
const photo2 = path.join(lfw, "Abdullah_Gul", "Abdullah_Gul_0001.jpg");
const json = (stdout: string): ImagePrediction[] =>
  stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as ImagePrediction);
/** The one line a user mistake prints. */
const oneLine = (stderr: string): string => {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line expected, got:\n${stderr}`);
  return lines[0];
};

let classifier: FaceClassifier;
/** Two LFW photos side by side: photo1 at 250x250, photo2 shrunk to 130x130, on a grey canvas. */
const composite = path.join(work, "two-faces.png");
before(async () => {
  classifier = FaceClassifier.load();
  const small = await sharp(photo2).resize(130, 130).toBuffer();
  await sharp({ create: { width: 400, height: 250, channels: 3, background: { r: 128, g: 128, b: 128 } } })
    .composite([
      { input: photo1, left: 0, top: 0 },
      { input: small, left: 260, top: 60 },
    ])
    .png()
    .toFile(composite);
});
after(async () => {
  classifier?.dispose();
  await closeSharedDetectorPools();
  rmSync(work, { recursive: true, force: true });
});

describe("--crops: each image is one face", () => {
  test("a 48x48 FER2013 PrivateTest crop: exactly one face, the eval path's probabilities", async () => {
    const files = privateTest(3);
    const r = cli("predict", ...files, "--crops", "--json");
    assert.equal(r.status, 0, r.stderr);
    const out = json(r.stdout);
    assert.equal(out.length, 3);
    for (const [i, e] of out.entries()) {
      assert.equal(e.faces.length, 1, `${e.file}: one face`);
      const f = e.faces[0];
      assert.deepEqual([e.width, e.height, ...f.box], [48, 48, 0, 0, 48, 48]);
      assert.equal(f.align, "resize");
      assert.equal(f.detection_score, null);
      // The eval path: the crop's gray pixels straight into the model, flip-averaged as predict does.
      const probs = classifier.classifyPlanar(await decodeGray(files[i], classifier.size), { tta: true });
      assert.equal(f.label, classifier.classes[argmax(Array.from(probs))], `${e.file}: same label as the eval path`);
      classifier.classes.forEach((c, k) => assert.ok(Math.abs(f.probs[c] - probs[k]) < 1e-5, `${c}: ${f.probs[c]} vs ${probs[k]}`));
    }
  });

  test("--align eyes: BlazeFace's eyes in the crop, a probability vector that sums to 1", async () => {
    const [file] = privateTest(1);
    const [e] = await predictCrops([file], classifier, { align: "eyes", tta: true });
    assert.equal(e.faces.length, 1);
    const f = e.faces[0];
    assert.ok(f.align === "eyes" || f.align === "resize");
    if (f.align === "eyes") assert.ok(f.detection_score !== null && f.detection_score > 0.5);
    const sum = Object.values(f.probs).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-4, `probabilities sum to ${sum}`);
    // Without --crops the same crop goes through the detector; with it, a crop is never "no face".
    const blank = path.join(work, "blank.png");
    await sharp({ create: { width: 40, height: 60, channels: 3, background: { r: 90, g: 90, b: 90 } } })
      .png()
      .toFile(blank);
    const [b] = await predictCrops([blank], classifier, { align: "eyes" });
    assert.equal(b.faces.length, 1);
    assert.deepEqual(b.faces[0].box, [0, 0, 40, 60]);
    assert.equal(b.faces[0].align, "resize", "no eyes found: resized (its centred square)");
  });
});

describe("--boxes: faces found by the user's own detector", () => {
  test("a 250x250 LFW photo: the face at the given box, aligned by the eyes found in it", () => {
    const detected = json(cli("predict", photo1, "--json").stdout)[0].faces[0];
    const [x, y, w, h] = detected.box.map(Math.round);
    // Relative to the box file's folder (work/).
    writeFileSync(path.join(work, "boxes.csv"), `file,x,y,width,height\n${photo1},${x},${y},${w},${h}\n`);
    const r = cli("predict", photo1, "--boxes", "boxes.csv", "--json");
    assert.equal(r.status, 0, r.stderr);
    const [e] = json(r.stdout);
    assert.equal(e.faces.length, 1);
    const f = e.faces[0];
    assert.deepEqual(f.box, [x, y, w, h], "the given box");
    assert.equal(f.align, "eyes");
    assert.ok(f.detection_score !== null && f.detection_score > 0.5);
    for (const k of ["left_eye", "right_eye"] as const)
      for (const a of [0, 1]) assert.ok(Math.abs(f.landmarks[k][a] - detected.landmarks[k][a]) < 2, `${k} where the detector puts it`);
    assert.equal(f.label, detected.label, "the same face as the detector's");
    // The JSON map form, named by the base name alone; --align resize frames the box without any model.
    writeFileSync(path.join(work, "boxes.json"), JSON.stringify({ [path.basename(photo1)]: [[x, y, w, h]] }));
    const r2 = cli("predict", photo1, "--boxes", "boxes.json", "--align", "resize", "--csv");
    assert.equal(r2.status, 0, r2.stderr);
    const [row] = parse(r2.stdout, { columns: true }) as Record<string, string>[];
    assert.deepEqual([row.x, row.y, row.w, row.h].map(Number), [x, y, w, h]);
    assert.equal(row.align, "box");
    assert.equal(row.detection_score, "");
  });

  test("the library: a box partly outside is clipped, one outside the image is listed, an input without boxes has no face", async () => {
    const boxes = matchBoxes(
      {
        source: path.join(work, "b.json"),
        entries: parseBoxJson(
          JSON.stringify([
            { file: path.basename(photo1), x: 200, y: 200, width: 100, height: 100 },
            { file: path.basename(photo1), x: 300, y: 10, width: 50, height: 50 },
          ]),
          "b.json",
        ),
      },
      [photo1, photo2],
    );
    const [a, b] = await predictBoxes([photo1, photo2], boxes.byInput, classifier, { align: "resize" });
    assert.equal(a.faces.length, 1);
    assert.deepEqual(a.faces[0].box, [200, 200, 50, 50], "clipped to the 250x250 photo");
    assert.equal(a.faces[0].align, "box");
    assert.equal(a.box_errors?.length, 1);
    assert.match(a.box_errors?.[0].error ?? "", /box \[300, 10, 50, 50\] lies outside the 250x250 image/);
    assert.equal(a.box_errors?.[0].where, "b.json entry 2");
    assert.deepEqual(b.faces, []);
    // The box's frame is FER2013's framing of a detector box: a little larger than the box, shifted up.
    const [fx, fy, side] = boxFrame([100, 100, 87, 87]);
    assert.ok(Math.abs(side - 100) < 1e-9 && Math.abs(fx - 93.5) < 1e-9 && fy < 93.5);
  });

  test("a box outside the image in the CLI: skipped, an error line naming the box file's line, exit code 2", () => {
    writeFileSync(path.join(work, "outside.csv"), `file,x,y,width,height\n${path.basename(photo1)},300,10,50,50\n`);
    const r = cli("predict", photo1, "--boxes", "outside.csv", "--json");
    assert.equal(r.status, 2);
    assert.match(
      oneLine(r.stderr),
      /^error: outside\.csv line 2: box \[300, 10, 50, 50\] lies outside the 250x250 image \(.*Aaron_Eckhart_0001\.jpg\): skipped$/,
    );
    assert.deepEqual(json(r.stdout)[0].faces, []);
  });

  test("malformed box files: one line naming the line or entry and the field, exit code 2", () => {
    const cases: [string, string, RegExp][] = [
      [
        "bad-number.csv",
        "file,x,y,width,height\na.jpg,1,2,3,4\na.jpg,abc,2,3,4\n",
        /bad-number\.csv line 3: x must be a number \(got "abc"\)/,
      ],
      ["neg-width.csv", "file,x,y,width,height\na.jpg,1,2,-3,4\n", /neg-width\.csv line 2: width must be > 0 \(got -3\)/],
      ["empty-field.csv", "file,x,y,width,height\na.jpg,1,,3,4\n", /empty-field\.csv line 2: y must be a number \(got ""\)/],
      ["frame.csv", "file,x,y,width,height,frame\na.jpg,1,2,3,4,1.5\n", /frame\.csv line 2: frame must be a whole number \(got 1\.5\)/],
      ["missing.csv", "file,x,y,w,h\na.jpg,1,2,3,4\n", /missing\.csv line 1: unknown column\(s\) "w", "h"/],
      ["short.csv", "file,x,y,width,height\na.jpg,1,2,3\n", /short\.csv: Invalid Record Length: columns length is 5, got 4 on line 2/],
      ["no-file.csv", "file,x,y,width,height\n,1,2,3,4\n", /no-file\.csv line 2: file is empty/],
      ["bad.json", "{ not json", /bad\.json: not valid JSON/],
      ["box.json", JSON.stringify({ "a.jpg": [[1, 2, 3]] }), /box\.json "a\.jpg" box 1: a box must be \[x, y, width, height\]/],
      [
        "list.json",
        JSON.stringify([{ file: "a.jpg", x: 1, y: 2, width: 0, height: 4 }]),
        /list\.json entry 1: width must be > 0 \(got 0\)/,
      ],
      [
        "extra.json",
        JSON.stringify([{ file: "a.jpg", x: 1, y: 2, width: 3, height: 4, score: 1 }]),
        /extra\.json entry 1: unknown field\(s\) "score"/,
      ],
    ];
    for (const [name, text, expected] of cases) {
      writeFileSync(path.join(work, name), text);
      const r = cli("predict", photo1, "--boxes", name);
      assert.equal(r.status, 2, `${name}: ${r.stderr}`);
      assert.match(oneLine(r.stderr), expected, name);
    }
    const r = cli("predict", photo1, "--boxes", "nope.csv");
    assert.equal(r.status, 2);
    assert.match(oneLine(r.stderr), /box file nope\.csv: cannot be read: ENOENT/);
  });

  test("names: resolved against the box file's folder, else by the end of the path; ambiguity is an error", () => {
    const dup = ["a/img.jpg", "b/img.jpg"].map((p) => path.join(work, p));
    const entries = parseBoxCsv("file,x,y,width,height\nimg.jpg,1,2,3,4\n", "l.csv");
    assert.throws(
      () => matchBoxes({ source: path.join(work, "l.csv"), entries }, dup),
      /l\.csv line 2: "img\.jpg" matches 2 inputs .*give more of its path/,
    );
    const byDir = matchBoxes({ source: path.join(work, "a", "l.csv"), entries }, dup);
    assert.deepEqual([...byDir.byInput.keys()], [dup[0]], "relative to the box file's folder first");
    const other = matchBoxes(
      { source: path.join(work, "l.csv"), entries: parseBoxCsv("file,x,y,width,height\nb/img.jpg,1,2,3,4\nzz.jpg,1,1,1,1\n", "l.csv") },
      dup,
    );
    assert.deepEqual([...other.byInput.keys()], [dup[1]]);
    assert.deepEqual(other.unmatched, ["zz.jpg"]);
  });
});

describe("--max-faces and --save-crops", () => {
  test("--max-faces 1 on two LFW faces side by side keeps the larger", async () => {
    const all = await predictImages([composite], classifier);
    assert.equal(all[0].faces.length, 2, "both faces are found");
    const r = cli("predict", composite, "--max-faces", "1", "--json");
    assert.equal(r.status, 0, r.stderr);
    const [e] = json(r.stdout);
    assert.equal(e.faces.length, 1);
    assert.ok(e.faces[0].box[0] < 250 && e.faces[0].box[2] > 80, `the 250 px face on the left, got ${e.faces[0].box}`);
    assert.deepEqual(e.faces[0].box, all[0].faces[0].box);
  });

  test("--save-crops: a PNG per face at the model's input size, named by file, frame and face", async () => {
    const dir = path.join(work, "crops");
    const r = cli("predict", composite, privateTest(1)[0], "--save-crops", dir, "--json");
    assert.equal(r.status, 0, r.stderr);
    const out = json(r.stdout);
    assert.deepEqual(
      out.flatMap((e) => e.faces.map((f) => path.basename(f.crop ?? ""))),
      ["two-faces_face0.png", "two-faces_face1.png", `${path.parse(privateTest(1)[0]).name}_face0.png`],
    );
    for (const name of readdirSync(dir)) {
      const m = await sharp(path.join(dir, name)).metadata();
      assert.deepEqual([m.width, m.height, m.channels], [classifier.size, classifier.size, classifier.channels], name);
    }
    // With --crops the saved crop is the FER2013 image itself.
    const dir2 = path.join(work, "crops2");
    const file = privateTest(1)[0];
    assert.equal(cli("predict", file, "--crops", "--save-crops", dir2).status, 0);
    const saved = await sharp(path.join(dir2, `${path.parse(file).name}_face0.png`))
      .extractChannel(0)
      .raw()
      .toBuffer();
    assert.deepEqual(saved, Buffer.from(await decodeGray(file, classifier.size)));
  });

  test("a video: --max-faces 1 gives one row per frame; --save-crops one PNG per row; --boxes with a frame", async () => {
    const frames = path.join(work, "frames");
    mkdirSync(frames);
    for (let k = 0; k < 4; k++) await sharp(composite).toFile(path.join(frames, `${k}.png`));
    const video = path.join(work, "two.mp4");
    const ff = spawnSync("ffmpeg", [
      "-v",
      "error",
      "-y",
      "-framerate",
      "4",
      "-i",
      path.join(frames, "%d.png"),
      "-c:v",
      "libx264",
      "-pix_fmt",
      "yuv420p",
      video,
    ]);
    assert.equal(ff.status, 0, String(ff.stderr));
    const dir = path.join(work, "video-crops");
    const r = cli("predict", video, "--csv", "--max-faces", "1", "--save-crops", dir);
    assert.equal(r.status, 0, r.stderr);
    const rows = parse(r.stdout, { columns: true }) as Record<string, string>[];
    assert.deepEqual(
      rows.map((x) => [Number(x.frame), Number(x.x) < 250]),
      [0, 1, 2, 3].map((k) => [k, true]),
    );
    assert.deepEqual(
      readdirSync(dir).sort(),
      [0, 1, 2, 3].map((k) => `two_frame00000${k}_face${rows[0].face}.png`),
    );
    assert.deepEqual(
      rows.map((x) => path.basename(x.crop)),
      readdirSync(dir).sort(),
    );
    // Boxes for a video: one on frame 2 only, in the video's pixels; one past the last frame.
    writeFileSync(path.join(work, "vboxes.csv"), `file,frame,x,y,width,height\ntwo.mp4,2,270,70,110,110\ntwo.mp4,9,0,0,10,10\n`);
    const v = cli("predict", video, "--boxes", "vboxes.csv", "--json");
    assert.equal(v.status, 2, "the box past the end is an error");
    assert.match(oneLine(v.stderr), /^error: vboxes\.csv line 3: frame 9 is past the video's last frame \(3\) \(.*two\.mp4\): skipped$/);
    const line = JSON.parse(v.stdout) as { rows: { frame: number; box: number[]; align: string }[] };
    assert.deepEqual(
      line.rows.map((x) => [x.frame, x.box, x.align]),
      [[2, [270, 70, 110, 110], "eyes"]],
    );
  });

  test("bad options: a negative or zero --max-faces, an unwritable --save-crops, --align alone: one line, exit code 2", () => {
    for (const n of ["-1", "0", "1.5"]) {
      const r = cli("predict", photo1, "--max-faces", n);
      assert.equal(r.status, 2, r.stderr);
      assert.match(oneLine(r.stderr), new RegExp(`--max-faces must be a positive integer, got '${n.replace(".", "\\.")}'`));
    }
    const file = path.join(work, "a-file");
    writeFileSync(file, "");
    for (const [dir, why] of [
      [file, /cannot save crops in .*a-file: it is a file, not a folder/],
      [path.join(file, "sub"), /cannot save crops in .*a-file\/sub: a part of the path is a file/],
    ] as const) {
      const r = cli("predict", photo1, "--save-crops", dir);
      assert.equal(r.status, 2, r.stderr);
      assert.match(oneLine(r.stderr), why);
    }
    assert.throws(() => new CropWriter(path.join(file, "sub")), /a part of the path is a file/);
    const a = cli("predict", photo1, "--align", "eyes");
    assert.equal(a.status, 2);
    assert.match(oneLine(a.stderr), /--align applies only with --crops or --boxes/);
    const c = cli("predict", photo1, "--crops", "--boxes", "x.csv");
    assert.equal(c.status, 2);
    assert.match(oneLine(c.stderr), /cannot be used with option '--boxes/);
  });
});
