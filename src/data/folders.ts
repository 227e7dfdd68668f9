/**
 * Readers for user data in common layouts: ImageFolder (one sub-folder per class), a CSV
 * of `path,label[,split]`, and unlabeled pools (any folder tree of images).
 *
 * Symbolic links: a link to a file is followed (even out of the root); a link to a folder is
 * followed once: every folder is recognised by its real path, so a folder reached again (a
 * second link to it) is skipped as `duplicate_folder`, a link to the folder it is in or to one
 * of its ancestors (`class/loop -> .`, `class/up -> ../..`) as `link_loop`, and a second link
 * to a file already listed as `duplicate_file`; a link whose target does not exist is
 * `broken_link`. Folders are walked in sorted name order, so the first path to a folder wins.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync, type Dirent, type Stats } from "node:fs";
import path from "node:path";
import { parseCsvRecords } from "./csv.js";
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

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/**
 * What one reader call has read, by real path (symbolic links resolved), shared by all its
 * roots and class folders so that nothing is read twice: the folders walked, the image files
 * listed, and the folders claimed as roots of their own (a class folder, a pool root), which
 * another walk passing by skips as `duplicate_folder`.
 */
export class VisitedPaths {
  /** Folders walked. */
  readonly folders = new Set<string>();
  /** Image files listed. */
  readonly files = new Set<string>();
  /** Folders that are walked on their own (roots): another walk skips them. */
  readonly claimed = new Set<string>();

  /**
   * True when the folder at real path `real`, met inside the folder at real path `realParent`,
   * is that folder, one of its ancestors, or an ancestor of a claimed folder: walking it would
   * go round in a loop (or read the roots again from above).
   */
  isLoop(real: string, realParent: string): boolean {
    if (isAncestorOrSelf(real, realParent)) return true;
    for (const c of this.claimed) if (real !== c && isAncestorOrSelf(real, c)) return true;
    return false;
  }

  /**
   * Why the folder at real path `real`, met inside the folder at real path `realParent`, is
   * not to be walked: `link_loop` (see {@link isLoop}; for a plain folder only when it is the
   * parent itself or an ancestor), `duplicate_folder` when it was walked already or is claimed;
   * else null.
   */
  folderSkip(real: string, realParent: string, isLink = true): "link_loop" | "duplicate_folder" | null {
    if (isAncestorOrSelf(real, realParent)) return "link_loop";
    if (this.folders.has(real) || this.claimed.has(real)) return "duplicate_folder";
    // A plain sub-folder above a claimed root (roots A and A/b/c: A/b) is walked; only the
    // claimed folder inside it is skipped. A link there would read the roots again from above.
    return isLink && this.isLoop(real, realParent) ? "link_loop" : null;
  }
}

