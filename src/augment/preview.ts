/**
 * A picture of the augmentation for a person to check: a PNG grid whose rows are
 * original | weak 1 | weak 2 | strong, each image upscaled with nearest neighbour
 * (x3 by default) so single pixels stay visible. `ferkit augment-preview` calls
 * {@link augmentPreviewFer2013}.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";
import * as torch from "../torch/index.js";
import { Rng, shuffleInPlace } from "../data/sampler.js";
import { readFer2013 } from "../data/fer2013.js";
import { decodeGrayBatch } from "../data/image.js";
import { batchShape, makeViews, type BatchInput, type ViewOptions } from "./views.js";

/** Options of {@link writeAugmentPreview}. */
export interface PreviewOptions {
  /** Seed of the views' {@link Rng} (default 0). */
  seed?: number;
  /** Number of rows (images) to show, at most the batch size (default: the whole batch). */
  rows?: number;
  /** Integer upscaling factor, nearest neighbour (default 3). */
  scale?: number;
  /** Views per row (default 2 weak, 1 strong: four columns with the original). */
  views?: ViewOptions;
}

/** What {@link writeAugmentPreview} wrote. */
export interface PreviewResult {
  out: string;
  rows: number;
  columns: string[];
  width: number;
  height: number;
}

const GAP = 4; // pixels between tiles, white
const HEADER = 18; // pixels of the column-title strip

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Writes the preview grid of a uint8 batch to `outPng` (parent folders are created).
 * Column titles are drawn above the grid.
 * @param images uint8 `[N, C, H, W]`, C = 1 or 3
 */
export async function writeAugmentPreview(images: BatchInput, outPng: string, o: PreviewOptions = {}): Promise<PreviewResult> {
  const [n, c, h, w] = batchShape(images);
  const scale = o.scale ?? 3;
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`writeAugmentPreview: scale must be a positive integer, got ${scale}`);
  const rows = Math.min(o.rows ?? n, n);
  if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`writeAugmentPreview: need at least one row, got ${rows}`);

  const views = makeViews(images, new Rng(o.seed ?? 0), o.views ?? { weak: 2, strong: 1 });
  const original = images instanceof torch.Tensor ? (images.toArray() as Uint8Array) : images.data;
  const toBytes = (t: torch.Tensor): Uint8Array => {
    const v = t.toArray() as Float32Array;
    return Uint8Array.from(v, (x) => Math.round(x * 255));
  };
  const columns: { title: string; bytes: Uint8Array }[] = [
    { title: "original", bytes: original },
    ...views.weak.map((t, i) => ({ title: `weak ${i + 1}`, bytes: toBytes(t) })),
    ...views.strong.map((t, i) => ({ title: views.strong.length > 1 ? `strong ${i + 1}` : "strong", bytes: toBytes(t) })),
  ];
  torch.dispose(views);

  const tw = w * scale;
  const th = h * scale;
  const width = columns.length * tw + (columns.length + 1) * GAP;
  const gridH = rows * th + (rows + 1) * GAP;
  const height = HEADER + gridH;
  const canvas = new Uint8Array(width * height * c).fill(255);
  const plane = h * w;
  columns.forEach(({ bytes }, col) => {
    for (let r = 0; r < rows; r++) {
      const x0 = GAP + col * (tw + GAP);
      const y0 = HEADER + GAP + r * (th + GAP);
      for (let y = 0; y < th; y++) {
        const sy = Math.floor(y / scale);
        const rowOff = ((y0 + y) * width + x0) * c;
        for (let x = 0; x < tw; x++) {
          const sx = Math.floor(x / scale);
          for (let ch = 0; ch < c; ch++) canvas[rowOff + x * c + ch] = bytes[(r * c + ch) * plane + sy * w + sx];
        }
      }
    }
  });

  const titles = columns
    .map(
      ({ title }, col) =>
        `<text x="${GAP + col * (tw + GAP) + tw / 2}" y="${HEADER - 5}" text-anchor="middle" font-family="sans-serif" font-size="12" fill="#000">${escapeXml(title)}</text>`,
    )
    .join("");
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${HEADER}">${titles}</svg>`);
  mkdirSync(path.dirname(path.resolve(outPng)), { recursive: true });
  const raw = (): sharp.Sharp =>
    sharp(Buffer.from(canvas.buffer, canvas.byteOffset, canvas.byteLength), { raw: { width, height, channels: c as 1 | 3 } });
  let img: sharp.Sharp;
  try {
    // Compositing adds an alpha channel; a second pass drops it (sharp applies removeAlpha before composite).
    img = sharp(
      await raw()
        .composite([{ input: svg, top: 0, left: 0 }])
        .png()
        .toBuffer(),
    ).removeAlpha();
  } catch {
    img = raw(); // no SVG text support in this libvips build: the grid without titles
  }
  await (c === 1 ? img.toColourspace("b-w") : img).png().toFile(outPng);
  return { out: outPng, rows, columns: columns.map((col) => col.title), width, height };
}

/** Options of {@link augmentPreviewFer2013}. */
export interface Fer2013PreviewOptions {
  /** The `fer2013/` folder (with labels.csv). */
  fer2013Dir: string;
  /** Number of Training images (rows), drawn at random with `seed` (default 8). */
  n?: number;
  /** Seed of the image choice and of the views (default 0). */
  seed?: number;
  /** Output PNG path. */
  out: string;
}

/**
 * Reads `n` FER2013 Training images (a seeded random choice), decodes them to 48x48 gray
 * and writes their preview grid ({@link writeAugmentPreview}) to `out`.
 * @returns what was written and the image files shown, top to bottom
 */
export async function augmentPreviewFer2013(o: Fer2013PreviewOptions): Promise<PreviewResult & { files: string[] }> {
  const n = o.n ?? 8;
  const seed = o.seed ?? 0;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`augment preview: n must be a positive integer, got ${n}`);
  const { records } = readFer2013(o.fer2013Dir, ["Training"]);
  if (records.length === 0) throw new RangeError(`augment preview: no Training images in ${o.fer2013Dir}`);
  const order = shuffleInPlace(
    Array.from({ length: records.length }, (_, i) => i),
    new Rng(seed),
  );
  const wanted = order.slice(0, n).map((i) => records[i].imagePath);
  const decoded = await decodeGrayBatch(wanted, 48);
  if (decoded.kept.length === 0)
    throw new Error(`augment preview: none of the chosen images could be decoded (${decoded.failed[0]?.reason})`);
  const files = decoded.kept.map((i) => wanted[i]);
  const result = await writeAugmentPreview({ data: decoded.pixels, shape: [files.length, 1, 48, 48] }, o.out, { seed, rows: files.length });
  return { ...result, files };
}
