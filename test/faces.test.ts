// Face detection and alignment (src/faces) on real photos from ../shared/data (LFW, UTKFace, ORL),
// plus synthetic and broken inputs written to a temp dir by the test itself.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import {
  DetectorPool,
  FER2013_TEMPLATE,
  FaceDetector,
  alignImage,
  alignmentTransform,
  applyAffine,
  decodeImage,
  detectAndAlign,
  eyeAngle,
  invertAffine,
  parsePnm,
  sharedDetectorPool,
  warpAffine,
  type FileResult,
  type Point2,
  type RgbImage,
} from "../src/faces/index.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const DATA = process.env.FERKIT_DATA ?? path.resolve(ROOT, "..", "shared", "data");
const LFW = [
  "AJ_Cook/AJ_Cook_0001.jpg",
  "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
  "Aaron_Patterson/Aaron_Patterson_0001.jpg",
  "Aaron_Pena/Aaron_Pena_0001.jpg",
].map((f) => path.join(DATA, "lfw", "lfw-deepfunneled", f));
const UTK = ["100_0_0_20170112213500903.jpg.chip.jpg", "100_1_0_20170112213001988.jpg.chip.jpg"].map((f) =>
  path.join(DATA, "utkface", "UTKFace", f),
);
const ORL = ["s1/1.pgm", "s28/1.pgm"].map((f) => path.join(DATA, "orl_att_faces", "att_faces", f));
const haveData = [...LFW, ...UTK, ...ORL].every((f) => existsSync(f));

/** Upscales an aligned crop (RGB or gray) to `side` x `side` RGB for a second detection pass. */
async function upscale(pixels: Uint8Array, size: number, channels: 1 | 3, side: number): Promise<RgbImage> {
  const { data } = await sharp(Buffer.from(pixels), { raw: { width: size, height: size, channels } })
    .resize(side, side, { kernel: "cubic" })
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: side, height: side };
}

function ok(r: FileResult): Extract<FileResult, { status: "ok" }> {
  assert.equal(r.status, "ok", `${r.file}: ${JSON.stringify(r)}`);
  return r as Extract<FileResult, { status: "ok" }>;
}

