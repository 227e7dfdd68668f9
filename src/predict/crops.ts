/**
 * `ferkit predict --save-crops <dir>`: each face's aligned input (what the model classified) as a
 * PNG of the model's input size, named by file, frame and face.
 */
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";
import type { AlignedFace } from "../faces/index.js";
import { ConfigError } from "../train/config.js";

/**
 * Writes aligned face crops into one folder. Names: `<name>_face<i>.png` for a photo (`i` the
 * face's index in the photo's result, 0 = the first) and `<name>_frame<nnnnnn>_face<id>.png` for
 * a video (the frame index, 6 digits, and the face's track id), where `<name>` is the input's base
 * name without extension (`-1`, `-2`... appended for a second input of the same base name).
 * Existing files of those names are replaced.
 */
export class CropWriter {
  /** The folder, as given. */
  readonly dir: string;
  private readonly names = new Map<string, string>();
  private readonly used = new Set<string>();

  /**
   * Creates the folder if needed and checks that a file can be written in it.
   * @throws ConfigError naming the folder when it is a file, cannot be created, or is not writable
   */
  constructor(dir: string) {
    this.dir = dir;
    const probe = path.join(dir, `.ferkit-write-test-${process.pid}`);
    try {
      const st = statSync(dir, { throwIfNoEntry: false });
      if (st !== undefined && !st.isDirectory()) throw new ConfigError(`cannot save crops in ${dir}: it is a file, not a folder`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(probe, "");
      rmSync(probe, { force: true });
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      const e = err as NodeJS.ErrnoException;
      throw new ConfigError(
        `cannot save crops in ${dir}: ${e.code === "ENOTDIR" ? "a part of the path is a file" : (e.code ?? e.message)}`,
      );
    }
  }

  /**
   * The PNG path of a face (the same input keeps its name across calls).
   * @param file the input photo or video
   * @param face the face's index in a photo's result, or its track id in a video
   * @param frame the video frame index; absent for a photo
   */
  pathFor(file: string, face: number, frame?: number): string {
    let name = this.names.get(file);
    if (name === undefined) {
      const base = path.parse(file).name || "image";
      name = base;
      for (let k = 1; this.used.has(name); k++) name = `${base}-${k}`;
      this.used.add(name);
      this.names.set(file, name);
    }
    const at = frame === undefined ? "" : `_frame${String(frame).padStart(6, "0")}`;
    return path.join(this.dir, `${name}${at}_face${face}.png`);
  }

  /**
   * Writes one aligned crop as a PNG (`size x size`, gray or RGB as the model takes it).
   * @returns the file written
   * @throws Error naming the file when it cannot be written
   */
  async write(crop: Pick<AlignedFace, "pixels" | "size" | "channels">, file: string, face: number, frame?: number): Promise<string> {
    const out = this.pathFor(file, face, frame);
    try {
      const img = sharp(crop.pixels, { raw: { width: crop.size, height: crop.size, channels: crop.channels } });
      // A one-channel crop stays a gray PNG (sharp would otherwise write it as RGB).
      await (crop.channels === 1 ? img.toColourspace("b-w") : img).png().toFile(out);
    } catch (err) {
      throw new Error(`cannot write the crop ${out}: ${(err as Error).message}`, { cause: err });
    }
    return out;
  }
}
