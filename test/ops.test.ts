/**
 * Op results against values computed by hand (small tensors whose outputs are
 * worked out in the test), creation functions and dtype round trips.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import { assertAllClose, assertClose, assertTensor, logSoftmaxRow } from "./helpers.js";

const { F } = torch;
const t = torch.tidy;

/** [[1, 2, 3], [4, 5, 6], [7, 8, 9]] as a [1, 1, 3, 3] image. */
const img3 = (): torch.Tensor => torch.arange(1, 10, 1, "float32").reshape(1, 1, 3, 3);

describe("convolution and pooling", () => {
  test("conv2d of a 3x3 with a 2x2 kernel and bias", () =>
    t(() => {
      const w = torch.tensor([
        [
          [
            [1, 2],
            [3, 4],
          ],
        ],
      ]);
      // out[0][0] = 1*1 + 2*2 + 4*3 + 5*4 = 37, then +1 bias.
      assertTensor(F.conv2d(img3(), w), [1, 1, 2, 2], [37, 47, 67, 77]);
      assertTensor(F.conv2d(img3(), w, torch.tensor([1])), [1, 1, 2, 2], [38, 48, 68, 78]);
    }));

  test("conv2d with padding 1 (3x3 box filter) and stride 2", () =>
    t(() => {
      const box = torch.ones([1, 1, 3, 3]);
      // Sums of each pixel's neighbourhood inside the image.
      assertTensor(F.conv2d(img3(), box, null, { padding: 1 }), [1, 1, 3, 3], [12, 21, 16, 27, 45, 33, 24, 39, 28]);
      assertTensor(F.conv2d(img3(), box, null, { padding: 1, stride: 2 }), [1, 1, 2, 2], [12, 16, 24, 28]);
    }));

  test("conv2d with dilation 2 picks the corners", () =>
    t(() => {
      const w = torch.tensor([
        [
          [
            [1, 0],
            [0, 1],
          ],
        ],
      ]);
      // A 2x2 kernel dilated by 2 covers the corners 1 and 9 of the 3x3 image.
      assertTensor(F.conv2d(img3(), w, null, { dilation: 2 }), [1, 1, 1, 1], [10]);
    }));

  test("conv2d with groups keeps channels separate", () =>
    t(() => {
      const x = torch.cat([img3(), img3().mul(10)], 1); // [1, 2, 3, 3]
      const w = torch.tensor([[[[1]]], [[[-1]]]]); // [2, 1, 1, 1]: +x on channel 0, -x on channel 1
      const y = F.conv2d(x, w, null, { groups: 2 });
      assertTensor(y, [1, 2, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, -10, -20, -30, -40, -50, -60, -70, -80, -90]);
    }));

  test("maxPool2d and avgPool2d 2x2 on a 4x4 ramp", () =>
    t(() => {
      const x = torch.arange(0, 16, 1, "float32").reshape(1, 1, 4, 4);
      assertTensor(F.maxPool2d(x, 2), [1, 1, 2, 2], [5, 7, 13, 15]);
      assertTensor(F.avgPool2d(x, 2), [1, 1, 2, 2], [2.5, 4.5, 10.5, 12.5]);
      // 3x3 windows, stride 1: max is the bottom-right element of each window.
      assertTensor(F.maxPool2d(x, 3, { stride: 1 }), [1, 1, 2, 2], [10, 11, 14, 15]);
    }));

  test("avgPool2d with padding: count_include_pad true vs false", () =>
    t(() => {
      const x = torch.ones([1, 1, 2, 2]);
      // 2x2 windows, stride 2, padding 1: each window holds one real 1 and three pads.
      assertTensor(F.avgPool2d(x, 2, { padding: 1 }), [1, 1, 2, 2], [0.25, 0.25, 0.25, 0.25]);
      assertTensor(F.avgPool2d(x, 2, { padding: 1, countIncludePad: false }), [1, 1, 2, 2], [1, 1, 1, 1]);
    }));

  test("adaptiveAvgPool2d to 1 is the spatial mean; adaptiveMaxPool2d to 1 the max", () =>
    t(() => {
      assertTensor(F.adaptiveAvgPool2d(img3(), 1), [1, 1, 1, 1], [5]);
      assertTensor(F.adaptiveMaxPool2d(img3(), 1), [1, 1, 1, 1], [9]);
      // 3 -> 2 windows: rows {0,1} and {1,2}.
      assertTensor(F.adaptiveAvgPool2d(img3(), 2), [1, 1, 2, 2], [3, 4, 6, 7]);
    }));
});