describe("align (pure)", () => {
  test("alignmentTransform maps the eyes onto the template and levels them", () => {
    const left: [number, number] = [150, 130];
    const right: [number, number] = [100, 110]; // a face tilted by atan2(20, 50) = 21.8 degrees
    assert.ok(Math.abs(eyeAngle(left, right) - (Math.atan2(20, 50) * 180) / Math.PI) < 1e-9);
    const m = alignmentTransform(left, right, FER2013_TEMPLATE);
    const l = applyAffine(m, left);
    const r = applyAffine(m, right);
    for (const [got, want] of [
      [l, FER2013_TEMPLATE.leftEye],
      [r, FER2013_TEMPLATE.rightEye],
    ] as const) {
      assert.ok(Math.abs(got[0] - want[0]) < 1e-9 && Math.abs(got[1] - want[1]) < 1e-9, `${got} vs ${want}`);
    }
    assert.ok(Math.abs(m[0] - m[4]) < 1e-12 && Math.abs(m[1] + m[3]) < 1e-12, "a similarity: no shear, no reflection");
    const back = applyAffine(invertAffine(m), l);
    assert.ok(Math.abs(back[0] - left[0]) < 1e-9 && Math.abs(back[1] - left[1]) < 1e-9);
    assert.throws(() => alignmentTransform([5, 5], [5, 5]), RangeError);
    assert.throws(() => alignmentTransform([Number.NaN, 5], [1, 5]), RangeError);
  });

  test("warpAffine: sizes, channels, gray conversion, borders, bad input", () => {
    // 4x2 image: left half pure red, right half pure blue.
    const w = 4;
    const h = 2;
    const rgb = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.set(x < 2 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
    // Identity-like map: source [0, 4] x [0, 4] -> output [0, 1] (so the bottom half is outside).
    const m = [0.25, 0, 0, 0, 0.25, 0] as const;
    const g = warpAffine(rgb, w, h, m, 4, 1);
    assert.equal(g.length, 16);
    assert.equal(g[0], Math.round(0.299 * 255), "gray = BT.601 luma of red");
    assert.equal(g[3], Math.round(0.114 * 255), "gray = BT.601 luma of blue");
    assert.equal(g[15], g[3], "replicate border repeats the edge pixel");
    const c = warpAffine(rgb, w, h, m, 4, 3, { border: "constant", fill: 7 });
    assert.equal(c.length, 48);
    assert.deepEqual([...c.subarray(0, 3)], [255, 0, 0]);
    assert.deepEqual([...c.subarray(45, 48)], [7, 7, 7], "constant border");
    assert.throws(() => warpAffine(rgb.subarray(1), w, h, m, 4, 1), RangeError);
    assert.throws(() => warpAffine(rgb, w, h, [0, 0, 0, 0, 0, 0], 4, 1), RangeError);
  });

  test("parsePnm reads P5 and P2 and rejects truncated data", () => {
    const p5 = Buffer.concat([Buffer.from("P5\n# comment\n2 1\n255\n"), Buffer.from([0, 200])]);
    assert.deepEqual(parsePnm(p5), { data: new Uint8Array([0, 0, 0, 200, 200, 200]), width: 2, height: 1 });
    const p2 = Buffer.from("P2 2 1 15\n0 15\n");
    assert.deepEqual([...parsePnm(p2).data], [0, 0, 0, 255, 255, 255]);
    assert.throws(() => parsePnm(Buffer.from("P5\n4 4\n255\n\x01\x02")), /truncated/);
    assert.throws(() => parsePnm(Buffer.from("GIF89a")), /not a PGM/);
  });
});

describe("faces on real photos", { skip: haveData ? false : `data not found under ${DATA}` }, () => {
  let detector: FaceDetector;
  let tmp: string;
  before(async () => {
    detector = await FaceDetector.create();
    tmp = mkdtempSync(path.join(tmpdir(), "ferkit-faces-"));
  });
  after(() => {
    detector?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("detects one upright face in each LFW photo, eyes inside the box, subject's left eye on the image right", async () => {
    for (const file of LFW) {
      const image = await decodeImage(file);
      assert.deepEqual([image.width, image.height], [250, 250]);
      const faces = await detector.detect(image);
      assert.ok(faces.length >= 1, `${file}: no face`);
      for (let i = 1; i < faces.length; i++)
        assert.ok(faces[i - 1].box[2] * faces[i - 1].box[3] >= faces[i].box[2] * faces[i].box[3], "largest first");
      const f = faces[0];
      assert.ok(f.score >= 0.5 && f.score <= 1, `score ${f.score}`);
      const [x, y, w, h] = f.box;
      assert.ok(w >= 60 && w <= 200 && h >= 60 && h <= 200, `${file}: box ${f.box}`);
      // LFW deep-funneled photos are centred on the face.
      assert.ok(Math.abs(x + w / 2 - 125) < 30 && Math.abs(y + h / 2 - 125) < 40, `${file}: box ${f.box} not centred`);
      for (const e of [f.leftEye, f.rightEye])
        assert.ok(e[0] > x && e[0] < x + w && e[1] > y && e[1] < y + h, `${file}: eye ${e} outside ${f.box}`);
      assert.ok(f.leftEye[0] > f.rightEye[0] + 20, `${file}: left eye ${f.leftEye} should be right of right eye ${f.rightEye}`);
      assert.equal(f.landmarkSource, "mesh");
      assert.equal(f.landmarks.length, 468);
    }
  });

  test("aligned crops are level: re-detecting on the upscaled crop gives |roll| < 3 degrees and eyes near the template", async () => {
    for (const file of [...LFW, ...UTK, ...ORL]) {
      const r = ok(await alignImage(file, { size: 112, channels: 3 }));
      const crop = r.faces[0];
      const again = await detector.detect(await upscale(crop.pixels, 112, 3, 224));
      assert.ok(again.length >= 1, `${file}: no face in the aligned crop`);
      const g = again[0];
      const roll = eyeAngle(g.leftEye, g.rightEye);
      assert.ok(Math.abs(roll) < 3, `${file}: aligned crop roll ${roll.toFixed(2)} degrees (photo roll was ${crop.roll.toFixed(2)})`);
      const frac = (p: readonly [number, number]) => [p[0] / 224, p[1] / 224];
      for (const [got, want] of [
        [frac(g.leftEye), FER2013_TEMPLATE.leftEye],
        [frac(g.rightEye), FER2013_TEMPLATE.rightEye],
      ] as const) {
        assert.ok(
          Math.hypot(got[0] - want[0], got[1] - want[1]) < 0.05,
          `${file}: eye at ${got.map((v) => v.toFixed(3))}, template ${want}`,
        );
      }
    }
  });

  test("a photo rotated by 20 degrees: the roll is measured and undone", async () => {
    const file = path.join(tmp, "rotated.png");
    await sharp(LFW[0]).rotate(20, { background: "#808080" }).png().toFile(file);
    const upright = ok(await alignImage(LFW[0], { size: 112, channels: 3 })).faces[0];
    const r = ok(await alignImage(file, { size: 112, channels: 3 }));
    const delta = r.faces[0].roll - upright.roll;
    assert.ok(Math.abs(delta - 20) < 3, `measured roll change ${delta.toFixed(2)}, expected 20`);
    const again = await detector.detect(await upscale(r.faces[0].pixels, 112, 3, 224));
    assert.ok(again.length >= 1);
    assert.ok(Math.abs(eyeAngle(again[0].leftEye, again[0].rightEye)) < 3);
  });

  test("output sizes and channels; ORL's PGM decodes; every: true returns each face of a two-face image", async () => {
    const orl = await decodeImage(ORL[0], { minSide: 0 });
    assert.deepEqual([orl.width, orl.height], [92, 112]);
    const pair = path.join(tmp, "pair.png");
    await sharp(LFW[0])
      .extend({ right: 250, background: "#000000" })
      .composite([{ input: LFW[1], left: 250, top: 0 }])
      .png()
      .toFile(pair);
    const files = [LFW[0], UTK[0], ORL[1], pair];
    const gray = await detectAndAlign(files, { size: 48, channels: 1, workers: 0 });
    assert.deepEqual(gray.counts, { files: 4, aligned: 4, faces: 4, no_face: 0, unreadable_image: 0, detect_failed: 0 });
    for (const r of gray.results) for (const f of ok(r).faces) assert.deepEqual([f.size, f.channels, f.pixels.length], [48, 1, 48 * 48]);
    const every = await detectAndAlign([pair], { size: 112, channels: 3, every: true, workers: 0 });
    const faces = ok(every.results[0]).faces;
    assert.equal(faces.length, 2, "two faces side by side");
    for (const f of faces) assert.deepEqual([f.size, f.channels, f.pixels.length], [112, 3, 112 * 112 * 3]);
    assert.ok(faces[0].box[2] * faces[0].box[3] >= faces[1].box[2] * faces[1].box[3]);
    const xs = faces.map((f) => f.box[0] + f.box[2] / 2).sort((a, b) => a - b);
    assert.ok(xs[0] < 250 && xs[1] > 250, `one face per half: centres ${xs}`);
    // A crop is not blank: it has the contrast of a face.
    const px = faces[0].pixels;
    assert.ok(Math.max(...px) - Math.min(...px) > 100);
  });

  test("a uniform grey image has no face: an empty result, not an error", async () => {
    const grey = { data: new Uint8Array(160 * 120 * 3).fill(128), width: 160, height: 120 };
    assert.deepEqual(await detector.detect(grey), []);
    await assert.rejects(detector.detect({ data: new Uint8Array(10), width: 160, height: 120 }), RangeError);
  });

  test("bad files are skipped with a reason and the other files of the same call still come out (in-process and on workers)", async () => {
    const corrupt = path.join(tmp, "corrupt.jpg");
    const bytes = new Uint8Array(4096);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
    writeFileSync(corrupt, bytes);
    const text = path.join(tmp, "notes.txt");
    writeFileSync(text, "not an image\n");
    const truncated = path.join(tmp, "truncated.jpg");
    const { readFileSync } = await import("node:fs");
    writeFileSync(truncated, readFileSync(LFW[2]).subarray(0, 600));
    const grey = path.join(tmp, "grey.png");
    await sharp({ create: { width: 200, height: 200, channels: 3, background: { r: 128, g: 128, b: 128 } } })
      .png()
      .toFile(grey);
    const missing = path.join(tmp, "missing.jpg");
    const files = [LFW[1], corrupt, UTK[1], text, grey, truncated, missing, ORL[0]];
    const seen: number[] = [];
    for (const workers of [0, 2]) {
      seen.length = 0;
      const out = await detectAndAlign(files, { size: 48, channels: 1, workers, onProgress: (done, total) => seen.push(done, total) });
      assert.equal(out.results.length, files.length);
      assert.deepEqual(
        out.results.map((r) => (r.status === "ok" ? "ok" : r.reason)),
        ["ok", "unreadable_image", "ok", "unreadable_image", "no_face", "unreadable_image", "unreadable_image", "ok"],
        `workers ${workers}: ${JSON.stringify(out.results.map((r) => (r.status === "ok" ? "ok" : r)))}`,
      );
      for (const [i, r] of out.results.entries()) assert.equal(r.file, files[i]);
      for (const i of [1, 3, 5, 6]) {
        const r = out.results[i];
        assert.ok(r.status === "skipped" && typeof r.message === "string" && r.message.includes(files[i]), JSON.stringify(r));
      }
      assert.deepEqual(out.counts, { files: 8, aligned: 3, faces: 3, no_face: 1, unreadable_image: 4, detect_failed: 0 });
      assert.deepEqual(seen.slice(-2), [8, 8], "progress reaches total");
    }
  });

  test("workers and in-process give the same crops", async () => {
    const files = [LFW[3], UTK[0], ORL[1]];
    const a = await detectAndAlign(files, { size: 48, channels: 1, workers: 0 });
    const b = await detectAndAlign(files, { size: 48, channels: 1, workers: 2 });
    for (let i = 0; i < files.length; i++) assert.deepEqual(ok(b.results[i]).faces[0].pixels, ok(a.results[i]).faces[0].pixels);
  });

  test("a DetectorPool finds what the calling thread finds, serves many calls and stops cleanly", async () => {
    const pool = new DetectorPool(2);
    try {
      const images = await Promise.all([LFW[0], UTK[1], ORL[0]].map((f) => decodeImage(f)));
      const [inPool, here] = await Promise.all([
        Promise.all(images.map((im) => pool.detect(im))),
        Promise.all(images.map((im) => detector.detect(im))),
      ]);
      assert.deepEqual(inPool, here);
      assert.equal(images[0].data.length, images[0].width * images[0].height * 3, "the caller keeps its pixels");
      for (let round = 0; round < 2; round++) {
        const out = await detectAndAlign([LFW[3], UTK[0], ORL[1], path.join(tmp, "missing.jpg")], { size: 48, channels: 1, pool });
        assert.deepEqual(
          out.results.map((r) => (r.status === "ok" ? r.faces.length : r.reason)),
          [1, 1, 1, "unreadable_image"],
        );
      }
      // Errors come back as rejections, never as a call that waits forever.
      await assert.rejects(pool.detectFile(LFW[0], { size: 4, channels: 1 }), RangeError);
      const degenerate = { leftEye: [0.5, 0.4], rightEye: [0.5, 0.4] } as const;
      await assert.rejects(detectAndAlign([LFW[0]], { size: 48, channels: 1, template: degenerate, pool }), (err: Error) =>
        err.message.includes(LFW[0]),
      );
      const notCloneable = { size: 48, channels: 1, onProgress: () => undefined } as unknown as Parameters<DetectorPool["detectFile"]>[1];
      await assert.rejects(pool.detectFile(LFW[0], notCloneable), /could not be cloned/);
      assert.equal(ok((await detectAndAlign([LFW[1]], { size: 48, channels: 1, pool })).results[0]).faces.length, 1, "still usable");
    } finally {
      await pool.close();
    }
    await assert.rejects(pool.detect({ data: new Uint8Array(3), width: 1, height: 1 }), /after close/);
    const shared = sharedDetectorPool(1, { minScore: 0.5, landmarks: "blazeface" });
    assert.equal(sharedDetectorPool(1, { landmarks: "blazeface", minScore: 0.5 }), shared, "one shared pool per options, in any key order");
    await shared.close();
    const fresh = sharedDetectorPool(1, { minScore: 0.5, landmarks: "blazeface" });
    assert.notEqual(fresh, shared, "a closed shared pool is replaced");
    await fresh.close();
  });

  test("a pool whose workers cannot load the models rejects every call, naming the file, and does not hang", async () => {
    const pool = new DetectorPool(2, { modelDir: tmp });
    try {
      const calls = [pool.detectFile(LFW[0], { size: 48, channels: 1 }), pool.detect({ data: new Uint8Array(300), width: 10, height: 10 })];
      const names = (err: Error): boolean => err.message.includes(`${path.join(tmp, "blazeface.json")} is not readable`);
      for (const c of calls) await assert.rejects(c, names);
      await assert.rejects(detectAndAlign([LFW[0]], { size: 48, channels: 1, pool }), /failed to start/);
    } finally {
      await pool.close();
    }
  });
});

describe("small and mid-size faces in a 1280x720 frame", { skip: haveData ? false : `data not found under ${DATA}` }, () => {
  const W = 1280;
  const H = 720;
  const people = [
    "AJ_Cook/AJ_Cook_0001.jpg",
    "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
    "Aaron_Patterson/Aaron_Patterson_0001.jpg",
    "Aaron_Pena/Aaron_Pena_0001.jpg",
    "Abdullah_Gul/Abdullah_Gul_0001.jpg",
    "Adam_Sandler/Adam_Sandler_0001.jpg",
  ].map((f) => path.join(DATA, "lfw", "lfw-deepfunneled", f));
  let detector: FaceDetector;
  let reference: FaceDetector;
  /** Each photo's face: its eye-line angle (FaceMesh, 2 passes, on the 250-px photo) and box side. */
  const truth: { angle: number; side: number }[] = [];
  before(async () => {
    // Prediction's default eye source: BlazeFace's own keypoints, where the tilt came from.
    detector = await FaceDetector.create({ landmarks: "blazeface" });
    reference = await FaceDetector.create({ landmarks: "mesh", meshPasses: 2 });
    for (const f of people) {
      const [face] = await reference.detect(await decodeImage(f));
      truth.push({ angle: eyeAngle(face.leftEye, face.rightEye), side: face.box[2] });
    }
  });
  after(() => {
    detector?.dispose();
    reference?.dispose();
  });

  /** A grey frame with photo k scaled so its face box is `face` px, pasted with its corner at (x, y). */
  async function scene(placed: { k: number; face: number; x: number; y: number }[]): Promise<{ image: RgbImage; centres: Point2[] }> {
    const data = new Uint8Array(W * H * 3).fill(128);
    const centres: Point2[] = [];
    for (const { k, face, x, y } of placed) {
      const s = Math.round((face / truth[k].side) * 250);
      const photo = await sharp(people[k]).resize(s, s).removeAlpha().raw().toBuffer();
      for (let r = 0; r < s; r++) data.set(photo.subarray(r * s * 3, (r + 1) * s * 3), ((y + r) * W + x) * 3);
      centres.push([x + s / 2, y + s / 2]);
    }
    return { image: { data, width: W, height: H }, centres };
  }

  const near = (faces: Awaited<ReturnType<FaceDetector["detect"]>>, [cx, cy]: Point2, r: number) =>
    faces.find((f) => Math.hypot(f.box[0] + f.box[2] / 2 - cx, f.box[1] + f.box[3] / 2 - cy) < r);

  test("faces of 32 to 128 px (2.5-10 % of the long side) are all found, their eye lines within 10 degrees", async () => {
    const sizes = [32, 40, 56, 80, 96, 128];
    const placed = sizes.map((face, k) => ({ k, face, x: 60 + (k % 3) * 420, y: 80 + Math.floor(k / 3) * 330 }));
    const { image, centres } = await scene(placed);
    const faces = await detector.detect(image);
    assert.equal(faces.length, sizes.length, `found ${faces.map((f) => f.box.map(Math.round).join(",")).join(" | ")}`);
    for (const [k, face] of sizes.entries()) {
      const f = near(faces, centres[k], face);
      assert.ok(f, `the ${face}-px face was missed`);
      const error = Math.abs(eyeAngle(f.leftEye, f.rightEye) - truth[k].angle);
      assert.ok(error <= 10, `the ${face}-px face's eye line is ${error.toFixed(1)} degrees off`);
    }
  });

  test("the smallest face found is 24 px (1.9 % of the long side); 16 px is not", async () => {
    const found = async (face: number) => {
      let hits = 0;
      for (let k = 0; k < people.length; k++) {
        const { image, centres } = await scene([{ k, face, x: 200 + 150 * k, y: 100 + 80 * k }]);
        if (near(await detector.detect(image), centres[0], face)) hits++;
      }
      return hits;
    };
    assert.ok((await found(24)) >= people.length - 1, "24-px faces");
    assert.equal(await found(16), 0, "16-px faces");
  });

  test("a scene of four 240-px photos and a 56-px face: five faces", async () => {
    const big = [0, 1, 2, 3].map((k) => ({ k, face: (240 / 250) * truth[k].side, x: 60 + (k & 1) * 300, y: 60 + (k >> 1) * 300 }));
    const { image, centres } = await scene([...big, { k: 4, face: 56, x: 900, y: 300 }]);
    const { data } = image;
    const faces = await detector.detect(image);
    assert.equal(faces.length, 5);
    assert.ok(near(faces, centres[4], 56), "the small face");
    const fast = await FaceDetector.create({ landmarks: "blazeface", tiles: false });
    try {
      assert.ok((await fast.detect({ data, width: W, height: H })).length >= 4, "tiles: false still finds the large faces");
    } finally {
      fast.dispose();
    }
  });
});
