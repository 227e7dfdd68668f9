/**
 * An experiment grid: rows (a preset or config file with field overrides) times seeds, each cell
 * trained into its own run folder by `ferkit train`, one after the other. A grid that was stopped
 * continues where it stopped: finished cells are kept, an interrupted cell is resumed from its
 * last checkpoint, the rest start.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { ConfigError, buildConfig, type TrainConfig } from "../train/config.js";
import { readRunConfig } from "../train/run.js";
import { resolvePrecision, type Precision } from "../torch/autocast.js";
import { PACKAGE_ROOT } from "../torch/native.js";

const ROW_ID = /^[\w.-]{1,80}$/;

const RowSchema = z
  .object({
    /** Names the row in the results and its run folders (`<id>-s<seed>`). */
    id: z.string().regex(ROW_ID, "letters, digits, '.', '_', '-' (at most 80)"),
    /** A preset from configs/, or... */
    preset: z.string().optional(),
    /** ...a config file (relative to the grid file). */
    config: z.string().optional(),
    /**
     * Config fields to override (`ferkit train --set`), by dotted path. String values may use
     * `{seed}` and `{out}` (the grid's output folder), e.g. `"model.init": "{out}/supervised-s{seed}"`.
     */
    set: z.record(z.string(), z.unknown()).default({}),
    /** Rows this row's runs start from (their cells of the same seed run first). */
    after: z.array(z.string()).default([]),
    /** The row this row is compared with, seed by seed (default: the grid's reference), e.g. a variant against the method it varies. */
    versus: z.string().optional(),
  })
  .strict()
  .refine((r) => (r.preset === undefined) !== (r.config === undefined), "give exactly one of preset and config");

const GridSchema = z
  .object({
    name: z.string().regex(ROW_ID),
    /** What the table says the grid measures. */
    description: z.string().default(""),
    seeds: z.array(z.number().int().nonnegative()).min(1),
    /** The row every other row is compared with, seed by seed. */
    reference: z.string().optional(),
    /** Run folders go to `<out>/<row>-s<seed>` (default `runs/experiments/<name>`, relative to the working folder). */
    out: z.string().optional(),
    rows: z.array(RowSchema).min(1),
  })
  .strict()
  .superRefine((g, ctx) => {
    const ids = g.rows.map((r) => r.id);
    if (new Set(ids).size !== ids.length) ctx.addIssue({ code: "custom", path: ["rows"], message: "row ids must be distinct" });
    if (g.reference !== undefined && !ids.includes(g.reference))
      ctx.addIssue({ code: "custom", path: ["reference"], message: `'${g.reference}' is not a row (rows: ${ids.join(", ")})` });
    for (const r of g.rows) {
      if (r.versus !== undefined && (!ids.includes(r.versus) || r.versus === r.id))
        ctx.addIssue({ code: "custom", path: ["rows", r.id, "versus"], message: `'${r.versus}' is not another row` });
      for (const a of r.after)
        if (!ids.includes(a) || a === r.id)
          ctx.addIssue({ code: "custom", path: ["rows", r.id, "after"], message: `'${a}' is not another row` });
    }
  });

/** A validated grid file. */
export type Grid = z.infer<typeof GridSchema> & { file: string; outDir: string };
/** One row of a grid. */
export type GridRow = Grid["rows"][number];

/** One training of the grid: a row at a seed. */
export interface Cell {
  row: GridRow;
  seed: number;
  /** Its run folder. */
  dir: string;
}

/**
 * Reads and checks a grid file.
 * @throws ConfigError naming the file and each bad field
 */
export function readGrid(file: string): Grid {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError(`cannot read grid ${file}: ${(err as Error).message}`, { cause: err });
  }
  const r = GridSchema.safeParse(raw);
  if (!r.success)
    throw new ConfigError(
      `${file}: invalid grid: ${r.error.issues.map((i) => `${i.path.join(".") || "(grid)"}: ${i.message}`).join("; ")}`,
    );
  const outDir = r.data.out ?? path.join("runs", "experiments", r.data.name);
  return { ...r.data, file, outDir };
}

/** The grid's cells in the order they run: seed by seed, each row after the rows it starts from. */
export function cells(grid: Grid): Cell[] {
  const order: GridRow[] = [];
  const visit = (row: GridRow, trail: string[]): void => {
    if (order.includes(row)) return;
    if (trail.includes(row.id))
      throw new ConfigError(`${grid.file}: rows start from each other in a cycle: ${[...trail, row.id].join(" -> ")}`);
    for (const a of row.after) visit(grid.rows.find((r) => r.id === a) as GridRow, [...trail, row.id]);
    order.push(row);
  };
  for (const r of grid.rows) visit(r, []);
  return grid.seeds.flatMap((seed) => order.map((row) => ({ row, seed, dir: path.join(grid.outDir, `${row.id}-s${seed}`) })));
}

/**
 * Row ids with the rows they start from (`after`), transitively.
 * @throws ConfigError naming an id that is not a row of the grid
 */
export function withStarts(grid: Grid, ids: string[]): Set<string> {
  const out = new Set<string>();
  const add = (id: string): void => {
    const row = grid.rows.find((r) => r.id === id);
    if (row === undefined) throw new ConfigError(`${grid.file}: '${id}' is not a row (rows: ${grid.rows.map((r) => r.id).join(", ")})`);
    if (out.has(id)) return;
    out.add(id);
    row.after.forEach(add);
  };
  ids.forEach(add);
  return out;
}

