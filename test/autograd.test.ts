/**
 * Autograd through the binding: recording, gradient accumulation, clearing,
 * grad modes (noGrad, enableGrad, inferenceMode), retainGrad, and the errors
 * libtorch raises for misuse.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import { assertTensor } from "./helpers.js";

const t = torch.tidy;

/** x.grad as numbers (the grad wrapper is disposed by the enclosing tidy). */
function gradOf(x: torch.Tensor): number[] | null {
  const g = x.grad;
  return g === null ? null : g.toNumbers();
}

describe("recording", () => {
  test("requiresGrad, isLeaf and gradFn", () =>
    t(() => {
      const x = torch.tensor([1, 2, 3]);
      assert.equal(x.requiresGrad, false);
      assert.equal(x.requiresGrad_(), x);
      assert.equal(x.requiresGrad, true);
      assert.equal(x.isLeaf, true);
      assert.equal(x.gradFn, null);
      const y = x.mul(2);
      assert.equal(y.requiresGrad, true);
      assert.equal(y.isLeaf, false);
      assert.match(y.gradFn ?? "", /^MulBackward\d$/);
      assert.match(y.add(1).gradFn ?? "", /^AddBackward\d$/);
      assert.equal(y.add(x).gradFn, "AddBackward0");
      assert.equal(y.sum().gradFn, "SumBackward0");
      // Ops on tensors that do not require grad record nothing.
      const z = torch.tensor([1]).mul(2);
      assert.equal(z.requiresGrad, false);
      assert.equal(z.gradFn, null);
      x.requiresGrad_(false);
      assert.equal(x.requiresGrad, false);
    }));

  test("requiresGrad_ on an integer tensor throws an Error", () =>
    t(() => {
      assert.throws(() => torch.tensor([1, 2], { dtype: "int64" }).requiresGrad_(), /floating point|grad/i);
    }));

  test("detach shares memory but drops history", () =>
    t(() => {
      const x = torch.tensor([1, 2]).requiresGrad_();
      const y = x.mul(3);
      const d = y.detach();
      assert.equal(d.requiresGrad, false);
      assert.equal(d.gradFn, null);
      d.fill_(0); // writes through to y's memory
      assertTensor(y, [2], [0, 0]);
    }));
});

describe("backward and .grad", () => {
  test("grad is null before backward, and holds d(loss)/dx after", () =>
    t(() => {
      const x = torch.tensor([1, -2, 3], { dtype: "float64" }).requiresGrad_();
      assert.equal(x.grad, null);
      x.mul(x).sum().backward();
      assert.deepEqual(gradOf(x), [2, -4, 6]);
    }));

  test("two backward passes add their gradients", () =>
    t(() => {
      const x = torch.tensor([1, 2], { dtype: "float64" }).requiresGrad_();
      x.mul(x).sum().backward();
      x.mul(x).sum().backward();
      assert.deepEqual(gradOf(x), [4, 8]);
      x.mul(3).sum().backward();
      assert.deepEqual(gradOf(x), [7, 11]);
    }));

  test("backward twice over one graph needs retainGraph", () =>
    t(() => {
      const x = torch.tensor([1, 2], { dtype: "float64" }).requiresGrad_();
      const loss = x.exp().sum();
      loss.backward(undefined, true);
      loss.backward();
      assert.deepEqual(gradOf(x), [2 * Math.exp(1), 2 * Math.exp(2)]);
      // The second call freed the graph: a third one fails with libtorch's message.
      assert.throws(() => loss.backward(), /backward through the graph a second time/);
    }));

  test("setGrad(null) clears the gradient; setGrad(t) replaces it and backward accumulates into it", () =>
    t(() => {
      const x = torch.tensor([1, 2], { dtype: "float64" }).requiresGrad_();
      x.sum().backward();
      assert.deepEqual(gradOf(x), [1, 1]);
      x.setGrad(null);
      assert.equal(x.grad, null);
      x.sum().backward();
      assert.deepEqual(gradOf(x), [1, 1]);
      x.setGrad(torch.tensor([10, 20], { dtype: "float64" }));
      assert.deepEqual(gradOf(x), [10, 20]);
      x.mul(2).sum().backward();
      assert.deepEqual(gradOf(x), [12, 22]);
    }));

  test("setGrad refuses a gradient of another shape or dtype (as PyTorch's .grad setter)", () =>
    t(() => {
      const x = torch.zeros([3]).requiresGrad_();
      assert.throws(() => x.setGrad(torch.ones([1])), /different size/);
      assert.throws(() => x.setGrad(torch.ones([3, 1])), /different size/);
      assert.throws(() => x.setGrad(torch.ones([3], "float64")), /different type/);
      assert.throws(() => x.setGrad(torch.ones([3], "int64")), /different type/);
      assert.equal(x.grad, null);
      // A refused gradient cannot reach an optimizer, which would broadcast it silently.
      const opt = new torch.optim.SGD([x], { lr: 1 });
      opt.step();
      assertTensor(x, [3], [0, 0, 0]);
      x.setGrad(torch.ones([3]));
      opt.step();
      assertTensor(x, [3], [-1, -1, -1]);
    }));

  test("a gradient reaches every leaf through shared subexpressions", () =>
    t(() => {
      const a = torch.tensor([2], { dtype: "float64" }).requiresGrad_();
      const b = torch.tensor([3], { dtype: "float64" }).requiresGrad_();
      const c = a.mul(b); // 6
      const loss = c.mul(c).add(a).sum(); // a^2 b^2 + a
      loss.backward();
      assert.deepEqual(gradOf(a), [2 * 2 * 9 + 1]);
      assert.deepEqual(gradOf(b), [2 * 3 * 4]);
    }));

  test("backward of a non-scalar needs a gradient: without one it throws an Error", () =>
    t(() => {
      const x = torch.tensor([1, 2, 3]).requiresGrad_();
      const y = x.mul(2);
      assert.throws(
        () => y.backward(),
        (e: unknown) => e instanceof Error && !(e instanceof TypeError) && /only for scalar outputs/.test(e.message),
      );
      y.backward(torch.tensor([1, 10, 100]));
      assert.deepEqual(gradOf(x), [2, 20, 200]);
    }));

  test("backward of a tensor that does not require grad throws an Error", () =>
    t(() => {
      assert.throws(() => torch.tensor([1, 2]).sum().backward(), /does not require grad/);
    }));

  test("retainGrad keeps the gradient of a non-leaf tensor", () =>
    t(() => {
      const x = torch.tensor([1, 2], { dtype: "float64" }).requiresGrad_();
      const y = x.mul(3);
      y.retainGrad();
      const z = y.mul(y).sum();
      z.backward();
      assert.deepEqual(gradOf(y), [6, 12]); // dz/dy = 2y
      assert.deepEqual(gradOf(x), [18, 36]); // dz/dx = 2y * 3
    }));

  test("createGraph makes the gradient differentiable", () =>
    t(() => {
      const x = torch.tensor([2], { dtype: "float64" }).requiresGrad_();
      x.pow(3).sum().backward(undefined, true, true);
      const g = x.grad as torch.Tensor;
      assert.deepEqual(g.toNumbers(), [12]); // 3x^2
      assert.equal(g.requiresGrad, true);
      x.setGrad(null);
    }));

  test("an in-place op on a leaf that requires grad throws", () =>
    t(() => {
      const x = torch.tensor([1, 2]).requiresGrad_();
      assert.throws(() => x.add_(1), /leaf Variable that requires grad/);
      // Allowed under noGrad (how optimizers update parameters).
      torch.noGrad(() => x.add_(1));
      assertTensor(x, [2], [2, 3]);
    }));

  test("modifying a tensor saved for backward is detected", () =>
    t(() => {
      const x = torch.tensor([1, 2]).requiresGrad_();
      const y = x.mul(2);
      const z = y.mul(y).sum(); // saves y
      y.add_(1);
      assert.throws(() => z.backward(), /modified by an inplace operation/);
    }));

  test("gradients flow through clone, dtype casts and views", () =>
    t(() => {
      const x = torch.tensor([1, 2, 3, 4]).requiresGrad_();
      const loss = x.clone().to("float64").reshape(2, 2).select(1, 1).mul(5).sum();
      loss.backward();
      assert.deepEqual(gradOf(x), [0, 5, 0, 5]);
      assert.equal((x.grad as torch.Tensor).dtype, "float32");
    }));
});

