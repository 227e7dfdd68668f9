// The first real run, end to end on real FER2013 images from ../shared/data.
import "./helpers.js"; // collects garbage before each test, so live-tensor counts hold only this test's
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { firstRun } from "../src/train/first_run.js";
import { readFer2013 } from "../src/data/fer2013.js";
import { defaultDataRoot } from "../src/paths.js";
import { loadSafetensors, liveTensors, resolvePrecision } from "../src/torch/index.js";

const fer2013Dir = path.join(defaultDataRoot(), "fer2013");

test("FER2013 reader: official split sizes, ambiguous and image-less rows skipped", () => {
  const { records, skipped } = readFer2013(fer2013Dir);
  const count = (s: string): number => records.filter((r) => r.split === s).length;
  // 28,558 / 3,579 / 3,573 PNGs, less the ambiguous rows that have an image (97 / 2 / 4).
  assert.equal(count("Training"), 28558 - 97);
  assert.equal(count("PublicTest"), 3577);
  assert.equal(count("PrivateTest"), 3569);
  assert.equal(skipped.ambiguous, 103);
  assert.ok(records.every((r) => r.label >= 0 && r.label <= 6));
});

test("tiny CNN on happy vs surprise beats the majority baseline on PublicTest", async () => {
  const before = liveTensors();
  const out = mkdtempSync(path.join(tmpdir(), "ferkit-first-run-"));
  try {
    const r = await firstRun({
      fer2013Dir,
      classes: ["happy", "surprise"],
      steps: 150,
      batchSize: 64,
      lr: 0.002,
      seed: 0,
      threads: 2,
      // What `first-run` uses by default: bf16 on a CPU with native bfloat16, else fp32
      // (scripts/kernel-tests.sh runs this file again with FERKIT_NATIVE_BF16=0).
      precision: resolvePrecision("auto").precision,
      maxPerClass: 1500,
      outDir: out,
      log: () => {},
    });
    assert.equal(r.nTest, 891 + 414);
    assert.ok(r.majorityBaseline > 0.68 && r.majorityBaseline < 0.69);
    // Measured over seeds 0-4 under OpenBLAS's Haswell, SkylakeX and Zen kernels and with
    // OPENBLAS_CORETYPE unset (20 runs, scripts/kernel-tests.sh runs this file under two of
    // them): accuracy 87.7-88.7 %, macro-F1 86.1-87.4 %. The bars sit 5 points below the lowest.
    // (Before the cosine decay the same runs spread from 62.2 to 89.3 % accuracy: seed 0 failed
    // the old 0.70 macro-F1 bar under Haswell and Zen, 0.658, and passed under SkylakeX.)
    assert.ok(r.test.accuracy >= r.majorityBaseline + 0.14, `accuracy ${r.test.accuracy} vs majority ${r.majorityBaseline}`);
    assert.ok(r.test.macroF1 >= 0.81, `macro-F1 ${r.test.macroF1}`);
    assert.equal(r.skippedFiles, 0);
    assert.ok(existsSync(path.join(out, "metrics.json")));
    const saved = loadSafetensors(path.join(out, "model.safetensors"));
    assert.deepEqual(JSON.parse(saved.metadata.classes), ["happy", "surprise"]);
    assert.ok(saved.tensors.has("0.weight") && saved.tensors.has("1.running_var"));
    for (const t of saved.tensors.values()) t.dispose();
    assert.equal(liveTensors(), before, "the run released every tensor it made");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