describe("softmax and losses", () => {
  test("softmax and logSoftmax of [1, 2, 3]", () =>
    t(() => {
      const s = Math.exp(1) + Math.exp(2) + Math.exp(3);
      const x = torch.tensor([[1, 2, 3]], { dtype: "float64" });
      assertTensor(F.softmax(x, 1), [1, 3], [Math.exp(1) / s, Math.exp(2) / s, Math.exp(3) / s], 1e-12);
      assertTensor(F.logSoftmax(x, 1), [1, 3], [1 - Math.log(s), 2 - Math.log(s), 3 - Math.log(s)], 1e-12);
      // Along dim 0 of a [1, 3] tensor every entry is alone: softmax 1.
      assertTensor(x.softmax(0), [1, 3], [1, 1, 1], 0);
    }));

  test("softmax is stable for large logits", () =>
    t(() => {
      const y = torch.tensor([1000, 1000], { dtype: "float32" }).softmax(0);
      assertTensor(y, [2], [0.5, 0.5], 1e-7);
    }));

  const logits = [
    [1, 2, 3],
    [1, 0, 0],
    [0.5, -1, 2],
  ];
  const targets = [2, 0, 1];
  const lp = logits.map((row) => logSoftmaxRow(row));
  const nll = targets.map((y, i) => -lp[i][y]);
  const x64 = (): torch.Tensor => torch.tensor(logits, { dtype: "float64" });
  const y64 = (): torch.Tensor => torch.tensor(targets, { dtype: "int64" });

  test("crossEntropy: mean, sum and none", () =>
    t(() => {
      assertTensor(F.crossEntropy(x64(), y64(), { reduction: "none" }), [3], nll, 1e-12);
      assertClose(F.crossEntropy(x64(), y64()).item(), (nll[0] + nll[1] + nll[2]) / 3, 1e-12);
      assertClose(F.crossEntropy(x64(), y64(), { reduction: "sum" }).item(), nll[0] + nll[1] + nll[2], 1e-12);
      // A known value: logits [1, 0, 0], target 0 -> log(e + 2) - 1.
      assertClose(nll[1], Math.log(Math.E + 2) - 1, 1e-12);
    }));

  test("crossEntropy with class weights: weighted mean = sum(w_y * l) / sum(w_y)", () =>
    t(() => {
      const w = [0.2, 1.5, 3];
      const wt = torch.tensor(w, { dtype: "float64" });
      const weighted = targets.map((y, i) => w[y] * nll[i]);
      const sumW = targets.reduce((s, y) => s + w[y], 0);
      assertTensor(F.crossEntropy(x64(), y64(), { weight: wt, reduction: "none" }), [3], weighted, 1e-12);
      assertClose(F.crossEntropy(x64(), y64(), { weight: wt, reduction: "sum" }).item(), weighted[0] + weighted[1] + weighted[2], 1e-12);
      assertClose(F.crossEntropy(x64(), y64(), { weight: wt }).item(), (weighted[0] + weighted[1] + weighted[2]) / sumW, 1e-12);
    }));

  test("crossEntropy with label smoothing", () =>
    t(() => {
      const eps = 0.1;
      const C = 3;
      // (1 - eps) * nll + eps / C * sum_c(-log p_c)
      const per = targets.map((y, i) => (1 - eps) * nll[i] + (eps / C) * -lp[i].reduce((s, v) => s + v, 0));
      assertTensor(F.crossEntropy(x64(), y64(), { labelSmoothing: eps, reduction: "none" }), [3], per, 1e-12);
      assertClose(F.crossEntropy(x64(), y64(), { labelSmoothing: eps }).item(), (per[0] + per[1] + per[2]) / 3, 1e-12);
    }));

  test("crossEntropy with label smoothing and class weights (mean divides by sum(w_y))", () =>
    t(() => {
      const eps = 0.2;
      const C = 3;
      const w = [0.2, 1.5, 3];
      const wt = torch.tensor(w, { dtype: "float64" });
      const sumW = targets.reduce((s, y) => s + w[y], 0);
      const nllPart = targets.reduce((s, y, i) => s + w[y] * nll[i], 0) / sumW;
      const smoothPart = lp.reduce((s, row) => s + row.reduce((r, v, c) => r - w[c] * v, 0), 0) / sumW;
      const expected = (1 - eps) * nllPart + (eps / C) * smoothPart;
      assertClose(F.crossEntropy(x64(), y64(), { weight: wt, labelSmoothing: eps }).item(), expected, 1e-12);
    }));

  test("crossEntropy ignore_index: ignored rows give 0 and leave the mean", () =>
    t(() => {
      const y = torch.tensor([2, -100, 1], { dtype: "int64" });
      assertTensor(F.crossEntropy(x64(), y, { reduction: "none" }), [3], [nll[0], 0, nll[2]], 1e-12);
      assertClose(F.crossEntropy(x64(), y).item(), (nll[0] + nll[2]) / 2, 1e-12);
      // A custom ignore index, with weights: only the non-ignored weights are summed.
      const w = torch.tensor([0.2, 1.5, 3], { dtype: "float64" });
      const m = F.crossEntropy(x64(), y64(), { ignoreIndex: 0, weight: w }).item();
      assertClose(m, (3 * nll[0] + 1.5 * nll[2]) / (3 + 1.5), 1e-12);
    }));

  test("crossEntropy with probability targets", () =>
    t(() => {
      const p = [
        [0.2, 0.3, 0.5],
        [1, 0, 0],
        [0, 0.5, 0.5],
      ];
      const per = p.map((row, i) => -row.reduce((s, q, c) => s + q * lp[i][c], 0));
      const pt = torch.tensor(p, { dtype: "float64" });
      assertTensor(F.crossEntropy(x64(), pt, { reduction: "none" }), [3], per, 1e-12);
      assertClose(F.crossEntropy(x64(), pt).item(), (per[0] + per[1] + per[2]) / 3, 1e-12);
      // A one-hot probability target equals the class-index loss.
      assertClose(per[1], nll[1], 1e-12);
    }));

  test("nllLoss and mseLoss", () =>
    t(() => {
      const logp = torch.tensor(lp, { dtype: "float64" });
      assertClose(F.nllLoss(logp, y64()).item(), (nll[0] + nll[1] + nll[2]) / 3, 1e-12);
      const a = torch.tensor([1, 2, 3]);
      const b = torch.tensor([1, 0, 6]);
      assertClose(F.mseLoss(a, b).item(), (0 + 4 + 9) / 3, 1e-6);
      assertClose(F.mseLoss(a, b, "sum").item(), 13, 1e-6);
      assertTensor(F.mseLoss(a, b, "none"), [3], [0, 4, 9]);
    }));
});