describe("grad modes", () => {
  test("noGrad records nothing and restores the mode", () =>
    t(() => {
      const x = torch.tensor([1, 2]).requiresGrad_();
      assert.equal(torch.isGradEnabled(), true);
      const y = torch.noGrad(() => {
        assert.equal(torch.isGradEnabled(), false);
        return x.mul(2);
      });
      assert.equal(y.requiresGrad, false);
      assert.equal(y.gradFn, null);
      assert.equal(torch.isGradEnabled(), true);
    }));

  test("noGrad restores the mode when the callback throws", () => {
    assert.throws(
      () =>
        torch.noGrad(() => {
          throw new Error("boom");
        }),
      /boom/,
    );
    assert.equal(torch.isGradEnabled(), true);
  });

  test("enableGrad records inside noGrad; nested modes restore in order", () =>
    t(() => {
      const x = torch.tensor([1]).requiresGrad_();
      const y = torch.noGrad(() => {
        const inner = torch.enableGrad(() => x.mul(2));
        assert.equal(torch.isGradEnabled(), false);
        return inner;
      });
      assert.match(y.gradFn ?? "", /^MulBackward\d$/);
      assert.equal(torch.isGradEnabled(), true);
    }));

  test("inferenceMode: tensors created inside are inference tensors, outside are not", () =>
    t(() => {
      const x = torch.tensor([1, 2]).requiresGrad_();
      assert.equal(x.isInference, false);
      const y = torch.inferenceMode(() => {
        assert.equal(torch.isGradEnabled(), false);
        return x.mul(2);
      });
      assert.equal(y.isInference, true);
      assert.equal(y.requiresGrad, false);
      assert.equal(y.gradFn, null);
      assert.equal(torch.isGradEnabled(), true);
      const z = torch.tensor([1]);
      assert.equal(z.isInference, false);
      // An inference tensor cannot be saved for backward.
      const w = torch.tensor([3, 4]).requiresGrad_();
      assert.throws(() => w.mul(y), /Inference tensors cannot be saved for backward/);
    }));

  test("inferenceMode nests, exits on throw, and refuses async callbacks", () => {
    const y = torch.inferenceMode(() => torch.inferenceMode(() => torch.zeros([1])));
    assert.equal(y.isInference, true);
    y.dispose();
    assert.throws(
      () =>
        torch.inferenceMode(() => {
          throw new Error("inside");
        }),
      /inside/,
    );
    const z = torch.zeros([1]);
    assert.equal(z.isInference, false);
    z.dispose();
    assert.throws(() => torch.inferenceMode(() => Promise.resolve(1)), TypeError);
    assert.equal(torch.isGradEnabled(), true);
  });
});
