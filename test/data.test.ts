// The data layer on real data from ../shared/data: readers, bad inputs, cache, samplers.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse } from "csv-parse/sync";
import sharp from "sharp";
import { readAbaw } from "../src/data/abaw.js";
import { cachedImages } from "../src/data/cache.js";
import { DataError, SkipLog, hideLabels, splitOf } from "../src/data/dataset.js";
import { preparePool } from "../src/data/pool_prepare.js";
import { ferplusMajority, readFer2013Dataset } from "../src/data/fer2013.js";
import { readCsvList, readImageFolder, readImagePool } from "../src/data/folders.js";
import { decodeBatch, decodeResized } from "../src/data/image.js";
import { ABAW, FER2013, FERPLUS, classIndex, labelMapping } from "../src/data/labels.js";
import { parsePnm } from "../src/data/pnm.js";
import { ClassBalancedSampler, RandomSampler, fewLabelSplit } from "../src/data/sampler.js";
import { defaultDataRoot } from "../src/paths.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";

const dataRoot = defaultDataRoot();
const fer = path.join(dataRoot, "fer2013");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-data-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** The first `n` FER2013 Training PNGs of a class (real images for small layouts). */
function ferImages(label: number, n: number): string[] {
  const ds = readFer2013Dataset(fer, { splits: ["Training"] });
  return ds.samples
    .filter((s) => s.label === label)
    .slice(0, n)
    .map((s) => s.path);
}

describe("label spaces", () => {
  test("mappings go through canonical names; classes missing on one side map to -1", () => {
    assert.deepEqual(labelMapping(FER2013, FERPLUS), [4, 5, 6, 1, 3, 2, 0]);
    assert.deepEqual(labelMapping(FERPLUS, FER2013), [6, 3, 5, 4, 0, 1, 2, -1]); // contempt has no FER2013 class
    assert.deepEqual(labelMapping(ABAW, FER2013), [6, 0, 1, 2, 3, 4, 5, -1]); // Other
    assert.equal(classIndex(FER2013, "happiness"), 3);
    assert.equal(classIndex(ABAW, "happiness"), 4);
    assert.throws(() => classIndex(FER2013, "smug"), /allowed: angry, disgust/);
  });

  test("FER+ majority vote: more than half of the votes, an emotion, not unknown or NF", () => {
    assert.equal(ferplusMajority([6, 0, 1, 1, 0, 0, 0, 0, 2, 0]), 0);
    assert.equal(ferplusMajority([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]), "ferplus_no_majority"); // 4 of 10
    assert.equal(ferplusMajority([0, 0, 0, 0, 0, 0, 0, 0, 0, 10]), "ferplus_not_face");
    assert.equal(ferplusMajority([1, 0, 0, 0, 0, 0, 0, 0, 9, 0]), "ferplus_unknown");
    assert.equal(ferplusMajority([0, 0, 0, 0, 0, 0, 0, 6, 2, 0]), 7); // contempt
  });
});

