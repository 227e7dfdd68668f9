/**
 * Readers for user data in common layouts: ImageFolder (one sub-folder per class), a CSV
 * of `path,label[,split]`, and unlabeled pools (any folder tree of images).
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parse } from "csv-parse/sync";
import {
  DataError,
  IMAGE_EXTENSIONS,
  SkipLog,
  type LabeledDataset,
  type LabeledSample,
  type UnlabeledPool,
  type UnlabeledSample,
} from "./dataset.js";
import { classIndex, labelSpaceFromNames, type LabelSpace } from "./labels.js";

function isImageName(file: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(file).toLowerCase());
}

function listDir(dir: string, what: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (err) {
    throw new DataError(`${what}: cannot read the folder ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

function subfolders(dir: string, what: string): string[] {
  return listDir(dir, what).filter((n) => !n.startsWith(".") && statSync(path.join(dir, n)).isDirectory());
}

/**
 * Every file under `dir` (recursively, sorted, hidden entries ignored): images are
 * returned, other files are recorded in `skipped` as "not_an_image".
 */
export function walkImages(dir: string, skipped: SkipLog, what = "pool"): string[] {
  const out: string[] = [];
  const visit = (d: string): void => {
    for (const name of listDir(d, what)) {
      if (name.startsWith(".")) continue;
      const full = path.join(d, name);
      let st;
      try {
        st = statSync(full);
      } catch {
        skipped.add("unreadable_path", full);
        continue;
      }
      if (st.isDirectory()) visit(full);
      else if (isImageName(name)) out.push(full);
      else skipped.add("not_an_image", full);
    }
  };
  visit(dir);
  return out;
}

const SPLIT_FOLDERS = ["train", "training", "val", "valid", "validation", "test"];

/**
 * ImageFolder as in torchvision: `root/<class>/<image>`, classes sorted by name. When
 * every sub-folder of `root` is a split name (train, val, test, ...), each one is read
 * as a split with the same classes: `root/<split>/<class>/<image>`; else the split is
 * "all".
 * @param space the label space to use (class folders must be its names); default: made
 *   from the folder names
 * @throws DataError when the folder is missing, has no class folders, or holds no image
 */
export function readImageFolder(root: string, o: { space?: LabelSpace; warn?: (m: string) => void } = {}): LabeledDataset {
  if (!existsSync(root)) throw new DataError(`ImageFolder: ${root} does not exist`);
  const skipped = new SkipLog(o.warn);
  const top = subfolders(root, "ImageFolder");
  const splitLayout = top.length > 0 && top.every((n) => SPLIT_FOLDERS.includes(n.toLowerCase()));
  const splitDirs = splitLayout ? top.map((s) => [s, path.join(root, s)] as const) : [["all", root] as const];
  const classNames = o.space?.classes ?? [...new Set(splitDirs.flatMap(([, d]) => subfolders(d, "ImageFolder")))].sort();
  if (classNames.length === 0) throw new DataError(`ImageFolder: ${root} has no class sub-folders (expected ${root}/<class>/<image>)`);
  const space = o.space ?? labelSpaceFromNames(path.basename(root), classNames);
  const samples: LabeledSample[] = [];
  for (const [split, dir] of splitDirs) {
    for (const cls of subfolders(dir, "ImageFolder")) {
      let label: number;
      try {
        label = classIndex(space, cls);
      } catch {
        skipped.add("unknown_class_folder", path.join(dir, cls));
        continue;
      }
      const files = walkImages(path.join(dir, cls), skipped, "ImageFolder");
      if (files.length === 0) skipped.add("empty_class_folder", path.join(dir, cls));
      for (const f of files) samples.push({ path: f, label, split });
    }
  }
  if (samples.length === 0) throw new DataError(`ImageFolder: no images under ${root}`);
  return { name: path.basename(root), space, samples, skipped };
}

/**
 * A CSV with a header and columns `path,label` and optionally `split`. Paths are
 * relative to the CSV's folder unless absolute; labels are class names or integer
 * indices. Rows with an unknown label or a missing file are skipped and counted.
 * @param space label space; default: made from the label names in the file (sorted)
 * @throws DataError when the file is unreadable, lacks the columns, or no row is usable
 */
export function readCsvList(file: string, o: { space?: LabelSpace; warn?: (m: string) => void } = {}): LabeledDataset {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new DataError(`CSV: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  let rows: Record<string, string>[];
  try {
    rows = parse(text, { columns: true, skip_empty_lines: true, trim: true }) as Record<string, string>[];
  } catch (err) {
    throw new DataError(`CSV: ${file} is not valid CSV: ${(err as Error).message}`, { cause: err });
  }
  if (rows.length === 0 || !("path" in rows[0]) || !("label" in rows[0]))
    throw new DataError(`CSV: ${file} needs a header with the columns path,label[,split]`);
  const base = path.dirname(file);
  const names = [...new Set(rows.map((r) => r.label).filter((l) => !/^\d+$/.test(l)))].sort();
  const space = o.space ?? labelSpaceFromNames(path.basename(file, path.extname(file)), names);
  const skipped = new SkipLog(o.warn);
  const samples: LabeledSample[] = [];
  rows.forEach((r, i) => {
    const where = `${file} line ${i + 2}`;
    let label: number;
    if (/^\d+$/.test(r.label) && Number(r.label) < space.classes.length) label = Number(r.label);
    else {
      try {
        label = classIndex(space, r.label);
      } catch {
        skipped.add("unknown_label", where, `label '${r.label}'`);
        return;
      }
    }
    const p = path.resolve(base, r.path);
    if (!existsSync(p)) {
      skipped.add("missing_file", where, p);
      return;
    }
    samples.push({ path: p, label, split: r.split || "all" });
  });
  if (samples.length === 0) throw new DataError(`CSV: no usable rows in ${file}`);
  return { name: path.basename(file, path.extname(file)), space, samples, skipped };
}

/**
 * An unlabeled pool: every image under each of `roots` (folder trees of jpg, png, pgm,
 * tif, webp, ...), tagged with its root's folder name as `source`.
 * @throws DataError when a root is missing or no image is found at all
 */
export function readImagePool(roots: readonly string[], o: { name?: string; warn?: (m: string) => void } = {}): UnlabeledPool {
  const skipped = new SkipLog(o.warn);
  const samples: UnlabeledSample[] = [];
  for (const root of roots) {
    if (!existsSync(root)) throw new DataError(`pool: ${root} does not exist`);
    const source = path.basename(root);
    for (const f of walkImages(root, skipped)) samples.push({ path: f, source });
  }
  if (samples.length === 0) throw new DataError(`pool: no images under ${roots.join(", ")}`);
  return { name: o.name ?? roots.map((r) => path.basename(r)).join("+"), samples, skipped };
}
