/**
 * Augmentation off the main thread: an {@link AugmentWorker} runs {@link applyViews} in a
 * `node:worker_threads` worker that loads this same module (and its own instance of the
 * libtorch binding, a context-aware Node-API addon), so a trainer can build the views of
 * batch k + 1 while batch k trains:
 *
 *     const aug = await AugmentWorker.start();
 *     let next = aug.makeViews(batch0, rng);
 *     for (...) {
 *       const views = await next;
 *       next = aug.makeViews(batchK1, rng); // drawn now, computed in the background
 *       trainStep(views); torch.dispose(views);
 *     }
 *     await aug.terminate();
 *
 * The random draws ({@link planViews}) happen synchronously on the calling thread when
 * `makeViews` is called, so the Rng state, and with it the views, are the same as with the
 * main-thread {@link makeViews} for the same seed, whatever the timing.
 * Pixels go to the worker as a copy; views come back as transferred ArrayBuffers and are
 * copied once into tensors on the calling thread.
 */
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import * as torch from "../torch/index.js";
import type { Rng } from "../data/sampler.js";
import {
  applyViews,
  batchShape,
  planViews,
  type BatchInput,
  type BatchShape,
  type ViewOptions,
  type ViewPlan,
  type Views,
} from "./views.js";

/** Marks the worker started by {@link AugmentWorker.start}, so importing this module elsewhere does nothing. */
const WORKER_FLAG = "ferkitAugmentWorker";

interface Request {
  id: number;
  data: Uint8Array;
  plan: ViewPlan;
}

type Reply =
  | { id: number; weak: Float32Array[]; strong: Float32Array[]; ms: number }
  | { id: number; error: string; stack?: string }
  | { ready: true; threads: number };

/** Options of {@link AugmentWorker.start}. */
export interface AugmentWorkerOptions {
  /** libtorch intra-op threads inside the worker (default 1, leaving the other cores to training). */
  threads?: number;
}

interface Pending {
  shape: BatchShape;
  resolve: (v: Views) => void;
  reject: (e: Error) => void;
}

/** A worker thread that computes augmentation views; see the module comment. */
export class AugmentWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #failed: Error | null = null;
  /** Milliseconds the worker spent computing the last batch (excluding transfer). */
  lastComputeMs = 0;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on("message", (m: Reply) => this.#onMessage(m));
    worker.on("error", (e: Error) => this.#failAll(e));
    worker.on("exit", (code) => {
      if (this.#pending.size > 0) this.#failAll(new Error(`AugmentWorker: the worker exited (code ${code}) with requests pending`));
    });
    worker.unref();
  }

  /**
   * Starts a worker and waits until it has loaded the libtorch binding.
   * @throws Error when the worker cannot start or load the binding
   */
  static async start(o: AugmentWorkerOptions = {}): Promise<AugmentWorker> {
    const threads = o.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1)
      throw new RangeError(`AugmentWorker: threads must be a positive integer, got ${threads}`);
    const worker = new Worker(new URL(import.meta.url), { workerData: { [WORKER_FLAG]: true, threads } });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: Reply): void => {
        if ("ready" in m) {
          worker.off("error", onError);
          worker.off("message", onMessage);
          resolve();
        }
      };
      const onError = (e: Error): void => reject(new Error(`AugmentWorker: the worker failed to start: ${e.message}`, { cause: e }));
      worker.on("message", onMessage);
      worker.once("error", onError);
    });
    return new AugmentWorker(worker);
  }

  #onMessage(m: Reply): void {
    if ("ready" in m) return;
    const p = this.#pending.get(m.id);
    if (p === undefined) return;
    this.#pending.delete(m.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if ("error" in m) {
      const e = new Error(`AugmentWorker: ${m.error}`);
      if (m.stack !== undefined) e.stack = `${e.message}\n--- in the worker ---\n${m.stack}`;
      p.reject(e);
      return;
    }
    this.lastComputeMs = m.ms;
    const toTensors = (arrays: Float32Array[]): torch.Tensor[] => arrays.map((a) => torch.fromArray(a, p.shape));
    p.resolve({ weak: toTensors(m.weak), strong: toTensors(m.strong) });
  }

  #failAll(e: Error): void {
    this.#failed = e;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /**
   * Draws the views' randomness from `rng` now (advancing it exactly as {@link makeViews}
   * would) and computes the views in the worker.
   * @param batch uint8 `[N, C, H, W]` (copied; the caller may reuse it at once)
   * @returns the same views as `makeViews(batch, rng, o)` on the main thread, as tensors the caller owns
   */
  makeViews(batch: BatchInput, rng: Rng, o: ViewOptions = {}): Promise<Views> {
    return this.applyViews(batch, planViews(batchShape(batch), rng, o));
  }

  /** Computes the views of an already drawn plan in the worker (see {@link applyViews}). */
  applyViews(batch: BatchInput, plan: ViewPlan): Promise<Views> {
    if (this.#failed !== null) return Promise.reject(this.#failed);
    const shape = batchShape(batch);
    let data: Uint8Array;
    if (batch instanceof torch.Tensor) {
      if (batch.dtype !== "uint8") return Promise.reject(new TypeError(`AugmentWorker: expected a uint8 batch, got ${batch.dtype}`));
      data = batch.toArray() as Uint8Array; // a fresh copy: safe to transfer
    } else {
      data = batch.data.slice();
    }
    const id = this.#nextId++;
    return new Promise<Views>((resolve, reject) => {
      this.#pending.set(id, { shape, resolve, reject });
      this.#worker.ref();
      const req: Request = { id, data, plan };
      this.#worker.postMessage(req, [data.buffer as ArrayBuffer]);
    });
  }

  /** Requests not answered yet. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Stops the worker; pending requests are rejected. */
  async terminate(): Promise<void> {
    this.#failAll(new Error("AugmentWorker: terminated"));
    await this.#worker.terminate();
  }
}

/** The worker side: compute views for each request and send them back as transferred buffers. */
function serve(): void {
  const port = parentPort;
  if (port === null) return;
  const { threads } = workerData as { threads: number };
  torch.setNumThreads(threads);
  port.on("message", (req: Request) => {
    try {
      const t0 = performance.now();
      const views = applyViews({ data: req.data, shape: req.plan.shape }, req.plan);
      const read = (ts: torch.Tensor[]): Float32Array[] => ts.map((t) => t.toArray() as Float32Array);
      const weak = read(views.weak);
      const strong = read(views.strong);
      torch.dispose(views);
      const reply: Reply = { id: req.id, weak, strong, ms: performance.now() - t0 };
      port.postMessage(
        reply,
        [...weak, ...strong].map((a) => a.buffer as ArrayBuffer),
      );
    } catch (err) {
      const e = err as Error;
      port.postMessage({ id: req.id, error: e.message, stack: e.stack } satisfies Reply);
    }
  });
  port.postMessage({ ready: true, threads: torch.getNumThreads() } satisfies Reply);
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[WORKER_FLAG] === true) serve();