describe("batchNorm", () => {
  test("training mode: output uses biased batch variance, running stats use momentum 0.1 and unbiased variance", () =>
    t(() => {
      // [N=2, C=2, H=1, W=2]: channel 0 holds 1, 2, 3, 4; channel 1 holds 0, 0, 4, 8.
      const x = torch.tensor(
        [
          [[[1, 2]], [[0, 0]]],
          [[[3, 4]], [[4, 8]]],
        ],
        { dtype: "float64" },
      );
      const rm = torch.tensor([0, 1], { dtype: "float64" });
      const rv = torch.tensor([1, 2], { dtype: "float64" });
      const w = torch.tensor([2, 1], { dtype: "float64" });
      const b = torch.tensor([0.5, -1], { dtype: "float64" });
      const eps = 1e-5;
      const y = F.batchNorm(x, rm, rv, w, b, { training: true, momentum: 0.1, eps });
      // Channel 0: mean 2.5, biased var 1.25, unbiased var 5/3.
      // Channel 1: mean 3, biased var (9+9+1+25)/4 = 11, unbiased var 44/3.
      const n0 = (v: number): number => (2 * (v - 2.5)) / Math.sqrt(1.25 + eps) + 0.5;
      const n1 = (v: number): number => (v - 3) / Math.sqrt(11 + eps) - 1;
      assertTensor(y, [2, 2, 1, 2], [n0(1), n0(2), n1(0), n1(0), n0(3), n0(4), n1(4), n1(8)], 1e-12);
      assertTensor(rm, [2], [0.9 * 0 + 0.1 * 2.5, 0.9 * 1 + 0.1 * 3], 1e-12);
      assertTensor(rv, [2], [0.9 * 1 + 0.1 * (5 / 3), 0.9 * 2 + 0.1 * (44 / 3)], 1e-12);
    }));

  test("eval mode normalises with the running statistics and leaves them unchanged", () =>
    t(() => {
      const x = torch.tensor([[[[1, 2]], [[0, 4]]]], { dtype: "float64" });
      const rm = torch.tensor([1, 2], { dtype: "float64" });
      const rv = torch.tensor([4, 0.25], { dtype: "float64" });
      const y = F.batchNorm(x, rm, rv, null, null, { training: false, eps: 0 });
      assertTensor(y, [1, 2, 1, 2], [0, 0.5, -4, 4], 1e-12);
      assertTensor(rm, [2], [1, 2], 0);
      assertTensor(rv, [2], [4, 0.25], 0);
    }));
});

describe("batchNorm with a single value per channel", () => {
  test("training mode refuses it (the unbiased variance would make running_var NaN), eval mode accepts it", () =>
    t(() => {
      const rm = torch.zeros([2]);
      const rv = torch.ones([2]);
      for (const shape of [
        [1, 2, 1, 1],
        [1, 2],
        [1, 2, 1],
      ]) {
        assert.throws(
          () => F.batchNorm(torch.randn(shape), rm, rv, null, null, { training: true }),
          /more than 1 value per channel when training/,
        );
        assert.throws(() => F.batchNorm(torch.randn(shape), null, null, null, null, { training: true }), /more than 1 value per channel/);
      }
      assertTensor(rm, [2], [0, 0], 0);
      assertTensor(rv, [2], [1, 1], 0);
      const y = F.batchNorm(torch.tensor([[[[3]], [[-1]]]]), rm, rv, null, null, { training: false, eps: 0 });
      assertTensor(y, [1, 2, 1, 1], [3, -1]);
      // Two values per channel are enough.
      F.batchNorm(torch.tensor([[[[1, 3]], [[0, 2]]]]), rm, rv, null, null, { training: true });
      assertTensor(rm, [2], [0.2, 0.1], 1e-6);
      assertTensor(rv, [2], [0.9 + 0.1 * 2, 0.9 + 0.1 * 2], 1e-6);
    }));
});

