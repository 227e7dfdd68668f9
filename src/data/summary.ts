/**
 * `ferkit data summary`: what a dataset or pool holds — counts per split and class,
 * image sizes, skipped inputs by reason, and byte-identical duplicate files.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import sharp from "sharp";
import { isPnmPath, parsePnm } from "./pnm.js";
import type { LabeledDataset, UnlabeledPool } from "./dataset.js";

/** The summary, in the shape `--json` prints. */
export interface DataSummary {
  name: string;
  /** split -> class name -> count (pools: source -> "unlabeled" -> count). */
  splits: Record<string, Record<string, number>>;
  /** reason -> count of skipped inputs. */
  skipped: Record<string, number>;
  /** Usable images. */
  total: number;
  /** "WxH" (pixels) -> count of the readable images. */
  sizes: Record<string, number>;
  /** Byte-identical files: number of groups, files in them, and groups that span splits. */
  duplicates: { groups: number; files: number; crossSplitGroups: number };
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

/**
 * Summarises a labeled dataset or a pool. Reads every file once (hash and header).
 * @param onProgress called with the number of files inspected so far
 */
export async function summarize(
  data: LabeledDataset | UnlabeledPool,
  onProgress?: (done: number, total: number) => void,
  warn?: (message: string) => void,
): Promise<DataSummary> {
  const labeled = "space" in data;
  const entries = labeled
    ? data.samples.map((s) => ({ path: s.path, split: s.split, cls: data.space.classes[s.label] }))
    : data.samples.map((s) => ({ path: s.path, split: s.source, cls: "unlabeled" }));
  let done = 0;
  const info = await mapLimit(entries, 16, async (e) => {
    const bytes = await readFile(e.path).catch(() => null);
    let size = "unreadable";
    if (bytes !== null) {
      try {
        if (isPnmPath(e.path)) {
          const p = parsePnm(bytes);
          size = `${p.width}x${p.height}`;
        } else {
          const m = await sharp(bytes).metadata();
          size = `${m.width}x${m.height}`;
        }
      } catch {
        // counted as skipped below
      }
    }
    onProgress?.(++done, entries.length);
    return { size, hash: bytes === null ? null : createHash("sha1").update(bytes).digest("hex") };
  });
  // Only images that decode count; the others are skipped, named and counted.
  const splits: Record<string, Record<string, number>> = {};
  const skipped: Record<string, number> = { ...data.skipped.counts };
  let usable = 0;
  info.forEach((x, i) => {
    const e = entries[i];
    if (x.size === "unreadable") {
      skipped.unreadable_image = (skipped.unreadable_image ?? 0) + 1;
      warn?.(`skipped ${e.path}: unreadable_image`);
      return;
    }
    usable++;
    const row = (splits[e.split] ??= labeled ? Object.fromEntries(data.space.classes.map((c) => [c, 0])) : {});
    row[e.cls] = (row[e.cls] ?? 0) + 1;
  });
  const sizes: Record<string, number> = {};
  const bySplit = new Map<string, { count: number; splits: Set<string> }>();
  info.forEach((x, i) => {
    if (x.size === "unreadable" || x.hash === null) return;
    sizes[x.size] = (sizes[x.size] ?? 0) + 1;
    const g = bySplit.get(x.hash) ?? { count: 0, splits: new Set<string>() };
    g.count++;
    g.splits.add(entries[i].split);
    bySplit.set(x.hash, g);
  });
  let dupGroups = 0;
  let dupFiles = 0;
  let cross = 0;
  for (const g of bySplit.values()) {
    if (g.count < 2) continue;
    dupGroups++;
    dupFiles += g.count;
    if (g.splits.size > 1) cross++;
  }
  return {
    name: data.name,
    splits,
    skipped,
    total: usable,
    sizes: Object.fromEntries(Object.entries(sizes).sort((a, b) => b[1] - a[1])),
    duplicates: { groups: dupGroups, files: dupFiles, crossSplitGroups: cross },
  };
}

/** The summary as aligned text lines for a terminal. */
export function formatSummary(s: DataSummary): string {
  const lines = [`${s.name}: ${s.total} images`];
  const classes = [...new Set(Object.values(s.splits).flatMap((r) => Object.keys(r)))];
  const w = Math.max(10, ...classes.map((c) => c.length + 1));
  lines.push(["split".padEnd(14), ...classes.map((c) => c.padStart(w)), "total".padStart(8)].join(""));
  for (const [split, row] of Object.entries(s.splits)) {
    const total = Object.values(row).reduce((a, b) => a + b, 0);
    lines.push([split.padEnd(14), ...classes.map((c) => String(row[c] ?? 0).padStart(w)), String(total).padStart(8)].join(""));
  }
  const sizes = Object.entries(s.sizes);
  lines.push(
    `image sizes: ${sizes
      .slice(0, 5)
      .map(([k, v]) => `${k} (${v})`)
      .join(", ")}${sizes.length > 5 ? `, and ${sizes.length - 5} more` : ""}`,
  );
  const skipped = Object.entries(s.skipped);
  lines.push(`skipped: ${skipped.length === 0 ? "none" : skipped.map(([k, v]) => `${k} ${v}`).join(", ")}`);
  lines.push(
    `byte-identical duplicates: ${s.duplicates.groups} groups, ${s.duplicates.files} files, ${s.duplicates.crossSplitGroups} groups across splits`,
  );
  return lines.join("\n");
}
