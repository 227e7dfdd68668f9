// Metrics against hand-computed cases.
import { test } from "node:test";
import assert from "node:assert/strict";
import { classificationReport, confusionMatrix } from "../src/eval/metrics.js";

test("confusion matrix rows are true classes", () => {
  assert.deepEqual(confusionMatrix([0, 0, 1, 2], [0, 1, 1, 0], 3), [
    [1, 1, 0],
    [0, 1, 0],
    [1, 0, 0],
  ]);
  assert.throws(() => confusionMatrix([0, 3], [0, 0], 3), RangeError);
  assert.throws(() => confusionMatrix([0], [0, 1], 3), RangeError);
});

test("accuracy, per-class F1 and macro-F1, with a class never predicted", () => {
  // true 0 0 1 2, predicted 0 1 1 0:
  // class 0: P 1/2, R 1/2, F1 1/2; class 1: P 1/2, R 1, F1 2/3; class 2: never predicted, F1 0.
  const r = classificationReport([0, 0, 1, 2], [0, 1, 1, 0], 3);
  assert.equal(r.accuracy, 0.5);
  assert.equal(r.n, 4);
  assert.deepEqual(
    r.perClass.map((c) => c.support),
    [2, 1, 1],
  );
  assert.ok(Math.abs(r.perClass[0].f1 - 0.5) < 1e-12);
  assert.ok(Math.abs(r.perClass[1].f1 - 2 / 3) < 1e-12);
  assert.equal(r.perClass[2].precision, 0);
  assert.equal(r.perClass[2].f1, 0);
  assert.ok(Math.abs(r.macroF1 - (0.5 + 2 / 3 + 0) / 3) < 1e-12);
});
