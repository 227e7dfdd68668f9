/**
 * Optimizer base: parameter groups with their hyper-parameters, per-parameter state
 * tensors, and a `state_dict` that a checkpoint saves (tensors as safetensors, the
 * rest as JSON) and restores exactly. The update rules run natively, one call per
 * parameter (native/src/optim.cc).
 */
import { zerosLike } from "../creation.js";
import { keep } from "../scope.js";
import { Tensor } from "../tensor.js";

/** A group of parameters sharing hyper-parameters `H` (e.g. lr, weight decay). */
export type ParamGroup<H> = H & { params: Tensor[] };

/** Per-parameter optimizer state: the number of updates and named state tensors. */
export interface ParamState {
  step: number;
  buffers: Record<string, Tensor>;
}

/**
 * An optimizer's state in a form that can be written to disk: `tensors` keyed
 * `state.<param index>.<name>` (PyTorch's flattened layout), `meta` JSON-serialisable.
 */
export interface OptimizerStateDict {
  tensors: Map<string, Tensor>;
  meta: {
    type: string;
    param_groups: Record<string, unknown>[];
    state: Record<string, { step: number }>;
  };
}

/** Base class of {@link SGD} and {@link Adam}. */
export abstract class Optimizer<H extends { lr: number }> {
  readonly paramGroups: ParamGroup<H>[];
  readonly state = new Map<Tensor, ParamState>();

  /**
   * @param params the tensors to update, or groups of them with their own hyper-parameters
   * @param defaults hyper-parameters for groups that do not set them
   */
  constructor(params: Tensor[] | (Partial<H> & { params: Tensor[] })[], defaults: H) {
    const groups =
      params.length > 0 && params[0] instanceof Tensor
        ? [{ params: params as Tensor[] }]
        : (params as (Partial<H> & { params: Tensor[] })[]);
    this.paramGroups = groups.map((g) => ({ ...defaults, ...g }) as ParamGroup<H>);
    for (const g of this.paramGroups) this.validate(g);
  }

  /** Name written in the state dict, e.g. "Adam". */
  abstract get type(): string;

  /** Throws a RangeError naming a hyper-parameter that is out of range. */
  protected abstract validate(group: H): void;

  /** Applies one update to every parameter that has a gradient. */
  abstract step(): void;

  /** Clears every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`). */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) p.setGrad(null);
  }

  /**
   * Whether `p` has a gradient. Parameters without one are skipped by `step()` and,
   * as in PyTorch, get no state (no buffers are allocated for frozen parameters).
   */
  protected static hasGrad(p: Tensor): boolean {
    const g = p.grad;
    g?.dispose();
    return g !== null;
  }

  /** The state of `p`, created with zeroed buffers of `names` on first use. */
  protected stateOf(p: Tensor, names: readonly string[], init: (p: Tensor) => Tensor): ParamState {
    let s = this.state.get(p);
    if (s === undefined) {
      s = { step: 0, buffers: {} };
      for (const n of names) s.buffers[n] = keep(init(p));
      this.state.set(p, s);
    }
    return s;
  }

  /** All parameters in group order; their index is the key used in the state dict. */
  protected allParams(): Tensor[] {
    return this.paramGroups.flatMap((g) => g.params);
  }

  /** A snapshot of the optimizer's state (tensors are the optimizer's own; do not dispose). */
  stateDict(): OptimizerStateDict {
    const tensors = new Map<string, Tensor>();
    const state: Record<string, { step: number }> = {};
    const params = this.allParams();
    params.forEach((p, i) => {
      const s = this.state.get(p);
      if (s === undefined) return;
      state[String(i)] = { step: s.step };
      for (const [name, t] of Object.entries(s.buffers)) tensors.set(`state.${i}.${name}`, t);
    });
    let index = 0;
    const param_groups = this.paramGroups.map((g) => {
      const { params: groupParams, ...hyper } = g;
      const ids = groupParams.map(() => index++);
      return { ...hyper, params: ids };
    });
    return { tensors, meta: { type: this.type, param_groups, state } };
  }

  /**
   * Restores a state saved by {@link stateDict} (values are copied, so the source may be
   * disposed afterwards).
   * @throws Error when the optimizer type, group count or a tensor shape does not match
   */
  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.meta.type !== this.type) throw new Error(`loadStateDict: state of a ${sd.meta.type} optimizer given to ${this.type}`);
    if (sd.meta.param_groups.length !== this.paramGroups.length) {
      throw new Error(`loadStateDict: ${sd.meta.param_groups.length} parameter groups saved, ${this.paramGroups.length} here`);
    }
    sd.meta.param_groups.forEach((saved, gi) => {
      const ids = (saved as { params: number[] }).params;
      const group = this.paramGroups[gi];
      if (ids.length !== group.params.length)
        throw new Error(`loadStateDict: group ${gi} saved ${ids.length} parameters, has ${group.params.length}`);
    });
    // Copy the saved tensors before releasing the current state: `sd` may hold this
    // optimizer's own tensors (`opt.loadStateDict(opt.stateDict())`), and a failed
    // load must leave the current state intact.
    const next = new Map<Tensor, ParamState>();
    const params = this.allParams();
    try {
      for (const [key, { step }] of Object.entries(sd.meta.state)) {
        const p = params[Number(key)];
        if (p === undefined) throw new Error(`loadStateDict: state for parameter ${key}, which does not exist`);
        const buffers: Record<string, Tensor> = {};
        next.set(p, { step, buffers });
        const prefix = `state.${key}.`;
        for (const [name, t] of sd.tensors) {
          if (!name.startsWith(prefix)) continue;
          if (t.shape.join(",") !== p.shape.join(","))
            throw new Error(`loadStateDict: ${name} has shape [${t.shape.join(", ")}], parameter has [${p.shape.join(", ")}]`);
          // Laid out in memory like the parameter (files hold row-major data; a
          // channels_last weight's state stays channels_last, so updates run on matching memory).
          buffers[name.slice(prefix.length)] = keep(zerosLike(p).copy_(t));
        }
      }
    } catch (err) {
      for (const s of next.values()) for (const t of Object.values(s.buffers)) t.dispose();
      throw err;
    }
    sd.meta.param_groups.forEach((saved, gi) => {
      const { params: _ids, ...hyper } = saved as { params: number[] };
      Object.assign(this.paramGroups[gi], hyper);
    });
    for (const s of this.state.values()) for (const t of Object.values(s.buffers)) t.dispose();
    this.state.clear();
    for (const [p, s] of next) this.state.set(p, s);
  }

  /** Releases the state tensors. */
  dispose(): void {
    for (const s of this.state.values()) for (const t of Object.values(s.buffers)) t.dispose();
    this.state.clear();
  }
}
