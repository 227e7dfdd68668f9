/**
 * Augmentation: seeded determinism of the views, each RandAugment op against values
 * worked out by hand from Pillow's definitions, the weak transform, Cutout, the batched
 * grouping, and the worker thread giving the main thread's views.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import type { Tensor } from "../src/torch/index.js";
import { Rng } from "../src/data/sampler.js";
import * as A from "../src/augment/index.js";
import "./helpers.js"; // one intra-op thread, as every test file

/** A uint8 batch `[n, c, h, w]` of seeded noise (deterministic, independent of libtorch's generator). */
function noiseBatch(n: number, c: number, h: number, w: number, seed = 7): Tensor {
  const rng = new Rng(seed);
  return torch.fromArray(
    Uint8Array.from({ length: n * c * h * w }, () => rng.int(256)),
    [n, c, h, w],
  );
}

/** A float32 `[1, 1, h, w]` image on the 0..255 scale from row-major values. */
function img(values: readonly number[], h: number, w: number): Tensor {
  return torch.fromArray(Float32Array.from(values), [1, 1, h, w]);
}

/** Runs `fn` on a tensor and returns its values, disposing everything. */
function run(fn: () => Tensor): number[] {
  return torch.tidy(() => fn().toNumbers());
}

function bytesOf(views: A.Views): Buffer[] {
  return [...views.weak, ...views.strong].map((t) => t.toBytes());
}

describe("makeViews: seeded determinism", () => {
  const batch = noiseBatch(16, 1, 48, 48);
  after(() => batch.dispose());

  test("the same seed gives bit-identical views; a different seed different views", () => {
    const a = A.makeViews(batch, new Rng(123));
    const b = A.makeViews(batch, new Rng(123));
    const c = A.makeViews(batch, new Rng(124));
    const [ba, bb, bc] = [a, b, c].map(bytesOf);
    torch.dispose([a, b, c]);
    assert.equal(ba.length, 3);
    ba.forEach((buf, i) => assert.ok(buf.equals(bb[i]), `view ${i} differs for the same seed`));
    ba.forEach((buf, i) => assert.ok(!buf.equals(bc[i]), `view ${i} is the same for seeds 123 and 124`));
  });

  test("restoring the Rng state reproduces the views, and libtorch's generator plays no part", () => {
    const rng = new Rng(5);
    A.makeViews(batch, rng).weak.forEach((t) => t.dispose());
    const state = rng.getState();
    torch.manualSeed(1);
    const first = A.makeViews(batch, rng);
    const afterFirst = rng.getState();
    rng.setState(state);
    torch.manualSeed(2);
    torch.rand([100]).dispose();
    const again = A.makeViews(batch, rng);
    assert.deepEqual(rng.getState(), afterFirst, "the Rng advanced differently");
    const [x, y] = [first, again].map(bytesOf);
    torch.dispose([first, again]);
    x.forEach((buf, i) => assert.ok(buf.equals(y[i]), `view ${i} differs after restoring the state`));
  });

  test("the Uint8Array form gives the same views as the Tensor form", () => {
    const a = A.makeViews(batch, new Rng(9));
    const b = A.makeViews({ data: batch.toArray() as Uint8Array, shape: [16, 1, 48, 48] }, new Rng(9));
    const [x, y] = [a, b].map(bytesOf);
    torch.dispose([a, b]);
    x.forEach((buf, i) => assert.ok(buf.equals(y[i])));
  });
});

