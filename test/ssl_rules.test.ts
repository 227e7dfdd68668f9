// The thresholding rules and the losses of the semi-supervised algorithms against
// hand-computed values: DTM's floor, reset and momentum, Ada-CM's margin, FlexMatch's
// warm-up, FreeMatch's initialisation at 1/C, the masked loss averaged over the whole
// unlabeled batch, the two weak views in one no-grad batch, and state restored exactly.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import "./helpers.js";
import { assertAllClose, assertClose } from "./helpers.js";
import * as torch from "../src/torch/index.js";
import { nn } from "../src/torch/index.js";
import type { Tensor } from "../src/torch/index.js";
import {
  AdaCmThreshold,
  DtmThreshold,
  FixedThreshold,
  FlexMatchThreshold,
  FreeMatchThreshold,
  UnlabeledQuantileThreshold,
  classConfidence,
  smoothedDtmOptions,
  createAlgorithm,
  guessLabels,
  maskedCrossEntropy,
  ntXent,
  type LabeledStats,
  type MaskInput,
} from "../src/ssl/index.js";
import { parseConfig, ConfigError } from "../src/train/config.js";
import { holdoutSplit } from "../src/data/sampler.js";

const DTM = { tauInit: 0.8, muMin: 0.8, tauReset: 0.8, momentum: 0.9, dynamic: true };

/** Labeled predictions from rows of probabilities and labels. */
function stats(rows: number[][], labels: number[]): LabeledStats {
  return { probs: Float32Array.from(rows.flat()), labels: Int32Array.from(labels), numClasses: rows[0].length };
}

/** A mask input from rows of probabilities. */
function batch(rows: number[][], index?: number[]): MaskInput {
  const C = rows[0].length;
  const label = Int32Array.from(rows, (r) => r.indexOf(Math.max(...r)));
  const conf = Float32Array.from(rows, (r) => Math.max(...r));
  return { probs: Float32Array.from(rows.flat()), conf, label, index: Int32Array.from(index ?? rows.map((_, i) => i)), ...{ C } };
}

describe("DTM thresholds", () => {
  // 3 classes. Class 0: two correct samples at 0.9 and 1.0 (mu 0.95) and one wrong one;
  // class 1: one correct at 0.7 (mu 0.7 < 0.8: reset); class 2: none correct (reset).
  const s = stats(
    [
      [0.9, 0.05, 0.05],
      [1.0, 0.0, 0.0],
      [0.6, 0.3, 0.1],
      [0.2, 0.7, 0.1],
      [0.5, 0.4, 0.1],
    ],
    [0, 0, 1, 1, 2],
  );

  test("mu over the correctly classified samples of each class", () => {
    const c = classConfidence(s);
    assertClose(c.mu[0] as number, 0.95, 1e-6);
    assertClose(c.mu[1] as number, 0.7, 1e-6);
    assert.equal(c.mu[2], null);
    assert.deepEqual(c.correctCounts, [2, 1, 0]);
  });

  test("momentum above the floor, reset below it and for a class with no correct sample", () => {
    const r = new DtmThreshold(3, DTM);
    assert.deepEqual(r.thresholds(), [0.8, 0.8, 0.8]);
    const e = r.epochEnd(1, () => s);
    assertAllClose(r.thresholds(), [0.9 * 0.8 + 0.1 * 0.95, 0.8, 0.8], 1e-6);
    assert.deepEqual(e.tau_before, [0.8, 0.8, 0.8]);
    assert.deepEqual(e.correct_counts, [2, 1, 0]);
    assert.equal((e.mu as (number | null)[])[2], null);
    // a second epoch keeps averaging: 0.9 * 0.815 + 0.1 * 0.95
    r.epochEnd(2, () => s);
    assertClose(r.thresholds()[0], 0.9 * 0.815 + 0.1 * 0.95, 1e-6);
    // a class that had a high threshold falls back to 0.8 when its mu drops below the floor
    const low = stats([[0.75, 0.2, 0.05]], [0]);
    r.epochEnd(3, () => low);
    assert.equal(r.thresholds()[0], 0.8);
  });

  test("the mask compares each confidence with its class's threshold (>=)", () => {
    const r = new DtmThreshold(3, { ...DTM, tauInit: 0.5 });
    r.loadStateDict({ tau: [0.9, 0.5, 0.6] });
    const m = r.mask(
      batch([
        [0.9, 0.05, 0.05],
        [0.85, 0.1, 0.05],
        [0.2, 0.5, 0.3],
        [0.1, 0.35, 0.55],
      ]),
    );
    assert.deepEqual([...m], [1, 0, 1, 0]);
  });

  test("dynamic: false keeps tau fixed (the ablation)", () => {
    const r = new DtmThreshold(3, { ...DTM, tauInit: 0.95, dynamic: false });
    r.epochEnd(1, () => s);
    assert.deepEqual(r.thresholds(), [0.95, 0.95, 0.95]);
  });

  test("state restored exactly; a state of another class count is refused", () => {
    const r = new DtmThreshold(3, DTM);
    r.epochEnd(1, () => s);
    const copy = new DtmThreshold(3, DTM);
    copy.loadStateDict(JSON.parse(JSON.stringify(r.stateDict())));
    assert.deepEqual(copy.thresholds(), r.thresholds());
    assert.throws(() => new DtmThreshold(7, DTM).loadStateDict(r.stateDict()), /array of 7 numbers/);
  });
});

