/**
 * Netpbm images (PGM `P5`/`P2`, PPM `P6`/`P3`), which sharp's prebuilt libvips does not
 * read; the ORL / AT&T face database is PGM. Format: netpbm.sourceforge.net/doc/pgm.html.
 */

/** A decoded Netpbm image: interleaved 8-bit pixels `[height, width, channels]`. */
export interface PnmImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** True when the file name has a Netpbm extension (.pgm, .ppm, .pnm). */
export function isPnmPath(file: string): boolean {
  return /\.(pgm|ppm|pnm)$/i.test(file);
}

/** The header of a PGM/PPM file: format, size in pixels, maximum sample value, where the pixels start. */
export interface PnmHeader {
  magic: "P2" | "P3" | "P5" | "P6";
  width: number;
  height: number;
  maxval: number;
  /** Byte offset of the first pixel sample. */
  dataStart: number;
}

/** Reads whitespace-separated header tokens (skipping `#` comments) from `pos` on. */
function tokenizer(buf: Uint8Array, start: number): { next: () => string; pos: () => number } {
  let pos = start;
  const space = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d);
  return {
    next: () => {
      for (;;) {
        while (pos < buf.length && space(buf[pos])) pos++;
        if (buf[pos] !== 0x23) break; // '#': a comment runs to the end of the line
        while (pos < buf.length && buf[pos] !== 0x0a) pos++;
      }
      const begin = pos;
      while (pos < buf.length && !space(buf[pos]) && pos - begin < 32) pos++;
      return String.fromCharCode(...buf.subarray(begin, pos));
    },
    pos: () => pos,
  };
}

/**
 * Parses the header of a PGM/PPM without touching the pixels (cheap: use it to check the size
 * before decoding).
 * @throws Error when the magic number or the header is malformed
 */
export function readPnmHeader(buf: Uint8Array): PnmHeader {
  const t = tokenizer(buf, 0);
  const magic = t.next();
  if (!["P2", "P3", "P5", "P6"].includes(magic)) throw new Error(`not a PGM/PPM file (magic '${magic.slice(0, 2)}')`);
  const width = Number(t.next());
  const height = Number(t.next());
  const maxval = Number(t.next());
  if (!(width > 0 && height > 0 && maxval > 0 && maxval < 65536) || !Number.isInteger(width * height * maxval)) {
    throw new Error(`malformed PGM/PPM header (${width}x${height}, maxval ${maxval})`);
  }
  // The single whitespace after maxval.
  return { magic: magic as PnmHeader["magic"], width, height, maxval, dataStart: t.pos() + 1 };
}

/**
 * Parses a binary or ASCII PGM/PPM; samples of any maxval (up to 16-bit) are rescaled to 0..255.
 * The file must hold every sample its header announces; that is checked before the pixel
 * memory is allocated.
 * @throws Error when the header is malformed or the pixel data is truncated
 */
export function parsePnm(buf: Uint8Array): PnmImage {
  const { magic, width, height, maxval, dataStart } = readPnmHeader(buf);
  const channels: 1 | 3 = magic === "P3" || magic === "P6" ? 3 : 1;
  const count = width * height * channels;
  const binary = magic === "P5" || magic === "P6";
  const bytesPer = maxval > 255 ? 2 : 1;
  // An ASCII sample takes at least 2 bytes (a digit and a separator), except the last.
  const need = binary ? count * bytesPer : 2 * count - 1;
  const have = Math.max(0, buf.length - dataStart);
  if (have < need) throw new Error(`truncated PGM/PPM data (${have} of ${need} bytes)`);
  const data = new Uint8Array(count);
  const scale = (v: number): number => (maxval === 255 ? v : Math.round((v * 255) / maxval));
  if (binary) {
    const p = dataStart;
    for (let i = 0; i < count; i++) data[i] = bytesPer === 1 ? scale(buf[p + i]) : scale((buf[p + 2 * i] << 8) | buf[p + 2 * i + 1]);
  } else {
    const t = tokenizer(buf, dataStart);
    for (let i = 0; i < count; i++) {
      const v = t.next();
      if (v === "") throw new Error(`truncated PGM/PPM data (${i} of ${count} samples)`);
      data[i] = scale(Number(v));
    }
  }
  return { data, width, height, channels };
}