describe("FER2013", () => {
  test("default: official splits, ambiguous and image-less rows skipped and counted", () => {
    const ds = readFer2013Dataset(fer);
    assert.equal(splitOf(ds, "Training").length, 28461);
    assert.equal(splitOf(ds, "PublicTest").length, 3577);
    assert.equal(splitOf(ds, "PrivateTest").length, 3569);
    assert.deepEqual(ds.skipped.counts, { no_image: 177, ambiguous_label: 103 });
    assert.equal(ds.space, FER2013);
  });

  test("FER+ labels: 8 classes, each kept row has a strict majority", () => {
    const ds = readFer2013Dataset(fer, { labels: "ferplus" });
    assert.equal(ds.space, FERPLUS);
    const rows = parse(readFileSync(path.join(fer, "labels.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    const byImage = new Map(rows.map((r) => [path.join(fer, r.image), r]));
    for (const s of ds.samples.slice(0, 500)) {
      const r = byImage.get(s.path) as Record<string, string>;
      const votes = FERPLUS.classes.map((c) => Number(r[c]));
      const total = votes.reduce((a, b) => a + b, 0) + Number(r.unknown) + Number(r.NF);
      assert.ok(votes[s.label] * 2 > total);
    }
    assert.ok(
      ds.samples.some((s) => s.label === 7),
      "contempt appears",
    );
    assert.ok((ds.skipped.counts.ferplus_no_majority ?? 0) > 0);
  });

  test("dedup: no Training image left shares a duplicate group with a test image", () => {
    const plain = readFer2013Dataset(fer, { splits: ["Training"] });
    const ds = readFer2013Dataset(fer, { dedup: "exact" });
    const dropped = ds.skipped.counts.duplicate_of_test_image ?? 0;
    assert.ok(dropped > 0);
    assert.equal(splitOf(ds, "Training").length, splitOf(plain, "Training").length - dropped);
    const groups = parse(readFileSync(path.join(fer, "duplicate_groups.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    const group = new Map(
      groups.filter((g) => g.exact_duplicate_group !== "").map((g) => [path.join(fer, g.image), g.exact_duplicate_group]),
    );
    const testGroups = new Set(ds.samples.filter((s) => s.split !== "Training").flatMap((s) => group.get(s.path) ?? []));
    for (const s of splitOf(ds, "Training")) assert.ok(!testGroups.has(group.get(s.path) ?? "none"), s.path);
    const near = readFer2013Dataset(fer, { dedup: "near" });
    assert.ok((near.skipped.counts.duplicate_of_test_image ?? 0) >= dropped);
  });

  test("a folder that is not FER2013 is a DataError naming the file", () => {
    assert.throws(
      () => readFer2013Dataset(work),
      (e: unknown) => e instanceof DataError && e.message.includes("labels.csv"),
    );
  });
});

describe("user layouts with bad inputs", () => {
  test("ImageFolder: classes from folders; corrupt, non-image and empty folders skipped and counted", async () => {
    const root = path.join(work, "imagefolder");
    for (const [cls, label] of [
      ["happy", 3],
      ["sad", 4],
    ] as const) {
      mkdirSync(path.join(root, cls), { recursive: true });
      ferImages(label, 3).forEach((f, i) => copyFileSync(f, path.join(root, cls, `${i}.png`)));
    }
    mkdirSync(path.join(root, "surprise"));
    writeFileSync(path.join(root, "happy", "notes.txt"), "not an image");
    writeFileSync(path.join(root, "sad", "broken.jpg"), Buffer.from([0xff, 0xd8, 0xff, 0x00, 1, 2, 3]));
    const ds = readImageFolder(root);
    assert.deepEqual(ds.space.classes, ["happy", "sad", "surprise"]);
    assert.equal(ds.samples.length, 7); // the broken .jpg is listed; decoding skips it
    assert.equal(ds.skipped.counts.not_an_image, 1);
    assert.equal(ds.skipped.counts.empty_class_folder, 1);
    const images = await decodeBatch(
      ds.samples.map((s) => s.path),
      48,
      1,
    );
    assert.equal(images.n, 6);
    assert.deepEqual(images.skipped, { unreadable_image: 1 });
    assert.throws(() => readImageFolder(path.join(work, "nope")), DataError);
    mkdirSync(path.join(work, "emptyroot"));
    assert.throws(() => readImageFolder(path.join(work, "emptyroot")), /no class sub-folders/);
  });

  test("CSV list: unknown labels and missing files are skipped with the line named", () => {
    const dir = path.join(work, "csv");
    mkdirSync(dir);
    const imgs = ferImages(3, 2);
    imgs.forEach((f, i) => copyFileSync(f, path.join(dir, `${i}.png`)));
    const file = path.join(dir, "list.csv");
    writeFileSync(file, "path,label,split\n0.png,happy,train\n1.png,sad,test\n2.png,happy,train\n0.png,smug,train\n");
    const warnings: string[] = [];
    const ds = readCsvList(file, { space: FER2013, warn: (m) => warnings.push(m) });
    assert.equal(ds.samples.length, 2);
    assert.deepEqual(ds.skipped.counts, { missing_file: 1, unknown_label: 1 });
    assert.ok(warnings.some((w) => w.includes("list.csv line 5") && w.includes("smug")));
    assert.equal(ds.samples[1].label, classIndex(FER2013, "sad"));
    writeFileSync(path.join(dir, "bad.csv"), "file,emotion\nx,y\n");
    assert.throws(() => readCsvList(path.join(dir, "bad.csv")), /path,label/);
  });

  test("ABAW layout built from real FER2013 images", async () => {
    const root = path.join(work, "abaw");
    const ann = path.join(root, "annotations", "Train_Set");
    const frames = path.join(root, "cropped_aligned");
    mkdirSync(ann, { recursive: true });
    const src = ferImages(3, 4);
    const header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other";
    // video1: frames 1, 2, 4 exist (3 had no face); labels 4, -1, 5, 0.
    mkdirSync(path.join(frames, "video1"), { recursive: true });
    for (const [k, frame] of [
      [0, 1],
      [1, 2],
      [2, 4],
    ]) {
      await sharp(src[k])
        .jpeg()
        .toFile(path.join(frames, "video1", `${String(frame).padStart(5, "0")}.jpg`));
    }
    writeFileSync(path.join(ann, "video1.txt"), `${header}\n4\n-1\n5\n0\n`);
    // Broken files: wrong header, a bad line, fewer lines than frames, no frames folder.
    writeFileSync(path.join(ann, "badheader.txt"), "Neutral,Happy\n1\n");
    mkdirSync(path.join(frames, "badline"));
    writeFileSync(path.join(ann, "badline.txt"), `${header}\n1\nhappy\n`);
    mkdirSync(path.join(frames, "short"));
    await sharp(src[3])
      .jpeg()
      .toFile(path.join(frames, "short", "00003.jpg"));
    writeFileSync(path.join(ann, "short.txt"), `${header}\n1\n`);
    writeFileSync(path.join(ann, "noframes.txt"), `${header}\n1\n`);
    const ds = readAbaw({ annotations: path.join(root, "annotations"), frames });
    assert.deepEqual(
      ds.samples.map((s) => [s.group, s.frame, s.label, s.split]),
      [
        ["video1", 1, 4, "Train_Set"],
        ["video1", 4, 0, "Train_Set"],
      ],
    );
    assert.equal(ds.samples[1].path, path.join(frames, "video1", "00004.jpg"));
    assert.deepEqual(ds.skipped.counts, {
      bad_header: 1,
      malformed_line: 1,
      missing_video_frames: 1,
      annotation_shorter_than_video: 1,
      invalid_frame_label: 1,
      no_face_frame: 1,
    });
  });

  test("pools: folder trees of images, labels hidden from labeled sets, PGM decoding", async () => {
    const pool = readImagePool([path.join(dataRoot, "orl_att_faces"), path.join(dataRoot, "lfw")]);
    assert.equal(pool.samples.length, 400 + 2875);
    assert.ok(pool.samples.every((s) => s.source === "orl_att_faces" || s.source === "lfw"));
    assert.ok(pool.skipped.counts.not_an_image >= 2);
    const pgm = pool.samples.find((s) => s.path.endsWith(".pgm")) as { path: string };
    const px = await decodeResized(pgm.path, 48, 1);
    assert.equal(px.length, 48 * 48);
    assert.ok(new Set(px).size > 50, "a real face, not a flat image");
    const hidden = hideLabels(splitOf(readFer2013Dataset(fer, { splits: ["Training"] }), "Training").slice(0, 5), "fer2013:Training");
    assert.ok(hidden.every((s) => s.hiddenLabel !== undefined && !("label" in s)));
    mkdirSync(path.join(work, "emptypool"));
    assert.throws(() => readImagePool([path.join(work, "emptypool")]), /no images/);
  });

  test("Netpbm parser: ASCII and binary, bad headers and truncation", () => {
    const ascii = parsePnm(Buffer.from("P2\n# comment\n2 2\n4\n0 1\n2 4\n"));
    assert.deepEqual([...ascii.data], [0, 64, 128, 255]);
    const bin = parsePnm(Buffer.concat([Buffer.from("P5 2 1 255\n"), Buffer.from([7, 9])]));
    assert.deepEqual([bin.width, bin.height, ...bin.data], [2, 1, 7, 9]);
    assert.throws(() => parsePnm(Buffer.from("P5 2 2 255\n\x01")), /truncated/);
    assert.throws(() => parsePnm(Buffer.from("JFIF")), /not a PGM/);
  });
});

describe("cache", () => {
  const files = (): string[] =>
    readFer2013Dataset(fer, { splits: ["PublicTest"] })
      .samples.slice(0, 200)
      .map((s) => s.path);
  const cacheDir = path.join(work, "cache");
  let produced = 0;
  const produce = (f: readonly string[]) => {
    produced++;
    return decodeBatch(f, 48, 1);
  };

  test("built once, then read back identically; settings or file changes rebuild", async () => {
    const list = files();
    const a = await cachedImages({ cacheDir, name: "t", files: list, settings: { size: 48 }, produce });
    const b = await cachedImages({ cacheDir, name: "t", files: list, settings: { size: 48 }, produce });
    assert.equal(produced, 1);
    assert.equal(a.fromCache, false);
    assert.equal(b.fromCache, true);
    assert.deepEqual(b.pixels, a.pixels);
    assert.deepEqual([...b.sourceIndex], [...a.sourceIndex]);
    await cachedImages({ cacheDir, name: "t", files: list, settings: { size: 48, v: 2 }, produce });
    assert.equal(produced, 2);
    // A source file touched but not changed (a copy, a fresh checkout) keeps the cache and
    // records the new time; a file whose bytes change rebuilds it.
    const copy = path.join(work, "copy.png");
    copyFileSync(list[0], copy);
    const withCopy = [copy, ...list.slice(1)];
    const first = await cachedImages({ cacheDir, name: "u", files: withCopy, settings: {}, produce });
    utimesSync(copy, new Date(), new Date(Date.now() + 5000));
    const touched = await cachedImages({ cacheDir, name: "u", files: withCopy, settings: {}, produce });
    assert.equal(touched.fromCache, true);
    const manifest = JSON.parse(readFileSync(path.join(touched.cachePath, "manifest.json"), "utf8")) as { stamps: number[][] };
    assert.equal(manifest.stamps[0][1], statSync(copy).mtimeMs);
    copyFileSync(list[1], copy);
    const changed = await cachedImages({ cacheDir, name: "u", files: withCopy, settings: {}, produce });
    assert.equal(changed.fromCache, false);
    assert.notDeepEqual(changed.pixels.subarray(0, 48 * 48), first.pixels.subarray(0, 48 * 48));
    // A missing file rebuilds too (and is skipped by the decoder).
    rmSync(copy);
    const missing = await cachedImages({ cacheDir, name: "u", files: withCopy, settings: {}, produce });
    assert.equal(missing.fromCache, false);
    // Only the newest cache of a name is kept.
    assert.equal(readdirSync(cacheDir).filter((d) => d.startsWith("t-")).length, 1);
  });

  test("a build that dies leaves no cache, and a truncated shard is rebuilt, not read", async () => {
    const list = files().slice(0, 20);
    await assert.rejects(
      cachedImages({
        cacheDir,
        name: "dies",
        files: list,
        settings: {},
        produce: async () => {
          throw new Error("killed");
        },
      }),
      /killed/,
    );
    assert.equal(readdirSync(cacheDir).filter((d) => d.startsWith("dies")).length, 0);
    const ok = await cachedImages({ cacheDir, name: "trunc", files: list, settings: {}, produce });
    writeFileSync(path.join(ok.cachePath, "shard-00000.bin"), Buffer.alloc(10));
    const rebuilt = await cachedImages({ cacheDir, name: "trunc", files: list, settings: {}, produce });
    assert.equal(rebuilt.fromCache, false);
    assert.deepEqual(rebuilt.pixels, ok.pixels);
    assert.ok(existsSync(path.join(rebuilt.cachePath, "manifest.json")));
  });
});

describe("pool preparation", () => {
  test("photos are detected, aligned to 48x48 gray and cached; hidden labels and sources kept", async () => {
    const lfw = readImagePool([path.join(dataRoot, "lfw")]).samples.slice(0, 26);
    const samples = lfw.map((s, i) => ({ ...s, hiddenLabel: i % 7 }));
    const pool = { name: "lfw26", samples, skipped: new SkipLog() };
    const cacheDir = path.join(work, "poolcache");
    const a = await preparePool(pool, { size: 48, channels: 1, cacheDir, progress: false });
    assert.equal(a.fromCache, false);
    assert.equal(a.n, 26, `no face in ${JSON.stringify(a.skipped)}`);
    assert.deepEqual(a.shape, [1, 48, 48]);
    assert.equal(a.images.length, 26 * 48 * 48);
    assert.deepEqual(
      [...a.hiddenLabels],
      samples.map((s) => s.hiddenLabel),
    );
    assert.ok(a.sources.every((s) => s === "lfw"));
    const b = await preparePool(pool, { size: 48, channels: 1, cacheDir, progress: false });
    assert.equal(b.fromCache, true);
    assert.deepEqual(b.images, a.images);
  });
});

describe("samplers and splits", () => {
  test("RandomSampler: seeded, every index once per epoch, state restores exactly", () => {
    const a = new RandomSampler(10, 7);
    const b = new RandomSampler(10, 7);
    const first = a.nextBatch(10);
    assert.deepEqual(
      [...first].sort((x, y) => x - y),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert.deepEqual(b.nextBatch(10), first);
    assert.notDeepEqual(new RandomSampler(10, 8).nextBatch(10), first);
    a.nextBatch(3);
    const saved = a.state();
    const next = a.nextBatch(15);
    const c = new RandomSampler(10, 0);
    c.loadState(saved);
    assert.deepEqual(c.nextBatch(15), next);
    assert.equal(c.epoch, 2);
  });

  test("ClassBalancedSampler draws classes about equally", () => {
    const labels = [...new Array(90).fill(0), ...new Array(10).fill(1)];
    const counts = [0, 0];
    for (const i of new ClassBalancedSampler(labels, 1).nextBatch(4000)) counts[labels[i]]++;
    assert.ok(Math.abs(counts[0] - counts[1]) < 300, `${counts}`);
  });

  test("few-label split: exactly N per class, deterministic for a seed, disjoint and complete", () => {
    const labels = readFer2013Dataset(fer, { splits: ["Training"] }).samples.map((s) => s.label);
    for (const n of [10, 25, 100, 250]) {
      const a = fewLabelSplit(labels, n, 0);
      const b = fewLabelSplit(labels, n, 0);
      assert.deepEqual(a, b);
      for (let c = 0; c < 7; c++) assert.equal(a.labeled.filter((i) => labels[i] === c).length, n);
      assert.equal(a.labeled.length + a.unlabeled.length, labels.length);
      const set = new Set(a.labeled);
      assert.ok(a.unlabeled.every((i) => !set.has(i)));
    }
    assert.notDeepEqual(fewLabelSplit(labels, 10, 1).labeled, fewLabelSplit(labels, 10, 0).labeled);
  });
});

describe("ferkit data summary", () => {
  const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
  test("--json has splits, skipped and total", () => {
    const r = spawnSync(process.execPath, [bin, "data", "summary", path.join(dataRoot, "orl_att_faces"), "--format", "pool", "--json"], {
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      splits: Record<string, Record<string, number>>;
      skipped: Record<string, number>;
      total: number;
      sizes: Record<string, number>;
    };
    assert.deepEqual(s.splits, { orl_att_faces: { unlabeled: 400 } });
    assert.equal(s.total, 400);
    assert.deepEqual(s.sizes, { "92x112": 400 });
    assert.ok(s.skipped.not_an_image >= 1);
  });

  test("a missing path is one line on stderr and exit code 2", () => {
    const r = spawnSync(process.execPath, [bin, "data", "summary", path.join(work, "missing")], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.match(r.stderr, /does not exist/);
  });
});