describe("DTM variants (not the paper)", () => {
  test("smoothing correction: DTM on smoothed confidences moves as DTM on unsmoothed ones, mapped", () => {
    const eps = 0.1;
    const C = 3;
    const map = (p: number) => p * (1 - eps) + eps / C;
    const o = smoothedDtmOptions(DTM, eps, C);
    assertAllClose([o.tauInit, o.muMin, o.tauReset], [map(0.8), map(0.8), map(0.8)], 1e-12);
    assertClose(o.tauInit, 0.8 * 0.9 + 0.1 / 3, 1e-12);
    // Unsmoothed confidences (class 0: mu 0.95; class 1: mu 0.85; class 2: mu 0.75 < 0.8) and
    // the same rows as a label-smoothed model gives them: every probability mapped.
    const rows = [
      [0.95, 0.03, 0.02],
      [0.1, 0.85, 0.05],
      [0.2, 0.05, 0.75],
    ];
    const raw = stats(rows, [0, 1, 2]);
    const smoothed = stats(
      rows.map((r) => r.map(map)),
      [0, 1, 2],
    );
    const plain = new DtmThreshold(C, DTM);
    const corrected = new DtmThreshold(C, o);
    const uncorrected = new DtmThreshold(C, DTM);
    for (let e = 1; e <= 3; e++) {
      plain.epochEnd(e, () => raw);
      corrected.epochEnd(e, () => smoothed);
      uncorrected.epochEnd(e, () => smoothed);
    }
    assertAllClose(corrected.thresholds(), plain.thresholds().map(map), 1e-6);
    // Without the correction the smoothed 0.85 of class 1 (0.798) falls under the floor: reset.
    assert.equal(uncorrected.thresholds()[1], 0.8);
    assert.ok(corrected.thresholds()[1] > map(0.8) + 1e-3, "class 1's threshold moved with the correction");
  });

  test("unlabeled quantile: tau_c becomes the quantile of the epoch's confidences of class c", () => {
    const r = new UnlabeledQuantileThreshold(3, 0.5, 0.8);
    // Class 0: 20 pseudo-labels with confidences 0.52, 0.54, ..., 0.90; class 1: 5 (too few); class 2: none.
    const rows: number[][] = [];
    for (let k = 1; k <= 20; k++) rows.push([0.5 + 0.02 * k, (0.5 - 0.02 * k) / 2, (0.5 - 0.02 * k) / 2]);
    for (let k = 0; k < 5; k++) rows.push([0.05, 0.9, 0.05]);
    const m = r.mask(batch(rows.slice(0, 12)));
    r.mask(batch(rows.slice(12)));
    // The first batch was masked with the starting thresholds (0.8 for all).
    assert.deepEqual(
      [...m],
      rows.slice(0, 12).map((x) => (Math.fround(Math.max(...x)) >= Math.fround(0.8) ? 1 : 0)),
    );
    const e = r.epochEnd();
    assert.deepEqual(e.pseudo_counts, [20, 5, 0]);
    // Half of the 20 lie at or below the 10th value, 0.70 (float32 0.69999999: bin [0.699, 0.700)).
    assertClose(r.thresholds()[0], 0.7, 1e-6);
    assert.deepEqual(r.thresholds().slice(1), [0.8, 0.8]);
    // The next epoch counts afresh: ten class-0 confidences at 0.95 (bin [0.949, 0.950)) put
    // tau_0 halfway through that bin.
    r.mask(batch(new Array(10).fill([0.95, 0.03, 0.02])));
    r.epochEnd();
    assertClose(r.thresholds()[0], 0.9495, 1e-6);
  });

  test("unlabeled quantile: state (histograms included) restored exactly; a wrong state is refused", () => {
    const r = new UnlabeledQuantileThreshold(3, 0.3, 0.8);
    r.mask(batch(new Array(12).fill([0.6, 0.3, 0.1])));
    const copy = new UnlabeledQuantileThreshold(3, 0.3, 0.8);
    copy.loadStateDict(JSON.parse(JSON.stringify(r.stateDict())));
    r.epochEnd();
    copy.epochEnd();
    assert.deepEqual(copy.thresholds(), r.thresholds());
    assert.throws(() => new UnlabeledQuantileThreshold(7, 0.3, 0.8).loadStateDict(r.stateDict()), /array of 7 numbers|7 histograms/);
  });

  test("held-out labeled images: a seeded share of each class, disjoint from the trained ones", () => {
    const labels = [...new Array(50).fill(0), ...new Array(20).fill(1), 2];
    const a = holdoutSplit(labels, 0.1, 3);
    assert.deepEqual(holdoutSplit(labels, 0.1, 3), a);
    assert.notDeepEqual(holdoutSplit(labels, 0.1, 4).heldout, a.heldout);
    const count = (ix: number[], c: number) => ix.filter((i) => labels[i] === c).length;
    assert.deepEqual(
      [0, 1, 2].map((c) => count(a.heldout, c)),
      [5, 2, 0],
      "round(0.1 n) per class; a lone image stays in training",
    );
    assert.equal(new Set([...a.train, ...a.heldout]).size, labels.length);
    assert.equal(a.train.length + a.heldout.length, labels.length);
    assert.deepEqual(holdoutSplit(labels, 0, 3).heldout, []);
    assert.equal(count(holdoutSplit([0, 0, 0], 0.01, 1).heldout, 0), 1, "at least one per class");
    assert.throws(() => holdoutSplit(labels, 1, 0), /fraction must be in \[0, 1\)/);
  });
});

