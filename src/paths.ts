/** Default locations of ferkit's inputs and outputs. */
import path from "node:path";
import { PACKAGE_ROOT } from "./torch/native.js";

/**
 * The shared data folder: `$FERKIT_DATA` when set, else `../shared/data` beside the
 * ferkit checkout (where the project's datasets live).
 */
export function defaultDataRoot(): string {
  return process.env.FERKIT_DATA ?? path.resolve(PACKAGE_ROOT, "..", "shared", "data");
}

/** Where runs are written by default: `runs/` in the checkout. */
export function defaultRunsDir(): string {
  return path.join(PACKAGE_ROOT, "runs");
}
