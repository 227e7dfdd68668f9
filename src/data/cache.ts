/**
 * On-disk cache of decoded (and aligned) uint8 images: a folder of binary shard files
 * plus a JSON manifest. The folder is named by the preprocessing settings and the source
 * paths; the manifest records every source file's size and modification time and a digest
 * of their contents. A cache is read when the sizes and times still match, or, when they
 * do not (a copied or re-provisioned data folder), when the contents still hash the same;
 * anything else rebuilds it, so a stale cache is never read. The folder is built under a
 * temporary name and renamed into place, so a killed build leaves no half-valid cache.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import type { ImageSet } from "./image.js";

/** Bumped when the cache layout changes, so old caches are rebuilt. */
const FORMAT_VERSION = 2;
/** Upper bound of one shard file, in bytes. */
const SHARD_BYTES = 256 * 1024 * 1024;

interface Manifest {
  format: "ferkit-image-cache";
  version: number;
  key: string;
  /** Per source file: [size in bytes, mtime in ms]; [-1, -1] for a missing file. */
  stamps: Stamp[];
  /** {@link contentDigest} of the source files the images were made from. */
  content: string;
  name: string;
  settings: unknown;
  shape: [number, number, number];
  n: number;
  shards: { file: string; count: number }[];
  source_index: number[];
  skipped: Record<string, number>;
  sources: number;
  created: string;
}

/** A source file's size in bytes and modification time in ms; [-1, -1] when it is missing. */
type Stamp = [number, number];

/**
 * The cache key, which names the cache's folder: SHA-256 over the format version, the
 * settings and every source file's path. Contents are checked separately
 * ({@link sourceStamps}, {@link contentDigest}).
 */
export function cacheKey(files: readonly string[], settings: unknown): string {
  const h = createHash("sha256");
  h.update(`v${FORMAT_VERSION}\n${JSON.stringify(settings)}\n`);
  for (const f of files) h.update(`${f}\n`);
  return h.digest("hex");
}

/**
 * Size in bytes and modification time in ms of every file (one stat each); [-1, -1] when missing
 * or not a regular file (a folder, a pipe: never decoded either).
 */
export function sourceStamps(files: readonly string[]): Stamp[] {
  return files.map((f): Stamp => {
    try {
      const st = statSync(f);
      return st.isFile() ? [st.size, st.mtimeMs] : [-1, -1];
    } catch {
      // A missing file is part of the stamps too: it is skipped now, and a later file there changes them.
      return [-1, -1];
    }
  });
}

/**
 * SHA-256 over the SHA-256 of every file's bytes, in order (a missing or unreadable file, or
 * one that is not a regular file, counts as a marker: a pipe named like an image is never
 * read, so it cannot block). Reads every file: 1.6 s for the 47,059 files (250 MB) of FER2013,
 * LFW, UTKFace and ORL on the project's 2-core machine, against minutes to decode and
 * detect them again.
 */
export function contentDigest(files: readonly string[]): string {
  const h = createHash("sha256");
  for (const f of files) {
    let digest = "missing";
    try {
      if (statSync(f).isFile()) digest = createHash("sha256").update(readFileSync(f)).digest("hex");
    } catch {
      // counted as missing
    }
    h.update(`${digest}\n`);
  }
  return h.digest("hex");
}

function sameStamps(a: readonly Stamp[], b: readonly Stamp[]): boolean {
  return a.length === b.length && a.every((s, i) => s[0] === b[i][0] && s[1] === b[i][1]);
}

/**
 * The folder's manifest when its images were made from the source files as they are now
 * (`stamps` from {@link sourceStamps}; `digest` computes {@link contentDigest} only when
 * the stamps differ), else null.
 */
function validManifest(dir: string, key: string, stamps: Stamp[], digest: () => string): Manifest | null {
  const m = readManifest(dir, key);
  if (m === null) return null;
  if (sameStamps(stamps, m.stamps)) return m;
  if (digest() !== m.content) return null;
  // Same bytes under new times (a copy, a fresh checkout): record the new times so the next
  // read takes the fast path. A read-only cache folder keeps working, only slower.
  const updated = { ...m, stamps };
  try {
    replaceFile(path.join(dir, "manifest.json"), JSON.stringify(updated));
  } catch {
    // kept as it was
  }
  return updated;
}

function readManifest(dir: string, key: string): Manifest | null {
  try {
    const m = JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")) as Manifest;
    if (m.format !== "ferkit-image-cache" || m.version !== FORMAT_VERSION || m.key !== key) return null;
    const per = m.shape[0] * m.shape[1] * m.shape[2];
    for (const s of m.shards) if (statSync(path.join(dir, s.file)).size !== s.count * per) return null;
    return m;
  } catch {
    return null;
  }
}