describe("Ada-CM thresholds", () => {
  test("tau_c = max(0.8, 0.97 mu_c sigmoid(epoch)), 0.8 without a correct sample", () => {
    const r = new AdaCmThreshold(2, { tauMin: 0.8, scale: 0.97 });
    const s = stats(
      [
        [0.99, 0.01],
        [0.97, 0.03],
        [0.9, 0.1],
      ],
      [0, 0, 1],
    );
    r.epochEnd(3, () => s);
    const sig3 = 1 / (1 + Math.exp(-3));
    assertAllClose(r.thresholds(), [Math.max(0.8, 0.97 * 0.98 * sig3), 0.8], 1e-6);
    r.epochEnd(1, () => s); // sigmoid(1) = 0.73: the margin falls to the floor
    assertAllClose(r.thresholds(), [0.8, 0.8], 1e-9);
  });
});

describe("FlexMatch thresholds", () => {
  test("warm-up: beta normalised by the unrecorded count; the batch is masked with the previous beta", () => {
    const r = new FlexMatchThreshold(2, 10, 0.95, true);
    // Nothing recorded: beta = 0, so tau(c) = 0 and every pseudo-label passes (USB's behaviour).
    const m1 = r.mask(
      batch(
        [
          [0.96, 0.04],
          [0.97, 0.03],
          [0.4, 0.6],
        ],
        [0, 1, 2],
      ),
    );
    assert.deepEqual([...m1], [1, 1, 1]);
    // Two records of class 0; 8 unrecorded: beta = [2/8, 0] (warm-up), tau(0) = 0.95 * 0.25 / 1.75.
    assertAllClose(r.thresholds(), [(0.95 * 0.25) / 1.75, 0], 1e-9);
    const m2 = r.mask(
      batch(
        [
          [0.1, 0.9],
          [0.13, 0.87],
        ],
        [3, 4],
      ),
    );
    assert.deepEqual([...m2], [1, 1], "class 1 has tau 0");
    const noWarm = new FlexMatchThreshold(2, 10, 0.95, false);
    noWarm.mask(batch([[0.96, 0.04]], [0]));
    assertAllClose(noWarm.thresholds(), [0.95, 0], 1e-9, 0, "without warm-up beta is relative to the largest class");
  });

  test("a sample's record is replaced by its latest confident prediction; state restored exactly", () => {
    const r = new FlexMatchThreshold(2, 4, 0.95, false);
    r.mask(batch([[0.99, 0.01]], [0]));
    r.mask(batch([[0.02, 0.98]], [0])); // sample 0 now recorded as class 1
    r.mask(batch([[0.96, 0.04]], [1]));
    assertAllClose(r.thresholds(), [0.95 * (1 / 1), 0.95 * (1 / 1)], 1e-9);
    const copy = new FlexMatchThreshold(2, 4, 0.95, false);
    copy.loadStateDict(JSON.parse(JSON.stringify(r.stateDict())));
    assert.deepEqual(copy.thresholds(), r.thresholds());
    assert.deepEqual(copy.stateDict(), r.stateDict());
    assert.throws(() => new FlexMatchThreshold(2, 5, 0.95, false).loadStateDict(r.stateDict()), /array of 5 numbers/);
  });
});

