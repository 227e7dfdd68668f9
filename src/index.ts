/**
 * ferkit: facial expression recognition that learns from unlabeled faces.
 * `torch` is the libtorch engine; the rest is the FER toolkit built on it.
 */
export * as torch from "./torch/index.js";
export * from "./data/labels.js";
export * from "./data/fer2013.js";
export * from "./data/image.js";
export * from "./eval/metrics.js";
export { defaultDataRoot, defaultRunsDir } from "./paths.js";
