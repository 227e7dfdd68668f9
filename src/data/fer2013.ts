/**
 * FER2013 from the layout of `shared/data/fer2013`: a `labels.csv` with one row per
 * row of the original `fer2013.csv` (columns `row_index, usage, image,
 * fer2013_emotion, fer2013_label_source, ...` and the FER+ vote counts) and the 48x48
 * grayscale PNGs it points to.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "csv-parse/sync";

/** The official splits of FER2013. */
export type Fer2013Split = "Training" | "PublicTest" | "PrivateTest";

/** One labelled FER2013 image. */
export interface Fer2013Record {
  /** 0-based row of the original fer2013.csv. */
  rowIndex: number;
  split: Fer2013Split;
  /** Absolute path of the 48x48 grayscale PNG. */
  imagePath: string;
  /** FER2013 label index 0..6 (angry, disgust, fear, happy, sad, surprise, neutral). */
  label: number;
}

/** What {@link readFer2013} left out, and why. */
export interface Fer2013Skipped {
  /** Rows without an image in this copy (FER+ marked them "not a face"). */
  noImage: number;
  /** Rows whose identical copies carry different labels (`fer2013_label_source = ambiguous`). */
  ambiguous: number;
}

const SPLITS: readonly string[] = ["Training", "PublicTest", "PrivateTest"];

/**
 * Reads `labels.csv` under `root` (the `fer2013/` folder) and returns the labelled rows
 * of the requested splits, in file order. Rows without an image or without an
 * unambiguous label are skipped and counted.
 * @throws Error naming the file when `labels.csv` is missing or lacks a required column
 */
export function readFer2013(
  root: string,
  splits: readonly Fer2013Split[] = ["Training", "PublicTest", "PrivateTest"],
): {
  records: Fer2013Record[];
  skipped: Fer2013Skipped;
} {
  const file = path.join(root, "labels.csv");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`FER2013: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const rows = parse(text, { columns: true, skip_empty_lines: true }) as Record<string, string>[];
  const required = ["row_index", "usage", "image", "fer2013_emotion"];
  const missing = required.filter((c) => rows.length > 0 && !(c in rows[0]));
  if (missing.length > 0) throw new Error(`FER2013: ${file} lacks the column(s) ${missing.join(", ")}`);
  const skipped: Fer2013Skipped = { noImage: 0, ambiguous: 0 };
  const records: Fer2013Record[] = [];
  for (const r of rows) {
    if (!SPLITS.includes(r.usage))
      throw new Error(`FER2013: ${file} row ${r.row_index} has usage '${r.usage}' (allowed: ${SPLITS.join(", ")})`);
    if (!splits.includes(r.usage as Fer2013Split)) continue;
    if (r.image === "") {
      skipped.noImage++;
      continue;
    }
    if (r.fer2013_emotion === "") {
      skipped.ambiguous++;
      continue;
    }
    records.push({
      rowIndex: Number(r.row_index),
      split: r.usage as Fer2013Split,
      imagePath: path.join(root, r.image),
      label: Number(r.fer2013_emotion),
    });
  }
  return { records, skipped };
}
