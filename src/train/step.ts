/**
 * One optimizer step: the batch's views, the algorithm's loss, back-propagation, the
 * optimizer and its schedule, then the EMA teacher. Nothing here writes files or logs.
 */
import * as torch from "../torch/index.js";
import type { BatchSource } from "./batches.js";
import type { StepResult } from "./parts.js";
import type { Run } from "./run.js";

/** A NaN or Inf loss: the run stops and keeps its last good checkpoint. */
export class NonFiniteLossError extends Error {
  override name = "NonFiniteLossError";

  /**
   * @param loss the loss value (NaN, Infinity or -Infinity)
   * @param step the step it occurred at (1-based; not taken)
   */
  constructor(
    readonly loss: number,
    readonly step: number,
    detail = "",
  ) {
    super(`the loss became ${loss} at step ${step}; the run stopped.${detail}`);
  }
}

/** Runs the optimizer steps of a run. */
export class TrainStep {
  constructor(
    readonly run: Run,
    readonly batches: BatchSource,
  ) {}

  /**
   * Takes one step: on success `run.step` grows by one and the schedule and the teacher
   * move with it. The model must be in training mode.
   * @throws NonFiniteLossError when the loss is NaN or Inf (no update is made then)
   */
  take(): StepResult {
    const { run } = this;
    const { config, net, optimizer, algorithm } = run;
    const ix = this.batches.next();
    const out = torch.tidy(() => {
      const { labeled, unlabeled } = this.batches.views(ix);
      const r = algorithm.step(net, labeled, unlabeled);
      const loss = r.loss.item();
      if (Number.isFinite(loss)) {
        optimizer.zeroGrad();
        r.loss.backward();
        optimizer.step();
      }
      return { loss, logs: r.logs, pseudo: r.pseudo };
    });
    if (!Number.isFinite(out.loss)) throw new NonFiniteLossError(out.loss, run.step + 1);
    run.schedule.step();
    run.step++;
    run.ema?.update(config.train.emaWarmup ? run.step : undefined);
    return {
      step: run.step,
      loss: out.loss,
      logs: out.logs,
      lr: optimizer.paramGroups[0].lr,
      batchSize: ix.labeled.length,
      pseudo: out.pseudo === undefined || ix.unlabeled === null ? null : { labels: out.pseudo, indices: ix.unlabeled },
    };
  }
}
