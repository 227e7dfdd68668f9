/**
 * Gradient checks of every differentiable op family against central finite
 * differences (float64, small shapes). Dropout is excluded: it is random.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import type { Tensor } from "../src/torch/index.js";
import { assertGradcheck, awayFromZero, leaf, uniform } from "./helpers.js";

const { F } = torch;

/** Runs a gradcheck case inside tidy with a fixed seed. */
function check(name: string, make: () => { fn: (...xs: Tensor[]) => Tensor; inputs: Tensor[]; options?: torch.GradcheckOptions }): void {
  test(name, () => {
    torch.tidy(() => {
      torch.manualSeed(1234);
      const { fn, inputs, options } = make();
      assertGradcheck(name, fn, inputs, options);
    });
  });
}

const grad = (t: Tensor): Tensor => t.requiresGrad_();

describe("gradcheck itself", () => {
  test("detects a wrong gradient (x.detach() * x has analytic grad x, numeric 2x)", () => {
    torch.tidy(() => {
      torch.manualSeed(1);
      const x = leaf([5]);
      const r = torch.gradcheck((a) => a.detach().mul(a), [x]);
      assert.equal(r.passed, false);
      assert.ok(r.worst !== null);
      assert.ok(r.maxAbsError > 1e-3);
    });
  });

  test("passes a correct gradient and leaves the inputs unchanged", () => {
    torch.tidy(() => {
      torch.manualSeed(2);
      const x = leaf([2, 3]);
      const before = x.toNumbers();
      const r = torch.gradcheck((a) => a.mul(a).sum(1), [x]);
      assert.equal(r.passed, true);
      assert.ok(r.maxAbsError < 1e-6);
      assert.deepEqual(x.toNumbers(), before);
    });
  });
});

describe("convolution", () => {
  check("conv2d with bias", () => ({
    fn: (x, w, b) => F.conv2d(x, w, b),
    inputs: [leaf([2, 2, 5, 5]), leaf([3, 2, 3, 3]), leaf([3])],
  }));
  check("conv2d stride 2, padding 1", () => ({
    fn: (x, w, b) => F.conv2d(x, w, b, { stride: 2, padding: 1 }),
    inputs: [leaf([1, 2, 5, 6]), leaf([2, 2, 3, 3]), leaf([2])],
  }));
  check("conv2d dilation 2, asymmetric stride/padding", () => ({
    fn: (x, w) => F.conv2d(x, w, null, { dilation: 2, stride: [1, 2], padding: [2, 1] }),
    inputs: [leaf([1, 1, 6, 6]), leaf([2, 1, 3, 3])],
  }));
  check("conv2d groups=2 with bias", () => ({
    fn: (x, w, b) => F.conv2d(x, w, b, { groups: 2, padding: 1 }),
    inputs: [leaf([2, 4, 4, 4]), leaf([4, 2, 3, 3]), leaf([4])],
  }));
  check("conv2d depthwise (groups = channels)", () => ({
    fn: (x, w) => F.conv2d(x, w, null, { groups: 3 }),
    inputs: [leaf([1, 3, 4, 4]), leaf([3, 1, 2, 2])],
  }));
});

describe("normalisation and linear layers", () => {
  check("batchNorm training mode with weight and bias", () => {
    const rm = torch.zeros([3], "float64");
    const rv = torch.ones([3], "float64");
    return {
      fn: (x, w, b) => F.batchNorm(x, rm, rv, w, b, { training: true }),
      inputs: [leaf([4, 3, 2, 2]), grad(uniform([3], 0.5, 1.5)), leaf([3])],
    };
  });
  check("batchNorm training mode without running stats", () => ({
    fn: (x, w, b) => F.batchNorm(x, null, null, w, b, { training: true, eps: 1e-3 }),
    inputs: [leaf([3, 2, 3]), grad(uniform([2], 0.5, 1.5)), leaf([2])],
  }));
  check("batchNorm eval mode with running stats", () => {
    const rm = torch.randn([3], "float64");
    const rv = uniform([3], 0.5, 2);
    return {
      fn: (x, w, b) => F.batchNorm(x, rm, rv, w, b, { training: false }),
      inputs: [leaf([2, 3, 2, 2]), leaf([3]), leaf([3])],
    };
  });
  check("linear with bias", () => ({
    fn: (x, w, b) => F.linear(x, w, b),
    inputs: [leaf([4, 5]), leaf([3, 5]), leaf([3])],
  }));
  check("linear without bias on a 3-d input", () => ({
    fn: (x, w) => F.linear(x, w),
    inputs: [leaf([2, 3, 4]), leaf([2, 4])],
  }));
  check("matmul 2-d", () => ({ fn: (a, b) => F.matmul(a, b), inputs: [leaf([3, 4]), leaf([4, 2])] }));
  check("matmul batched with broadcasting", () => ({ fn: (a, b) => a.matmul(b), inputs: [leaf([2, 3, 4]), leaf([4, 5])] }));
  check("matmul vector-matrix", () => ({ fn: (a, b) => a.matmul(b), inputs: [leaf([4]), leaf([4, 3])] }));
});

