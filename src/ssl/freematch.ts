/**
 * FreeMatch (Wang et al., ICLR 2023): FixMatch with self-adaptive thresholds
 * ({@link FreeMatchThreshold}) and a class-fairness term on the masked strong views:
 * L_f = sum_c pbar(c) log qbar(c), with pbar = SumNorm(p_model / label_hist) and
 * qbar = SumNorm(mean softmax(strong) / hist(argmax softmax(strong))) over the masked
 * images, i.e. minus the cross-entropy H(pbar, qbar), exactly as the paper's equation and
 * USB's `entropy_loss` (1/0 is taken as 0). Skipped (0) when no image passes the mask.
 */
import * as torch from "../torch/index.js";
import type { Tensor } from "../torch/index.js";
import { SelfTraining, rowMax, type JointForward, type SelfTrainingOptions } from "./self_training.js";
import type { FreeMatchThreshold, ThresholdRule } from "./thresholds.js";

function sumNorm(x: number[]): number[] {
  const s = x.reduce((a, b) => a + b, 0);
  return x.map((v) => (s > 0 ? v / s : 0));
}

const inverse = (v: number): number => (v > 0 ? 1 / v : 0);

/** FreeMatch: self-adaptive thresholds and the fairness loss, weighted by `lambdaF` (USB's ent_loss_ratio, 0.01). */
export class FreeMatch extends SelfTraining {
  private readonly lambdaF: number;

  /**
   * @param freeRule the thresholds, whose p_model and label_hist the fairness term reads
   * @param rule what masks the batches: `freeRule`, or a wrapper of it (a data-parallel run's)
   */
  constructor(
    readonly freeRule: FreeMatchThreshold,
    o: SelfTrainingOptions & { lambdaF: number },
    rule: ThresholdRule = freeRule,
  ) {
    super("freematch", rule, o);
    this.lambdaF = o.lambdaF;
  }

  protected override extraLoss(f: JointForward, mask: Uint8Array): { loss: Tensor; logs: Record<string, number> } | null {
    const picked = [...mask.keys()].filter((i) => mask[i] === 1);
    if (picked.length === 0 || this.lambdaF === 0) return { loss: torch.zeros([]), logs: { loss_f: 0 } };
    const C = this.freeRule.numClasses;
    const logitsM = f.logitsS.indexSelect(0, torch.fromArray(Int32Array.from(picked), [picked.length], "int64"));
    const probS = logitsM.softmax(1);
    const { label } = rowMax(probS.detach().contiguous().toArray() as Float32Array, C);
    const hist = new Array<number>(C).fill(0);
    for (const c of label) hist[c] += 1 / label.length;
    const pbar = sumNorm(this.freeRule.pModel.map((p, c) => p * inverse(this.freeRule.labelHist[c])));
    const scaled = probS.mean(0).mul(torch.fromArray(Float32Array.from(hist, inverse), [C]));
    const qbar = scaled.div(scaled.sum());
    const lossF = qbar
      .add(1e-12)
      .log()
      .mul(torch.fromArray(Float32Array.from(pbar), [C]))
      .sum();
    return { loss: lossF.mul(this.lambdaF), logs: { loss_f: lossF.item() } };
  }
}
