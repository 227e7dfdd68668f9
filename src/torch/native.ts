/**
 * Loads the libtorch binding (native/, built by `npm run setup`).
 *
 * The binding is a flat table of functions over opaque tensor handles; the typed
 * surface is {@link Tensor} and the functional ops built on it. Nothing outside
 * src/torch/ should call the binding directly.
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

/** An opaque reference to a libtorch tensor owned by JavaScript. */
export interface Handle {
  readonly __tensorHandle: never;
}

/**
 * The raw binding: one function per op, as declared in native/src/*.cc.
 * Arguments are handles, numbers, strings, booleans and arrays of those.
 */
// The table is untyped on purpose: Tensor and functional.ts give each op its types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeBinding = Record<string, (...args: any[]) => any>;

/** Root of the ferkit package (the folder holding package.json). */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function load(): NativeBinding {
  const file = path.join(PACKAGE_ROOT, "native", "build", "Release", "ferkit_torch.node");
  if (!existsSync(file)) {
    throw new Error(`ferkit: the libtorch binding is not built (${file} is missing). Run \`npm run setup\` in ${PACKAGE_ROOT}.`);
  }
  const require = createRequire(import.meta.url);
  return require(file) as NativeBinding;
}

/** The loaded binding, shared by the whole process. */
export const native: NativeBinding = load();
