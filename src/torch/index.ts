/**
 * ferkit's tensor engine: libtorch from TypeScript. Import as
 * `import * as torch from "ferkit/torch"` style: `torch.zeros`, `torch.nn.Conv2d`,
 * `torch.F.crossEntropy`, `torch.optim.Adam`.
 */
export * from "./tensor.js";
export * from "./creation.js";
export * from "./runtime.js";
export * from "./autocast.js";
export { tidy, keep, dispose } from "./scope.js";
export * from "./safetensors.js";
export { gradcheck, type GradcheckOptions } from "./gradcheck.js";
export * as F from "./functional.js";
export * as nn from "./nn/index.js";
export * as optim from "./optim/index.js";
export * as distributed from "./distributed.js";
