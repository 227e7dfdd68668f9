/**
 * Draws faces' boxes and labels onto images (sharp compositing an SVG overlay), for
 * `ferkit predict --annotate`.
 */
import sharp from "sharp";
import type { RgbImage } from "../faces/index.js";

/** One face to draw: its box in the image's pixels and its caption. */
export interface Annotation {
  box: readonly [number, number, number, number];
  caption: string;
}

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"];

const escapeXml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The SVG overlay of a `width x height` image with the annotations drawn. */
export function overlaySvg(width: number, height: number, faces: readonly Annotation[], colorOf: (i: number) => number = (i) => i): string {
  const stroke = Math.max(2, Math.round(Math.max(width, height) / 300));
  const font = Math.max(11, Math.round(Math.max(width, height) / 45));
  const parts = faces.map((f, i) => {
    const [x, y, w, h] = f.box;
    const color = PALETTE[colorOf(i) % PALETTE.length];
    const ty = y - font * 0.35 > font ? y - font * 0.35 : y + h + font;
    const tw = f.caption.length * font * 0.6 + 6;
    return (
      `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="${color}" stroke-width="${stroke}"/>` +
      `<rect x="${x}" y="${ty - font}" width="${tw}" height="${font * 1.25}" fill="${color}" opacity="0.8"/>` +
      `<text x="${x + 3}" y="${ty}" font-family="DejaVu Sans, Liberation Sans, sans-serif" font-size="${font}" fill="white">${escapeXml(f.caption)}</text>`
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join("")}</svg>`;
}

/**
 * Draws the annotations onto an RGB frame.
 * @returns a new `height * width * 3` RGB buffer
 */
export async function annotateFrame(image: RgbImage, faces: readonly Annotation[], colorOf?: (i: number) => number): Promise<Uint8Array> {
  if (faces.length === 0) return image.data;
  const out = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .composite([{ input: Buffer.from(overlaySvg(image.width, image.height, faces, colorOf)) }])
    .removeAlpha()
    .raw()
    .toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/**
 * Writes a photo with its annotations drawn (EXIF rotation applied, as detection saw it).
 * The format follows `out`'s extension (JPEG, PNG, WebP...).
 * @throws Error naming the file when the photo cannot be read or `out` written
 */
export async function annotateImageFile(file: string, out: string, faces: readonly Annotation[]): Promise<void> {
  try {
    const img = sharp(file).rotate();
    const { width, height } = await img
      .clone()
      .toBuffer({ resolveWithObject: true })
      .then((r) => r.info);
    await img.composite([{ input: Buffer.from(overlaySvg(width, height, faces)) }]).toFile(out);
  } catch (err) {
    throw new Error(`cannot annotate ${file} into ${out}: ${(err as Error).message}`, { cause: err });
  }
}
