/** Stochastic gradient descent with momentum, Nesterov and weight decay (PyTorch's torch.optim.SGD). */
import { native } from "../native.js";
import { zerosLike } from "../creation.js";
import { Optimizer } from "./optimizer.js";

/** Hyper-parameters of {@link SGD}. */
export interface SGDOptions {
  /** Learning rate. */
  lr: number;
  momentum: number;
  dampening: number;
  /** L2 penalty added to the gradient. */
  weightDecay: number;
  nesterov: boolean;
}

/**
 * SGD as in PyTorch 1.13: `g += wd * p; buf = momentum * buf + (1 - dampening) * g`
 * (buf = g on the first step); `p -= lr * (nesterov ? g + momentum * buf : buf)`.
 */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: ConstructorParameters<typeof Optimizer<SGDOptions>>[0], options: Partial<SGDOptions> & { lr: number }) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...options });
  }

  get type(): string {
    return "SGD";
  }

  protected validate(g: SGDOptions): void {
    if (!(g.lr >= 0)) throw new RangeError(`SGD: lr must be >= 0, got ${g.lr}`);
    if (!(g.momentum >= 0)) throw new RangeError(`SGD: momentum must be >= 0, got ${g.momentum}`);
    if (!(g.weightDecay >= 0)) throw new RangeError(`SGD: weightDecay must be >= 0, got ${g.weightDecay}`);
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) throw new RangeError("SGD: nesterov needs momentum > 0 and dampening 0");
  }

  step(): void {
    for (const g of this.paramGroups) {
      for (const p of g.params) {
        if (!Optimizer.hasGrad(p)) continue;
        const s = this.stateOf(p, g.momentum !== 0 ? ["momentum_buffer"] : [], zerosLike);
        const buf = s.buffers.momentum_buffer;
        if (native.sgdStep(p.handle, buf?.handle, g.lr, g.momentum, g.dampening, g.weightDecay, g.nesterov, s.step === 0)) s.step++;
      }
    }
  }
}