describe("activations (inputs away from kinks)", () => {
  check("relu", () => ({ fn: (x) => F.relu(x), inputs: [grad(awayFromZero([3, 4]))] }));
  check("Tensor.relu", () => ({ fn: (x) => x.relu(), inputs: [grad(awayFromZero([6]))] }));
  check("leakyRelu slope 0.2", () => ({ fn: (x) => F.leakyRelu(x, 0.2), inputs: [grad(awayFromZero([3, 4]))] }));
  check("silu", () => ({ fn: (x) => F.silu(x), inputs: [leaf([3, 4])] }));
  check("gelu (erf)", () => ({ fn: (x) => F.gelu(x), inputs: [leaf([3, 4])] }));
  check("gelu (tanh approximation)", () => ({ fn: (x) => F.gelu(x, "tanh"), inputs: [leaf([3, 4])] }));
  check("sigmoid", () => ({ fn: (x) => F.sigmoid(x), inputs: [leaf([3, 4])] }));
  check("tanh", () => ({ fn: (x) => F.tanh(x), inputs: [leaf([3, 4])] }));
  check("elu alpha 1.5", () => ({ fn: (x) => F.elu(x, 1.5), inputs: [grad(awayFromZero([3, 4]))] }));
});

describe("pooling", () => {
  check("maxPool2d 2x2", () => ({ fn: (x) => F.maxPool2d(x, 2), inputs: [leaf([2, 2, 4, 4])] }));
  check("maxPool2d 3x3 stride 2 padding 1", () => ({
    fn: (x) => F.maxPool2d(x, 3, { stride: 2, padding: 1 }),
    inputs: [leaf([1, 2, 5, 5])],
  }));
  check("avgPool2d 2x2", () => ({ fn: (x) => F.avgPool2d(x, 2), inputs: [leaf([2, 2, 4, 4])] }));
  check("avgPool2d 3x3 stride 2 padding 1 (count_include_pad false)", () => ({
    fn: (x) => F.avgPool2d(x, 3, { stride: 2, padding: 1, countIncludePad: false }),
    inputs: [leaf([1, 2, 5, 5])],
  }));
  check("adaptiveAvgPool2d to 1x1", () => ({ fn: (x) => F.adaptiveAvgPool2d(x, 1), inputs: [leaf([2, 3, 3, 4])] }));
  check("adaptiveAvgPool2d 5x7 to 2x3 (overlapping windows)", () => ({
    fn: (x) => F.adaptiveAvgPool2d(x, [2, 3]),
    inputs: [leaf([1, 2, 5, 7])],
  }));
});