/** True when path `a` is `b` or one of its ancestors (both absolute, normalised). */
function isAncestorOrSelf(a: string, b: string): boolean {
  const rel = path.relative(a, b);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** The real path of a folder the caller was given. @throws DataError when it cannot be resolved */
function realFolder(dir: string, what: string): string {
  try {
    return realpathSync(dir);
  } catch (err) {
    throw new DataError(`${what}: cannot read the folder ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/** `stat` (following links) of an entry, or the skip reason when it fails. */
function statEntry(full: string, isLink: boolean): Stats | "broken_link" | "missing_file" | "unreadable_path" {
  try {
    return statSync(full);
  } catch (err) {
    const code = errorCode(err);
    if (isLink && (code === "ENOENT" || code === "ELOOP")) return "broken_link";
    return code === "ENOENT" ? "missing_file" : "unreadable_path";
  }
}

function listDir(dir: string, what: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (err) {
    throw new DataError(`${what}: cannot read the folder ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The visible sub-folders of `dir` (sorted), links to folders included; a broken link or a
 * link to `dir` or an ancestor is recorded in `skipped` and left out; files are left to the walk.
 */
function subfolders(dir: string, what: string, skipped: SkipLog, visited: VisitedPaths): string[] {
  const out: string[] = [];
  const realDir = realFolder(dir, what);
  for (const e of listDir(dir, what)) {
    if (e.name.startsWith(".")) continue;
    if (e.isDirectory()) out.push(e.name);
    else if (e.isSymbolicLink()) {
      const full = path.join(dir, e.name);
      const st = statEntry(full, true);
      if (typeof st === "string") skipped.add(st, full);
      else if (st.isDirectory()) {
        let real: string;
        try {
          real = realpathSync(full);
        } catch {
          skipped.add("broken_link", full);
          continue;
        }
        if (visited.isLoop(real, realDir)) skipped.add("link_loop", full, `-> ${real}`);
        else out.push(e.name);
      }
    }
  }
  return out;
}

/**
 * Every image file under `dir` (recursively, sorted, hidden entries ignored), following links as
 * the module docstring says. Other entries are recorded in `skipped`: `not_an_image` (a file
 * without an image extension), `empty_file` (0 bytes), `not_a_file` (a pipe, socket or device
 * with an image name), `broken_link`, `link_loop`, `duplicate_folder`, `duplicate_file`,
 * `missing_file` (gone between the listing and its `stat`), `unreadable_path` (its `stat`
 * failed otherwise) and `unreadable_folder` (a sub-folder that cannot be listed).
 * @param visited real paths already read by the same reader (default: a fresh set); `dir` is
 *   skipped as `duplicate_folder` when it was walked already
 * @throws DataError when `dir` itself cannot be listed
 */
export function walkImages(dir: string, skipped: SkipLog, what = "pool", visited = new VisitedPaths()): string[] {
  const out: string[] = [];
  const visit = (d: string, realD: string, top: boolean): void => {
    visited.folders.add(realD);
    let entries: Dirent[];
    try {
      entries = listDir(d, what);
    } catch (err) {
      if (top) throw err;
      skipped.add("unreadable_folder", d, errorCode((err as DataError).cause));
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const full = path.join(d, e.name);
      const isLink = e.isSymbolicLink();
      const st = statEntry(full, isLink);
      if (typeof st === "string") {
        skipped.add(st, full);
        continue;
      }
      // Real paths: a plain entry's follows from its folder's, a link's is resolved.
      let real = path.join(realD, e.name);
      if (isLink) {
        try {
          real = realpathSync(full);
        } catch {
          skipped.add("broken_link", full);
          continue;
        }
      }
      if (st.isDirectory()) {
        const skip = visited.folderSkip(real, realD, isLink);
        if (skip === null) visit(full, real, false);
        else skipped.add(skip, full, `-> ${real}`);
      } else if (!isImageName(e.name)) skipped.add("not_an_image", full);
      else if (!st.isFile()) skipped.add("not_a_file", full);
      else if (st.size === 0) skipped.add("empty_file", full);
      else if (visited.files.has(real)) skipped.add("duplicate_file", full, `-> ${real}`);
      else {
        visited.files.add(real);
        out.push(full);
      }
    }
  };
  const realDir = realFolder(dir, what);
  if (visited.folders.has(realDir)) {
    skipped.add("duplicate_folder", dir, `-> ${realDir}`);
    return out;
  }
  visit(dir, realDir, true);
  return out;
}

const SPLIT_FOLDERS = ["train", "training", "val", "valid", "validation", "test"];

/**
 * ImageFolder as in torchvision: `root/<class>/<image>`, classes sorted by name. When
 * every sub-folder of `root` is a split name (train, val, test, ...), each one is read
 * as a split with the same classes: `root/<split>/<class>/<image>`; else the split is
 * "all". Images are found by {@link walkImages} (links as the module docstring says: a class
 * folder that is a link to another class folder is `duplicate_folder`, a link from inside one
 * class folder into another class folder too, so no image gets two labels). Class folders
 * with no image left are counted as `empty_class_folder`, folders outside the label space as
 * `unknown_class_folder`.
 * @param space the label space to use (class folders must be its names); default: made
 *   from the folder names
 * @throws DataError when the folder is missing or unreadable, has no class folders, or holds no image
 */
export function readImageFolder(root: string, o: { space?: LabelSpace; warn?: (m: string) => void } = {}): LabeledDataset {
  if (!existsSync(root)) throw new DataError(`ImageFolder: ${root} does not exist`);
  const skipped = new SkipLog(o.warn);
  const visited = new VisitedPaths();
  visited.claimed.add(realFolder(root, "ImageFolder"));
  const top = subfolders(root, "ImageFolder", skipped, visited);
  const splitLayout = top.length > 0 && top.every((n) => SPLIT_FOLDERS.includes(n.toLowerCase()));
  const splitDirs = splitLayout ? top.map((s) => [s, path.join(root, s)] as const) : [["all", root] as const];
  const classDirs = splitDirs.map(([split, d]) => [split, d, splitLayout ? subfolders(d, "ImageFolder", skipped, visited) : top] as const);
  const classNames = o.space?.classes ?? [...new Set(classDirs.flatMap(([, , c]) => c))].sort();
  if (classNames.length === 0) throw new DataError(`ImageFolder: ${root} has no class sub-folders (expected ${root}/<class>/<image>)`);
  const space = o.space ?? labelSpaceFromNames(path.basename(root), classNames);
  // Every class folder is claimed first: a link into one from elsewhere is not walked twice.
  const known = classDirs.flatMap(([split, d, classes]) =>
    classes.map((cls) => ({ split, cls, dir: path.join(d, cls), real: realFolder(path.join(d, cls), "ImageFolder") })),
  );
  const claimedBy = new Map<string, string>();
  for (const k of known) if (!claimedBy.has(k.real)) claimedBy.set(k.real, k.dir);
  for (const k of known) visited.claimed.add(k.real);
  const samples: LabeledSample[] = [];
  for (const { split, cls, dir, real } of known) {
    let label: number;
    try {
      label = classIndex(space, cls);
    } catch {
      skipped.add("unknown_class_folder", dir);
      continue;
    }
    if (claimedBy.get(real) !== dir) {
      skipped.add("duplicate_folder", dir, `same folder as ${claimedBy.get(real)}`);
      continue;
    }
    const files = walkImages(dir, skipped, "ImageFolder", visited);
    if (files.length === 0) skipped.add("empty_class_folder", dir);
    for (const f of files) samples.push({ path: f, label, split });
  }
  if (samples.length === 0) throw new DataError(`ImageFolder: no images under ${root}`);
  return { name: path.basename(root), space, samples, skipped };
}

/**
 * A CSV with a header and columns `path,label` and optionally `split` (any order, other
 * columns ignored). Paths are relative to the CSV's folder unless absolute; labels are class
 * names or integer indices. Read with csv-parse: a byte-order mark is dropped, CRLF or LF line
 * ends, quoted fields (with commas or line breaks inside) and surrounding spaces are fine.
 * Bad rows are skipped, counted and named by their line (the first few in a warning):
 * `wrong_column_count` (more or fewer fields than the header), `blank_line`, `unknown_label`,
 * `missing_file`, `not_a_file` (a folder), `empty_file` (0 bytes).
 * @param space label space; default: made from the label names in the file (sorted)
 * @throws DataError when the file is unreadable, is not CSV (e.g. an unclosed quote), lacks
 *   the columns, or no row is usable
 */
export function readCsvList(file: string, o: { space?: LabelSpace; warn?: (m: string) => void } = {}): LabeledDataset {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new DataError(`CSV: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const skipped = new SkipLog(o.warn);
  const records = parseCsvRecords(text, file, "CSV", skipped);
  const header = records[0]?.fields ?? [];
  const col = (name: string): number => header.indexOf(name);
  if (col("path") < 0 || col("label") < 0) throw new DataError(`CSV: ${file} needs a header with the columns path,label[,split]`);
  const rows = records.slice(1).map((r) => ({
    line: r.line,
    path: r.fields[col("path")],
    label: r.fields[col("label")],
    split: col("split") >= 0 ? r.fields[col("split")] : "",
  }));
  const base = path.dirname(file);
  const names = [...new Set(rows.map((r) => r.label).filter((l) => !/^\d+$/.test(l)))].sort();
  const space = o.space ?? labelSpaceFromNames(path.basename(file, path.extname(file)), names);
  const samples: LabeledSample[] = [];
  for (const r of rows) {
    const where = `${file} line ${r.line}`;
    let label: number;
    if (/^\d+$/.test(r.label) && Number(r.label) < space.classes.length) label = Number(r.label);
    else {
      try {
        label = classIndex(space, r.label);
      } catch {
        skipped.add("unknown_label", where, `label '${r.label}'`);
        continue;
      }
    }
    const p = path.resolve(base, r.path);
    const st = statSync(p, { throwIfNoEntry: false });
    if (st === undefined) skipped.add("missing_file", where, p);
    else if (!st.isFile()) skipped.add("not_a_file", where, p);
    else if (st.size === 0) skipped.add("empty_file", where, p);
    else samples.push({ path: p, label, split: r.split || "all" });
  }
  if (samples.length === 0) throw new DataError(`CSV: no usable rows in ${file}`);
  return { name: path.basename(file, path.extname(file)), space, samples, skipped };
}

/**
 * An unlabeled pool: every image under each of `roots` (folder trees of jpg, png, pgm,
 * tif, webp, bmp, ...), tagged with its root's folder name as `source`. Found by
 * {@link walkImages} with one set of visited paths for all roots: a root given twice, or a
 * root inside another, is read once (as its own source).
 * @throws DataError when a root is missing or unreadable, or no image is found at all
 */
export function readImagePool(roots: readonly string[], o: { name?: string; warn?: (m: string) => void } = {}): UnlabeledPool {
  const skipped = new SkipLog(o.warn);
  const samples: UnlabeledSample[] = [];
  const visited = new VisitedPaths();
  for (const root of roots) if (!existsSync(root)) throw new DataError(`pool: ${root} does not exist`);
  for (const root of roots) visited.claimed.add(realFolder(root, "pool"));
  for (const root of roots) {
    const source = path.basename(root);
    for (const f of walkImages(root, skipped, "pool", visited)) samples.push({ path: f, source });
  }
  if (samples.length === 0) throw new DataError(`pool: no images under ${roots.join(", ")}`);
  return { name: o.name ?? roots.map((r) => path.basename(r)).join("+"), samples, skipped };
}
