/**
 * ABAW expression-challenge submissions (Kollias et al., Aff-Wild2): one text file per video,
 * the header `Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other`, then one class
 * index per frame in that order.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ABAW, labelMapping, labelSpaceFromNames } from "../data/labels.js";

/** The header line of ABAW expression files. */
export const ABAW_HEADER = ABAW.classes.join(",");

/**
 * The lines of one video's submission file.
 * Frames without a prediction (-1: no face, or not classified) take the last prediction
 * before them; frames before the first prediction take the first one; a video without any
 * prediction is all Neutral (0), and the count of filled frames says so.
 * @param labels per frame, a class index of `classes` or -1
 * @param classes the model's class names (mapped to ABAW's by expression; unmatched ones -> Other)
 * @returns the text (header plus one line per frame) and how many frames were filled
 */
export function abawSubmission(labels: ArrayLike<number>, classes: readonly string[]): { text: string; filled: number } {
  const toAbaw = labelMapping(labelSpaceFromNames("model", classes), ABAW).map((k) => (k < 0 ? ABAW.classes.indexOf("Other") : k));
  const out = new Array<number>(labels.length);
  let last = -1;
  for (let i = 0; i < labels.length; i++)
    if (labels[i] >= 0) {
      last = toAbaw[labels[i]];
      break;
    }
  const first = last < 0 ? 0 : last;
  last = first;
  let filled = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] >= 0) last = toAbaw[labels[i]];
    else filled++;
    out[i] = last;
  }
  return { text: [ABAW_HEADER, ...out.map(String)].join("\n") + "\n", filled };
}

/**
 * Writes `<dir>/<video name without extension>.txt` atomically.
 * @returns the file written and the number of filled frames
 */
export function writeAbawSubmission(
  dir: string,
  videoFile: string,
  labels: ArrayLike<number>,
  classes: readonly string[],
): { file: string; filled: number } {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${path.parse(videoFile).name}.txt`);
  const { text, filled } = abawSubmission(labels, classes);
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
  return { file, filled };
}