describe("makeViews: outputs", () => {
  test("shapes, dtype, range [0, 1], the views differ from the input and each other, no leaks", () => {
    for (const c of [1, 3]) {
      const batch = noiseBatch(8, c, 20, 24, 3);
      const live = torch.liveTensors();
      const v = A.makeViews(batch, new Rng(1), { weak: 2, strong: 1 });
      assert.equal(v.weak.length, 2);
      assert.equal(v.strong.length, 1);
      const input = torch.tidy(() => batch.float().div(255).toArray() as Float32Array);
      const all = [...v.weak, ...v.strong].map((t) => {
        assert.deepEqual([...t.shape], [8, c, 20, 24]);
        assert.equal(t.dtype, "float32");
        return t.toArray() as Float32Array;
      });
      for (const a of all) {
        assert.ok(
          a.every((x) => x >= 0 && x <= 1),
          "values outside [0, 1]",
        );
        assert.ok(
          a.some((x, i) => x !== input[i]),
          "a view equals the input",
        );
      }
      assert.ok(
        all[0].some((x, i) => x !== all[1][i]),
        "the two weak views are equal",
      );
      // Every strong image differs from its original (3 ops + Cutout; Identity x3 without a box is very unlikely at this seed).
      const plane = c * 20 * 24;
      for (let k = 0; k < 8; k++) {
        const s = all[2].subarray(k * plane, (k + 1) * plane);
        assert.ok(
          s.some((x, i) => x !== input[k * plane + i]),
          `strong image ${k} equals the input`,
        );
      }
      torch.dispose(v);
      assert.equal(torch.liveTensors(), live, "tensors leaked");
      batch.dispose();
    }
  });

  test("weak views with probability 0 are the input / 255 exactly", () => {
    const batch = noiseBatch(4, 3, 16, 16);
    const v = A.makeViews(batch, new Rng(2), { weak: 2, strong: 0, weakOptions: { cropProbability: 0, flipProbability: 0 } });
    const expected = torch.tidy(() => batch.float().div(255).toBytes());
    for (const t of v.weak) assert.ok(t.toBytes().equals(expected));
    torch.dispose(v);
    batch.dispose();
  });

  test("weak values are exact copies of input pixels (crop + flip only move them)", () => {
    const batch = noiseBatch(6, 1, 16, 16);
    const v = A.makeViews(batch, new Rng(4), { weak: 1, strong: 0 });
    const levels = new Set(Array.from({ length: 256 }, (_, k) => Math.fround(k / 255)));
    assert.ok((v.weak[0].toArray() as Float32Array).every((x) => levels.has(x)));
    torch.dispose(v);
    batch.dispose();
  });

  test("rejects non-uint8 batches and bad shapes", () => {
    const f = torch.zeros([2, 1, 8, 8]);
    assert.throws(() => A.makeViews(f, new Rng(0)), /uint8/);
    f.dispose();
    assert.throws(() => A.makeViews({ data: new Uint8Array(10), shape: [1, 1, 4, 4] }, new Rng(0)), /16 bytes/);
    assert.throws(() => A.makeViews({ data: new Uint8Array(32), shape: [1, 2, 4, 4] }, new Rng(0)), /channels/);
  });
});

