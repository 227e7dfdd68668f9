/**
 * One optimizer step: the batch's views, the algorithm's loss, back-propagation, the
 * gradients averaged over the ranks of a data-parallel run, the optimizer and its schedule,
 * rank 0's BatchNorm buffers on every rank, then the EMA teacher (so it is the same on every
 * rank). Nothing here writes files or logs.
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
    const { config, net, optimizer, algorithm, world } = run;
    const ix = this.batches.next();
    const out = torch.tidy(() => {
      const { labeled, unlabeled } = this.batches.views(ix);
      const r = algorithm.step(net, labeled, unlabeled);
      // The logged loss and scalars are means over the ranks; a non-finite loss on any rank stops them all.
      const keys = Object.keys(r.logs).sort();
      const means = world.sum([r.loss.item(), ...keys.map((k) => r.logs[k])]).map((v) => v / world.worldSize);
      const loss = means[0];
      if (Number.isFinite(loss)) {
        optimizer.zeroGrad();
        r.loss.backward();
        world.averageGradients(run.model.parameters());
        optimizer.step();
        world.broadcastBuffers(run.model);
      }
      return { loss, logs: Object.fromEntries(keys.map((k, i) => [k, means[i + 1]])), pseudo: r.pseudo };
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
      batchSize: this.batches.batchSize,
      pseudo: out.pseudo === undefined || ix.unlabeled === null ? null : { labels: out.pseudo, indices: ix.unlabeled },
    };
  }
}