/** A cell's state from its run folder. */
export function cellState(cell: Cell): "done" | "interrupted" | "new" {
  if (existsSync(path.join(cell.dir, "metrics.json"))) return "done";
  return existsSync(path.join(cell.dir, "config.json")) ? "interrupted" : "new";
}

/** A cell's `--set key=value` overrides: the row's `set`, with `{seed}` and `{out}` filled in. */
function cellSets(grid: Grid, cell: Cell): string[] {
  const fill = (v: unknown): unknown =>
    typeof v === "string" ? v.replaceAll("{seed}", String(cell.seed)).replaceAll("{out}", grid.outDir) : v;
  return Object.entries(cell.row.set).map(([k, v]) => `${k}=${JSON.stringify(fill(v))}`);
}

function configFile(grid: Grid, row: GridRow): string {
  return path.resolve(path.dirname(grid.file), row.config as string);
}

/** The `ferkit train` arguments of a cell (a new one, or its resume). */
export function trainArgs(grid: Grid, cell: Cell): string[] {
  if (cellState(cell) === "interrupted") return ["train", "--resume", cell.dir, "--no-progress"];
  const source = cell.row.preset !== undefined ? ["--preset", cell.row.preset] : ["--config", configFile(grid, cell.row)];
  const sets = cellSets(grid, cell).flatMap((kv) => ["--set", kv]);
  return ["train", ...source, "--seed", String(cell.seed), ...sets, "--out", cell.dir, "--no-progress"];
}

/**
 * The config a cell trains with, as `ferkit train` resolves its arguments.
 * @throws ConfigError when the row's preset, file or overrides do not make a valid config
 */
export function cellConfig(grid: Grid, cell: Cell): TrainConfig {
  const source = cell.row.preset !== undefined ? { preset: cell.row.preset } : { config: configFile(grid, cell.row) };
  return buildConfig(source, { overrides: [["seed", cell.seed]], sets: cellSets(grid, cell) });
}

/**
 * Where a started cell's run folder was trained with other settings than the grid (its preset,
 * config file and overrides) gives today: `field: recorded -> grid` by dotted path, empty when
 * they agree or the cell has not started. A grid's precision "auto" is compared as what it
 * resolves to on this machine (a run records the resolved one); `threads` is left out (it does
 * not change what is trained). Catches a grid or preset edited after some cells ran, which
 * would otherwise mix two settings in one row of the results.
 */
export function staleSettings(grid: Grid, cell: Cell): string[] {
  if (cellState(cell) === "new") return [];
  const recorded = readRunConfig(cell.dir);
  const wanted = cellConfig(grid, cell);
  const here = (p: Precision): Precision => (p === "auto" ? resolvePrecision(p).precision : p);
  wanted.train.precision = here(wanted.train.precision);
  wanted.eval.precision = here(wanted.eval.precision);
  return fieldDifferences({ ...recorded, threads: 0 }, { ...wanted, threads: 0 });
}

function fieldDifferences(a: unknown, b: unknown, at = ""): string[] {
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
  if (isObject(a) && isObject(b))
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap((k) => fieldDifferences(a[k], b[k], at ? `${at}.${k}` : k));
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${at}: ${JSON.stringify(a)} -> ${JSON.stringify(b)}`];
}

/**
 * Checks every started cell against the grid before anything trains or is tabulated.
 * @throws ConfigError naming each cell whose run folder disagrees with the grid, the fields, and what to do
 */
export function checkCells(grid: Grid): void {
  const stale = cells(grid).flatMap((cell) => {
    const fields = staleSettings(grid, cell);
    return fields.length > 0 ? [`  ${cell.dir}: ${fields.join("; ")}`] : [];
  });
  if (stale.length > 0)
    throw new ConfigError(
      `${grid.file}: these run folders were trained with other settings than the grid now gives (recorded -> grid):\n${stale.join("\n")}\n` +
        "move them away to train those cells again, or restore the grid's rows and presets",
    );
}

/**
 * Trains the cells that are not done, one after the other, each in its own `ferkit train`
 * process (its output goes to the terminal).
 * @param log one line per cell as it starts
 * @param rows only these rows' cells (and those of the rows they start from); default every row
 * @throws Error when a cell's training fails (exit code not 0); the cells before it stay done
 */
export async function runGrid(grid: Grid, log: (line: string) => void = console.error, rows?: string[]): Promise<void> {
  const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
  const all = rows === undefined ? cells(grid) : cells(grid).filter((c) => withStarts(grid, rows).has(c.row.id));
  for (const [i, cell] of all.entries()) {
    const state = cellState(cell);
    if (state === "done") {
      log(`[${i + 1}/${all.length}] ${cell.row.id} seed ${cell.seed}: done (${cell.dir})`);
      continue;
    }
    log(`[${i + 1}/${all.length}] ${cell.row.id} seed ${cell.seed}: ${state === "interrupted" ? "resuming" : "training"} into ${cell.dir}`);
    const child = spawn(process.execPath, [bin, ...trainArgs(grid, cell)], { stdio: ["ignore", "inherit", "inherit"] });
    // Ctrl-C reaches the child too (same process group): it checkpoints, and the grid stops.
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c, signal) => resolve(c ?? (signal ? 128 : null))));
    if (code !== 0)
      throw new Error(`${cell.row.id} seed ${cell.seed}: ferkit train exited with ${code} (${cell.dir}); run the grid again to resume`);
  }
}
