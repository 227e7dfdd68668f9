/**
 * Importing the weights of a tfjs model (`model.json` + shards, as npm packages ship them) into a
 * hand-written ferkit module: each architecture maps the file's weight names to its `state_dict`
 * names through a {@link StateDictBuilder}, which converts TensorFlow's layouts to PyTorch's and
 * checks that every weight of the file found a place and every parameter of the backbone a value.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import * as torch from "../torch/index.js";
import type { nn, Tensor } from "../torch/index.js";
import { readTfjsModel, type TfjsWeight } from "./tfjs_graph.js";

const require = createRequire(import.meta.url);

/**
 * Collects a `state_dict` from a tfjs file's weights. Every weight of the file must be used or
 * explicitly skipped, so a file of another model fails loudly instead of loading half.
 */
export class StateDictBuilder {
  readonly #weights: Map<string, TfjsWeight>;
  readonly #unused: Set<string>;
  readonly #out = new Map<string, Tensor>();

  /** @param file the model.json the weights came from (named in errors) */
  constructor(
    readonly file: string,
    weights: Map<string, TfjsWeight>,
  ) {
    this.#weights = weights;
    this.#unused = new Set(weights.keys());
  }

  /** Names of the file's weights, in manifest order. */
  names(): string[] {
    return [...this.#weights.keys()];
  }

  /** Marks a weight as deliberately unused. */
  skip(name: string): void {
    this.#unused.delete(name);
  }

  /**
   * The weight `name` as a float32 tensor in its TensorFlow shape, marked used.
   * @throws Error naming the file when the weight is missing
   */
  raw(name: string): Tensor {
    const w = this.#weights.get(name);
    if (w === undefined) throw new Error(`${this.file}: weight ${name} is missing`);
    this.#unused.delete(name);
    return torch.fromArray(Float32Array.from(w.data), w.spec.shape, "float32");
  }

  /** A scalar weight's value, marked used. */
  scalar(name: string): number {
    const t = this.raw(name);
    const v = t.item();
    t.dispose();
    return v;
  }

  /**
   * A convolution filter in PyTorch's layout: HWIO `[kh, kw, in, out]` → `[out, in, kh, kw]`, or
   * for depthwise filters (names containing "depthwise") `[kh, kw, C, M]` → `[C * M, 1, kh, kw]`.
   */
  filter(name: string): Tensor {
    const w = this.raw(name);
    if (w.ndim !== 4) throw new Error(`${this.file}: weight ${name} is [${w.shape}], not a 4-D filter`);
    const [kh, kw, c, m] = w.shape;
    const out = /depthwise/.test(name)
      ? w
          .permute(2, 3, 0, 1)
          .reshape(c * m, 1, kh, kw)
          .contiguous()
      : w.permute(3, 2, 0, 1).contiguous();
    w.dispose();
    return out;
  }

  /** Stores `t` under the `state_dict` key `key` (taking ownership). */
  set(key: string, t: Tensor): void {
    if (this.#out.has(key)) throw new Error(`${this.file}: two weights map to ${key}`);
    this.#out.set(key, t);
  }

  /** A 1-D weight (bias, slope, scale) times `scale`, stored under `key`. */
  vector(name: string, key: string, scale = 1): void {
    const t = this.raw(name);
    if (t.ndim !== 1) throw new Error(`${this.file}: weight ${name} is [${t.shape}], not a vector`);
    if (scale === 1) this.set(key, t);
    else {
      this.set(key, t.mul(scale));
      t.dispose();
    }
  }

  /**
   * A convolution's filter or folded batch-norm offset by its TensorFlow leaf name
   * (`*_weights`/`*_kernel`/`merged_input` → `<module>.weight`, `*_bn_offset`/`*bias` → `<module>.bias`).
   * @throws Error naming the weight when the leaf is neither
   */
  convParam(name: string, module: string, leaf: string): void {
    if (/(weights|kernel|merged_input)$/.test(leaf)) this.set(`${module}.weight`, this.filter(name));
    else if (/(bn_offset|bias)$/.test(leaf)) this.vector(name, `${module}.bias`);
    else throw new Error(`${this.file}: weight ${name} is neither a filter nor a bias`);
  }

  /** Frees what was collected (after a failed mapping). */
  dispose(): void {
    torch.dispose([...this.#out.values()]);
    this.#out.clear();
  }

  /**
   * The collected `state_dict`.
   * @throws Error naming the file and the weights no layer took
   */
  result(): Map<string, Tensor> {
    if (this.#unused.size > 0) {
      this.dispose();
      throw new Error(`${this.file}: weights not used by the architecture: ${[...this.#unused].slice(0, 5).join(", ")}`);
    }
    return this.#out;
  }
}

/**
 * Loads a tfjs model's weights into `model` through an architecture's mapping. Keys `isNew`
 * accepts may be missing from the file (a new head keeps its initialisation); keys the
 * model does not have (a head it was built without) are ignored; every other parameter and
 * buffer must come from the file, with its shape.
 * @throws Error naming the file when it is missing, truncated, of another model, or does not fit
 */
export function importTfjsWeights(
  model: nn.Module,
  modelJson: string,
  map: (sd: StateDictBuilder) => void,
  isNew: (key: string) => boolean,
): void {
  const { weights } = readTfjsModel(modelJson);
  const state = torch.noGrad(() => {
    const sd = new StateDictBuilder(modelJson, weights);
    try {
      map(sd);
      return sd.result();
    } catch (err) {
      sd.dispose();
      throw err;
    }
  });
  try {
    const own = model.stateDict();
    const missing = [...own.keys()].filter((k) => !state.has(k) && !isNew(k));
    if (missing.length > 0) throw new Error(`${modelJson}: the file has no weights for ${missing.slice(0, 5).join(", ")}`);
    for (const [k, t] of [...state])
      if (!own.has(k)) {
        t.dispose();
        state.delete(k);
      }
    adaptInputFilters(state, own);
    try {
      model.loadStateDict(state, false);
    } catch (err) {
      throw new Error(`${modelJson}: ${(err as Error).message}`, { cause: err });
    }
  } finally {
    torch.dispose([...state.values()]);
  }
}

/**
 * A gray model from RGB weights: where the model's filter is `[O, 1, k, k]` and the file's
 * `[O, 3, k, k]`, the file's filter summed over its input channels (in place in `state`). On a
 * gray image (R = G = B) the RGB network and the summed one compute the same thing; timm's
 * `adapt_input_conv` does the same for `in_chans=1`.
 */
function adaptInputFilters(state: Map<string, Tensor>, own: Map<string, Tensor>): void {
  for (const [k, t] of state) {
    const target = own.get(k);
    if (target === undefined || t.ndim !== 4 || target.ndim !== 4) continue;
    if (target.shape[1] === 1 && t.shape[1] === 3 && target.shape[0] === t.shape[0]) {
      state.set(k, t.sum([1], true));
      t.dispose();
    }
  }
}

/**
 * The path of a file inside an installed npm package.
 * @throws Error saying which package to install when it is not installed
 */
export function packageFile(pkg: string, file: string, why: string): string {
  const root = packageRoot(pkg);
  if (root === null) throw new Error(`${why} come from the npm package ${pkg}, which is not installed: npm install ${pkg}`);
  return path.join(root, file);
}

/** An installed package's folder, found through its `package.json` or, when its exports hide that, its main file. */
function packageRoot(pkg: string): string | null {
  for (const entry of [`${pkg}/package.json`, pkg]) {
    let dir: string;
    try {
      dir = path.dirname(require.resolve(entry));
    } catch {
      continue;
    }
    for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
      const manifest = path.join(dir, "package.json");
      if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === pkg) return dir;
    }
  }
  return null;
}

/** The installed version of an npm package (`"?"` when it is not installed). */
export function packageVersion(pkg: string): string {
  const root = packageRoot(pkg);
  return root === null ? "?" : (JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { version: string }).version;
}
