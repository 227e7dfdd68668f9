/**
 * Opens a dataset or pool from a path and a format name, the way the CLI and the
 * configs name data: `fer2013`, `imagefolder`, `csv`, `abaw`, `pool`, or `auto`.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { readAbaw } from "./abaw.js";
import { DataError, type LabeledDataset, type UnlabeledPool } from "./dataset.js";
import { readFer2013Dataset, type Fer2013Options } from "./fer2013.js";
import { readCsvList, readImageFolder, readImagePool } from "./folders.js";

/** The data formats ferkit reads. */
export const DATA_FORMATS = ["auto", "fer2013", "imagefolder", "csv", "abaw", "pool"] as const;
/** One of {@link DATA_FORMATS}. */
export type DataFormat = (typeof DATA_FORMATS)[number];

/** Where and how to read data. */
export interface DataSpec {
  /** A folder (FER2013, ImageFolder, ABAW annotations, pool) or a file (CSV). Several folders for a pool. */
  paths: string[];
  format: DataFormat;
  /** ABAW only: the `cropped_aligned/` folder. */
  frames?: string;
  /** FER2013 only. */
  fer2013?: Omit<Fer2013Options, "warn">;
  warn?: (message: string) => void;
}

/** The format `auto` resolves to for `p`: fer2013 (a labels.csv beside FER2013Train/), csv (a file), else imagefolder. */
export function detectFormat(p: string, frames?: string): Exclude<DataFormat, "auto"> {
  if (!existsSync(p)) throw new DataError(`data: ${p} does not exist`);
  if (frames !== undefined) return "abaw";
  if (statSync(p).isFile()) return "csv";
  if (existsSync(path.join(p, "labels.csv")) && existsSync(path.join(p, "FER2013Train"))) return "fer2013";
  return "imagefolder";
}

/**
 * Reads labeled data or an unlabeled pool as `spec` says.
 * @throws DataError (a one-line user-facing message) when the layout is not the one named
 */
export function openData(spec: DataSpec): { kind: "labeled"; dataset: LabeledDataset } | { kind: "pool"; pool: UnlabeledPool } {
  if (spec.paths.length === 0) throw new DataError("data: no path given");
  const first = spec.paths[0];
  const format = spec.format === "auto" ? detectFormat(first, spec.frames) : spec.format;
  if (format !== "pool" && spec.paths.length > 1) throw new DataError(`data: format ${format} takes one path, got ${spec.paths.length}`);
  switch (format) {
    case "fer2013":
      return { kind: "labeled", dataset: readFer2013Dataset(first, { ...spec.fer2013, warn: spec.warn }) };
    case "imagefolder":
      return { kind: "labeled", dataset: readImageFolder(first, { warn: spec.warn }) };
    case "csv":
      return { kind: "labeled", dataset: readCsvList(first, { warn: spec.warn }) };
    case "abaw":
      if (spec.frames === undefined) throw new DataError("data: the abaw format needs the cropped_aligned/ folder (--frames)");
      return { kind: "labeled", dataset: readAbaw({ annotations: first, frames: spec.frames, warn: spec.warn }) };
    case "pool":
      return { kind: "pool", pool: readImagePool(spec.paths, { warn: spec.warn }) };
  }
}
