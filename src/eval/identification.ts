/**
 * How well face descriptors tell people apart: ORL's faces as a small identification set, and
 * nearest-neighbour identification by cosine similarity. Used to check that imported
 * face-recognition weights work (test/pretrained.test.ts, bench/backbones.ts).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";
import { parsePnm } from "../data/pnm.js";
import { defaultDataRoot } from "../paths.js";
import { fromArray, type Tensor } from "../torch/index.js";

/**
 * 100 ORL faces (the first 20 subjects by number, photos 1-5; gray, given as RGB) as
 * `[100, 3, size, size]` float32 pixel values / 255, with each one's subject index.
 */
export async function orlFaces(size: number): Promise<{ x: Tensor; people: number[] }> {
  const root = path.join(defaultDataRoot(), "orl_att_faces", "att_faces");
  const subjects = readdirSync(root)
    .filter((d) => /^s\d+$/.test(d))
    .sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))
    .slice(0, 20);
  const files = subjects.flatMap((s) => [1, 2, 3, 4, 5].map((i) => path.join(root, s, `${i}.pgm`)));
  const x = new Float32Array(files.length * 3 * size * size);
  for (const [i, f] of files.entries()) {
    const img = parsePnm(readFileSync(f));
    const px = await sharp(Buffer.from(img.data), { raw: { width: img.width, height: img.height, channels: img.channels } })
      .resize(size, size, { fit: "cover" })
      .toColourspace("srgb")
      .raw()
      .toBuffer();
    for (let c = 0; c < 3; c++) for (let j = 0; j < size * size; j++) x[(i * 3 + c) * size * size + j] = px[3 * j + c] / 255;
  }
  return { x: fromArray(x, [files.length, 3, size, size]), people: files.map((_, i) => Math.floor(i / 5)) };
}

/**
 * Face identification by nearest neighbour: of `[n, d]` descriptors (row-major), the share whose
 * most cosine-similar other row is the same person, and the mean cosine over pairs of the same
 * and of different people.
 */
export function identification(d: Float32Array, people: number[]): { nn_accuracy: number; cos_same: number; cos_different: number } {
  const n = people.length;
  const dim = d.length / n;
  const norm = Array.from({ length: n }, (_, i) => Math.hypot(...d.subarray(i * dim, (i + 1) * dim)));
  const cos = (i: number, j: number) => {
    let s = 0;
    for (let k = 0; k < dim; k++) s += d[i * dim + k] * d[j * dim + k];
    return s / (norm[i] * norm[j]);
  };
  let hits = 0;
  const same: number[] = [];
  const different: number[] = [];
  for (let i = 0; i < n; i++) {
    let [best, arg] = [-2, -1];
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const c = cos(i, j);
      (people[i] === people[j] ? same : different).push(c);
      if (c > best) [best, arg] = [c, j];
    }
    if (people[arg] === people[i]) hits++;
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  return { nn_accuracy: hits / n, cos_same: mean(same), cos_different: mean(different) };
}
