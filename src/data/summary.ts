/**
 * `ferkit data summary`: what a dataset or pool holds — counts per split and class,
 * image sizes, skipped inputs by reason, and byte-identical duplicate files.
 */
import { createHash } from "node:crypto";
import { SkipLog, type LabeledDataset, type UnlabeledPool } from "./dataset.js";
import { probeImage, readImageBytes, skipReasonOf, ImageError } from "./image.js";

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
 * Summarises a labeled dataset or a pool. Reads every file once (hash and header; pixels are
 * not decoded, so a file whose header is good but whose body is corrupt still counts here).
 * Files that are not usable images are skipped and counted by reason on top of the reader's
 * own counts (`missing_file`, `empty_file`, `not_a_file`, `unreadable_image`,
 * `image_too_large`, `image_too_small`: the reasons decoding would give), the first few of
 * each named through `warn`.
 * @param onProgress called with the number of files inspected so far
 * @param warn receives one line per skipped file (the first 3 of each reason)
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
    let out: { size: string; hash: string } | { error: unknown };
    try {
      const bytes = await readImageBytes(e.path);
      const { width, height } = await probeImage(bytes, e.path);
      out = { size: `${width}x${height}`, hash: createHash("sha1").update(bytes).digest("hex") };
    } catch (err) {
      out = { error: err };
    }
    onProgress?.(++done, entries.length);
    return out;
  });
  // Only images that decode count; the others are skipped, named and counted.
  const splits: Record<string, Record<string, number>> = {};
  const log = new SkipLog(warn);
  let usable = 0;
  info.forEach((x, i) => {
    const e = entries[i];
    if ("error" in x) {
      log.add(skipReasonOf(x.error), e.path, x.error instanceof ImageError ? x.error.detail : String(x.error));
      return;
    }
    usable++;
    const row = (splits[e.split] ??= labeled ? Object.fromEntries(data.space.classes.map((c) => [c, 0])) : {});
    row[e.cls] = (row[e.cls] ?? 0) + 1;
  });
  const skipped: Record<string, number> = { ...data.skipped.counts };
  for (const [k, v] of Object.entries(log.counts)) skipped[k] = (skipped[k] ?? 0) + v;
  const sizes: Record<string, number> = {};
  const bySplit = new Map<string, { count: number; splits: Set<string> }>();
  info.forEach((x, i) => {
    if ("error" in x) return;
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
