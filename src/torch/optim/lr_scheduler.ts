/**
 * Learning-rate schedules, stepped once per optimizer step. A schedule is a factor
 * of each group's base lr, as in PyTorch's `LambdaLR`.
 */
import type { Optimizer } from "./optimizer.js";

/** A factor of the base learning rate for a step index (0-based). */
export type LrLambda = (step: number) => number;

/** Sets `lr = base_lr * lambda(step)` on every group; `step()` advances by one. */
export class LambdaLR {
  readonly baseLrs: number[];
  /** Number of `step()` calls so far. */
  lastStep = 0;

  constructor(
    readonly optimizer: Optimizer<{ lr: number }>,
    readonly lrLambda: LrLambda,
  ) {
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
    this.apply();
  }

  /** Advances the schedule by one step and updates the groups' lr. */
  step(): void {
    this.lastStep++;
    this.apply();
  }

  /** The current learning rate of each group. */
  get lrs(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  private apply(): void {
    const f = this.lrLambda(this.lastStep);
    this.optimizer.paramGroups.forEach((g, i) => {
      g.lr = this.baseLrs[i] * f;
    });
  }

  /** The state to checkpoint. */
  stateDict(): { last_step: number; base_lrs: number[] } {
    return { last_step: this.lastStep, base_lrs: [...this.baseLrs] };
  }

  /** Restores a state from {@link stateDict}. */
  loadStateDict(s: { last_step: number; base_lrs: number[] }): void {
    this.lastStep = s.last_step;
    this.baseLrs.splice(0, this.baseLrs.length, ...s.base_lrs);
    this.apply();
  }
}

/** Factor 1 at every step. */
export function constantSchedule(): LrLambda {
  return () => 1;
}

/**
 * Linear warm-up over `warmupSteps` (factor (step + 1) / warmupSteps), then half-cosine decay to `minFactor`
 * at `totalSteps` (the schedule of Goyal et al. 2017 and Loshchilov & Hutter 2017).
 */
export function cosineWithWarmup(totalSteps: number, warmupSteps = 0, minFactor = 0): LrLambda {
  return (step) => {
    if (step < warmupSteps) return (step + 1) / warmupSteps;
    const progress = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
    return minFactor + (1 - minFactor) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/** FixMatch's decay `cos(7 pi k / (16 K))` (Sohn et al. 2020; USB's default). */
export function fixmatchCosine(totalSteps: number): LrLambda {
  return (step) => Math.cos((7 * Math.PI * Math.min(step, totalSteps)) / (16 * totalSteps));
}
