/**
 * Aff-Wild2 expression annotations as distributed for the ABAW challenge (Kollias et
 * al.): one text file per video whose first line is
 * `Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other`, then one integer per
 * video frame (0..7, or -1 for an invalid frame), and the cropped, aligned faces as
 * `cropped_aligned/<video>/<frame:05d>.jpg` with frames numbered from 1.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { DataError, SkipLog, type LabeledDataset, type LabeledSample } from "./dataset.js";
import { ABAW } from "./labels.js";

const HEADER = ABAW.classes.join(",");

/** Options of {@link readAbaw}. */
export interface AbawOptions {
  /** Folder of annotation files, or of split folders (e.g. `Train_Set/`, `Validation_Set/`) holding them. */
  annotations: string;
  /** The `cropped_aligned/` folder. */
  frames: string;
  warn?: (message: string) => void;
}

function listTxt(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith(".txt"))
    .sort();
}

/**
 * Reads ABAW expression annotations. Frames labelled -1 and frames without an image (no
 * face was found there) are skipped and counted; a file with a wrong header, a line
 * that is not an integer in -1..7, or fewer lines than the video has frames is skipped
 * whole, with a counted warning naming it.
 * @throws DataError when the folders are missing or nothing usable remains
 */
export function readAbaw(o: AbawOptions): LabeledDataset {
  if (!existsSync(o.annotations)) throw new DataError(`ABAW: annotation folder ${o.annotations} does not exist`);
  if (!existsSync(o.frames)) throw new DataError(`ABAW: frames folder ${o.frames} does not exist`);
  const skipped = new SkipLog(o.warn);
  const splitDirs = readdirSync(o.annotations)
    .sort()
    .filter((n) => statSync(path.join(o.annotations, n)).isDirectory());
  const sources: [string, string][] =
    splitDirs.length > 0 ? splitDirs.map((s) => [s, path.join(o.annotations, s)]) : [["all", o.annotations]];
  const samples: LabeledSample[] = [];
  for (const [split, dir] of sources) {
    for (const name of listTxt(dir)) {
      const file = path.join(dir, name);
      const video = name.slice(0, -4);
      const lines = readFileSync(file, "utf8").split(/\r?\n/);
      while (lines.length > 0 && lines[lines.length - 1].trim() === "") lines.pop();
      if (lines[0]?.trim() !== HEADER) {
        skipped.add("bad_header", file, `expected '${HEADER}'`);
        continue;
      }
      const labels = lines.slice(1).map((l) => l.trim());
      const bad = labels.findIndex((l) => !/^-?\d+$/.test(l) || Number(l) < -1 || Number(l) > 7);
      if (bad >= 0) {
        skipped.add("malformed_line", file, `line ${bad + 2}: '${labels[bad]}'`);
        continue;
      }
      const videoDir = path.join(o.frames, video);
      if (!existsSync(videoDir)) {
        skipped.add("missing_video_frames", file, videoDir);
        continue;
      }
      const frameNumbers = new Set(
        readdirSync(videoDir)
          .filter((f) => /^\d+\.jpg$/.test(f))
          .map((f) => Number(f.slice(0, -4))),
      );
      const lastFrame = Math.max(0, ...frameNumbers);
      if (lastFrame > labels.length) {
        skipped.add("annotation_shorter_than_video", file, `${labels.length} labels, frames up to ${lastFrame}`);
        continue;
      }
      labels.forEach((l, i) => {
        const frame = i + 1;
        const label = Number(l);
        if (label === -1) skipped.add("invalid_frame_label", `${file} frame ${frame}`);
        else if (!frameNumbers.has(frame)) skipped.add("no_face_frame", `${video}/${String(frame).padStart(5, "0")}.jpg`);
        else samples.push({ path: path.join(videoDir, `${String(frame).padStart(5, "0")}.jpg`), label, split, group: video, frame });
      });
    }
  }
  if (samples.length === 0) throw new DataError(`ABAW: no usable annotated frames in ${o.annotations}`);
  return { name: "abaw", space: ABAW, samples, skipped };
}
