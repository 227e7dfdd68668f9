// Bad input for every reader and decoder, on files made at test time from real images in
// ../shared/data: symbolic-link loops and links out of the root, files that vanish, awkward CSV,
// and images that are valid but awkward (1x1, 20000x20000, 16-bit, CMYK, EXIF-rotated, animated,
// BMP) or empty. Each is either decoded correctly or skipped with a warning naming it and a count
// by reason, once; nothing stops a batch.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { encode as encodeBmp } from "bmp-ts";
import sharp from "sharp";
import { readAbaw } from "../src/data/abaw.js";
import { DataError, SkipLog, type LabeledDataset } from "../src/data/dataset.js";
import { readFer2013, readFer2013Dataset } from "../src/data/fer2013.js";
import { readCsvList, readImageFolder, readImagePool } from "../src/data/folders.js";
import { ImageError, MAX_INPUT_PIXELS, decodeBatch, decodeResized, probeImage, readImageBytes } from "../src/data/image.js";
import { FER2013 } from "../src/data/labels.js";
import { parsePnm } from "../src/data/pnm.js";
import { prepareSplit } from "../src/data/prepare.js";
import { preparePool } from "../src/data/pool_prepare.js";
import { summarize } from "../src/data/summary.js";
import { decodeImage, decodeSafely, detectDecoded } from "../src/faces/photos.js";
import { defaultDataRoot } from "../src/paths.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";

