/** Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), as PyTorch 1.13 implements them. */
import { native } from "../native.js";
import { zerosLike } from "../creation.js";
import { Optimizer } from "./optimizer.js";

/**
 * How many parameter updates in this process took Adam's fused float32 path (one pass over a
 * dense float32 parameter and its state) rather than PyTorch's op-by-op sequence, which other
 * dtypes and layouts take. For tests and performance work.
 */
export function adamFusedUpdates(): number {
  return native.adamFusedUpdates() as number;
}

/** Hyper-parameters of {@link Adam} and {@link AdamW}. */
export interface AdamOptions {
  /** Learning rate. */
  lr: number;
  betas: [number, number];
  eps: number;
  /** Adam: L2 penalty added to the gradient. AdamW: decoupled decay `p *= 1 - lr * wd`. */
  weightDecay: number;
  amsgrad: boolean;
}

/**
 * Adam: `m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
 */
export class Adam extends Optimizer<AdamOptions> {
  protected readonly decoupled: boolean = false;

  constructor(params: ConstructorParameters<typeof Optimizer<AdamOptions>>[0], options: Partial<AdamOptions> = {}) {
    super(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: false, ...options });
  }

  get type(): string {
    return "Adam";
  }

  protected validate(g: AdamOptions): void {
    if (!(g.lr >= 0)) throw new RangeError(`${this.type}: lr must be >= 0, got ${g.lr}`);
    if (!(g.eps >= 0)) throw new RangeError(`${this.type}: eps must be >= 0, got ${g.eps}`);
    for (const b of g.betas)
      if (!(b >= 0 && b < 1)) throw new RangeError(`${this.type}: betas must be in [0, 1), got [${g.betas.join(", ")}]`);
    if (!(g.weightDecay >= 0)) throw new RangeError(`${this.type}: weightDecay must be >= 0, got ${g.weightDecay}`);
  }

  step(): void {
    for (const g of this.paramGroups) {
      const names = g.amsgrad ? ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] : ["exp_avg", "exp_avg_sq"];
      for (const p of g.params) {
        if (p.isDisposed) throw new Error(`${this.type}: a parameter was disposed`);
        if (!Optimizer.hasGrad(p)) continue;
        const s = this.stateOf(p, names, zerosLike);
        const b = s.buffers;
        const done = native.adamStep(
          p.handle,
          b.exp_avg.handle,
          b.exp_avg_sq.handle,
          b.max_exp_avg_sq?.handle,
          s.step + 1,
          g.lr,
          g.betas[0],
          g.betas[1],
          g.eps,
          g.weightDecay,
          g.amsgrad,
          this.decoupled,
        );
        if (done) s.step++;
      }
    }
  }
}

/** AdamW: Adam with decoupled weight decay (default 0.01, as in PyTorch). */
export class AdamW extends Adam {
  protected override readonly decoupled: boolean = true;

  constructor(params: ConstructorParameters<typeof Optimizer<AdamOptions>>[0], options: Partial<AdamOptions> = {}) {
    super(params, { weightDecay: 0.01, ...options });
  }

  override get type(): string {
    return "AdamW";
  }
}