describe("RandAugment ops on tiny images (Pillow semantics)", () => {
  test("Solarize inverts values at or above the threshold", () => {
    assert.deepEqual(
      run(() => A.solarize(img([0, 100, 128, 255], 2, 2), 128)),
      [0, 100, 127, 0],
    );
    assert.deepEqual(
      run(() => A.solarize(img([0, 100, 128, 255], 2, 2), 256)),
      [0, 100, 128, 255],
    );
  });

  test("Posterize keeps the top bits (magnitude truncated to an integer)", () => {
    assert.deepEqual(
      run(() => A.posterize(img([0, 17, 128, 255], 2, 2), 4)),
      [0, 16, 128, 240],
    );
    assert.deepEqual(
      run(() => A.posterize(img([0, 17, 128, 255], 2, 2), 4.9)),
      [0, 16, 128, 240],
    );
    assert.deepEqual(
      run(() => A.posterize(img([0, 17, 129, 255], 2, 2), 7)),
      [0, 16, 128, 254],
    );
  });

  test("Brightness blends with black and truncates", () => {
    assert.deepEqual(
      run(() => A.brightness(img([0, 3, 101, 255], 2, 2), 0.5)),
      [0, 1, 50, 127],
    );
  });

  test("Contrast blends with the rounded mean level", () => {
    // mean 138.75 -> 139; 139 + 0.5 (x - 139), truncated
    assert.deepEqual(
      run(() => A.contrast(img([0, 100, 200, 255], 2, 2), 0.5)),
      [69, 119, 169, 197],
    );
  });

  test("per-image magnitudes apply to their own image", () => {
    const x = torch.fromArray(Float32Array.from([100, 200, 100, 200]), [2, 1, 1, 2]);
    assert.deepEqual(
      run(() => A.brightness(x, [0.5, 0.25])),
      [50, 100, 25, 50],
    );
    x.dispose();
  });

  test("Equalize follows ImageOps.equalize's histogram LUT", () => {
    // 1024 pixels: 512 at 50, 256 at 100, 256 at 200. step = (1024 - 256) // 255 = 3,
    // lut[i] = (1 + #below i) // 3: 50 -> 0, 100 -> 513 // 3 = 171, 200 -> 769 // 3 = 256 -> 255.
    const values = [...new Array(512).fill(50), ...new Array(256).fill(100), ...new Array(256).fill(200)];
    const out = run(() => A.equalize(img(values, 32, 32)));
    assert.deepEqual(out, [...new Array(512).fill(0), ...new Array(256).fill(171), ...new Array(256).fill(255)]);
    // too few pixels below the top level: unchanged
    assert.deepEqual(
      run(() => A.equalize(img([10, 10, 20, 30], 2, 2))),
      [10, 10, 20, 30],
    );
  });

  test("AutoContrast stretches each channel to 0..255 and leaves flat channels alone", () => {
    assert.deepEqual(
      run(() => A.autoContrast(img([50, 100, 150, 150], 2, 2))),
      [0, 127, 255, 255],
    );
    assert.deepEqual(
      run(() => A.autoContrast(img([80, 80, 80, 80], 2, 2))),
      [80, 80, 80, 80],
    );
    const rgb = torch.fromArray(Float32Array.from([0, 10, 100, 200, 5, 5]), [1, 3, 1, 2]);
    assert.deepEqual(
      run(() => A.autoContrast(rgb)),
      [0, 255, 0, 255, 5, 5],
    );
    rgb.dispose();
  });

  test("Sharpness blends with the SMOOTH-filtered image, borders kept", () => {
    const x = img([0, 0, 0, 0, 130, 0, 0, 0, 0], 3, 3);
    // smoothed centre = 5 * 130 / 13 = 50; the border is kept (0)
    assert.deepEqual(
      run(() => A.sharpness(x, 0)),
      [0, 0, 0, 0, 50, 0, 0, 0, 0],
    );
    assert.deepEqual(
      run(() => A.sharpness(x, 0.5)),
      [0, 0, 0, 0, 90, 0, 0, 0, 0],
    );
    x.dispose();
  });

  test("Color blends RGB with Pillow's luminance and leaves gray images alone", () => {
    const red = torch.fromArray(Float32Array.from([255, 0, 0]), [1, 3, 1, 1]);
    // L = (19595 * 255 + 32768) >> 16 = 76
    assert.deepEqual(
      run(() => A.color(red, 0)),
      [76, 76, 76],
    );
    red.dispose();
    assert.deepEqual(
      run(() => A.color(img([1, 2, 3, 4], 2, 2), 0.1)),
      [1, 2, 3, 4],
    );
  });

  const ramp = Array.from({ length: 16 }, (_, k) => k + 1); // 4x4, rows [1..4], [5..8], ...
  const G = A.GREY;

  test("Rotate 0 is the identity; Rotate 90 turns counter-clockwise exactly", () => {
    assert.deepEqual(
      run(() => A.rotate(img(ramp, 4, 4), 0)),
      ramp,
    );
    const rot = run(() => A.rotate(img(ramp, 4, 4), 90));
    // counter-clockwise: out[i][j] = in[j][3 - i]
    assert.deepEqual(
      rot,
      Array.from({ length: 16 }, (_, k) => ramp[(k % 4) * 4 + (3 - Math.floor(k / 4))]),
    );
  });

  test("Translate by whole pixels shifts and fills with grey", () => {
    // TranslateX 0.25 of 4 px: out(x, y) = in(x + 1, y)
    assert.deepEqual(
      run(() => A.translateX(img(ramp, 4, 4), 0.25)),
      [2, 3, 4, G, 6, 7, 8, G, 10, 11, 12, G, 14, 15, 16, G],
    );
    // TranslateY -0.5: content moves down two rows
    assert.deepEqual(
      run(() => A.translateY(img(ramp, 4, 4), -0.5)),
      [G, G, G, G, G, G, G, G, 1, 2, 3, 4, 5, 6, 7, 8],
    );
  });

  test("ShearX shears about the top-left corner (Pillow's convention)", () => {
    // out(u, v) = in(u + 0.5 v): rows shift by floor(0.5 + 0.5 (r + 0.5)) = 0, 1, 1, 2
    assert.deepEqual(
      run(() => A.shearX(img(ramp, 4, 4), 0.5)),
      [1, 2, 3, 4, 6, 7, 8, G, 10, 11, 12, G, 15, 16, G, G],
    );
  });

  test("Cutout fills its square in every channel and nothing else", () => {
    const x = torch.fromArray(new Float32Array(2 * 3 * 4 * 4).fill(9), [2, 3, 4, 4]);
    const out = run(() => A.cutout(x, [{ x0: 1, y0: 0, x1: 3, y1: 2 }, null]));
    x.dispose();
    const grey = out.map((v, i) => (v === G ? i : -1)).filter((i) => i >= 0);
    const expected: number[] = [];
    for (let ch = 0; ch < 3; ch++)
      for (const [r, col] of [
        [0, 1],
        [0, 2],
        [1, 1],
        [1, 2],
      ])
        expected.push(ch * 16 + r * 4 + col);
    assert.deepEqual(grey, expected);
    assert.equal(out.filter((v) => v === 9).length, 96 - 12);
  });

  test("Cutout boxes are squares of side at most half the image, clipped at the border", () => {
    const rng = new Rng(11);
    let maxSide = 0;
    for (let k = 0; k < 2000; k++) {
      const b = A.drawCutoutBox(rng, 48, 48);
      assert.ok(b.x0 >= 0 && b.y0 >= 0 && b.x1 <= 48 && b.y1 <= 48);
      const [sw, sh] = [b.x1 - b.x0, b.y1 - b.y0];
      assert.ok(sw <= 24 && sh <= 24, `box ${JSON.stringify(b)} larger than half the image`);
      if (b.x1 < 48 && b.y1 < 48) assert.equal(sw, sh, `unclipped box ${JSON.stringify(b)} is not square`);
      maxSide = Math.max(maxSide, sw);
    }
    assert.ok(maxSide >= 23, `sides never approach 24 (max ${maxSide})`);
  });

  test("magnitudes are drawn in USB's ranges, all 14 ops occur, 3 per image", () => {
    const plan = A.planRandAugment(500, 48, 48, new Rng(3));
    const seen = new Set<string>();
    for (const p of plan) {
      assert.equal(p.ops.length, 3);
      for (const { op, magnitude } of p.ops) {
        const [lo, hi] = A.MAGNITUDE_RANGES[op];
        assert.ok(magnitude >= lo && magnitude < hi, `${op} magnitude ${magnitude} outside [${lo}, ${hi})`);
        seen.add(op);
      }
    }
    assert.equal(seen.size, 14);
  });
});