const dataRoot = defaultDataRoot();
const fer = path.join(dataRoot, "fer2013");
const lfwPhoto = path.join(dataRoot, "lfw", "lfw-deepfunneled", "AJ_Cook", "AJ_Cook_0001.jpg");
const bin = path.join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const work = mkdtempSync(path.join(tmpdir(), "ferkit-bad-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** The first `n` FER2013 Training PNGs of a class (48x48 gray, real faces). */
function ferImages(label: number, n: number): string[] {
  return readFer2013Dataset(fer, { splits: ["Training"] })
    .samples.filter((s) => s.label === label)
    .slice(0, n)
    .map((s) => s.path);
}

/** Mean absolute difference of two equal-length byte arrays. */
function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** Collects warnings, and asserts one names a file (or line) and a reason. */
function warnings(): { warn: (m: string) => void; lines: string[]; has: (what: string, reason: string) => boolean } {
  const lines: string[] = [];
  return { warn: (m) => lines.push(m), lines, has: (what, reason) => lines.some((l) => l.includes(what) && l.includes(reason)) };
}

/**
 * An 8-bit paletted (gray palette), top-down BMP around real 8-bit gray pixels, written by hand:
 * the layout of older FER datasets' BMPs, which the `bmp-ts` encoder does not write.
 */
function grayBmp(pixels: Uint8Array, width: number, height: number): Buffer {
  const row = Math.ceil(width / 4) * 4;
  const offset = 14 + 40 + 256 * 4;
  const buf = Buffer.alloc(offset + row * height);
  buf.write("BM", 0, "latin1");
  buf.writeUInt32LE(buf.length, 2);
  buf.writeUInt32LE(offset, 10);
  buf.writeUInt32LE(40, 14);
  buf.writeInt32LE(width, 18);
  buf.writeInt32LE(-height, 22); // negative: rows stored top to bottom
  buf.writeUInt16LE(1, 26);
  buf.writeUInt16LE(8, 28);
  buf.writeUInt32LE(0, 30); // BI_RGB
  buf.writeUInt32LE(row * height, 34);
  buf.writeUInt32LE(256, 46);
  for (let i = 0; i < 256; i++) buf.writeUInt32LE(i * 0x010101, 54 + 4 * i);
  for (let y = 0; y < height; y++) buf.set(pixels.subarray(y * width, (y + 1) * width), offset + y * row);
  return buf;
}

/** A 24-bit BMP of a real photo, written by the `bmp-ts` encoder (pixels as A,B,G,R bytes). */
async function rgbBmp(file: string): Promise<Buffer> {
  const { data, info } = await sharp(file).removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  const abgr = Buffer.alloc(info.width * info.height * 4);
  for (let i = 0; i < info.width * info.height; i++) {
    abgr[4 * i + 1] = data[3 * i + 2];
    abgr[4 * i + 2] = data[3 * i + 1];
    abgr[4 * i + 3] = data[3 * i];
  }
  return encodeBmp({ data: abgr, width: info.width, height: info.height, bitPP: 24 }).data;
}

/** The awkward images, made once from real ones: name -> path. */
const awkward = (async () => {
  const dir = path.join(work, "awkward");
  mkdirSync(dir);
  const [face, face2, face3] = ferImages(3, 3);
  const out = (name: string): string => path.join(dir, name);
  const gray = await sharp(face).grayscale().raw().toBuffer();
  await sharp(face).toColourspace("grey16").png().toFile(out("gray16.png"));
  await sharp(lfwPhoto).toColourspace("rgb16").png().toFile(out("rgb16.png"));
  await sharp(lfwPhoto).png().toFile(out("photo.png"));
  await sharp(lfwPhoto).ensureAlpha().png().toFile(out("rgba.png"));
  await sharp(lfwPhoto).toColourspace("cmyk").jpeg({ quality: 95 }).toFile(out("cmyk.jpg"));
  await sharp(lfwPhoto).jpeg({ quality: 95 }).toFile(out("upright.jpg"));
  // Stored turned a quarter to the left, with EXIF orientation 6 ("turn right to view").
  await sharp(lfwPhoto).rotate(-90).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toFile(out("exif6.jpg"));
  // Three real faces as the frames of an animated GIF.
  const frames = Buffer.concat(await Promise.all([face, face2, face3].map((f) => sharp(f).toColourspace("srgb").raw().toBuffer())));
  await sharp(frames, { raw: { width: 48, height: 144, channels: 3, pageHeight: 48 } })
    .gif({ delay: [100, 100, 100], loop: 0 })
    .toFile(out("animated.gif"));
  writeFileSync(out("gray8.bmp"), grayBmp(gray, 48, 48));
  writeFileSync(out("photo24.bmp"), await rgbBmp(lfwPhoto));
  await sharp(face).resize(1, 1).png().toFile(out("tiny1x1.png"));
  // 20000x20000 (400 megapixels) from a real face: 13 MB of PNG, 1.2 GB if it were decoded to RGB.
  await sharp(face).resize(20000, 20000, { kernel: "nearest" }).png({ compressionLevel: 1 }).toFile(out("huge.png"));
  // Headers that claim 20000x20000 around a few real pixels: refused before anything is allocated.
  const hugeBmp = grayBmp(gray, 48, 48);
  hugeBmp.writeInt32LE(20000, 18);
  hugeBmp.writeInt32LE(20000, 22);
  writeFileSync(out("huge.bmp"), hugeBmp);
  writeFileSync(out("huge.pgm"), Buffer.concat([Buffer.from("P5 20000 20000 255\n"), gray]));
  writeFileSync(out("truncated.bmp"), grayBmp(gray, 48, 48).subarray(0, 2000));
  writeFileSync(out("empty.png"), "");
  writeFileSync(out("empty.bmp"), "");
  return { dir, face, gray, file: out };
})();

describe("image decoding: awkward but valid images decode correctly", () => {
  test("16-bit PNG, CMYK and RGBA come out as the 8-bit image they show, gray and RGB", async () => {
    const { file } = await awkward;
    for (const channels of [1, 3] as const) {
      const ref = await decodeResized(file("photo.png"), 48, channels);
      for (const name of ["rgb16.png", "rgba.png"]) {
        const px = await decodeResized(file(name), 48, channels);
        assert.ok(meanAbsDiff(px, ref) < 1, `${name} x${channels}: ${meanAbsDiff(px, ref)}`);
      }
      const cmyk = await decodeResized(file("cmyk.jpg"), 48, channels);
      const upright = await decodeResized(file("upright.jpg"), 48, channels);
      // CMYK goes through sharp's default profile: near the RGB JPEG, not exact.
      assert.ok(meanAbsDiff(cmyk, upright) < 12, `cmyk x${channels}: ${meanAbsDiff(cmyk, upright)}`);
    }
    const { gray, file: f } = await awkward;
    assert.deepEqual(await decodeResized(f("gray16.png"), 48, 1), new Uint8Array(gray));
  });

  test("an EXIF-rotated JPEG is turned upright (both decoders)", async () => {
    const { file } = await awkward;
    const upright = await decodeResized(file("upright.jpg"), 48, 1);
    const turned = await decodeResized(file("exif6.jpg"), 48, 1);
    assert.ok(meanAbsDiff(turned, upright) < 8, `after rotation: ${meanAbsDiff(turned, upright)}`);
    // Without the rotation the two would differ like unrelated images.
    const raw = await sharp(file("exif6.jpg")).grayscale().resize(48, 48, { fit: "cover" }).raw().toBuffer();
    assert.ok(meanAbsDiff(new Uint8Array(raw), upright) > 30);
    const photo = await decodeImage(file("exif6.jpg"));
    const ref = await decodeImage(file("upright.jpg"));
    assert.deepEqual([photo.width, photo.height, photo.photoWidth, photo.photoHeight], [ref.width, ref.height, 250, 250]);
    assert.ok(meanAbsDiff(photo.data, ref.data) < 8);
  });

  test("an animated GIF gives its first frame", async () => {
    const { file, gray } = await awkward;
    const px = await decodeResized(file("animated.gif"), 48, 1);
    assert.ok(meanAbsDiff(px, new Uint8Array(gray)) < 2, `first frame: ${meanAbsDiff(px, new Uint8Array(gray))}`);
    assert.deepEqual(await probeImage(readFileSync(file("animated.gif")), "animated.gif"), { width: 48, height: 48, format: "gif" });
  });

  test("BMP (issue #21 item 5): 8-bit paletted top-down and 24-bit bottom-up, in every decoder", async () => {
    const { file, gray } = await awkward;
    // The gray BMP holds the FER2013 pixels exactly.
    assert.deepEqual(await decodeResized(file("gray8.bmp"), 48, 1), new Uint8Array(gray));
    const ref = await decodeResized(file("photo.png"), 112, 3);
    const bmp = await decodeResized(file("photo24.bmp"), 112, 3);
    assert.ok(meanAbsDiff(bmp, ref) < 0.5, `24-bit BMP: ${meanAbsDiff(bmp, ref)}`);
    const photo = await decodeImage(file("photo24.bmp"));
    const png = await decodeImage(file("photo.png"));
    assert.deepEqual([photo.width, photo.height, photo.photoWidth], [png.width, png.height, 250]);
    assert.ok(meanAbsDiff(photo.data, png.data) < 0.5);
    const small = await decodeImage(file("gray8.bmp")); // 48 px: upscaled for detection like any photo
    assert.deepEqual([small.width, small.height, small.photoWidth, small.photoHeight], [192, 192, 48, 48]);
    assert.deepEqual(await probeImage(readFileSync(file("photo24.bmp")), "p.bmp"), { width: 250, height: 250, format: "bmp" });
  });
});

describe("formats (issue #24 item 4): one list of extensions for files and folders", () => {
  test("AVIF is read from a folder as from a file; HEIC is reported on one line naming the file; BMP decodes", async () => {
    const dir = path.join(work, "formats");
    mkdirSync(dir, { recursive: true });
    await sharp(lfwPhoto).avif().toFile(path.join(dir, "photo.avif"));
    // A real HEIC (HEVC) from libheif's encoder (Debian's libheif-examples, installed by scripts/setup.sh --test).
    const enc = spawnSync("heif-enc", ["-q", "60", "-o", path.join(dir, "photo.heic"), lfwPhoto], { encoding: "utf8" });
    assert.equal(enc.status, 0, `heif-enc: ${enc.stderr}`);
    copyFileSync((await awkward).file("photo24.bmp"), path.join(dir, "photo.bmp"));
    const folder = spawnSync(process.execPath, [bin, "predict", dir, "--json"], { encoding: "utf8" });
    const jsonLines = (out: string) =>
      out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { file: string; faces?: unknown[]; error?: string });
    const fromFolder = jsonLines(folder.stdout);
    assert.deepEqual(fromFolder.map((e) => path.basename(e.file)).sort(), ["photo.avif", "photo.bmp", "photo.heic"]);
    const avif = fromFolder.find((e) => e.file.endsWith(".avif"));
    assert.equal(avif?.faces?.length, 1, "the AVIF photo's face");
    const heicLines = folder.stderr.split("\n").filter((l) => l.includes("photo.heic"));
    assert.equal(heicLines.length, 1, folder.stderr);
    assert.match(heicLines[0], /an HEIC \(HEVC-coded HEIF\) image, .* convert it, e\.g\. with heif-convert/);
    assert.equal(folder.status, 2, "an unreadable input makes the exit code 2");
    const single = spawnSync(process.execPath, [bin, "predict", path.join(dir, "photo.avif"), "--json"], { encoding: "utf8" });
    assert.deepEqual(jsonLines(single.stdout)[0].faces, avif?.faces);
  });

  test("a multi-line decoder message becomes one line: its lead and its cause", () => {
    const e = new ImageError(
      "unreadable_image",
      "x.heic",
      "Input file has corrupt header: x.heic: bad seek to 2979\nx.heic: bad seek to 2957\nheif: Invalid input: No 'hvcC' box (2.106)",
    );
    assert.equal(e.detail, "Input file has corrupt header: heif: Invalid input: No 'hvcC' box (2.106)");
    assert.ok(!e.message.includes("\n"));
  });
});

describe("image decoding: bad images are skipped with a reason", () => {
  const expected: Record<string, string> = {
    "tiny1x1.png": "image_too_small",
    "huge.png": "image_too_large",
    "huge.bmp": "image_too_large",
    "huge.pgm": "image_too_large",
    "truncated.bmp": "unreadable_image",
    "empty.png": "empty_file",
    "empty.bmp": "empty_file",
  };

  test("each decoder names the file and the reason; 20000x20000 is refused from its header, in bounded memory", async () => {
    const { file } = await awkward;
    for (const [name, reason] of Object.entries(expected)) {
      const f = file(name);
      const check = (e: unknown): boolean => {
        assert.ok(e instanceof ImageError, `${name}: ${String(e)}`);
        assert.equal(e.reason, reason, `${name}: ${e.message}`);
        assert.ok(e.message.includes(f), e.message);
        return true;
      };
      await assert.rejects(decodeResized(f, 48, 1), check);
      await assert.rejects(decodeImage(f), check);
      // The header probe (data summary) cannot see a truncated body; everything else it sees.
      const probe = readImageBytes(f).then((b) => probeImage(b, f));
      if (name === "truncated.bmp") assert.deepEqual(await probe, { width: 48, height: 48, format: "bmp" });
      else await assert.rejects(probe, check);
    }
    const rss = process.memoryUsage().rss;
    const t0 = performance.now();
    await assert.rejects(decodeResized(file("huge.png"), 48, 3), /20000x20000 pixels \(400 megapixels\), above the 100 megapixels/);
    assert.ok(performance.now() - t0 < 2000, "refused from the header, not decoded");
    assert.ok(process.memoryUsage().rss - rss < 200e6, "no image-sized allocation");
    assert.equal(MAX_INPUT_PIXELS, 100_000_000);
    // The PGM parser itself refuses a header asking for more pixels than the file holds.
    assert.throws(() => parsePnm(readFileSync(file("huge.pgm"))), /truncated PGM\/PPM data/);
  });

  test("a batch goes on past every bad file: counts by reason, each file once", async () => {
    const { file } = await awkward;
    const good = ["gray16.png", "rgb16.png", "cmyk.jpg", "exif6.jpg", "animated.gif", "gray8.bmp", "photo24.bmp", "rgba.png"];
    const files = [...good, ...Object.keys(expected)].map(file);
    const skipped: string[] = [];
    const set = await decodeBatch(files, 48, 3, {
      concurrency: 4,
      onSkip: (f, _m, reason) => skipped.push(`${path.basename(f)}:${reason}`),
    });
    assert.equal(set.n, good.length);
    assert.deepEqual([...set.sourceIndex], [...good.keys()]);
    assert.deepEqual(set.skipped, { image_too_small: 1, image_too_large: 3, unreadable_image: 1, empty_file: 2 });
    assert.deepEqual(
      skipped.sort(),
      Object.entries(expected)
        .map(([n, r]) => `${n}:${r}`)
        .sort(),
    );
  });
});

describe("links in folder trees (issue #21 item 2)", () => {
  test("ImageFolder with class/loop -> . reads its 6 images once, the loop skipped with a reason", () => {
    const root = path.join(work, "loopfolder");
    mkdirSync(path.join(root, "happy"), { recursive: true });
    ferImages(3, 6).forEach((f, i) => copyFileSync(f, path.join(root, "happy", `${i}.png`)));
    symlinkSync(".", path.join(root, "happy", "loop"));
    const w = warnings();
    const ds = readImageFolder(root, { warn: w.warn });
    assert.equal(ds.samples.length, 6);
    assert.equal(new Set(ds.samples.map((s) => s.path)).size, 6);
    assert.deepEqual(ds.skipped.counts, { link_loop: 1 });
    assert.ok(w.has(path.join(root, "happy", "loop"), "link_loop"), w.lines.join("\n"));
  });

  test("links out of the root are followed once; loops, repeats, broken links, pipes and empty files are skipped", () => {
    const root = path.join(work, "links", "data");
    const outside = path.join(work, "links", "outside");
    mkdirSync(path.join(root, "happy"), { recursive: true });
    mkdirSync(path.join(root, "sad"), { recursive: true });
    mkdirSync(outside, { recursive: true });
    ferImages(3, 3).forEach((f, i) => copyFileSync(f, path.join(root, "happy", `${i}.png`)));
    ferImages(4, 2).forEach((f, i) => copyFileSync(f, path.join(root, "sad", `${i}.png`)));
    ferImages(3, 5)
      .slice(3)
      .forEach((f, i) => copyFileSync(f, path.join(outside, `o${i}.png`)));
    const happy = path.join(root, "happy");
    symlinkSync(outside, path.join(happy, "extra")); // a folder out of the root: followed, 2 images
    symlinkSync(outside, path.join(happy, "extra_again")); // the same folder again: duplicate_folder
    symlinkSync("../sad", path.join(happy, "to_sad")); // another class's folder: duplicate_folder, no relabel
    symlinkSync("../..", path.join(happy, "up")); // an ancestor of the root: link_loop
    symlinkSync(path.join(outside, "o0.png"), path.join(happy, "o0_again.png")); // a file already listed: duplicate_file
    symlinkSync(path.join(work, "nowhere.png"), path.join(happy, "gone.png")); // broken_link
    symlinkSync("self.png", path.join(happy, "self.png")); // a link to itself: broken_link (ELOOP)
    writeFileSync(path.join(happy, "zero.png"), ""); // empty_file
    const fifo = spawnSync("mkfifo", [path.join(happy, "pipe.png")]).status === 0; // not_a_file (must not block)
    const w = warnings();
    const ds = readImageFolder(root, { warn: w.warn });
    assert.deepEqual(ds.space.classes, ["happy", "sad"]);
    const rel = ds.samples.map((s) => `${s.label}:${path.relative(root, s.path)}`);
    assert.deepEqual(rel, [
      "0:happy/0.png",
      "0:happy/1.png",
      "0:happy/2.png",
      "0:happy/extra/o0.png",
      "0:happy/extra/o1.png",
      "1:sad/0.png",
      "1:sad/1.png",
    ]);
    assert.deepEqual(ds.skipped.counts, {
      broken_link: 2,
      duplicate_folder: 2,
      duplicate_file: 1,
      empty_file: 1,
      link_loop: 1,
      ...(fifo ? { not_a_file: 1 } : {}),
    });
    for (const [name, reason] of [
      ["extra_again", "duplicate_folder"],
      ["to_sad", "duplicate_folder"],
      ["up", "link_loop"],
      ["o0_again.png", "duplicate_file"],
      ["gone.png", "broken_link"],
      ["zero.png", "empty_file"],
    ])
      assert.ok(w.has(path.join(happy, name), reason), `${name}: ${w.lines.join("\n")}`);
    // A pool over the same tree, given twice and with a root inside it: every image once.
    const pool = readImagePool([root, root, happy]);
    assert.equal(pool.samples.length, 7);
    assert.equal(new Set(pool.samples.map((s) => s.path)).size, 7);
    assert.equal(pool.samples.filter((s) => s.source === "happy").length, 5, "the inner root keeps its own source");
    assert.ok(pool.skipped.counts.duplicate_folder >= 2);
    // A root two levels inside another: the folder between them is walked (its own image kept),
    // only the inner root is skipped there.
    const outer = path.join(work, "nested-roots");
    mkdirSync(path.join(outer, "b", "c"), { recursive: true });
    const [i0, i1, i2] = ferImages(3, 3);
    copyFileSync(i0, path.join(outer, "top.png"));
    copyFileSync(i1, path.join(outer, "b", "between.png"));
    copyFileSync(i2, path.join(outer, "b", "c", "inner.png"));
    const nested = readImagePool([outer, path.join(outer, "b", "c")]);
    assert.deepEqual(nested.samples.map((s) => path.basename(s.path)).sort(), ["between.png", "inner.png", "top.png"]);
    assert.equal(nested.skipped.counts.link_loop ?? 0, 0);
  });
});

describe("a file that disappears between listing and reading", () => {
  test("decoding, preparing, summarising and detecting skip it as missing_file, once", async () => {
    const root = path.join(work, "vanish");
    mkdirSync(path.join(root, "happy"), { recursive: true });
    ferImages(3, 4).forEach((f, i) => copyFileSync(f, path.join(root, "happy", `${i}.png`)));
    const ds = readImageFolder(root);
    assert.equal(ds.samples.length, 4);
    const gone = ds.samples[1].path;
    unlinkSync(gone);
    const w = warnings();
    const split = await prepareSplit(ds, "all", {
      size: 48,
      channels: 1,
      cacheDir: path.join(work, "vanish-cache"),
      progress: false,
      warn: w.warn,
    });
    assert.equal(split.n, 3);
    assert.deepEqual(split.skipped, { missing_file: 1 });
    assert.ok(w.has(gone, "missing_file"), w.lines.join("\n"));
    const sw = warnings();
    const summary = await summarize(ds, undefined, sw.warn);
    assert.equal(summary.total, 3);
    assert.deepEqual(summary.skipped, { missing_file: 1 });
    assert.deepEqual(sw.lines, [`skipped ${gone}: missing_file (the file does not exist (removed since it was listed?))`]);
    // The face pipeline: the decoder's reason travels with the result, the detector is never called.
    const noDetector = {
      detect: async () => {
        throw new Error("not called");
      },
    };
    const r = await detectDecoded(gone, await decodeSafely(gone, { size: 48, channels: 1 }), noDetector, { size: 48, channels: 1 });
    assert.equal(r.status, "skipped");
    assert.ok(r.status === "skipped" && r.reason === "unreadable_image" && r.decodeReason === "missing_file");
    // A pool of photos that are already crops: the same counts.
    const pool = { name: "vanish", samples: ds.samples.map((s) => ({ path: s.path, source: "vanish" })), skipped: ds.skipped };
    const pw = warnings();
    const p = await preparePool(pool, {
      size: 48,
      channels: 1,
      cacheDir: path.join(work, "vanish-cache"),
      align: "resize",
      progress: false,
      warn: pw.warn,
    });
    assert.deepEqual([p.n, p.skipped], [3, { missing_file: 1 }]);
    assert.ok(pw.has(gone, "missing_file"));
  });
});

describe("a pipe named like an image", () => {
  test("is never read (it would block): cache digest, decoder and summary skip it as not_a_file", { timeout: 60_000 }, async (t) => {
    const dir = path.join(work, "pipe");
    mkdirSync(dir);
    const pipe = path.join(dir, "fer9999999.png");
    if (spawnSync("mkfifo", [pipe]).status !== 0) return t.skip("mkfifo is not available");
    // As FER2013 or ABAW list it: from their annotation files, without looking at the file.
    const images = ferImages(3, 2);
    const ds: LabeledDataset = {
      name: "pipe",
      space: FER2013,
      samples: [images[0], pipe, images[1]].map((p) => ({ path: p, label: 3, split: "Training" })),
      skipped: new SkipLog(),
    };
    const w = warnings();
    const split = await prepareSplit(ds, "Training", {
      size: 48,
      channels: 1,
      cacheDir: path.join(work, "pipe-cache"),
      progress: false,
      warn: w.warn,
    });
    assert.deepEqual([split.n, split.skipped], [2, { not_a_file: 1 }]);
    assert.ok(w.has(pipe, "not_a_file"));
    const again = await prepareSplit(ds, "Training", { size: 48, channels: 1, cacheDir: path.join(work, "pipe-cache"), progress: false });
    assert.deepEqual([again.n, again.skipped], [2, { not_a_file: 1 }]);
    const summary = await summarize(ds);
    assert.deepEqual([summary.total, summary.skipped], [2, { not_a_file: 1 }]);
  });
});

describe("awkward images through the readers, summary and preparation", () => {
  test("an ImageFolder of awkward images: summary and prepare agree on what is usable", async () => {
    const { file } = await awkward;
    const root = path.join(work, "awkfolder");
    mkdirSync(path.join(root, "happy"), { recursive: true });
    const names = [
      "gray16.png",
      "cmyk.jpg",
      "exif6.jpg",
      "animated.gif",
      "gray8.bmp",
      "photo24.bmp",
      "tiny1x1.png",
      "huge.bmp",
      "truncated.bmp",
      "empty.png",
    ];
    for (const n of names) copyFileSync(file(n), path.join(root, "happy", n));
    const w = warnings();
    const ds = readImageFolder(root, { warn: w.warn });
    assert.equal(ds.samples.length, 9, "the empty file is skipped by the reader");
    assert.deepEqual(ds.skipped.counts, { empty_file: 1 });
    const summary = await summarize(ds, undefined, w.warn);
    // The summary reads headers: the truncated BMP's header is fine, so only decoding finds it bad.
    assert.deepEqual(summary.skipped, { empty_file: 1, image_too_small: 1, image_too_large: 1 });
    assert.equal(summary.total, 7);
    assert.deepEqual(summary.sizes, { "48x48": 4, "250x250": 3 });
    const split = await prepareSplit(ds, "all", {
      size: 48,
      channels: 1,
      cacheDir: path.join(work, "awk-cache"),
      progress: false,
      warn: w.warn,
    });
    assert.equal(split.n, 6);
    assert.deepEqual(split.skipped, { image_too_small: 1, image_too_large: 1, unreadable_image: 1 });
    for (const [n, reason] of [
      ["tiny1x1.png", "image_too_small"],
      ["huge.bmp", "image_too_large"],
      ["truncated.bmp", "unreadable_image"],
      ["empty.png", "empty_file"],
    ])
      assert.ok(w.has(n, reason), `${n}: ${w.lines.join("\n")}`);
  });
});

describe("CSV lists (issue #21 item 3)", () => {
  test("BOM, CRLF and quoted fields read; rows with too many or too few fields, blank lines skipped by line", () => {
    const dir = path.join(work, "csvlist");
    mkdirSync(dir);
    const imgs = ferImages(3, 3);
    copyFileSync(imgs[0], path.join(dir, "a.png"));
    copyFileSync(imgs[1], path.join(dir, "b, with comma.png"));
    copyFileSync(imgs[2], path.join(dir, "c.png"));
    writeFileSync(path.join(dir, "zero.png"), "");
    const lines = [
      "path,label,split", // 1
      "a.png,happy,train", // 2
      '"b, with comma.png","happy",train', // 3
      "c.png,sad,test", // 4
      "c.png,sad,test,oops", // 5: an extra column (the 'columns length is 2, got 3 on line 5')
      "", // 6: blank
      "a.png,happy", // 7: too few
      '"multi', // 8: a quoted path over two lines: line 8, missing
      'line.png",happy,train', // 9
      "zero.png,happy,train", // 10: empty file
      "c.png,smug,train", // 11
      "   ", // 12: blank
      ".,happy,train", // 13: a folder
    ];
    const file = path.join(dir, "list.csv");
    writeFileSync(file, `\uFEFF${lines.join("\r\n")}\r\n`);
    const w = warnings();
    const ds = readCsvList(file, { space: FER2013, warn: w.warn });
    assert.deepEqual(
      ds.samples.map((s) => [path.basename(s.path), s.label, s.split]),
      [
        ["a.png", 3, "train"],
        ["b, with comma.png", 3, "train"],
        ["c.png", 4, "test"],
      ],
    );
    assert.deepEqual(ds.skipped.counts, {
      wrong_column_count: 2,
      blank_line: 2,
      missing_file: 1,
      empty_file: 1,
      unknown_label: 1,
      not_a_file: 1,
    });
    for (const [line, reason] of [
      [5, "wrong_column_count (4 fields, the header has 3)"],
      [6, "blank_line"],
      [7, "wrong_column_count (2 fields, the header has 3)"],
      [8, "missing_file"],
      [10, "empty_file"],
      [11, "unknown_label"],
    ] as const)
      assert.ok(w.has(`list.csv line ${line}:`, reason), `line ${line}: ${w.lines.join("\n")}`);
    // Only a file that is not a CSV list at all is an error.
    writeFileSync(path.join(dir, "quote.csv"), 'path,label\n"a.png,happy\nc.png,sad\n');
    assert.throws(
      () => readCsvList(path.join(dir, "quote.csv")),
      (e: unknown) => e instanceof DataError && /quote\.csv is not valid CSV/.test(e.message),
    );
    copyFileSync(imgs[0], path.join(dir, "image.csv"));
    assert.throws(() => readCsvList(path.join(dir, "image.csv")), DataError);
    writeFileSync(path.join(dir, "empty.csv"), "");
    assert.throws(() => readCsvList(path.join(dir, "empty.csv")), /path,label/);
  });

  test("FER2013 labels.csv with a BOM, CRLF, quoted fields and broken rows", () => {
    const root = path.join(work, "fer-csv");
    mkdirSync(root);
    // The real image folders, linked; the real labels file's first 300 rows, reworked.
    for (const d of ["FER2013Train", "FER2013Valid", "FER2013Test"]) symlinkSync(path.join(fer, d), path.join(root, d));
    const real = readFileSync(path.join(fer, "labels.csv"), "utf8").split("\n");
    const rows = real.slice(1, 301).filter((l) => l !== "");
    const quoted = rows.map((l, i) =>
      i % 2 === 0
        ? l
            .split(",")
            .map((f) => `"${f}"`)
            .join(",")
        : l,
    );
    quoted[10] += ",extra"; // line 12: too many fields
    quoted[20] = quoted[20].split(",").slice(0, 5).join(","); // line 22: too few
    quoted[30] = quoted[30].replace(/^"?(\d+)"?,"?Training"?/, "$1,Validation"); // line 32: not a split
    quoted.splice(40, 0, ""); // line 42: blank
    writeFileSync(path.join(root, "labels.csv"), `\uFEFF${real[0]}\r\n${quoted.join("\r\n")}\r\n`);
    const w = warnings();
    const ds = readFer2013Dataset(root, { warn: w.warn });
    const ref = readFer2013Dataset(fer, { splits: ["Training"] }).samples.slice(0, 400);
    const bad = new Set([10, 20, 30].map((i) => path.join(fer, rows[i].split(",")[2])));
    const want = ref.filter((s) => s.path.startsWith(path.join(fer, "FER2013Train")) && !bad.has(s.path));
    const got = ds.samples.map((s) => ({ ...s, path: s.path.replace(root, fer) }));
    assert.deepEqual(got, want.slice(0, got.length));
    assert.equal(ds.skipped.counts.wrong_column_count, 2);
    assert.equal(ds.skipped.counts.invalid_split, 1);
    assert.equal(ds.skipped.counts.blank_line, 1);
    for (const [line, reason] of [
      [12, "wrong_column_count"],
      [22, "wrong_column_count"],
      [32, "invalid_split"],
      [42, "blank_line"],
    ] as const)
      assert.ok(w.has(`labels.csv line ${line}:`, reason), `line ${line}: ${w.lines.join("\n")}`);
    const legacy = readFer2013(root);
    assert.equal(legacy.skipped.malformed, 4);
    assert.equal(legacy.records.length, ds.samples.length);
  });
});

describe("ABAW annotations", () => {
  test("BOM and CRLF read; an annotation that cannot be read is skipped by name", async () => {
    const root = path.join(work, "abaw");
    const ann = path.join(root, "annotations");
    const frames = path.join(root, "cropped_aligned");
    mkdirSync(path.join(frames, "v1"), { recursive: true });
    mkdirSync(ann, { recursive: true });
    const src = ferImages(3, 2);
    for (const [k, frame] of [
      [0, 1],
      [1, 2],
    ])
      await sharp(src[k])
        .jpeg()
        .toFile(path.join(frames, "v1", `${String(frame).padStart(5, "0")}.jpg`));
    const header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other";
    writeFileSync(path.join(ann, "v1.txt"), `\uFEFF${header}\r\n4\r\n5\r\n`);
    symlinkSync(path.join(work, "nowhere.txt"), path.join(ann, "gone.txt"));
    const w = warnings();
    const ds = readAbaw({ annotations: ann, frames, warn: w.warn });
    assert.deepEqual(
      ds.samples.map((s) => [s.group, s.frame, s.label]),
      [
        ["v1", 1, 4],
        ["v1", 2, 5],
      ],
    );
    assert.deepEqual(ds.skipped.counts, { unreadable_file: 1 });
    assert.ok(w.has("gone.txt", "unreadable_file"), w.lines.join("\n"));
  });
});

describe("the CLI on bad input", () => {
  test("data summary and data prepare go past every kind of bad file, warn by name and count once", async () => {
    const { file } = await awkward;
    const root = path.join(work, "cli-folder");
    mkdirSync(path.join(root, "happy"), { recursive: true });
    for (const n of ["gray8.bmp", "photo24.bmp", "huge.png", "tiny1x1.png", "truncated.bmp", "empty.bmp"])
      copyFileSync(file(n), path.join(root, "happy", n));
    symlinkSync(".", path.join(root, "happy", "loop"));
    const run = (...args: string[]) => spawnSync(process.execPath, [bin, "data", ...args, root, "--json"], { encoding: "utf8" });
    const summary = run("summary");
    assert.equal(summary.status, 0, summary.stderr);
    const s = JSON.parse(summary.stdout) as { total: number; skipped: Record<string, number> };
    assert.equal(s.total, 3);
    assert.deepEqual(s.skipped, { link_loop: 1, empty_file: 1, image_too_large: 1, image_too_small: 1 });
    for (const [n, reason] of [
      ["loop", "link_loop"],
      ["empty.bmp", "empty_file"],
      ["huge.png", "image_too_large"],
      ["tiny1x1.png", "image_too_small"],
    ])
      assert.match(summary.stderr, new RegExp(`warning: skipped \\S*${n.replace(".", "\\.")}: ${reason}`));
    const prepare = run("prepare", "--cache", path.join(work, "cli-cache"));
    assert.equal(prepare.status, 0, prepare.stderr);
    const p = JSON.parse(prepare.stdout) as { all: { images: number; skipped: Record<string, number> } };
    assert.deepEqual(p.all, { images: 2, skipped: { image_too_large: 1, image_too_small: 1, unreadable_image: 1 } });
    assert.match(prepare.stderr, /truncated\.bmp: unreadable_image \(truncated BMP/);
  });
});
