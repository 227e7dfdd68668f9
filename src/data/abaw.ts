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

/** The names in `dir`, or null when it cannot be listed (vanished, not a folder, no permission). */
function tryList(dir: string): string[] | null {
  try {
    return readdirSync(dir);
  } catch {
    return null;
  }
}

/**
 * Reads ABAW expression annotations. Frames labelled -1 and frames without an image (no
 * face was found there) are skipped and counted; a file with a wrong header, a line
 * that is not an integer in -1..7, or fewer lines than the video has frames is skipped
 * whole, with a counted warning naming it (`bad_header`, `malformed_line`,
 * `annotation_shorter_than_video`), and so is one that cannot be read (`unreadable_file`) or
 * whose frames folder is missing or unreadable (`missing_video_frames`). A byte-order mark and
 * CRLF line ends are fine. Frame images are not opened here: a bad one is skipped when decoded.
 * @throws DataError when the folders are missing or nothing usable remains
 */
export function readAbaw(o: AbawOptions): LabeledDataset {
  if (!existsSync(o.annotations)) throw new DataError(`ABAW: annotation folder ${o.annotations} does not exist`);
  if (!existsSync(o.frames)) throw new DataError(`ABAW: frames folder ${o.frames} does not exist`);
  const skipped = new SkipLog(o.warn);
  const top = tryList(o.annotations);
  if (top === null) throw new DataError(`ABAW: cannot read the annotation folder ${o.annotations}`);
  const splitDirs = top.sort().filter((n) => statSync(path.join(o.annotations, n), { throwIfNoEntry: false })?.isDirectory() === true);
  const sources: [string, string][] =
    splitDirs.length > 0 ? splitDirs.map((s) => [s, path.join(o.annotations, s)]) : [["all", o.annotations]];
  const samples: LabeledSample[] = [];
  for (const [split, dir] of sources) {
    const names = tryList(dir);
    if (names === null) {
      skipped.add("unreadable_folder", dir);
      continue;
    }
    for (const name of names.filter((n) => n.endsWith(".txt")).sort()) {
      const file = path.join(dir, name);
      const video = name.slice(0, -4);
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch (err) {
        skipped.add("unreadable_file", file, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
        continue;
      }
      const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
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
      const frameFiles = tryList(videoDir);
      if (frameFiles === null) {
        skipped.add("missing_video_frames", file, videoDir);
        continue;
      }
      const frameNumbers = new Set(frameFiles.filter((f) => /^\d+\.jpg$/.test(f)).map((f) => Number(f.slice(0, -4))));
      let lastFrame = 0;
      for (const f of frameNumbers) if (f > lastFrame) lastFrame = f;
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