describe("FreeMatch thresholds", () => {
  test("starts at 1/C and follows the EMA of confidence and class probabilities", () => {
    const r = new FreeMatchThreshold(4, 0.999);
    assertAllClose(r.thresholds(), [0.25, 0.25, 0.25, 0.25], 1e-12);
    const rows = [
      [0.7, 0.1, 0.1, 0.1],
      [0.1, 0.6, 0.2, 0.1],
    ];
    const m = r.mask(batch(rows));
    const timeP = 0.999 * 0.25 + 0.001 * 0.65;
    const pModel = [0.4, 0.35, 0.15, 0.1].map((p) => 0.999 * 0.25 + 0.001 * p);
    const max = Math.max(...pModel);
    assertAllClose(
      r.thresholds(),
      pModel.map((p) => (timeP * p) / max),
      1e-9,
    );
    assertAllClose(
      r.labelHist,
      [0.5, 0.5, 0, 0].map((h) => 0.999 * 0.25 + 0.001 * h),
      1e-12,
    );
    assert.deepEqual([...m], [1, 1]);
    const copy = new FreeMatchThreshold(4, 0.999);
    copy.loadStateDict(JSON.parse(JSON.stringify(r.stateDict())));
    assert.deepEqual(copy.thresholds(), r.thresholds());
  });

  test("fixed threshold (FixMatch)", () => {
    const r = new FixedThreshold(2, 0.95);
    assert.deepEqual(
      [
        ...r.mask(
          batch([
            [0.95, 0.05],
            [0.94, 0.06],
          ]),
        ),
      ],
      [1, 0],
    );
  });
});

describe("losses and the step", () => {
  test("the masked loss is averaged over the whole unlabeled batch", () => {
    const logits = torch.tensor([
      [2, 0, 0],
      [0, 1, 0],
      [0, 0, 3],
      [1, 1, 1],
    ]);
    const target = Int32Array.from([0, 2, 2, 1]);
    const mask = Uint8Array.from([1, 0, 1, 0]);
    const ce = (row: number[], t: number) => -row[t] + Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
    const expected = (ce([2, 0, 0], 0) + ce([0, 0, 3], 2)) / 4;
    assertClose(maskedCrossEntropy(logits, target, mask).item(), expected, 1e-6);
  });

  test("NT-Xent matches a hand computation for two pairs", () => {
    const z1 = torch.tensor([
      [1, 0],
      [0, 1],
    ]);
    const z2 = torch.tensor([
      [1, 0],
      [0, 1],
    ]);
    // anchor 0: positive sim 1 (index 2), negatives sims 0 (1) and 0 (3); T = 1
    const expected = -1 + Math.log(Math.exp(1) + 2);
    assertClose(ntXent(z1, z2, 1).item(), expected, 1e-6);
  });

  test("pseudo-labels: the mean softmax of the weak views, from one forward without gradient", () => {
    torch.manualSeed(0);
    const lin = new nn.Linear(4, 3);
    const calls: { n: number; grad: boolean }[] = [];
    const model = new (class extends nn.Module {
      forward(x: Tensor): Tensor {
        const out = lin.forward(x);
        calls.push({ n: x.shape[0], grad: out.requiresGrad });
        return out;
      }
    })();
    const w1 = torch.rand([5, 4]);
    const w2 = torch.rand([5, 4]);
    const g = guessLabels(model, [w1, w2]);
    assert.deepEqual(calls, [{ n: 10, grad: false }]);
    const p = lin.forward(w1).softmax(1).add(lin.forward(w2).softmax(1)).div(2).toArray() as Float32Array;
    assertAllClose(g.probs, p, 1e-6);
    for (let i = 0; i < 5; i++) assertClose(g.conf[i], Math.max(...p.slice(i * 3, i * 3 + 3)), 1e-7);
  });

  test("a DTM step runs the model twice: weak views [2U] without gradient, labeled + strong [B + U] with it", () => {
    torch.manualSeed(0);
    const lin = new nn.Linear(12, 3);
    const calls: { n: number; grad: boolean }[] = [];
    const model = new (class extends nn.Module {
      forward(x: Tensor): Tensor {
        const out = lin.forward(x.flatten(1));
        calls.push({ n: x.shape[0], grad: out.requiresGrad });
        return out;
      }
    })();
    const algo = createAlgorithm(parseConfig({ algorithm: { name: "dtm" }, data: { unlabeled: { trainSplit: true } } }).algorithm, {
      numClasses: 3,
      numUnlabeled: 10,
      labelSmoothing: 0,
    });
    const x = torch.rand([4, 1, 3, 4]);
    const y = torch.tensor([0, 1, 2, 0], { dtype: "int64" });
    const u = {
      weak: [torch.rand([6, 1, 3, 4]), torch.rand([6, 1, 3, 4])],
      strong: [torch.rand([6, 1, 3, 4])],
      index: Int32Array.from([0, 1, 2, 3, 4, 5]),
    };
    const out = algo.step(model, { x, y, index: Int32Array.from([0, 1, 2, 3]) }, u);
    assert.deepEqual(calls, [
      { n: 12, grad: false },
      { n: 10, grad: true },
    ]);
    assert.equal(out.pseudo?.label.length, 6);
    assert.ok(Number.isFinite(out.loss.item()));
    out.loss.backward();
    assert.ok(lin.weight.grad !== null);
  });
});