describe("batched RandAugment and the weak transform", () => {
  test("a batch gives the same result as each image alone (grouping and reordering are right)", () => {
    const batch = noiseBatch(12, 3, 12, 12, 21);
    const plan = A.planRandAugment(12, 12, 12, new Rng(8), { numOps: 3 });
    const together = torch.tidy(() => A.applyRandAugment(batch.float(), plan).toBytes());
    const alone = torch.tidy(() => Buffer.concat(plan.map((p, i) => A.applyRandAugment(batch.float().narrow(0, i, 1), [p]).toBytes())));
    batch.dispose();
    assert.ok(together.equals(alone));
  });

  test("horizontal flip is exact", () => {
    const x = noiseBatch(3, 3, 8, 10).float();
    const plan = A.planWeak(3, 8, 10, new Rng(0), { cropProbability: 0, flipProbability: 1 });
    const got = torch.tidy(() => A.applyWeak(x, plan).toBytes());
    const want = torch.tidy(() => x.flip(3).toBytes());
    x.dispose();
    assert.ok(got.equals(want));
  });

  test("a crop window one pixel right shifts left and reflects at the edge", () => {
    const x = img(ramp4(), 4, 4);
    const pad = A.weakPadding(4, 4, 0.25); // 1 px
    assert.equal(pad, 1);
    const out = run(() => A.applyWeak(x, { pad, images: [{ dx: 2, dy: 1, flip: false }] }));
    x.dispose();
    // out(x, y) = in(x + 1, y); the last column is the reflection of column 2
    assert.deepEqual(out, [2, 3, 4, 3, 6, 7, 8, 7, 10, 11, 12, 11, 14, 15, 16, 15]);
  });

  test("weak plans: 6 px padding at 48, offsets in [0, 12], crop and flip about half the time", () => {
    const plan = A.planWeak(2000, 48, 48, new Rng(1));
    assert.equal(plan.pad, 6);
    const cropped = plan.images.filter((p) => p.dx !== 6 || p.dy !== 6).length;
    const flipped = plan.images.filter((p) => p.flip).length;
    assert.ok(plan.images.every((p) => p.dx >= 0 && p.dx <= 12 && p.dy >= 0 && p.dy <= 12));
    assert.ok(cropped > 850 && cropped < 1050, `cropped ${cropped} / 2000`);
    assert.ok(flipped > 900 && flipped < 1100, `flipped ${flipped} / 2000`);
  });
});

