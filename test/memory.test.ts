/**
 * Deterministic release of native memory: tidy scopes, keep, dispose, `using`
 * declarations, and a leak check over a training loop (liveTensors() counts the
 * tensors handed to JavaScript and not yet disposed).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import { gc } from "./helpers.js"; // also: one intra-op thread, a collection before each test

const { F, nn, optim } = torch;
const live = torch.liveTensors;

describe("tidy", () => {
  test("disposes intermediates and keeps the returned tensor", () => {
    const before = live();
    let a: torch.Tensor | null = null;
    const r = torch.tidy(() => {
      a = torch.ones([2, 2]);
      const b = a.add(1);
      assert.equal(live(), before + 2);
      return b.mul(3);
    });
    assert.equal(live(), before + 1);
    assert.equal((a as unknown as torch.Tensor).isDisposed, true);
    assert.equal(r.isDisposed, false);
    assert.deepEqual(r.toNumbers(), [6, 6, 6, 6]);
    r.dispose();
    assert.equal(live(), before);
  });

  test("keeps tensors reachable from arrays, plain objects and Maps in the result", () => {
    const before = live();
    const r = torch.tidy(() => {
      const junk = torch.zeros([3]);
      junk.add(1);
      return {
        list: [torch.ones([1]), [torch.ones([2])]],
        nested: { deep: { t: torch.ones([3]) } },
        map: new Map([["m", torch.ones([4])]]),
        n: 5,
      };
    });
    assert.equal(live(), before + 4);
    torch.dispose(r);
    assert.equal(live(), before);
    assert.equal((r.map.get("m") as torch.Tensor).isDisposed, true);
  });

  test("a result that is not a tensor disposes everything", () => {
    const before = live();
    const n = torch.tidy(() => torch.ones([3]).sum().item());
    assert.equal(n, 3);
    assert.equal(live(), before);
  });

  test("nested tidy: the inner result moves to the outer scope", () => {
    const before = live();
    let inner: torch.Tensor | null = null;
    const outer = torch.tidy(() => {
      inner = torch.tidy(() => {
        torch.ones([1]); // disposed by the inner scope
        return torch.ones([2]);
      });
      assert.equal(live(), before + 1);
      const kept = torch.tidy(() => inner?.mul(2) as torch.Tensor);
      assert.equal(live(), before + 2);
      return kept;
    });
    // inner was not returned by the outer scope, so it was disposed there.
    assert.equal((inner as unknown as torch.Tensor).isDisposed, true);
    assert.equal(outer.isDisposed, false);
    assert.equal(live(), before + 1);
    outer.dispose();
    assert.equal(live(), before);
  });

  test("returning a tensor created outside the scope leaves it alone", () => {
    const x = torch.ones([2]);
    const before = live();
    const r = torch.tidy(() => {
      x.add(1);
      return x;
    });
    assert.equal(r, x);
    assert.equal(x.isDisposed, false);
    assert.equal(live(), before);
    x.dispose();
  });

  test("keep() removes a tensor from automatic disposal", () => {
    const before = live();
    let k: torch.Tensor | null = null;
    torch.tidy(() => {
      k = torch.keep(torch.ones([3]));
      torch.tidy(() => {
        torch.keep(k as unknown as torch.Tensor); // keeping twice is harmless
        torch.ones([1]);
      });
      torch.ones([5]);
    });
    const kept = k as unknown as torch.Tensor;
    assert.equal(kept.isDisposed, false);
    assert.equal(live(), before + 1);
    kept.dispose();
    assert.equal(live(), before);
  });

  test("a tidy that throws still disposes its tensors and rethrows", () => {
    const before = live();
    assert.throws(
      () =>
        torch.tidy(() => {
          torch.ones([2]);
          torch.tidy(() => {
            torch.ones([3]);
            torch.ones([2, 2]).matmul(torch.ones([3, 3])); // libtorch error
          });
        }),
      /cannot be multiplied/,
    );
    assert.equal(live(), before);
    // The scope stack is intact: a later tidy still works normally.
    const r = torch.tidy(() => torch.ones([1]).add(1));
    assert.equal(live(), before + 1);
    r.dispose();
  });

  test("an async callback is refused and its tensors are disposed", () => {
    const before = live();
    assert.throws(
      () =>
        torch.tidy(() => {
          torch.ones([2]);
          return Promise.resolve(1);
        }),
      TypeError,
    );
    assert.equal(live(), before);
  });

  test("tensors made by ops inside noGrad / inferenceMode / backward are tracked", () => {
    const before = live();
    torch.tidy(() => {
      const x = torch.ones([2]).requiresGrad_();
      torch.noGrad(() => x.mul(2));
      torch.inferenceMode(() => torch.ones([3]).add(1));
      x.mul(x).sum().backward();
      const g = x.grad;
      assert.ok(g !== null);
      x.maxDim(0);
      x.split([1, 1]);
    });
    assert.equal(live(), before);
  });
});

describe("dispose and using", () => {
  test("dispose twice is safe and counted once", () => {
    const before = live();
    const x = torch.ones([2]);
    x.dispose();
    x.dispose();
    assert.equal(live(), before);
    torch.dispose([x, x]);
    assert.equal(live(), before);
  });

  test("disposing a tensor inside tidy removes it from the scope", () => {
    const before = live();
    const r = torch.tidy(() => {
      const a = torch.ones([2]);
      a.dispose();
      return torch.ones([1]);
    });
    assert.equal(live(), before + 1);
    r.dispose();
  });

  test("`using` declarations dispose at the end of the block", () => {
    const before = live();
    let seen: torch.Tensor | undefined;
    {
      using a = torch.ones([2]);
      using b = a.add(1);
      seen = b;
      assert.equal(live(), before + 2);
      assert.deepEqual(b.toNumbers(), [2, 2]);
    }
    assert.equal((seen as unknown as torch.Tensor).isDisposed, true);
    assert.equal(live(), before);
  });

  test("`using` disposes when the block throws", () => {
    const before = live();
    assert.throws(() => {
      using a = torch.ones([2]);
      a.reshape(3); // libtorch error
    }, /invalid for input of size 2/);
    assert.equal(live(), before);
  });

  test("disposing a view keeps the base alive, and vice versa", () => {
    const base = torch.arange(0, 4, 1, "float32");
    const view = base.narrow(0, 1, 2);
    base.dispose();
    assert.deepEqual(view.toNumbers(), [1, 2]);
    view.dispose();
  });

  test("a module and an optimizer release everything they own", () => {
    const before = live();
    const m = new nn.Sequential(new nn.Conv2d(1, 2, 3), new nn.BatchNorm2d(2), new nn.Flatten(), new nn.Linear(2, 2));
    const nParams = m.parameters().length;
    const nBuffers = m.namedBuffers().length;
    assert.equal(live(), before + nParams + nBuffers);
    const opt = new optim.Adam(m.parameters());
    torch.tidy(() => {
      F.crossEntropy(m.forward(torch.randn([2, 1, 3, 3])), torch.tensor([0, 1], { dtype: "int64" })).backward();
      opt.step();
    });
    assert.equal(live(), before + nParams + nBuffers + 2 * nParams);
    opt.dispose();
    m.zeroGrad();
    m.dispose();
    assert.equal(live(), before);
  });

  test("Sequential.forward outside tidy leaves only its output", () => {
    const m = new nn.Sequential(new nn.Linear(3, 4), new nn.ReLU(), new nn.Linear(4, 2), new nn.Identity());
    const x = torch.randn([5, 3]);
    const before = live();
    const y = m.forward(x);
    assert.equal(live(), before + 1);
    // Backward still works although the intermediates' JS handles were released.
    y.sum().backward();
    assert.equal(live(), before + 2);
    torch.tidy(() => {
      for (const p of m.parameters()) assert.ok(p.grad !== null);
    });
    y.dispose();
    x.dispose();
    m.dispose();
  });
});

describe("training loop", () => {
  test("50 steps inside tidy leave liveTensors() unchanged except for the optimizer state of the first step", () => {
    torch.manualSeed(0);
    const model = new nn.Sequential(
      new nn.Conv2d(1, 4, 3, { padding: 1 }),
      new nn.BatchNorm2d(4),
      new nn.ReLU(),
      new nn.MaxPool2d(2),
      new nn.Dropout(0.2),
      new nn.Flatten(),
      new nn.Linear(16, 3),
    );
    const opt = new optim.AdamW(model.parameters(), { lr: 1e-2, amsgrad: true });
    const sched = new optim.LambdaLR(opt, optim.cosineWithWarmup(50, 5));
    const x = torch.randn([6, 1, 4, 4]);
    const y = torch.randint(0, 3, [6]);
    const step = (): number =>
      torch.tidy(() => {
        const out = model.forward(F.pad(x, [0, 0, 0, 0]));
        const loss = F.crossEntropy(out, y, { labelSmoothing: 0.1 }).add(F.mseLoss(out.softmax(1), out.softmax(1).detach()));
        opt.zeroGrad();
        loss.backward();
        opt.step();
        sched.step();
        const pred = out.argmax(1);
        pred.eq(y).to("float32").mean();
        return loss.item();
      });

    const before = live();
    step();
    const stateTensors = [...opt.state.values()].reduce((n, s) => n + Object.keys(s.buffers).length, 0);
    assert.equal(stateTensors, 3 * model.parameters().length, "amsgrad keeps three buffers per parameter");
    assert.equal(live(), before + stateTensors);
    for (let i = 1; i < 50; i++) step();
    assert.equal(live(), before + stateTensors);

    // Evaluation passes leak nothing either.
    model.eval();
    torch.inferenceMode(() => torch.tidy(() => model.forward(x).argmax(1).toNumbers()));
    torch.noGrad(() => torch.tidy(() => model.forward(x).sum().item()));
    assert.equal(live(), before + stateTensors);

    opt.dispose();
    model.dispose();
    x.dispose();
    y.dispose();
    assert.equal(live(), before - model.parameters().length - model.namedBuffers().length - 2);
  });

  test("a tensor nobody disposed is freed by the garbage collection itself, not later on the event loop", () => {
    const before = live();
    const forget = (): void => {
      const a = torch.ones([256, 256]);
      const b = a.add(1);
      assert.equal(live(), before + 2, `${a.shape} ${b.shape}`); // neither is disposed
    };
    forget();
    gc();
    // No await between gc() and this line: a finalizer deferred to the event loop (Node's
    // default for Node-API finalizers) would not have run yet, and a synchronous training
    // loop would pile up every step's handles until it yields.
    assert.equal(live(), before);
  });

  test("releaseFreeMemory hands freed heap memory back to the OS", () => {
    // Many small tensors live in glibc's heap (below its mmap threshold); once freed, a trim returns them.
    const many = Array.from({ length: 2000 }, () => torch.zeros([64, 64]));
    for (const t of many) t.dispose();
    const before = process.memoryUsage.rss();
    assert.equal(typeof torch.releaseFreeMemory(), "boolean");
    assert.ok(process.memoryUsage.rss() <= before, "resident memory does not grow");
  });
});
