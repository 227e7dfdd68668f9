/** Optimizers and learning-rate schedules, as in `torch.optim`. */
export * from "./optimizer.js";
export * from "./sgd.js";
export * from "./adam.js";
export * from "./lr_scheduler.js";
