/**
 * The training algorithms (`--algorithm`): supervised, fixmatch, flexmatch, freematch,
 * adacm, dtm and distill, created from the `algorithm` section of a training config.
 */
import type { TrainConfig } from "../train/config.js";
import { AdaCm } from "./adacm.js";
import { Distill, type SoftTargets } from "./distill.js";
import { FreeMatch } from "./freematch.js";
import { SelfTraining } from "./self_training.js";
import { Supervised } from "./supervised.js";
import {
  AdaCmThreshold,
  DtmThreshold,
  FixedThreshold,
  FlexMatchThreshold,
  FreeMatchThreshold,
  smoothedDtmOptions,
  UnlabeledQuantileThreshold,
  type ThresholdRule,
} from "./thresholds.js";
import type { Algorithm } from "./types.js";

export * from "./types.js";
export * from "./thresholds.js";
export { Supervised } from "./supervised.js";
export { SelfTraining, guessLabels, maskedCrossEntropy, maskRate, rowMax } from "./self_training.js";
export { FreeMatch } from "./freematch.js";
export { AdaCm, ntXent } from "./adacm.js";
export { Distill, distillationLoss, temper, type SoftTargets, type DistillOptions } from "./distill.js";

/** What an algorithm needs to know about the data. */
export interface AlgorithmContext {
  numClasses: number;
  /** Size of the unlabeled set (FlexMatch keeps one record per image). */
  numUnlabeled: number;
  /** Label smoothing of the labeled cross-entropy (train.labelSmoothing). */
  labelSmoothing: number;
  /**
   * Wraps each thresholding rule (a data-parallel run decides masks on the global batch);
   * default: the rule itself.
   */
  shareRule?: (rule: ThresholdRule) => ThresholdRule;
  /** The teachers' probabilities on the run's images (the `distill` algorithm only). */
  softTargets?: SoftTargets;
}

/**
 * Creates the algorithm a config's `algorithm` section describes.
 * @throws Error for `distill` without `ctx.softTargets`
 */
export function createAlgorithm(a: TrainConfig["algorithm"], ctx: AlgorithmContext): Algorithm {
  const C = ctx.numClasses;
  const base = { labelSmoothing: ctx.labelSmoothing };
  const share = ctx.shareRule ?? ((r: ThresholdRule) => r);
  switch (a.name) {
    case "supervised":
      return new Supervised(ctx.labelSmoothing);
    case "fixmatch":
      return new SelfTraining("fixmatch", share(new FixedThreshold(C, a.tau)), { ...base, lambdaU: a.lambdaU, weakViews: 1 });
    case "flexmatch":
      return new SelfTraining("flexmatch", share(new FlexMatchThreshold(C, ctx.numUnlabeled, a.tau, a.thresholdWarmup)), {
        ...base,
        lambdaU: a.lambdaU,
        weakViews: 1,
      });
    case "freematch": {
      const rule = new FreeMatchThreshold(C, a.emaP);
      return new FreeMatch(rule, { ...base, lambdaU: a.lambdaU, weakViews: 1, lambdaF: a.lambdaF }, share(rule));
    }
    case "adacm":
      return new AdaCm(share(new AdaCmThreshold(C, { tauMin: a.tauMin, scale: a.scale })), { ...base, ...a });
    case "dtm": {
      const o = a.smoothingCorrection ? smoothedDtmOptions(a, ctx.labelSmoothing, C) : a;
      const rule = a.tauFrom === "unlabeled-quantile" ? new UnlabeledQuantileThreshold(C, a.quantile, o.tauInit) : new DtmThreshold(C, o);
      return new SelfTraining("dtm", share(rule), { ...base, lambdaU: a.lambdaU, weakViews: a.weakViews });
    }
    case "distill":
      if (ctx.softTargets === undefined) throw new Error("distill needs the teachers' soft targets (ctx.softTargets)");
      return new Distill(ctx.softTargets, { ...base, temperature: a.temperature, alpha: a.alpha, lambdaU: a.lambdaU });
  }
}
