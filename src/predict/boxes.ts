/**
 * Face boxes from the user's own detector, for `ferkit predict --boxes <file>`: reading and
 * validating a box file (CSV or JSON) and matching its file names to the inputs.
 *
 * Formats (pixels of the original image, after EXIF rotation; for a video, of its frames):
 * - CSV with a header naming the columns `file,x,y,width,height` and optionally `frame`, in any
 *   order, one box per row (`x, y` the top-left corner);
 * - JSON, either a list of objects `[{"file", "x", "y", "width", "height", "frame"?}, ...]` or an
 *   object from file to its boxes `{"<file>": [[x, y, width, height], ...]}` (each box may also be an
 *   object `{"x", "y", "width", "height", "frame"?}`).
 *
 * `frame` (0-based, as the `frame` of predict's video rows) is for videos: a box with a frame
 * applies to that frame, a box without one to every frame of the video.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "csv-parse/sync";
import { z } from "zod";
import { DataError } from "../data/dataset.js";

/** `[x, y, width, height]` in pixels: top-left corner and size. */
export type Box = [number, number, number, number];

/** One box of a box file. */
export interface BoxEntry {
  /** The file as the box file names it. */
  file: string;
  /** `[x, y, width, height]` in pixels of the original image (or video frame). */
  box: Box;
  /** Video frame index (0-based); absent for a photo, or for a box that applies to every frame. */
  frame?: number;
  /** Where the box was given, for messages: `"boxes.csv line 4"`, `"boxes.json entry 3"`. */
  where: string;
}

/** The boxes of a box file. */
export interface BoxList {
  /** The box file's path. */
  source: string;
  entries: BoxEntry[];
}

/** The columns a CSV box file may have. */
export const BOX_COLUMNS = ["file", "x", "y", "width", "height", "frame"] as const;

const coordinate = (name: string) =>
  z.number({ error: `${name} must be a number` }).refine(Number.isFinite, { error: `${name} must be a finite number` });
const extent = (name: string) =>
  z
    .number({ error: `${name} must be a number` })
    .refine(Number.isFinite, { error: `${name} must be a finite number` })
    .refine((v) => v > 0, { error: `${name} must be > 0` });
const frameField = z
  .number({ error: "frame must be a number" })
  .int({ error: "frame must be a whole number" })
  .min(0, { error: "frame must be >= 0" });
const boxFields = {
  x: coordinate("x"),
  y: coordinate("y"),
  width: extent("width"),
  height: extent("height"),
  frame: frameField.optional(),
};
const fileField = z.string({ error: "file must be a string" }).min(1, { error: "file is empty" });
const BoxObject = z.strictObject(boxFields, { error: "a box must be [x, y, width, height] or an object {x, y, width, height, frame?}" });
const BoxArray = z.tuple([coordinate("x"), coordinate("y"), extent("width"), extent("height")], {
  error: "a box must be [x, y, width, height] or an object {x, y, width, height, frame?}",
});
const RowObject = z.strictObject(
  { file: fileField, ...boxFields },
  { error: "an entry must be an object {file, x, y, width, height, frame?}" },
);
const FileMap = z.record(z.string(), z.array(z.union([BoxArray, BoxObject]), { error: "must be a list of boxes" }));

/** The first problem of a zod result as `<where>: <message> (got <value>)`. */
function firstIssue(where: string, err: z.ZodError, value: unknown): DataError {
  const issue = err.issues[0];
  let got: unknown = value;
  for (const k of issue.path)
    got = got !== null && typeof got === "object" ? (got as Record<PropertyKey, unknown>)[k as PropertyKey] : undefined;
  const shown = got === undefined ? "" : ` (got ${JSON.stringify(got)})`;
  const union = issue.code === "invalid_union" ? "a box must be [x, y, width, height] or an object {x, y, width, height, frame?}" : null;
  const message =
    issue.code === "unrecognized_keys"
      ? `unknown field(s) ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`
      : (union ?? issue.message);
  return new DataError(`${where}: ${message}${issue.code === "unrecognized_keys" ? "" : shown}`);
}

/** A CSV number: digits with an optional sign, point and exponent (no empty fields, no "0x10"). */
const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/**
 * Parses the text of a CSV box file (see the module comment for the format).
 * @param source the file's name, used in messages
 * @throws DataError naming the line and field of the first problem: a missing or unknown column, a
 *   row with the wrong number of fields, a field that is not a number, a width or height <= 0, a
 *   frame that is not a whole number >= 0, an empty file name
 */
export function parseBoxCsv(text: string, source: string): BoxEntry[] {
  let records: { record: Record<string, string>; info: { lines: number } }[];
  try {
    records = parse(text, {
      columns: (header: string[]) => {
        const names = header.map((h) => h.trim());
        const unknown = names.filter((n) => !(BOX_COLUMNS as readonly string[]).includes(n));
        if (unknown.length > 0)
          throw new DataError(
            `${source} line 1: unknown column(s) ${unknown.map((n) => JSON.stringify(n)).join(", ")}; the header names the columns ${BOX_COLUMNS.join(", ")} (frame optional)`,
          );
        const missing = BOX_COLUMNS.filter((c) => c !== "frame" && !names.includes(c));
        if (missing.length > 0)
          throw new DataError(
            `${source} line 1: missing column(s) ${missing.join(", ")}; the header names the columns ${BOX_COLUMNS.join(", ")} (frame optional)`,
          );
        return names;
      },
      info: true,
      skip_empty_lines: true,
      trim: true,
      bom: true,
    }) as typeof records;
  } catch (err) {
    if (err instanceof DataError) throw err;
    throw new DataError(`${source}: ${(err as Error).message}`);
  }
  return records.map(({ record, info }) => {
    const where = `${source} line ${info.lines}`;
    const row: Record<string, unknown> = { file: record.file };
    for (const k of ["x", "y", "width", "height", "frame"] as const) {
      const v = record[k];
      if (v === undefined || (k === "frame" && v === "")) continue;
      if (!NUMBER.test(v)) throw new DataError(`${where}: ${k} must be a number (got ${JSON.stringify(v)})`);
      row[k] = Number(v);
    }
    const r = RowObject.safeParse(row);
    if (!r.success) throw firstIssue(where, r.error, row);
    return toEntry(r.data.file, r.data, where);
  });
}

