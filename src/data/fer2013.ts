/**
 * FER2013 from the layout of `shared/data/fer2013`: a `labels.csv` with one row per
 * row of the original `fer2013.csv` (columns `row_index, usage, image,
 * fer2013_emotion, fer2013_label_source, ...` and the 10 FER+ vote counts), the 48x48
 * grayscale PNGs it points to, and `duplicate_groups.csv` (columns `image,
 * exact_duplicate_group, near_duplicate_cluster`).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { csvRows, parseCsvRecords } from "./csv.js";
import { DataError, SkipLog, type LabeledDataset, type LabeledSample } from "./dataset.js";
import { FER2013, FERPLUS } from "./labels.js";

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
  /**
   * Malformed rows: more or fewer fields than the header, a blank line, a usage that is not a
   * FER2013 split, or a label outside 0..6 (0 in the distributed file).
   */
  malformed: number;
}

const SPLITS: readonly string[] = ["Training", "PublicTest", "PrivateTest"];
const VOTE_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"];

/**
 * The rows of a FER2013 CSV file as objects, with their line numbers. Rows with more or fewer
 * fields than the header, and blank lines, are skipped and counted in `skipped`
 * (`wrong_column_count`, `blank_line`); a byte-order mark, CRLF and quoted fields are fine.
 * @throws DataError naming the file when it is unreadable, not CSV, or lacks a required column
 */