describe("reductions and indexing", () => {
  const m = (): torch.Tensor =>
    torch.tensor([
      [3, 9, 1, 4],
      [7, 2, 8, 0],
    ]);

  test("argmax / argmin, flat and along a dim", () =>
    t(() => {
      assert.equal(m().argmax().item(), 1);
      assert.equal(m().argmin().item(), 7);
      assert.deepEqual(m().argmax(1).toNumbers(), [1, 2]);
      assert.deepEqual(m().argmax(0).toNumbers(), [1, 0, 1, 0]);
      assert.deepEqual([...m().argmax(1, true).shape], [2, 1]);
      assert.equal(m().argmax(1).dtype, "int64");
    }));

  test("max / min with indices, and max of all", () =>
    t(() => {
      const { values, indices } = m().maxDim(1);
      assertTensor(values, [2], [9, 8]);
      assert.deepEqual(indices.toNumbers(), [1, 2]);
      const mn = m().minDim(0, true);
      assertTensor(mn.values, [1, 4], [3, 2, 1, 0]);
      assert.deepEqual(mn.indices.toNumbers(), [0, 1, 0, 1]);
      assert.equal(m().max().item(), 9);
      assert.equal(m().min().item(), 0);
      assert.deepEqual([...m().max().shape], []);
    }));

  test("topk largest and smallest, sort", () =>
    t(() => {
      const top = m().topk(2, 1);
      assertTensor(top.values, [2, 2], [9, 4, 8, 7]);
      assert.deepEqual(top.indices.toNumbers(), [1, 3, 2, 0]);
      const low = m().topk(3, 1, false);
      assertTensor(low.values, [2, 3], [1, 3, 4, 0, 2, 7]);
      assert.deepEqual(low.indices.toNumbers(), [2, 0, 3, 3, 1, 0]);
      const s = m().sort(1, true);
      assertTensor(s.values, [2, 4], [9, 4, 3, 1, 8, 7, 2, 0]);
      assert.deepEqual(s.indices.toNumbers(), [1, 3, 0, 2, 2, 0, 1, 3]);
    }));

  test("sum, mean, var, std, logsumexp, cumsum, prod, norm", () =>
    t(() => {
      assert.equal(m().sum().item(), 34);
      assertTensor(m().sum(1), [2], [17, 17]);
      assertTensor(m().sum(0, true), [1, 4], [10, 11, 9, 4]);
      assertTensor(m().mean(1), [2], [4.25, 4.25]);
      const v = torch.tensor([1, 2, 3, 4], { dtype: "float64" });
      assertClose(v.var().item(), 5 / 3, 1e-12);
      assertClose(v.var(undefined, false).item(), 1.25, 1e-12);
      assertClose(v.std().item(), Math.sqrt(5 / 3), 1e-12);
      assertClose(v.logsumexp(0).item(), Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3) + Math.exp(4)), 1e-12);
      assertTensor(v.cumsum(0), [4], [1, 3, 6, 10]);
      assert.equal(v.prod().item(), 24);
      assertClose(torch.tensor([3, 4]).norm().item(), 5, 1e-6);
      assertClose(torch.tensor([3, -4]).norm(1).item(), 7, 1e-6);
    }));

  test("where with tensors and numbers", () =>
    t(() => {
      const c = torch.tensor([true, false, true, false], { dtype: "bool" });
      const a = torch.tensor([1, 2, 3, 4]);
      const b = torch.tensor([10, 20, 30, 40]);
      assertTensor(torch.where(c, a, b), [4], [1, 20, 3, 40]);
      assertTensor(torch.where(c, a, -1), [4], [1, -1, 3, -1]);
      assertTensor(torch.where(c, 7, b), [4], [7, 20, 7, 40]);
      assertTensor(torch.where(a.gt(2), a, 0), [4], [0, 0, 3, 4]);
    }));

  test("comparisons give bool tensors", () =>
    t(() => {
      const a = torch.tensor([1, 2, 3]);
      const r = a.ge(2);
      assert.equal(r.dtype, "bool");
      assert.deepEqual(r.toNumbers(), [0, 1, 1]);
      assert.deepEqual(a.eq(torch.tensor([1, 0, 3])).toNumbers(), [1, 0, 1]);
      assert.equal(a.gt(0).all().item(), 1);
      assert.equal(a.gt(2).any().item(), 1);
      assert.equal(a.gt(5).any().item(), 0);
    }));

  test("indexSelect, gather, maskedFill, oneHot", () =>
    t(() => {
      const idx = torch.tensor([1, 1, 0], { dtype: "int64" });
      assertTensor(m().indexSelect(0, idx), [3, 4], [7, 2, 8, 0, 7, 2, 8, 0, 3, 9, 1, 4]);
      assertTensor(m().indexSelect(1, torch.tensor([3, 0], { dtype: "int64" })), [2, 2], [4, 3, 0, 7]);
      const g = m().gather(
        1,
        torch.tensor(
          [
            [0, 3],
            [2, 2],
          ],
          { dtype: "int64" },
        ),
      );
      assertTensor(g, [2, 2], [3, 4, 8, 8]);
      assertTensor(m().maskedFill(m().lt(3), -1), [2, 4], [3, 9, -1, 4, 7, -1, 8, -1]);
      const oh = F.oneHot(torch.tensor([0, 2], { dtype: "int64" }), 3);
      assert.equal(oh.dtype, "int64");
      assertTensor(oh, [2, 3], [1, 0, 0, 0, 0, 1]);
    }));
});

