/**
 * nn.Module: a tree of layers owning parameters (trainable tensors) and buffers
 * (state such as BatchNorm running statistics), with PyTorch's dotted `state_dict`
 * names (`layer1.0.conv1.weight`), so weights move between ferkit and PyTorch.
 */
import { keep } from "../scope.js";
import { noGrad } from "../runtime.js";
import type { MemoryFormat, Tensor } from "../tensor.js";

/** A flat map from PyTorch-style dotted names to tensors. */
export type StateDict = Map<string, Tensor>;

/** What {@link Module.loadStateDict} could not match. */
export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/** Base class of layers and models. Subclasses register their parts in the constructor. */
export abstract class Module {
  /** Training mode (dropout active, BatchNorm uses batch statistics) or evaluation mode. */
  training = true;
  readonly #parameters = new Map<string, Tensor>();
  readonly #buffers = new Map<string, { tensor: Tensor; persistent: boolean }>();
  readonly #modules = new Map<string, Module>();

  /** Computes the module's output, e.g. logits `[N, C]` from images `[N, C_in, H, W]`. */
  abstract forward(x: Tensor): Tensor;

  /**
   * Adds a trainable tensor under `name`: it is kept out of any {@link tidy} scope,
   * set to require grad, and owned (and disposed) by this module.
   */
  protected registerParameter(name: string, t: Tensor): Tensor {
    keep(t);
    if (!t.requiresGrad) t.requiresGrad_(true);
    this.#parameters.set(name, t);
    return t;
  }

  /** Adds a non-trainable state tensor; `persistent` ones appear in the state dict. */
  protected registerBuffer(name: string, t: Tensor, persistent = true): Tensor {
    keep(t);
    this.#buffers.set(name, { tensor: t, persistent });
    return t;
  }

  /** Adds a child module; its parameters get the prefix `name.`. */
  protected registerModule<M extends Module>(name: string, m: M): M {
    this.#modules.set(name, m);
    return m;
  }

  /** Direct children with their names. */
  namedChildren(): [string, Module][] {
    return [...this.#modules.entries()];
  }

  /** This module and all descendants, with dotted names ("" for this one). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, m] of this.#modules) out.push(...m.namedModules(prefix ? `${prefix}.${name}` : name));
    return out;
  }

  /** All parameters with their dotted names, in registration order. */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [name, p] of m.#parameters) out.push([prefix ? `${prefix}.${name}` : name, p]);
    }
    return out;
  }

  /** All parameters, in registration order. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** All buffers (persistent or not) with their dotted names. */
  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [name, b] of m.#buffers) out.push([prefix ? `${prefix}.${name}` : name, b.tensor]);
    }
    return out;
  }

  /**
   * Parameters and persistent buffers by dotted name, as PyTorch's `state_dict()`.
   * The tensors are the module's own (not copies): do not dispose them.
   */
  stateDict(): StateDict {
    const out: StateDict = new Map();
    for (const [prefix, m] of this.namedModules()) {
      const dotted = (n: string): string => (prefix ? `${prefix}.${n}` : n);
      for (const [name, p] of m.#parameters) out.set(dotted(name), p);
      for (const [name, b] of m.#buffers) if (b.persistent) out.set(dotted(name), b.tensor);
    }
    return out;
  }

  /**
   * Copies values from `state` into this module's tensors (in place, so optimizers
   * keep their references).
   * @param strict throw when a key is missing or unexpected (default true)
   * @throws Error naming the key on a shape mismatch, and on missing/unexpected keys when strict
   */
  loadStateDict(state: StateDict, strict = true): LoadResult {
    const own = this.stateDict();
    const missingKeys = [...own.keys()].filter((k) => !state.has(k));
    const unexpectedKeys = [...state.keys()].filter((k) => !own.has(k));
    if (strict && (missingKeys.length > 0 || unexpectedKeys.length > 0)) {
      throw new Error(`loadStateDict: missing keys [${missingKeys.join(", ")}], unexpected keys [${unexpectedKeys.join(", ")}]`);
    }
    noGrad(() => {
      for (const [name, target] of own) {
        const src = state.get(name);
        if (src === undefined) continue;
        if (src.shape.join(",") !== target.shape.join(",")) {
          throw new Error(
            `loadStateDict: ${name} has shape [${src.shape.join(", ")}] in the file but [${target.shape.join(", ")}] in the model`,
          );
        }
        target.copy_(src);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Stores every 4-D parameter and buffer (the convolution weights) in `format` order, in
   * place, as PyTorch's `model.to(memory_format=...)`: with "channels_last" libtorch's CPU
   * convolutions run on NHWC memory, which is faster, and their outputs stay NHWC through
   * BatchNorm, activations and pooling. Shapes, `state_dict` names and saved files are
   * unchanged; outputs agree up to float rounding. Call it before an optimizer has made
   * its state (state made earlier keeps the old layout: correct, but slower). Returns `this`.
   * @throws TypeError when `format` is not "contiguous" or "channels_last".
   */
  toMemoryFormat(format: MemoryFormat): this {
    noGrad(() => {
      for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) {
        if (t.shape.length !== 4) continue;
        const converted = t.toMemoryFormat(format);
        if (converted === null) continue;
        t.setData_(converted);
        converted.dispose();
      }
    });
    return this;
  }

  /** Sets training mode on this module and all descendants. Returns `this`. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Sets evaluation mode (`train(false)`). Returns `this`. */
  eval(): this {
    return this.train(false);
  }

  /** Clears every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.setGrad(null);
  }

  /** Number of scalar parameters. */
  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.numel, 0);
  }

  /** Releases every parameter and buffer of this module and its descendants. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }
}
