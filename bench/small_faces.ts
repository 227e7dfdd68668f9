/**
 * Small faces in a large frame: LFW faces (every 200th person, up to --faces) scaled so their
 * face box is 16-128 px and pasted one at a time into a grey 1280x720 frame, detected with
 * BlazeFace's own eye points (prediction's default) by the whole-image pass alone and with the
 * small-face passes (tiles and re-detection, the default). Per size: how many faces are found, and
 * the eye-line error in degrees (median / max) against FaceMesh's two-pass eyes on the original
 * 250-px photo. Then the detection time per frame of each setting (mean over every frame).
 *
 *   npm run bench:faces
 *   node dist/bench/small_faces.js --faces 15
 *
 * The last line printed is one JSON object: `{"sizes":[{"face_px","setting","found","n",
 * "eye_error_median","eye_error_max"}],"ms_per_frame":{"whole":...,"tiles":...}}`.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { eyeAngle, FaceDetector, type DetectedFace, type FaceDetectorOptions } from "../src/faces/index.js";
import { defaultDataRoot } from "../src/paths.js";

const { values: args } = parseArgs({ options: { faces: { type: "string", default: "15" } } });
const W = 1280;
const H = 720;
const SIZES = [16, 20, 24, 32, 40, 48, 64, 96, 128];
const root = path.join(defaultDataRoot(), "lfw", "lfw-deepfunneled");
const files = readdirSync(root)
  .sort()
  .filter((_, i) => i % 200 === 0)
  .slice(0, Number(args.faces))
  .map((p) => path.join(root, p, readdirSync(path.join(root, p)).sort()[0]));

const reference = await FaceDetector.create({ landmarks: "mesh", meshPasses: 2 });
const truth: { angle: number; side: number }[] = [];
for (const f of files) {
  const { data, info } = await sharp(f).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const [face] = await reference.detect({ data: new Uint8Array(data), width: info.width, height: info.height });
  truth.push({ angle: eyeAngle(face.leftEye, face.rightEye), side: face.box[2] });
}
reference.dispose();

const settings: [string, FaceDetectorOptions][] = [
  ["whole", { landmarks: "blazeface", tiles: false, refineSmall: false }],
  ["tiles", { landmarks: "blazeface" }],
];
const rows: {
  face_px: number;
  setting: string;
  found: number;
  n: number;
  eye_error_median: number | null;
  eye_error_max: number | null;
}[] = [];
const msPerFrame: Record<string, number> = {};
for (const [name, options] of settings) {
  const detector = await FaceDetector.create(options);
  let ms = 0;
  let frames = 0;
  for (const face of SIZES) {
    const errors: number[] = [];
    for (const [k, file] of files.entries()) {
      const s = Math.round((face / truth[k].side) * 250);
      const photo = await sharp(file).resize(s, s).removeAlpha().raw().toBuffer();
      const frame = new Uint8Array(W * H * 3).fill(128);
      const left = 100 + ((k * 97) % 900);
      const top = 40 + ((k * 53) % 300);
      for (let r = 0; r < s; r++) frame.set(photo.subarray(r * s * 3, (r + 1) * s * 3), ((top + r) * W + left) * 3);
      const t0 = performance.now();
      const faces: DetectedFace[] = await detector.detect({ data: frame, width: W, height: H });
      ms += performance.now() - t0;
      frames++;
      const hit = faces.find((f) => Math.hypot(f.box[0] + f.box[2] / 2 - (left + s / 2), f.box[1] + f.box[3] / 2 - (top + s / 2)) < s / 2);
      if (hit) errors.push(Math.abs(eyeAngle(hit.leftEye, hit.rightEye) - truth[k].angle));
    }
    errors.sort((a, b) => a - b);
    const round = (x: number | undefined) => (x === undefined ? null : Math.round(10 * x) / 10);
    const row = {
      face_px: face,
      setting: name,
      found: errors.length,
      n: files.length,
      eye_error_median: round(errors[errors.length >> 1]),
      eye_error_max: round(errors.at(-1)),
    };
    rows.push(row);
    console.log(
      `${name.padEnd(5)} face ${String(face).padStart(3)} px (${((100 * face) / W).toFixed(1)} % of the long side): found ${row.found}/${row.n}` +
        (row.found > 0 ? `, eye-line error median ${row.eye_error_median} max ${row.eye_error_max} degrees` : ""),
    );
  }
  msPerFrame[name] = Math.round((10 * ms) / frames) / 10;
  console.log(`${name}: ${msPerFrame[name]} ms per 1280x720 frame (${frames} frames)`);
  detector.dispose();
}
console.log(JSON.stringify({ sizes: rows, ms_per_frame: msPerFrame }));