describe("softmax and losses", () => {
  check("softmax dim 1", () => ({ fn: (x) => F.softmax(x, 1), inputs: [leaf([3, 4])] }));
  check("softmax dim -1 on 3-d", () => ({ fn: (x) => x.softmax(-1), inputs: [leaf([2, 2, 3])] }));
  check("logSoftmax dim 1", () => ({ fn: (x) => F.logSoftmax(x, 1), inputs: [leaf([3, 4])] }));
  check("logSoftmax dim 0", () => ({ fn: (x) => x.logSoftmax(0), inputs: [leaf([3, 4])] }));

  const target = (): Tensor => torch.tensor([0, 2, 1, 3, 2], { dtype: "int64" });
  const weight = (): Tensor => torch.tensor([0.5, 1, 2, 1.5], { dtype: "float64" });
  for (const reduction of ["mean", "sum", "none"] as const) {
    check(`crossEntropy reduction ${reduction}`, () => ({
      fn: (x) => F.crossEntropy(x, target(), { reduction }),
      inputs: [leaf([5, 4])],
    }));
    check(`crossEntropy class weights, reduction ${reduction}`, () => ({
      fn: (x) => F.crossEntropy(x, target(), { reduction, weight: weight() }),
      inputs: [leaf([5, 4])],
    }));
    check(`crossEntropy label smoothing 0.1, reduction ${reduction}`, () => ({
      fn: (x) => F.crossEntropy(x, target(), { reduction, labelSmoothing: 0.1 }),
      inputs: [leaf([5, 4])],
    }));
  }
  check("crossEntropy ignore_index", () => ({
    fn: (x) => F.crossEntropy(x, torch.tensor([0, -100, 1, 3, -100], { dtype: "int64" })),
    inputs: [leaf([5, 4])],
  }));
  check("crossEntropy custom ignore_index with weights and label smoothing", () => ({
    fn: (x) => F.crossEntropy(x, target(), { ignoreIndex: 2, weight: weight(), labelSmoothing: 0.2 }),
    inputs: [leaf([5, 4])],
  }));
  check("crossEntropy probability targets (w.r.t. logits and targets)", () => ({
    fn: (x, p) => F.crossEntropy(x, p),
    inputs: [leaf([3, 4]), grad(torch.tidy(() => torch.rand([3, 4], "float64").softmax(1)))],
  }));
  check("crossEntropy probability targets with weights, smoothing, sum", () => ({
    fn: (x) =>
      F.crossEntropy(
        x,
        torch.tensor(
          [
            [0.1, 0.2, 0.3, 0.4],
            [1, 0, 0, 0],
          ],
          { dtype: "float64" },
        ),
        {
          weight: weight(),
          labelSmoothing: 0.1,
          reduction: "sum",
        },
      ),
    inputs: [leaf([2, 4])],
  }));
  check("crossEntropy on [N, C, H, W] logits", () => ({
    fn: (x) =>
      F.crossEntropy(
        x,
        torch.tensor(
          [
            [
              [0, 1],
              [2, 1],
            ],
          ],
          { dtype: "int64" },
        ),
      ),
    inputs: [leaf([1, 3, 2, 2])],
  }));
  check("nllLoss mean", () => ({
    fn: (x) => F.nllLoss(x.logSoftmax(1), target()),
    inputs: [leaf([5, 4])],
  }));
  check("nllLoss weighted sum with ignore_index", () => ({
    fn: (x) => F.nllLoss(x, target(), { weight: weight(), reduction: "sum", ignoreIndex: 1 }),
    inputs: [leaf([5, 4])],
  }));
  for (const reduction of ["mean", "sum", "none"] as const) {
    check(`mseLoss reduction ${reduction} (w.r.t. input and target)`, () => ({
      fn: (a, b) => F.mseLoss(a, b, reduction),
      inputs: [leaf([3, 4]), leaf([3, 4])],
    }));
  }
});

describe("elementwise math", () => {
  check("add with alpha and broadcasting", () => ({ fn: (a, b) => a.add(b, 2.5), inputs: [leaf([3, 4]), leaf([4])] }));
  check("add scalar", () => ({ fn: (a) => a.add(3), inputs: [leaf([3])] }));
  check("sub with alpha", () => ({ fn: (a, b) => a.sub(b, 0.5), inputs: [leaf([3, 4]), leaf([3, 1])] }));
  check("rsub", () => ({ fn: (a) => a.rsub(2), inputs: [leaf([4])] }));
  check("mul", () => ({ fn: (a, b) => a.mul(b), inputs: [leaf([3, 4]), leaf([3, 4])] }));
  check("mul scalar", () => ({ fn: (a) => a.mul(-1.5), inputs: [leaf([3, 4])] }));
  check("div (denominator away from 0)", () => ({
    fn: (a, b) => a.div(b),
    inputs: [leaf([3, 4]), grad(awayFromZero([3, 4], 0.5))],
  }));
  check("pow tensor^number", () => ({ fn: (a) => a.pow(3), inputs: [leaf([3, 4])] }));
  check("pow tensor^tensor (positive base)", () => ({
    fn: (a, b) => a.pow(b),
    inputs: [grad(uniform([3, 4], 0.5, 2)), leaf([3, 4])],
  }));
  check("exp", () => ({ fn: (a) => a.exp(), inputs: [leaf([3, 4])] }));
  check("log (positive input)", () => ({ fn: (a) => a.log(), inputs: [grad(uniform([3, 4], 0.5, 3))] }));
  check("sqrt (positive input)", () => ({ fn: (a) => a.sqrt(), inputs: [grad(uniform([3, 4], 0.5, 3))] }));
  check("where (w.r.t. both branches)", () => {
    const cond = torch.tensor(
      [
        [1, 0, 1],
        [0, 0, 1],
      ],
      { dtype: "bool" },
    );
    return { fn: (a, b) => torch.where(cond, a, b), inputs: [leaf([2, 3]), leaf([2, 3])] };
  });
  check("where with a scalar branch", () => {
    const cond = torch.tensor([1, 0, 1, 0], { dtype: "bool" });
    return { fn: (a) => torch.where(cond, a, 0.5), inputs: [leaf([4])] };
  });
});

