/**
 * Errors cross the binding as JavaScript exceptions: libtorch's failures as `Error`
 * with libtorch's message, wrong argument types as `TypeError`, and none of them
 * takes the process down.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import { assertTensor } from "./helpers.js";

const { F } = torch;
const t = torch.tidy;

/** Deliberately mistyped arguments, as plain JavaScript callers could pass them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const bad = (v: unknown): any => v;

/** Asserts `fn` throws an Error that is not a TypeError, with a message matching `re`. */
function throwsLibtorch(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, `expected an Error, got ${String(e)}`);
    assert.ok(!(e instanceof TypeError), `expected a libtorch Error, got TypeError: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

describe("libtorch errors become Error with libtorch's message", () => {
  test("mm of 2x2 and 3x1", () =>
    t(() => {
      const a = torch.ones([2, 2]);
      const b = torch.ones([3, 1]);
      throwsLibtorch(() => a.matmul(b), /mat1 and mat2 shapes cannot be multiplied \(2x2 and 3x1\)/);
      throwsLibtorch(() => F.matmul(a, b), /mat1 and mat2 shapes cannot be multiplied \(2x2 and 3x1\)/);
      throwsLibtorch(() => F.linear(a, torch.ones([4, 3])), /cannot be multiplied/);
    }));

  test("broadcasting, cat, view and conv shape errors", () =>
    t(() => {
      throwsLibtorch(() => torch.ones([3]).add(torch.ones([2])), /size of tensor a \(3\) must match the size of tensor b \(2\)/);
      throwsLibtorch(() => torch.cat([torch.ones([2, 3]), torch.ones([2, 4])]), /Sizes of tensors must match/);
      throwsLibtorch(() => torch.stack([torch.ones([2]), torch.ones([3])]), /stack expects each tensor to be equal size/);
      throwsLibtorch(() => torch.ones([6]).view(4), /shape '\[4\]' is invalid for input of size 6/);
      throwsLibtorch(() => torch.ones([6]).reshape(5), /invalid for input of size 6/);
      throwsLibtorch(() => F.conv2d(torch.ones([1, 2, 5, 5]), torch.ones([4, 3, 3, 3])), /expected input\[1, 2, 5, 5\] to have 3 channels/);
      throwsLibtorch(() => F.maxPool2d(torch.ones([1, 1, 2, 2]), 3), /Output size is too small|output size|too small/i);
      throwsLibtorch(() => torch.ones([2, 3]).permute(0), /number of dims|permute/);
    }));

  test("index errors", () =>
    t(() => {
      const x = torch.ones([3, 2]);
      throwsLibtorch(() => x.indexSelect(0, torch.tensor([3], { dtype: "int64" })), /out of range|index/i);
      throwsLibtorch(() => x.select(0, 5), /out of range/);
      throwsLibtorch(() => x.narrow(0, 2, 5), /exceeds dimension size|out of range|start/);
      throwsLibtorch(() => x.sum(4), /Dimension out of range/);
      throwsLibtorch(() => x.gather(1, torch.tensor([[2], [0], [0]], { dtype: "int64" })), /out of bounds|index/i);
    }));

  test("crossEntropy with an out-of-range target throws an Error (not a crash)", () =>
    t(() => {
      const logits = torch.zeros([2, 3]);
      throwsLibtorch(() => F.crossEntropy(logits, torch.tensor([0, 3], { dtype: "int64" })), /Target 3 is out of bounds/);
      throwsLibtorch(() => F.crossEntropy(logits, torch.tensor([-2, 0], { dtype: "int64" })), /Target -2 is out of bounds/);
      throwsLibtorch(
        () => F.crossEntropy(logits, torch.tensor([0, 7], { dtype: "int64" }), { weight: torch.ones([3]), reduction: "sum" }),
        /out of bounds/,
      );
      throwsLibtorch(() => F.nllLoss(logits, torch.tensor([5, 0], { dtype: "int64" })), /out of bounds/);
      // Wrong target dtype or shape.
      throwsLibtorch(() => F.crossEntropy(logits, torch.tensor([0, 1])), /Long|Float|scalar type|dtype/i);
      throwsLibtorch(
        () => F.crossEntropy(logits, torch.tensor([0, 1, 2], { dtype: "int64" })),
        /batch_size|Expected input batch_size|size/i,
      );
      // The engine still works afterwards.
      assertTensor(
        F.crossEntropy(logits, torch.tensor([0, 2], { dtype: "int64" }), { reduction: "none" }),
        [2],
        [Math.log(3), Math.log(3)],
        1e-6,
      );
    }));

  test("other runtime errors: item, fromArray, fromBytes, setNumThreads, setRngState, randperm, arange", () =>
    t(() => {
      throwsLibtorch(() => torch.ones([2]).item(), /2 elements/);
      throwsLibtorch(() => torch.fromArray(new Float32Array(3), [2, 2]), /needs 4 elements but the array has 3/);
      throwsLibtorch(() => torch.fromArray(new Float32Array(3), [-1, 3]), /negative dimension/);
      throwsLibtorch(() => torch.fromBytes(new Uint8Array(5), [2], "float32"), /needs 8 bytes but got 5/);
      throwsLibtorch(() => torch.setNumThreads(0), /at least 1 thread/);
      throwsLibtorch(() => torch.setRngState(torch.zeros([3], "uint8")), /state|size|length/i);
      throwsLibtorch(() => torch.setRngState(torch.zeros([5056])), /Byte|uint8|state|dtype|type/i);
      throwsLibtorch(() => torch.randperm(-1), /negative/);
      throwsLibtorch(() => torch.arange(0, 5, 0), /step must be nonzero|step/);
      throwsLibtorch(() => torch.zeros([-2]), /negative dimension/);
      throwsLibtorch(() => torch.multinomial(torch.tensor([-1, 2]), 1), /invalid multinomial distribution|negative|probability/i);
    }));
});

describe("wrong argument types throw TypeError", () => {
  test("a string (or other non-Tensor) where a Tensor is expected", () =>
    t(() => {
      const x = torch.ones([2, 2]);
      assert.throws(() => x.matmul(bad("a")), TypeError);
      assert.throws(() => F.matmul(bad("a"), x), TypeError);
      assert.throws(() => F.conv2d(bad("x"), torch.ones([1, 2, 1, 1])), TypeError);
      assert.throws(() => F.conv2d(torch.ones([1, 2, 2, 2]), bad("w")), TypeError);
      assert.throws(() => F.relu(bad("x")), TypeError);
      assert.throws(() => F.crossEntropy(x, bad([0, 1])), TypeError);
      assert.throws(() => torch.cat(bad(["a", x])), TypeError);
      assert.throws(() => torch.where(bad("c"), x, x), TypeError);
      assert.throws(() => x.indexSelect(0, bad({ handle: {} })), TypeError);
      assert.throws(() => x.maximum(bad(3)), TypeError);
    }));

  test("a string where a Tensor or number is expected (binary ops, in place and out of place)", () =>
    t(() => {
      const x = torch.ones([2]);
      for (const op of ["add", "sub", "mul", "div", "pow", "remainder", "eq", "lt", "ge"] as const) {
        assert.throws(() => x[op](bad("a")), TypeError, `${op}("a")`);
        assert.throws(() => x[op](bad(null)), TypeError, `${op}(null)`);
        assert.throws(() => x[op](bad(undefined)), TypeError, `${op}(undefined)`);
      }
      for (const op of ["add_", "mul_", "div_"] as const) {
        assert.throws(() => x[op](bad("a")), TypeError, `${op}("a")`);
        assert.throws(() => x[op](bad(null)), TypeError, `${op}(null)`);
      }
      assert.throws(() => torch.where(torch.ones([2], "bool"), bad("1"), x), TypeError);
      // x is untouched by the failed in-place calls.
      assertTensor(x, [2], [1, 1]);
    }));

  test("non-integer dims, sizes and indices", () =>
    t(() => {
      const x = torch.ones([2, 3]);
      assert.throws(() => x.reshape(1.5, 4), TypeError);
      assert.throws(() => x.view(6.5), TypeError);
      assert.throws(() => x.sum(0.5), TypeError);
      assert.throws(() => x.sum([0, 1.5]), TypeError);
      assert.throws(() => x.mean(bad("0")), TypeError);
      assert.throws(() => x.permute(0.5, 1), TypeError);
      assert.throws(() => x.transpose(0, 1.2), TypeError);
      assert.throws(() => x.flip([0.5]), TypeError);
      assert.throws(() => x.select(0, 0.5), TypeError);
      assert.throws(() => x.softmax(1.5), TypeError);
      assert.throws(() => x.argmax(NaN), TypeError);
      assert.throws(() => torch.zeros([2.5]), TypeError);
      assert.throws(() => torch.zeros(bad("2")), TypeError);
      assert.throws(() => torch.ones([Infinity]), TypeError);
      assert.throws(() => torch.randint(0, 1.5, [2]), TypeError);
      assert.throws(() => torch.cat([x, x], 0.5), TypeError);
      assert.throws(() => F.maxPool2d(torch.ones([1, 1, 4, 4]), 1.5), TypeError);
      assert.throws(() => F.pad(x, [0.5, 1]), TypeError);
      assert.throws(() => torch.setNumThreads(1.5), TypeError);
    }));

  test("bad enum strings and booleans", () =>
    t(() => {
      const x = torch.ones([1, 1, 4, 4]);
      assert.throws(() => F.pad(x, [1, 1, 1, 1], bad("bogus")), TypeError);
      assert.throws(() => F.interpolate(x, 2, bad("area")), TypeError);
      assert.throws(() => F.mseLoss(x, x, bad("avg")), TypeError);
      assert.throws(() => F.gridSample(x, torch.zeros([1, 2, 2, 2]), bad("linear")), TypeError);
      assert.throws(() => F.dropout(x, 0.5, bad(1)), TypeError);
      assert.throws(() => x.requiresGrad_(bad("yes")), TypeError);
    }));

  test("bad dtype names", () =>
    t(() => {
      const isDtypeError = (e: unknown): boolean => e instanceof TypeError && /unknown dtype 'float128'/.test(e.message);
      assert.throws(() => torch.zeros([2], bad("float128")), isDtypeError);
      assert.throws(() => torch.ones([1]).to(bad("float128")), isDtypeError);
      assert.throws(() => torch.tensor([1], { dtype: bad("float128") }), isDtypeError);
      assert.throws(() => torch.fromArray(new Float32Array(1), [1], bad("float128")), isDtypeError);
      assert.throws(() => torch.randn([1], bad("double")), TypeError);
      assert.throws(() => torch.arange(0, 3, 1, bad("long")), TypeError);
      assert.throws(() => torch.fromArray(bad([1, 2]), [2]), TypeError);
      assert.throws(() => torch.fromArray(bad(new Uint16Array(2)), [2]), TypeError);
    }));

  test("bad seeds are rejected", () => {
    assert.throws(() => torch.manualSeed(-1), TypeError);
    assert.throws(() => torch.manualSeed(1.5), TypeError);
  });
});

describe("disposed tensors", () => {
  test("using a disposed tensor throws an Error", () => {
    const x = torch.ones([2]);
    const y = torch.ones([2]);
    x.dispose();
    assert.equal(x.isDisposed, true);
    assert.throws(() => x.add(1), /used after dispose/);
    assert.throws(() => x.toArray(), /used after dispose/);
    assert.throws(() => x.item(), /used after dispose/);
    assert.throws(() => x.dtype, /used after dispose/);
    assert.throws(() => x.add_(1), /used after dispose/);
    assert.throws(() => y.add(x), /used after dispose/);
    assert.throws(() => torch.cat([y, x]), /used after dispose/);
    assert.throws(() => F.relu(x), /used after dispose/);
    assert.doesNotThrow(() => x.dispose());
    assertTensor(y, [2], [1, 1]);
    y.dispose();
  });

  test("shape, dtype and numel of a disposed tensor throw even when read before", () => {
    const x = torch.ones([2, 3]);
    assert.deepEqual([...x.shape], [2, 3]);
    assert.equal(x.dtype, "float32");
    assert.equal(x.numel, 6);
    x.dispose();
    assert.throws(() => x.shape, /used after dispose/);
    assert.throws(() => x.dtype, /used after dispose/);
    assert.throws(() => x.numel, /used after dispose/);
    assert.throws(() => x.ndim, /used after dispose/);
  });

  test("a parameter disposed under an optimizer is reported", () => {
    const p = torch.zeros([2]).requiresGrad_();
    const opt = new torch.optim.Adam([p]);
    p.dispose();
    assert.throws(() => opt.step(), /disposed/);
  });
});

describe("the process survives", () => {
  test("after all the errors above, the engine still computes", () =>
    t(() => {
      assertTensor(torch.ones([2, 2]).matmul(torch.ones([2, 1])), [2, 1], [2, 2]);
    }));

  test("a child process running every kind of error exits normally", () => {
    const engine = new URL("../src/torch/index.js", import.meta.url).href;
    const script = `
      const torch = await import(${JSON.stringify(engine)});
      const { F } = torch;
      const cases = [
        () => torch.ones([2, 2]).matmul(torch.ones([3, 1])),
        () => F.crossEntropy(torch.zeros([2, 3]), torch.tensor([0, 99], { dtype: "int64" })),
        () => F.nllLoss(torch.zeros([2, 3]), torch.tensor([-5, 0], { dtype: "int64" })),
        () => torch.ones([2]).indexSelect(0, torch.tensor([10], { dtype: "int64" })),
        () => torch.ones([2]).add("a"),
        () => torch.zeros([2], "float128"),
        () => torch.ones([2]).reshape(1.5),
        () => { const d = torch.ones([1]); d.dispose(); return d.add(1); },
        () => torch.ones([2]).mul(2).backward(),
        () => torch.setRngState(torch.zeros([2], "uint8")),
        () => torch.ones([3]).sum().backward(),
        () => F.conv2d(torch.ones([1, 1, 2, 2]), torch.ones([1, 1, 3, 3])),
      ];
      let caught = 0;
      for (const c of cases) { try { c(); } catch (e) { if (e instanceof Error) caught++; } }
      console.log("caught " + caught + "/" + cases.length);
      console.log("sum " + torch.ones([3]).sum().item());
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.signal, null, `child killed by ${r.signal}\n${r.stderr}`);
    assert.equal(r.status, 0, `child exited with ${r.status}\n${r.stderr}`);
    assert.match(r.stdout, /caught 12\/12/);
    assert.match(r.stdout, /sum 3/);
  });
});
