/**
 * Data augmentation for semi-supervised FER: weak views (crop + flip), strong views
 * (RandAugment + Cutout + weak), seeded by a JS {@link Rng}, batched with torch ops, with
 * an optional worker thread and a preview picture.
 */
export * from "./randaugment.js";
export * from "./weak.js";
export * from "./views.js";
export { AugmentWorker, type AugmentWorkerOptions } from "./worker.js";
export {
  writeAugmentPreview,
  augmentPreviewFer2013,
  type PreviewOptions,
  type PreviewResult,
  type Fer2013PreviewOptions,
} from "./preview.js";
