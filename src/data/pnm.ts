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

/**
 * Parses a binary or ASCII PGM/PPM; samples of any maxval (up to 16-bit) are rescaled to 0..255.
 * @throws Error when the header is malformed or the pixel data is truncated
 */
export function parsePnm(buf: Uint8Array): PnmImage {
  let pos = 0;
  const token = (): string => {
    for (;;) {
      while (pos < buf.length && /\s/.test(String.fromCharCode(buf[pos]))) pos++;
      if (buf[pos] !== 0x23) break; // '#': a comment runs to the end of the line
      while (pos < buf.length && buf[pos] !== 0x0a) pos++;
    }
    const start = pos;
    while (pos < buf.length && !/\s/.test(String.fromCharCode(buf[pos]))) pos++;
    return String.fromCharCode(...buf.subarray(start, pos));
  };
  const magic = token();
  if (!["P2", "P3", "P5", "P6"].includes(magic)) throw new Error(`not a PGM/PPM file (magic '${magic.slice(0, 2)}')`);
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  if (!(width > 0 && height > 0 && maxval > 0 && maxval < 65536) || !Number.isInteger(width * height * maxval)) {
    throw new Error(`malformed PGM/PPM header (${width}x${height}, maxval ${maxval})`);
  }
  const channels: 1 | 3 = magic === "P3" || magic === "P6" ? 3 : 1;
  const count = width * height * channels;
  const data = new Uint8Array(count);
  const scale = (v: number): number => (maxval === 255 ? v : Math.round((v * 255) / maxval));
  if (magic === "P5" || magic === "P6") {
    pos++; // the single whitespace after maxval
    const bytesPer = maxval > 255 ? 2 : 1;
    if (buf.length - pos < count * bytesPer) throw new Error(`truncated PGM/PPM data (${buf.length - pos} of ${count * bytesPer} bytes)`);
    for (let i = 0; i < count; i++) data[i] = bytesPer === 1 ? scale(buf[pos + i]) : scale((buf[pos + 2 * i] << 8) | buf[pos + 2 * i + 1]);
  } else {
    for (let i = 0; i < count; i++) {
      const t = token();
      if (t === "") throw new Error(`truncated PGM/PPM data (${i} of ${count} samples)`);
      data[i] = scale(Number(t));
    }
  }
  return { data, width, height, channels };
}