function ramp4(): number[] {
  return Array.from({ length: 16 }, (_, k) => k + 1);
}

describe("AugmentWorker", () => {
  let worker: A.AugmentWorker;
  before(async () => {
    worker = await A.AugmentWorker.start();
  });
  after(async () => {
    await worker.terminate();
  });

  test("the worker returns the main thread's views for the same seed and leaves the Rng in the same state", async () => {
    const batch = noiseBatch(8, 1, 48, 48, 5);
    const rngMain = new Rng(77);
    const rngWorker = new Rng(77);
    const main = A.makeViews(batch, rngMain);
    const pending = [worker.makeViews(batch, rngWorker), worker.makeViews(batch, rngWorker)];
    const [viaWorker, second] = await Promise.all(pending);
    const mainSecond = A.makeViews(batch, rngMain);
    assert.deepEqual(rngWorker.getState(), rngMain.getState());
    const [a, b, c, d] = [main, viaWorker, mainSecond, second].map(bytesOf);
    torch.dispose([main, viaWorker, mainSecond, second]);
    batch.dispose();
    a.forEach((buf, i) => assert.ok(buf.equals(b[i]), `first batch, view ${i} differs`));
    c.forEach((buf, i) => assert.ok(buf.equals(d[i]), `second batch, view ${i} differs`));
  });

  test("errors in the worker reject the request and the worker keeps serving", async () => {
    const batch = noiseBatch(2, 1, 8, 8);
    const plan = A.planViews([2, 1, 8, 8], new Rng(1));
    const broken = {
      ...plan,
      weak: [
        {
          pad: 1,
          images: [
            { dx: 99, dy: 0, flip: false },
            { dx: 0, dy: 0, flip: false },
          ],
        },
      ],
    };
    await assert.rejects(worker.applyViews(batch, broken), /outside/);
    const ok = await worker.applyViews(batch, plan);
    assert.equal(ok.weak.length, 2);
    torch.dispose(ok);
    batch.dispose();
  });
});