describe("algorithm configs", () => {
  test("each algorithm's defaults; DTM trains with Adam 5e-4 unless told otherwise", () => {
    const dtm = parseConfig({ algorithm: { name: "dtm" }, data: { unlabeled: { trainSplit: true } } });
    assert.deepEqual(dtm.algorithm, {
      name: "dtm",
      tauInit: 0.8,
      muMin: 0.8,
      tauReset: 0.8,
      momentum: 0.9,
      dynamic: true,
      weakViews: 2,
      smoothingCorrection: false,
      tauFrom: "mu",
      quantile: 0.5,
      lambdaU: 0.5,
      uratio: 1,
    });
    assert.equal(dtm.data.labeledHoldout, 0);
    assert.equal(dtm.optimizer.name, "adam");
    assert.equal(dtm.optimizer.lr, 5e-4);
    assert.equal(dtm.schedule.name, "constant");
    const fix = parseConfig({ algorithm: { name: "fixmatch" }, data: { unlabeled: { trainSplit: true } } });
    assert.deepEqual(
      [fix.algorithm.name, "tau" in fix.algorithm && fix.algorithm.tau, fix.optimizer.lr, fix.schedule.name],
      ["fixmatch", 0.95, 0.03, "fixmatch-cosine"],
    );
    const own = parseConfig({ algorithm: { name: "dtm" }, optimizer: { name: "sgd", lr: 0.1 }, data: { unlabeled: { trainSplit: true } } });
    assert.equal(own.optimizer.name, "sgd");
  });

  test("an algorithm without unlabeled data, an unknown algorithm or field: clear errors", () => {
    assert.throws(
      () => parseConfig({ algorithm: { name: "dtm" } }),
      (e: unknown) => e instanceof ConfigError && /data\.unlabeled: algorithm 'dtm' needs unlabeled data/.test(e.message),
    );
    assert.throws(
      () => parseConfig({ algorithm: { name: "mixmatch" } }),
      /algorithm\.name: Invalid discriminator value\. Expected 'supervised' \| 'fixmatch'/,
    );
    assert.throws(() => parseConfig({ algorithm: { name: "dtm", tau: 0.9 } }), /Unrecognized key.*tau/);
    const u = { unlabeled: { trainSplit: true } };
    assert.throws(
      () => parseConfig({ algorithm: { name: "fixmatch" }, data: { ...u, labeledHoldout: 0.1 } }),
      /data\.labeledHoldout: held-out labeled images serve the thresholds of dtm/,
    );
    assert.throws(
      () => parseConfig({ algorithm: { name: "dtm", tauFrom: "unlabeled-quantile", dynamic: false }, data: u }),
      /algorithm\.dynamic: tauFrom "unlabeled-quantile" moves the thresholds/,
    );
    assert.throws(() => parseConfig({ algorithm: { name: "dtm", tauFrom: "quantile" }, data: u }), /algorithm\.tauFrom/);
    assert.equal(parseConfig({ algorithm: { name: "adacm" }, data: { ...u, labeledHoldout: 0.2 } }).data.labeledHoldout, 0.2);
    assert.throws(
      () => parseConfig({ algorithm: { name: "dtm", tauInit: 1.5 }, data: { unlabeled: { trainSplit: true } } }),
      /algorithm\.tauInit/,
    );
  });
});