describe("shapes, views and copies", () => {
  test("cat and stack shapes and contents", () =>
    t(() => {
      const a = torch.zeros([2, 3]);
      const b = torch.ones([2, 3]);
      assert.deepEqual([...torch.cat([a, b]).shape], [4, 3]);
      assert.deepEqual([...torch.cat([a, b, a], 1).shape], [2, 9]);
      assert.deepEqual([...torch.stack([a, b]).shape], [2, 2, 3]);
      assert.deepEqual([...torch.stack([a, b, a], 1).shape], [2, 3, 3]);
      assert.deepEqual([...torch.stack([a, b], -1).shape], [2, 3, 2]);
      assertTensor(torch.cat([torch.tensor([1, 2]), torch.tensor([3])]), [3], [1, 2, 3]);
      assertTensor(torch.stack([torch.tensor([1, 2]), torch.tensor([3, 4])], 1), [2, 2], [1, 3, 2, 4]);
    }));

  test("slice, narrow, select, transpose, permute", () =>
    t(() => {
      const x = torch.arange(0, 12, 1, "float32").reshape(3, 4); // [[0..3], [4..7], [8..11]]
      assertTensor(x.slice(1, 1, 3), [3, 2], [1, 2, 5, 6, 9, 10]);
      assertTensor(x.slice(1, 0, 4, 2), [3, 2], [0, 2, 4, 6, 8, 10]);
      assertTensor(x.slice(0, -1), [1, 4], [8, 9, 10, 11]);
      assertTensor(x.narrow(0, 1, 2), [2, 4], [4, 5, 6, 7, 8, 9, 10, 11]);
      assertTensor(x.select(1, 2), [3], [2, 6, 10]);
      assertTensor(x.t(), [4, 3], [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
      const y = torch.arange(0, 6, 1, "float32").reshape(1, 2, 3);
      assertTensor(y.permute(2, 0, 1), [3, 1, 2], [0, 3, 1, 4, 2, 5]);
      assertTensor(y.flatten(), [6], [0, 1, 2, 3, 4, 5]);
      assert.deepEqual([...y.squeeze().shape], [2, 3]);
      assert.deepEqual([...y.squeeze(0).unsqueeze(2).shape], [2, 3, 1]);
      assert.deepEqual([...torch.zeros([2, 1]).expand(2, 3).shape], [2, 3]);
      assertTensor(torch.tensor([1, 2]).repeat(2, 2), [2, 4], [1, 2, 1, 2, 1, 2, 1, 2]);
    }));

  test("views share memory with their base; clone does not", () =>
    t(() => {
      const x = torch.zeros([2, 3]);
      const v = x.view(3, 2);
      const s = x.select(0, 1);
      const c = x.clone();
      v.fill_(1);
      s.fill_(5);
      assertTensor(x, [2, 3], [1, 1, 1, 5, 5, 5]);
      assertTensor(c, [2, 3], [0, 0, 0, 0, 0, 0]);
      const r = x.reshape(-1);
      assert.deepEqual([...r.shape], [6]);
      assert.throws(() => x.t().view(6), Error);
    }));

  test("split and chunk", () =>
    t(() => {
      const x = torch.arange(0, 5, 1, "float32");
      const parts = x.split([2, 3]);
      assert.equal(parts.length, 2);
      assertTensor(parts[0], [2], [0, 1]);
      assertTensor(parts[1], [3], [2, 3, 4]);
      const ch = x.chunk(2);
      assertTensor(ch[0], [3], [0, 1, 2]);
      assertTensor(ch[1], [2], [3, 4]);
    }));

  test("flip and roll", () =>
    t(() => {
      const x = torch.arange(0, 6, 1, "float32").reshape(2, 3);
      assertTensor(x.flip(1), [2, 3], [2, 1, 0, 5, 4, 3]);
      assertTensor(x.flip(0), [2, 3], [3, 4, 5, 0, 1, 2]);
      assertTensor(x.flip([0, 1]), [2, 3], [5, 4, 3, 2, 1, 0]);
      assertTensor(x.roll(1, 1), [2, 3], [2, 0, 1, 5, 3, 4]);
    }));

  test("pad: constant (with value) and reflect", () =>
    t(() => {
      const x = torch.tensor([
        [
          [
            [1, 2],
            [3, 4],
          ],
        ],
      ]);
      // (left, right, top, bottom) = (1, 0, 0, 1), value 9
      assertTensor(F.pad(x, [1, 0, 0, 1], "constant", 9), [1, 1, 3, 3], [9, 1, 2, 9, 3, 4, 9, 9, 9]);
      const r = torch.tensor([
        [
          [
            [1, 2, 3],
            [4, 5, 6],
          ],
        ],
      ]);
      // Reflect by 2 on the left and 1 on the right along W: [3 2 | 1 2 3 | 2]
      assertTensor(F.pad(r, [2, 1, 0, 0], "reflect"), [1, 1, 2, 6], [3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5]);
      assertTensor(F.pad(r, [0, 0, 1, 1], "reflect"), [1, 1, 4, 3], [4, 5, 6, 1, 2, 3, 4, 5, 6, 1, 2, 3]);
      assertTensor(F.pad(r, [1, 1, 0, 0], "replicate"), [1, 1, 2, 5], [1, 1, 2, 3, 3, 4, 4, 5, 6, 6]);
    }));

  test("interpolate nearest 2x2 -> 4x4 repeats each pixel; bilinear align_corners interpolates", () =>
    t(() => {
      const x = torch.tensor([
        [
          [
            [1, 2],
            [3, 4],
          ],
        ],
      ]);
      assertTensor(F.interpolate(x, 4, "nearest"), [1, 1, 4, 4], [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
      assertTensor(F.interpolate(x, [1, 4], "nearest"), [1, 1, 1, 4], [1, 1, 2, 2]);
      // align_corners: output corners equal input corners, the middle is the average.
      assertTensor(F.interpolate(x, 3, "bilinear", true), [1, 1, 3, 3], [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4], 1e-6);
    }));

  test("gridSample with an identity affine grid reproduces the input", () =>
    t(() => {
      torch.manualSeed(7);
      const x = torch.randn([2, 3, 5, 4], "float64");
      const theta = torch
        .tensor(
          [
            [1, 0, 0],
            [0, 1, 0],
          ],
          { dtype: "float64" },
        )
        .reshape(1, 2, 3)
        .repeat(2, 1, 1);
      for (const alignCorners of [false, true]) {
        const grid = F.affineGrid(theta, [2, 3, 5, 4], alignCorners);
        assert.deepEqual([...grid.shape], [2, 5, 4, 2]);
        const y = F.gridSample(x, grid, "bilinear", "zeros", alignCorners);
        assertTensor(y, [2, 3, 5, 4], x.toNumbers(), 1e-12, `alignCorners=${alignCorners}`);
        const yn = F.gridSample(x, grid, "nearest", "zeros", alignCorners);
        assertTensor(yn, [2, 3, 5, 4], x.toNumbers(), 1e-12, `nearest alignCorners=${alignCorners}`);
      }
    }));

  test("gridSample with a horizontal flip affine grid flips the image", () =>
    t(() => {
      const x = torch.arange(0, 6, 1, "float64").reshape(1, 1, 2, 3);
      const theta = torch.tensor(
        [
          [
            [-1, 0, 0],
            [0, 1, 0],
          ],
        ],
        { dtype: "float64" },
      );
      const y = F.gridSample(x, F.affineGrid(theta, [1, 1, 2, 3]));
      assertTensor(y, [1, 1, 2, 3], [2, 1, 0, 5, 4, 3], 1e-12);
    }));
});

describe("elementwise math", () => {
  test("arithmetic with tensors and numbers, broadcasting", () =>
    t(() => {
      const a = torch.tensor([1, 2, 3]);
      const b = torch.tensor([[10], [20]]);
      assertTensor(a.add(b), [2, 3], [11, 12, 13, 21, 22, 23]);
      assertTensor(a.add(b, 2), [2, 3], [21, 22, 23, 41, 42, 43]);
      assertTensor(a.sub(1), [3], [0, 1, 2]);
      assertTensor(a.sub(1, 2), [3], [-1, 0, 1]);
      assertTensor(a.rsub(10), [3], [9, 8, 7]);
      assertTensor(a.mul(a), [3], [1, 4, 9]);
      assertTensor(a.div(2), [3], [0.5, 1, 1.5]);
      assertTensor(a.pow(2), [3], [1, 4, 9]);
      assertTensor(torch.tensor([-3, 3]).remainder(2), [2], [1, 1]);
      assertTensor(a.neg().abs(), [3], [1, 2, 3]);
      assertTensor(torch.tensor([4, 9]).sqrt(), [2], [2, 3]);
      assertTensor(torch.tensor([-1.5, 0.5, 2.5]).round(), [3], [-2, 0, 2]);
      assertTensor(a.clamp(1.5, 2.5), [3], [1.5, 2, 2.5]);
      assertTensor(a.clamp(undefined, 2), [3], [1, 2, 2]);
      assertTensor(torch.tensor([0]).exp(), [1], [1]);
      assertTensor(torch.tensor([-2, 0, 2]).relu(), [3], [0, 0, 2]);
      assertTensor(F.leakyRelu(torch.tensor([-2, 2]), 0.1), [2], [-0.2, 2]);
      assertTensor(F.relu6(torch.tensor([-1, 3, 8])), [3], [0, 3, 6]);
    }));

  test("integer tensors keep their dtype with integer scalars; division gives floats", () =>
    t(() => {
      const i = torch.tensor([1, 2, 3], { dtype: "int64" });
      assert.equal(i.add(1).dtype, "int64");
      assert.deepEqual(Array.from(i.mul(2).toArray() as BigInt64Array), [2n, 4n, 6n]);
      assert.equal(i.div(2).dtype, "float32");
      assertTensor(i.div(2), [3], [0.5, 1, 1.5]);
    }));

  test("in-place ops return this and modify the tensor", () =>
    t(() => {
      const a = torch.tensor([1, 2, 3]);
      assert.equal(a.add_(1), a);
      assertTensor(a, [3], [2, 3, 4]);
      a.mul_(2)
        .div_(4)
        .add_(torch.tensor([1, 1, 1]), 2);
      assertTensor(a, [3], [3, 3.5, 4]);
      a.lerp_(torch.tensor([5, 5, 5]), 0.5);
      assertTensor(a, [3], [4, 4.25, 4.5]);
      a.clamp_(4.1, 4.4).zero_();
      assertTensor(a, [3], [0, 0, 0]);
    }));
});

describe("creation and dtypes", () => {
  test("dtype round trips via fromArray / toArray", () =>
    t(() => {
      const f32 = torch.fromArray(new Float32Array([1.5, -2.25, 3e-3]), [3]);
      assert.equal(f32.dtype, "float32");
      assert.ok(f32.toArray() instanceof Float32Array);
      assert.deepEqual(f32.toNumbers(), Array.from(new Float32Array([1.5, -2.25, 3e-3])));

      const f64 = torch.fromArray(new Float64Array([Math.PI, -1e300, 5e-324]), [3]);
      assert.equal(f64.dtype, "float64");
      assert.ok(f64.toArray() instanceof Float64Array);
      assert.deepEqual(f64.toNumbers(), [Math.PI, -1e300, 5e-324]);

      const big = [2n ** 62n, -(2n ** 63n), 0n, 2n ** 63n - 1n];
      const i64 = torch.fromArray(BigInt64Array.from(big), [2, 2]);
      assert.equal(i64.dtype, "int64");
      assert.ok(i64.toArray() instanceof BigInt64Array);
      assert.deepEqual(Array.from(i64.toArray() as BigInt64Array), big);

      const i32 = torch.fromArray(new Int32Array([2147483647, -2147483648, 7]), [3]);
      assert.equal(i32.dtype, "int32");
      assert.ok(i32.toArray() instanceof Int32Array);
      assert.deepEqual(i32.toNumbers(), [2147483647, -2147483648, 7]);

      const u8 = torch.fromArray(new Uint8Array([0, 255, 128]), [3]);
      assert.equal(u8.dtype, "uint8");
      assert.ok(u8.toArray() instanceof Uint8Array);
      assert.deepEqual(u8.toNumbers(), [0, 255, 128]);

      const bool = torch.fromArray(new Uint8Array([1, 0, 3]), [3], "bool");
      assert.equal(bool.dtype, "bool");
      assert.ok(bool.toArray() instanceof Uint8Array);
      assert.deepEqual(bool.toNumbers(), [1, 0, 1]);
    }));

  test("fromArray of a typed-array view copies only the viewed elements", () =>
    t(() => {
      const base = new Float32Array([9, 1, 2, 3, 9]);
      const x = torch.fromArray(base.subarray(1, 4), [3]);
      base[2] = 100;
      assertTensor(x, [3], [1, 2, 3]);
    }));

  test("to() converts between dtypes", () =>
    t(() => {
      const x = torch.tensor([1.7, -2.7, 0]);
      assert.deepEqual(x.to("int32").toNumbers(), [1, -2, 0]);
      assert.deepEqual(x.to("bool").toNumbers(), [1, 1, 0]);
      assert.deepEqual(Array.from(x.long().toArray() as BigInt64Array), [1n, -2n, 0n]);
      assert.equal(x.to("float64").dtype, "float64");
      assert.equal(x.to("int64").float().dtype, "float32");
      assertTensor(torch.tensor([1, 2], { dtype: "float16" }).to("float32"), [2], [1, 2]);
    }));

  test("fromBytes / toBytes are little-endian element bytes", () =>
    t(() => {
      const src = new Float32Array([1, -0.5, 1e-7]);
      const x = torch.fromArray(src, [3]);
      const bytes = x.toBytes();
      assert.deepEqual([...bytes], [...new Uint8Array(src.buffer)]);
      assertTensor(torch.fromBytes(bytes, [3], "float32"), [3], Array.from(src), 0);
      assert.throws(() => torch.fromBytes(bytes, [2], "float32"), /needs 8 bytes but got 12/);
    }));

  test("item of one-element tensors of every dtype", () =>
    t(() => {
      assert.equal(torch.tensor(2.5).item(), 2.5);
      assert.equal(torch.tensor([[7]], { dtype: "int64" }).item(), 7);
      assert.equal(torch.tensor([-3], { dtype: "int32" }).item(), -3);
      assert.equal(torch.tensor([true], { dtype: "bool" }).item(), 1);
      assert.equal(torch.tensor([200], { dtype: "uint8" }).item(), 200);
      assert.throws(() => torch.tensor([1, 2]).item(), /2 elements/);
    }));

  test("tensor() from nested arrays, scalars and typed arrays", () =>
    t(() => {
      const a = torch.tensor([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      assert.equal(a.dtype, "float32");
      assertTensor(a, [2, 3], [1, 2, 3, 4, 5, 6]);
      const s = torch.tensor(3);
      assert.deepEqual([...s.shape], []);
      assert.equal(s.ndim, 0);
      assert.equal(s.numel, 1);
      const b = torch.tensor([[[true], [false]]], { dtype: "bool" });
      assert.deepEqual([...b.shape], [1, 2, 1]);
      assert.deepEqual(b.toNumbers(), [1, 0]);
      const i = torch.tensor([1, 2, 3, 4], { dtype: "int64", shape: [2, 2] });
      assert.deepEqual([...i.shape], [2, 2]);
      assert.equal(i.dtype, "int64");
      const e = torch.tensor([]);
      assert.deepEqual([...e.shape], [0]);
      const ta = torch.tensor(new Float64Array([1, 2, 3, 4, 5, 6]), { shape: [3, 2] });
      assert.equal(ta.dtype, "float64");
      assert.deepEqual([...ta.shape], [3, 2]);
      assert.throws(() => torch.tensor([[1, 2], [3]]), TypeError);
    }));

  test("zeros, ones, full, arange, linspace, eye, *Like", () =>
    t(() => {
      assertTensor(torch.zeros([2, 2]), [2, 2], [0, 0, 0, 0]);
      assert.equal(torch.zeros([1], "int32").dtype, "int32");
      assertTensor(torch.ones([3], "float64"), [3], [1, 1, 1]);
      const f = torch.full([2, 1], 2.5);
      assert.equal(f.dtype, "float32");
      assertTensor(f, [2, 1], [2.5, 2.5]);
      assert.deepEqual(Array.from(torch.full([2], 7, "int64").toArray() as BigInt64Array), [7n, 7n]);
      const r = torch.arange(2, 7, 2);
      assert.equal(r.dtype, "int64");
      assert.deepEqual(r.toNumbers(), [2, 4, 6]);
      assertTensor(torch.arange(0, 1, 0.25, "float32"), [4], [0, 0.25, 0.5, 0.75]);
      assertTensor(torch.linspace(0, 1, 5), [5], [0, 0.25, 0.5, 0.75, 1]);
      assertTensor(torch.eye(3), [3, 3], [1, 0, 0, 0, 1, 0, 0, 0, 1]);
      assert.equal(torch.eye(2, "float64").dtype, "float64");
      const like = torch.fullLike(torch.zeros([2], "float64"), 3);
      assert.equal(like.dtype, "float64");
      assertTensor(like, [2], [3, 3]);
      assertTensor(torch.onesLike(torch.zeros([1, 2])), [1, 2], [1, 1]);
      assertTensor(torch.zerosLike(torch.ones([2])), [2], [0, 0]);
      assert.deepEqual([...torch.empty([0, 3]).shape], [0, 3]);
      assert.equal(torch.zeros([2]).device, "cpu");
    }));

  test("toString describes shape and dtype", () => {
    const x = torch.zeros([2, 3]);
    assert.equal(x.toString(), "Tensor(shape=[2, 3], dtype=float32)");
    x.dispose();
    assert.equal(x.toString(), "Tensor(disposed)");
  });

  test("libtorch version is 1.13", () => {
    assert.match(torch.libtorchVersion(), /^1\.13\./);
  });
});

describe("statistics helpers", () => {
  test("assertAllClose reports mismatches", () => {
    assert.throws(() => assertAllClose([1, 2], [1, 2.5], 1e-3), /\[1\]: expected 2.5, got 2/);
  });
});

describe("profiler", () => {
  test("profile writes a Chrome trace of the ops a callback runs, and refuses a path it cannot write", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "ferkit-profile-"));
    try {
      const file = path.join(dir, "trace.json");
      const y = torch.profile(file, () =>
        torch.tidy(() =>
          torch.F.conv2d(torch.ones([1, 2, 5, 5]), torch.ones([3, 2, 3, 3]))
            .sum()
            .item(),
        ),
      );
      assert.equal(y, 3 * 9 * 2 * 9);
      const trace = JSON.parse(readFileSync(file, "utf8")) as { traceEvents?: { name: string; dur: number }[] } | { name: string }[];
      const events = Array.isArray(trace) ? trace : (trace.traceEvents ?? []);
      assert.ok(
        events.some((e) => e.name === "aten::conv2d"),
        "the convolution is in the trace",
      );
      assert.throws(() => torch.profile(path.join(dir, "missing", "t.json"), () => 1), /cannot write/);
      assert.equal(
        torch.profile(file, () => 2),
        2,
        "a failed start leaves no profile open",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
