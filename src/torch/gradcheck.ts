/**
 * Checks autograd's gradients against central finite differences, like
 * `torch.autograd.gradcheck` in its fast mode: the output is projected on a fixed
 * random vector v, and d(v . f)/dx from backward is compared with
 * (v . f(x + eps e_j) - v . f(x - eps e_j)) / (2 eps) for every input element j.
 * Use float64 inputs; float32 differences are too noisy.
 */
import { randn } from "./creation.js";
import { noGrad } from "./runtime.js";
import { tidy } from "./scope.js";
import type { Tensor } from "./tensor.js";

/** Tolerances of {@link gradcheck}. */
export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6). */
  eps?: number;
  /** Absolute tolerance (default 1e-5). */
  atol?: number;
  /** Relative tolerance (default 1e-3). */
  rtol?: number;
}

/** Outcome of {@link gradcheck}: the worst mismatch found, and where. */
export interface GradcheckResult {
  passed: boolean;
  maxAbsError: number;
  /** Index of the input and flat element of the worst mismatch, or null. */
  worst: { input: number; element: number; analytic: number; numeric: number } | null;
}

/**
 * Compares analytic and numeric gradients of `fn` with respect to every input that
 * requires grad. `fn` must be deterministic (no dropout) and return a float tensor.
 */
export function gradcheck(fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], options: GradcheckOptions = {}): GradcheckResult {
  const eps = options.eps ?? 1e-6;
  const atol = options.atol ?? 1e-5;
  const rtol = options.rtol ?? 1e-3;
  return tidy(() => {
    const out0 = fn(...inputs);
    const v = randn([...out0.shape], out0.dtype);
    const project = (): number =>
      noGrad(() =>
        tidy(() =>
          fn(...inputs)
            .mul(v)
            .sum()
            .item(),
        ),
      );
    for (const x of inputs) x.setGrad(null);
    out0.mul(v).sum().backward();
    let result: GradcheckResult = { passed: true, maxAbsError: 0, worst: null };
    inputs.forEach((x, i) => {
      if (!x.requiresGrad) return;
      const g = x.grad;
      const analytic = g === null ? new Float64Array(x.numel) : Float64Array.from(g.toArray() as Float64Array);
      const flat = x.detach().view(-1);
      for (let j = 0; j < x.numel; j++) {
        const cell = flat.narrow(0, j, 1);
        // Perturb from the saved value and restore it exactly afterwards (adding
        // +eps, -2 eps, +eps would leave the input off by rounding).
        const original = cell.item();
        noGrad(() => cell.fill_(original + eps));
        const plus = project();
        noGrad(() => cell.fill_(original - eps));
        const minus = project();
        noGrad(() => cell.fill_(original));
        cell.dispose();
        const numeric = (plus - minus) / (2 * eps);
        const err = Math.abs(numeric - analytic[j]);
        if (err > result.maxAbsError)
          result = { ...result, maxAbsError: err, worst: { input: i, element: j, analytic: analytic[j], numeric } };
        if (err > atol + rtol * Math.abs(numeric)) result.passed = false;
      }
    });
    return result;
  });
}
