/**
 * The end of a completed run: the best checkpoint's weights are tested on the test split
 * and written as `model.safetensors` (the weights with their model card), the test figures
 * as `metrics.json` and as the log's `end` event. Every rank of a data-parallel run tests (its
 * shard of the split); rank 0 writes.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { evalJson, type EvalResult } from "../eval/evaluate.js";
import * as torch from "../torch/index.js";
import type { Checkpointer } from "./checkpointer.js";
import type { Evaluation, Selection } from "./evaluation.js";
import { saveModelFile } from "./model_file.js";
import type { Run } from "./run.js";
import type { EventWriter } from "./run_log.js";

/**
 * Tests the selected model and writes the run's results.
 * @param wallSeconds training wall time over every invocation, in seconds
 * @returns the test metrics, or null when the config has no test split
 * @throws Error when the best checkpoint cannot be read, or a file cannot be written
 */
export function finishRun(
  run: Run,
  parts: { checkpointer: Checkpointer; evaluation: Evaluation; selection: Selection; out: EventWriter },
  wallSeconds: number,
): EvalResult | null {
  const { config, evalModel, labeled } = run;
  parts.checkpointer.loadBest(evalModel);
  const test = run.test === null ? null : parts.evaluation.on(run.test);
  if (!run.world.isMain) return test; // rank 0 writes the results of a data-parallel run
  saveModelFile(path.join(run.dir, "model.safetensors"), evalModel, {
    name: config.model.name,
    options: run.modelOptions,
    classes: run.classes,
    input: [...labeled.shape],
  });
  const best = parts.selection.best;
  const metrics = {
    split: config.data.testSplit,
    test: test === null ? null : evalJson(test),
    best_val_macro_f1: best?.metric ?? null,
    best_step: best?.step ?? null,
    steps: run.step,
    seed: config.seed,
    openblas_coretype: torch.openblasCoretype(),
    precision: run.precision,
    eval_precision: run.evalPrecision,
    wall_time_s: wallSeconds,
    model: config.model.name,
    algorithm: run.algorithm.name,
    n_labeled: labeled.n,
    n_unlabeled: run.unlabeled?.n ?? 0,
    world_size: run.world.worldSize,
  };
  writeFileSync(path.join(run.dir, "metrics.json"), JSON.stringify(metrics, null, 2) + "\n");
  parts.out.write({ event: "end", ...metrics });
  return test;
}