function toEntry(file: string, b: { x: number; y: number; width: number; height: number; frame?: number }, where: string): BoxEntry {
  return { file, box: [b.x, b.y, b.width, b.height], ...(b.frame === undefined ? {} : { frame: b.frame }), where };
}

/**
 * Parses the text of a JSON box file (see the module comment for the two shapes).
 * @param source the file's name, used in messages
 * @throws DataError naming the entry and field of the first problem (or the JSON syntax error)
 */
export function parseBoxJson(text: string, source: string): BoxEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DataError(`${source}: not valid JSON: ${(err as Error).message}`);
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => {
      const where = `${source} entry ${i + 1}`;
      const r = RowObject.safeParse(item);
      if (!r.success) throw firstIssue(where, r.error, item);
      return toEntry(r.data.file, r.data, where);
    });
  }
  if (value === null || typeof value !== "object")
    throw new DataError(
      `${source}: expected a list of {file, x, y, width, height} objects or an object {"<file>": [[x, y, width, height], ...]}`,
    );
  const out: BoxEntry[] = [];
  for (const [file, boxes] of Object.entries(value)) {
    if (file === "") throw new DataError(`${source}: a file name is empty`);
    const r = FileMap.safeParse({ [file]: boxes });
    if (!r.success) {
      const issue = r.error.issues[0];
      const i = typeof issue.path[1] === "number" ? issue.path[1] : undefined;
      const where = i === undefined ? `${source} "${file}"` : `${source} "${file}" box ${i + 1}`;
      const sub = i === undefined ? r.error : new z.ZodError(r.error.issues.map((s) => ({ ...s, path: s.path.slice(2) })));
      throw firstIssue(where, sub, i === undefined ? boxes : (boxes as unknown[])[i]);
    }
    r.data[file].forEach((b, i) =>
      out.push(toEntry(file, Array.isArray(b) ? { x: b[0], y: b[1], width: b[2], height: b[3] } : b, `${source} "${file}" box ${i + 1}`)),
    );
  }
  return out;
}

/**
 * Reads a box file: JSON when its name ends in `.json` (or its text starts with `[` or `{`), else CSV.
 * @throws DataError when the file cannot be read or has a problem (named by line or entry and field)
 */
export function readBoxFile(file: string): BoxList {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new DataError(`box file ${file}: cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const json = file.toLowerCase().endsWith(".json") || /^\s*[[{]/.test(text);
  const entries = json ? parseBoxJson(text, file) : parseBoxCsv(text, file);
  return { source: file, entries };
}

/** How the boxes of a box file fell on the inputs. */
export interface MatchedBoxes {
  /** Input path (as given in the inputs) -> its boxes, in box-file order. */
  byInput: Map<string, BoxEntry[]>;
  /** File names of the box file that are none of the inputs (their boxes are not used). */
  unmatched: string[];
}

/**
 * Matches the box file's names to input paths. A name is resolved against the box file's folder
 * (an absolute name as it is); when no input has that path, the name matches the one input whose
 * path ends with it (`img.jpg` or `photos/img.jpg` matches `/data/photos/img.jpg`).
 * @param list the box file
 * @param inputs image and video paths (as `expandInputs` lists them)
 * @throws DataError when a name matches several inputs by its ending
 */
export function matchBoxes(list: BoxList, inputs: readonly string[]): MatchedBoxes {
  const base = path.dirname(path.resolve(list.source));
  const byPath = new Map<string, string>();
  for (const input of inputs) byPath.set(path.resolve(input), input);
  const resolved = [...byPath.keys()];
  const cache = new Map<string, string | null>();
  const find = (name: string, where: string): string | null => {
    const hit = cache.get(name);
    if (hit !== undefined) return hit;
    let found = byPath.get(path.resolve(base, name)) ?? null;
    if (found === null && !path.isAbsolute(name)) {
      const tail = path.sep + path.normalize(name);
      const hits = resolved.filter((p) => p.endsWith(tail));
      if (hits.length > 1)
        throw new DataError(
          `${where}: "${name}" matches ${hits.length} inputs (${hits
            .slice(0, 3)
            .map((h) => byPath.get(h))
            .join(", ")}${hits.length > 3 ? ", ..." : ""}); give more of its path`,
        );
      if (hits.length === 1) found = byPath.get(hits[0]) ?? null;
    }
    cache.set(name, found);
    return found;
  };
  const byInput = new Map<string, BoxEntry[]>();
  const unmatched = new Set<string>();
  for (const e of list.entries) {
    const input = find(e.file, e.where);
    if (input === null) {
      unmatched.add(e.file);
      continue;
    }
    let list = byInput.get(input);
    if (!list) byInput.set(input, (list = []));
    list.push(e);
  }
  return { byInput, unmatched: [...unmatched] };
}