function readCsv(file: string, required: readonly string[], skipped: SkipLog): { row: Record<string, string>; line: number }[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new DataError(`FER2013: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const records = parseCsvRecords(text, file, "FER2013", skipped);
  const header = records[0]?.fields ?? [];
  const missing = required.filter((c) => !header.includes(c));
  if (records.length < 2 || missing.length > 0) {
    throw new DataError(`FER2013: ${file} is not a FER2013 labels file (missing column(s): ${missing.join(", ") || "all rows"})`);
  }
  return csvRows(records);
}

/**
 * Reads `labels.csv` under `root` (the `fer2013/` folder) and returns the labelled rows
 * of the requested splits, in file order, with FER2013's original labels. Rows without
 * an image or without an unambiguous label are skipped and counted, and so are malformed
 * rows (see {@link Fer2013Skipped}; each named in a `warn` line, the first few of a kind).
 * @throws DataError naming the file when `labels.csv` is missing, is not CSV, or lacks a required column
 */
export function readFer2013(
  root: string,
  splits: readonly Fer2013Split[] = ["Training", "PublicTest", "PrivateTest"],
  warn?: (message: string) => void,
): { records: Fer2013Record[]; skipped: Fer2013Skipped } {
  const file = path.join(root, "labels.csv");
  const log = new SkipLog(warn);
  const rows = readCsv(file, ["row_index", "usage", "image", "fer2013_emotion"], log);
  const skipped: Fer2013Skipped = { noImage: 0, ambiguous: 0, malformed: 0 };
  const records: Fer2013Record[] = [];
  for (const { row: r, line } of rows) {
    if (!SPLITS.includes(r.usage)) {
      log.add("invalid_split", `${file} line ${line}`, `usage '${r.usage}' (allowed: ${SPLITS.join(", ")})`);
      continue;
    }
    if (!splits.includes(r.usage as Fer2013Split)) continue;
    if (r.image === "") {
      skipped.noImage++;
      continue;
    }
    if (r.fer2013_emotion === "") {
      skipped.ambiguous++;
      continue;
    }
    const label = Number(r.fer2013_emotion);
    if (!Number.isInteger(label) || label < 0 || label >= FER2013.classes.length) {
      log.add("invalid_label", `${file} line ${line}`, `fer2013_emotion '${r.fer2013_emotion}' (allowed: 0..6)`);
      continue;
    }
    records.push({ rowIndex: Number(r.row_index), split: r.usage as Fer2013Split, imagePath: path.join(root, r.image), label });
  }
  skipped.malformed = log.total;
  return { records, skipped };
}

/** Options of {@link readFer2013Dataset}. */
export interface Fer2013Options {
  /**
   * "fer2013": the original 7 labels (default). "ferplus": the FER+ majority vote over 8
   * emotions (Barsoum et al. 2016): a row is kept when one column has more than half
   * of the votes and it is an emotion (not `unknown` or `NF`).
   */
  labels?: "fer2013" | "ferplus";
  /**
   * Drop from Training the images that also appear in PublicTest or PrivateTest:
   * "exact" (pixel-identical groups), "near" (also near-duplicate clusters), or "none".
   */
  dedup?: "none" | "exact" | "near";
  /** Splits to read (default all three). */
  splits?: readonly Fer2013Split[];
  /** Receives one warning line per skipped file (the first few of each reason). */
  warn?: (message: string) => void;
}

/** The FER+ majority label index of a row, or the reason it has none. */
export function ferplusMajority(votes: readonly number[]): number | "ferplus_no_majority" | "ferplus_unknown" | "ferplus_not_face" {
  const total = votes.reduce((a, b) => a + b, 0);
  let best = 0;
  for (let i = 1; i < votes.length; i++) if (votes[i] > votes[best]) best = i;
  if (total === 0 || votes[best] * 2 <= total) return "ferplus_no_majority";
  if (VOTE_COLUMNS[best] === "unknown") return "ferplus_unknown";
  if (VOTE_COLUMNS[best] === "NF") return "ferplus_not_face";
  return best;
}

/** Training images whose duplicate group or cluster also holds a test-split image. */
function leakedTrainingImages(root: string, mode: "exact" | "near", splitOfImage: Map<string, string>, skipped: SkipLog): Set<string> {
  const rows = readCsv(path.join(root, "duplicate_groups.csv"), ["image", "exact_duplicate_group", "near_duplicate_cluster"], skipped).map(
    (r) => r.row,
  );
  const keys = (r: Record<string, string>): string[] => {
    const k = r.exact_duplicate_group !== "" ? [`e${r.exact_duplicate_group}`] : [];
    if (mode === "near" && r.near_duplicate_cluster !== "") k.push(`n${r.near_duplicate_cluster}`);
    return k;
  };
  const testGroups = new Set<string>();
  for (const r of rows) if (splitOfImage.get(r.image) !== "Training") for (const k of keys(r)) testGroups.add(k);
  const leaked = new Set<string>();
  for (const r of rows) if (splitOfImage.get(r.image) === "Training" && keys(r).some((k) => testGroups.has(k))) leaked.add(r.image);
  return leaked;
}

/**
 * FER2013 as a {@link LabeledDataset} with the splits Training / PublicTest /
 * PrivateTest. The 103 ambiguous rows are excluded with the original labels; with
 * FER+ labels every row with an image and a clear majority is used. Malformed rows are
 * skipped, counted and named by line: `wrong_column_count`, `blank_line`, `invalid_split`
 * (a usage that is not one of the three), `invalid_label` (not 0..6), `invalid_votes` (FER+
 * counts that are not non-negative integers). A byte-order mark, CRLF and quoted fields are
 * read as usual. Image files are not opened here: one that is missing or bad is skipped when
 * it is decoded (src/data/image.ts).
 * @throws DataError when the folder is not the FER2013 layout
 */
export function readFer2013Dataset(root: string, o: Fer2013Options = {}): LabeledDataset {
  const labels = o.labels ?? "fer2013";
  const splits = o.splits ?? ["Training", "PublicTest", "PrivateTest"];
  const file = path.join(root, "labels.csv");
  const skipped = new SkipLog(o.warn);
  const rows = readCsv(file, ["row_index", "usage", "image", "fer2013_emotion", ...(labels === "ferplus" ? VOTE_COLUMNS : [])], skipped);
  const splitOfImage = new Map(rows.filter(({ row: r }) => r.image !== "").map(({ row: r }) => [r.image, r.usage]));
  const leaked =
    (o.dedup ?? "none") === "none" ? new Set<string>() : leakedTrainingImages(root, o.dedup as "exact" | "near", splitOfImage, skipped);
  const samples: LabeledSample[] = [];
  for (const { row: r, line } of rows) {
    const where = `${file} row ${r.row_index}`;
    if (!SPLITS.includes(r.usage)) {
      skipped.add("invalid_split", `${file} line ${line}`, `usage '${r.usage}' (allowed: ${SPLITS.join(", ")})`);
      continue;
    }
    if (!splits.includes(r.usage as Fer2013Split)) continue;
    if (r.image === "") {
      skipped.add("no_image", where, "", true);
      continue;
    }
    let label: number;
    if (labels === "ferplus") {
      if (!VOTE_COLUMNS.every((c) => /^\d+$/.test(r[c]))) {
        skipped.add("invalid_votes", `${file} line ${line}`, `votes '${VOTE_COLUMNS.map((c) => r[c]).join(",")}'`);
        continue;
      }
      const m = ferplusMajority(VOTE_COLUMNS.map((c) => Number(r[c])));
      if (typeof m === "string") {
        skipped.add(m, where, "", true);
        continue;
      }
      label = m;
    } else {
      if (r.fer2013_emotion === "") {
        skipped.add("ambiguous_label", where, "", true);
        continue;
      }
      label = Number(r.fer2013_emotion);
      if (!Number.isInteger(label) || label < 0 || label >= FER2013.classes.length) {
        skipped.add("invalid_label", where, `fer2013_emotion '${r.fer2013_emotion}' (allowed: 0..6)`);
        continue;
      }
    }
    if (leaked.has(r.image)) {
      skipped.add("duplicate_of_test_image", r.image, "", true);
      continue;
    }
    samples.push({ path: path.join(root, r.image), label, split: r.usage });
  }
  if (samples.length === 0) throw new DataError(`FER2013: no usable rows in ${file} for splits ${splits.join(", ")}`);
  if (!existsSync(samples[0].path)) throw new DataError(`FER2013: ${samples[0].path} listed in ${file} does not exist`);
  return { name: labels === "ferplus" ? "fer2013-ferplus" : "fer2013", space: labels === "ferplus" ? FERPLUS : FER2013, samples, skipped };
}