function loadImages(dir: string, m: Manifest): ImageSet {
  const per = m.shape[0] * m.shape[1] * m.shape[2];
  const pixels = new Uint8Array(m.n * per);
  let offset = 0;
  for (const s of m.shards) {
    const buf = readFileSync(path.join(dir, s.file));
    pixels.set(buf, offset);
    offset += buf.length;
  }
  return { pixels, shape: m.shape, n: m.n, sourceIndex: Int32Array.from(m.source_index), skipped: m.skipped };
}

function writeSynced(file: string, data: Uint8Array | string): void {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const fd = openSync(file, "w");
  try {
    for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeImages(dir: string, images: ImageSet, head: Pick<Manifest, "key" | "stamps" | "content" | "name" | "settings">): void {
  const per = images.shape[0] * images.shape[1] * images.shape[2];
  const perShard = Math.max(1, Math.floor(SHARD_BYTES / Math.max(1, per)));
  const shards: Manifest["shards"] = [];
  for (let start = 0, i = 0; start < images.n || (images.n === 0 && i === 0); start += perShard, i++) {
    const count = Math.min(perShard, images.n - start);
    const file = `shard-${String(i).padStart(5, "0")}.bin`;
    writeSynced(path.join(dir, file), images.pixels.subarray(start * per, (start + count) * per));
    shards.push({ file, count });
  }
  const manifest: Manifest = {
    format: "ferkit-image-cache",
    version: FORMAT_VERSION,
    ...head,
    shape: images.shape,
    n: images.n,
    shards,
    source_index: [...images.sourceIndex],
    skipped: images.skipped,
    sources: head.stamps.length,
    created: new Date().toISOString(),
  };
  // The manifest goes last: a folder without one is never read.
  writeSynced(path.join(dir, "manifest.json"), JSON.stringify(manifest));
}

/** Options of {@link cachedImages}. */
export interface CacheOptions {
  /** Folder holding all caches (created when missing). */
  cacheDir: string;
  /** Readable prefix of this cache's folder, e.g. "fer2013-48x48x1". */
  name: string;
  /** Source files, in the order `sourceIndex` refers to. */
  files: readonly string[];
  /** Everything that changes the output (size, channels, alignment, versions). JSON-serialisable. */
  settings: unknown;
  /** Makes the images when the cache is missing or stale. */
  produce: (files: readonly string[]) => Promise<ImageSet>;
}

/**
 * The images for `files` under `settings` when a valid cache of them exists, else null (nothing
 * is made or removed).
 */
export function readCachedImages(o: Omit<CacheOptions, "produce">): (ImageSet & { fromCache: true; cachePath: string }) | null {
  return lookup(o).hit;
}

/** Where the cache of `o` lives, its key, the sources' stamps and content digest (computed once), and its images when valid. */
function lookup(o: Omit<CacheOptions, "produce">): {
  key: string;
  dir: string;
  stamps: ReturnType<typeof sourceStamps>;
  digest: () => string;
  hit: (ImageSet & { fromCache: true; cachePath: string }) | null;
} {
  const key = cacheKey(o.files, o.settings);
  const dir = path.join(o.cacheDir, `${o.name}-${key.slice(0, 16)}`);
  const stamps = sourceStamps(o.files);
  let content: string | undefined;
  const digest = (): string => (content ??= contentDigest(o.files));
  const found = existsSync(dir) ? validManifest(dir, key, stamps, digest) : null;
  return { key, dir, stamps, digest, hit: found === null ? null : { ...loadImages(dir, found), fromCache: true, cachePath: dir } };
}

/**
 * Returns the images for `files` under `settings`: read from the cache when it is
 * valid, else produced, written atomically, and returned. Older caches of the same
 * `name` are removed after a successful build.
 */
export async function cachedImages(o: CacheOptions): Promise<ImageSet & { fromCache: boolean; cachePath: string }> {
  const { key, dir, stamps, digest, hit } = lookup(o);
  if (hit !== null) return hit;
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });

  // Stamped and hashed before the images are made: a file that changes during the build fails the next check.
  const head = { key, stamps, content: digest(), name: o.name, settings: o.settings };
  const images = await o.produce(o.files);
  mkdirSync(o.cacheDir, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp);
  try {
    writeImages(tmp, images, head);
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(dir)) throw err; // another process finished the same cache first: fine
  }
  for (const entry of readdirSync(o.cacheDir)) {
    const stale =
      entry.startsWith(`${o.name}-`) && /^[0-9a-f]{16}$/.test(entry.slice(o.name.length + 1)) && path.join(o.cacheDir, entry) !== dir;
    if (stale) rmSync(path.join(o.cacheDir, entry), { recursive: true, force: true });
  }
  return { ...images, fromCache: false, cachePath: dir };
}

/**
 * Replaces `file` with `data` atomically: written to a temporary file beside it, synced to
 * disk, then renamed over it, so a reader sees the old or the new file, never a part.
 * @throws Error when the folder is not writable (the temporary file is removed)
 */
function replaceFile(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeSynced(tmp, data);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