describe("reductions", () => {
  check("sum all", () => ({ fn: (a) => a.sum(), inputs: [leaf([3, 4])] }));
  check("sum over dims with keepdim", () => ({ fn: (a) => a.sum([0, 2], true), inputs: [leaf([2, 3, 4])] }));
  check("mean all", () => ({ fn: (a) => a.mean(), inputs: [leaf([3, 4])] }));
  check("mean over dim 1", () => ({ fn: (a) => a.mean(1), inputs: [leaf([3, 4])] }));
  check("max(dim) values", () => ({ fn: (a) => a.maxDim(1).values, inputs: [leaf([3, 5])] }));
  check("max(dim) values with keepdim, dim 0", () => ({ fn: (a) => a.maxDim(0, true).values, inputs: [leaf([4, 3])] }));
  check("logsumexp dim 1", () => ({ fn: (a) => a.logsumexp(1), inputs: [leaf([3, 4])] }));
  check("logsumexp over two dims", () => ({ fn: (a) => a.logsumexp([1, 2], true), inputs: [leaf([2, 3, 2])] }));
});

describe("shape and indexing", () => {
  check("reshape", () => ({ fn: (a) => a.reshape(4, 3).mul(a.reshape(4, 3)), inputs: [leaf([2, 6])] }));
  check("permute", () => ({ fn: (a) => a.permute(2, 0, 1).contiguous().mul(2), inputs: [leaf([2, 3, 4])] }));
  check("slice with step", () => ({ fn: (a) => a.slice(1, 1, 5, 2), inputs: [leaf([3, 6])] }));
  check("narrow and select", () => ({ fn: (a) => a.narrow(0, 1, 2).select(1, 2), inputs: [leaf([4, 3])] }));
  check("indexSelect with repeated indices", () => ({
    fn: (a) => a.indexSelect(0, torch.tensor([2, 0, 2], { dtype: "int64" })),
    inputs: [leaf([4, 3])],
  }));
  check("cat", () => ({ fn: (a, b) => torch.cat([a, b, a], 1), inputs: [leaf([2, 3]), leaf([2, 2])] }));
  check("stack", () => ({ fn: (a, b) => torch.stack([a, b], 1), inputs: [leaf([2, 3]), leaf([2, 3])] }));
  check("flip", () => ({ fn: (a) => a.flip([0, 2]), inputs: [leaf([2, 3, 4])] }));
  check("pad constant", () => ({ fn: (a) => F.pad(a, [1, 2, 0, 1], "constant", 0.5), inputs: [leaf([1, 2, 3, 3])] }));
  check("pad reflect", () => ({ fn: (a) => F.pad(a, [2, 1, 1, 2], "reflect"), inputs: [leaf([1, 2, 4, 4])] }));
});

describe("resampling", () => {
  check("interpolate bilinear upsample", () => ({ fn: (a) => F.interpolate(a, [5, 7], "bilinear"), inputs: [leaf([1, 2, 3, 4])] }));
  check("interpolate bilinear downsample, align_corners", () => ({
    fn: (a) => F.interpolate(a, [3, 2], "bilinear", true),
    inputs: [leaf([1, 1, 5, 4])],
  }));
  check("affineGrid (w.r.t. theta)", () => ({
    fn: (theta) => F.affineGrid(theta, [2, 1, 3, 4]),
    inputs: [leaf([2, 2, 3])],
  }));
  check("affineGrid + gridSample bilinear (w.r.t. image and theta)", () => {
    const theta = torch.tidy(() =>
      torch
        .tensor(
          [
            [0.9, 0.1, 0.05],
            [-0.12, 0.85, -0.07],
          ],
          { dtype: "float64" },
        )
        .reshape(1, 2, 3)
        .add(torch.randn([1, 2, 3], "float64").mul(0.01)),
    );
    return {
      fn: (x, th) => F.gridSample(x, F.affineGrid(th, [1, 2, 4, 4]), "bilinear", "zeros"),
      inputs: [leaf([1, 2, 4, 4]), grad(theta)],
    };
  });
  check("gridSample border padding, align_corners (w.r.t. image and grid)", () => ({
    fn: (x, g) => F.gridSample(x, g, "bilinear", "border", true),
    inputs: [leaf([1, 1, 3, 3]), grad(uniform([1, 2, 2, 2], -1.1, 1.1))],
  }));
});
