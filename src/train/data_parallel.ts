/**
 * What a training run needs from the ranks of a data-parallel group, in the semantics of
 * PyTorch's DistributedDataParallel: the same initial weights everywhere (broadcast from rank 0),
 * gradients averaged in buckets after the backward pass, BatchNorm buffers broadcast from rank 0
 * after each step (DDP's `broadcast_buffers`), and the few global quantities (sums, gathered
 * predictions, checkpoint bytes) that keep every rank's state identical.
 *
 * One process is the world of size 1: every method is then the identity and calls nothing
 * native, so the trainer has one code path.
 */
import * as torch from "../torch/index.js";
import type { nn, Tensor } from "../torch/index.js";

/** DDP's default bucket size (25 MiB of float32 gradients). */
const BUCKET_BYTES = 25 * 1024 * 1024;

/** This process's place in a data-parallel run. */
export class DataParallel {
  /**
   * @param rank 0 .. worldSize - 1
   * @param worldSize number of processes (1: not distributed)
   * @throws RangeError on a rank outside the world
   */
  constructor(
    readonly rank: number,
    readonly worldSize: number,
  ) {
    if (!(Number.isInteger(worldSize) && worldSize >= 1 && Number.isInteger(rank) && rank >= 0 && rank < worldSize))
      throw new RangeError(`DataParallel: rank ${rank} is not in a world of ${worldSize}`);
  }

  /** One process, no group. */
  static readonly single = new DataParallel(0, 1);

  /** Time this rank spent in collectives (waiting for the others included), in milliseconds, since it was made. */
  commMs = 0;
  /** Bytes this rank handed to collectives (its own tensors' sizes), since it was made. */
  commBytes = 0;

  /** Runs one collective on `t`, counting its time and bytes. */
  #collective<T>(t: Tensor, fn: () => T): T {
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      this.commMs += performance.now() - t0;
      this.commBytes += t.numel * torch.DTYPE_BYTES[t.dtype];
    }
  }

  /** Whether this rank writes the run's files and prints (rank 0). */
  get isMain(): boolean {
    return this.rank === 0;
  }

  get distributed(): boolean {
    return this.worldSize > 1;
  }

  /** This rank's contiguous share `[lo, hi)` of `n` items (sizes differ by one at most). */
  shard(n: number, rank = this.rank): [number, number] {
    return [Math.floor((rank * n) / this.worldSize), Math.floor(((rank + 1) * n) / this.worldSize)];
  }

  /** Copies rank 0's parameters and buffers into every rank's `module` (DDP's construction). */
  broadcastModule(module: nn.Module): void {
    if (!this.distributed) return;
    torch.noGrad(() => {
      for (const t of [...module.parameters(), ...module.namedBuffers().map(([, b]) => b)]) this.#broadcastInPlace(t);
    });
  }

  /** Copies rank 0's buffers (BatchNorm running statistics) into every rank's `module`. */
  broadcastBuffers(module: nn.Module): void {
    if (!this.distributed) return;
    torch.noGrad(() => {
      for (const t of module.namedBuffers().map(([, b]) => b)) this.#broadcastInPlace(t);
    });
  }

  #broadcastInPlace(t: Tensor): void {
    if (t.isContiguous()) this.#collective(t, () => torch.distributed.broadcast(t, 0));
    else
      torch.tidy(() => {
        const c = t.contiguous();
        this.#collective(c, () => torch.distributed.broadcast(c, 0));
        t.copy_(c);
      });
  }

  /**
   * Averages the gradients of `params` over the ranks, in buckets of at most 25 MiB (flattened,
   * all-reduced, copied back), as DDP's Reducer does after the backward pass (here after it ends,
   * without overlap). A parameter with a gradient on some ranks only counts as zero on the others;
   * one without a gradient on any rank keeps none, as in one process (the optimizer skips it).
   */
  averageGradients(params: readonly Tensor[]): void {
    if (!this.distributed) return;
    const trained = params.filter((p) => p.requiresGrad);
    const anywhere = this.sum(trained.map((p) => (p.grad === null ? 0 : 1)));
    torch.noGrad(() => {
      let bucket: Tensor[] = [];
      let bytes = 0;
      const flush = (): void => {
        if (bucket.length > 0) this.#reduceBucket(bucket);
        bucket = [];
        bytes = 0;
      };
      for (const [i, p] of trained.entries()) {
        if (anywhere[i] === 0) continue;
        if (p.grad === null) p.setGrad(torch.zerosLike(p));
        bucket.push(p);
        bytes += p.numel * 4;
        if (bytes >= BUCKET_BYTES) flush();
      }
      flush();
    });
  }

  #reduceBucket(params: Tensor[]): void {
    torch.tidy(() => {
      const grads = params.map((p) => p.grad as Tensor);
      const flat = torch.cat(grads.map((g) => g.reshape(-1)));
      this.#collective(flat, () => torch.distributed.allReduce(flat, "mean"));
      let off = 0;
      for (const g of grads) {
        const n = g.numel;
        g.copy_(flat.narrow(0, off, n).view(...g.shape));
        off += n;
      }
    });
  }

  /** Element-wise sums of `values` over the ranks (float64). */
  sum(values: readonly number[]): number[] {
    if (!this.distributed || values.length === 0) return [...values];
    return torch.tidy(() => {
      const t = torch.fromArray(Float64Array.from(values), [values.length], "float64");
      this.#collective(t, () => torch.distributed.allReduce(t, "sum"));
      return Array.from(t.toArray() as Float64Array);
    });
  }

  /** Whether `flag` holds on any rank. */
  any(flag: boolean): boolean {
    return this.sum([flag ? 1 : 0])[0] > 0;
  }

  /**
   * The rows every rank computed for its {@link shard} of `n` rows, concatenated in rank order.
   * @param local `[hi - lo, cols]` row-major: this rank's rows (float32 or float64)
   * @returns `[n, cols]` of the same type, the same on every rank
   */
  gatherRows<T extends Float32Array | Float64Array>(local: T, n: number, cols: number): T {
    if (!this.distributed) return local;
    const [lo, hi] = this.shard(n);
    if (local.length !== (hi - lo) * cols)
      throw new RangeError(`gatherRows: rank ${this.rank} has ${local.length / cols} rows, not ${hi - lo}`);
    const make = (length: number): T => (local instanceof Float64Array ? new Float64Array(length) : new Float32Array(length)) as T;
    const most = Math.ceil(n / this.worldSize);
    const padded = make(most * cols);
    padded.set(local);
    const all = torch.tidy(() => {
      const t = torch.fromArray(padded, [most, cols], local instanceof Float64Array ? "float64" : "float32");
      return this.#collective(t, () => torch.distributed.allGather(t)).toArray() as T;
    });
    const out = make(n * cols);
    for (let r = 0; r < this.worldSize; r++) {
      const [a, b] = this.shard(n, r);
      out.set(all.subarray(r * most * cols, (r * most + b - a) * cols), a * cols);
    }
    return out;
  }

  /** Every rank's bytes, in rank order (lengths may differ). */
  gatherBytes(bytes: Uint8Array): Uint8Array[] {
    if (!this.distributed) return [bytes];
    const lengths = this.#allGatherInts([bytes.length]).map((l) => l[0]);
    const most = Math.max(...lengths);
    const padded = new Uint8Array(Math.max(1, most));
    padded.set(bytes);
    const all = torch.tidy(() => {
      const t = torch.fromArray(padded, [padded.length], "uint8");
      return this.#collective(t, () => torch.distributed.allGather(t)).toArray() as Uint8Array;
    });
    return lengths.map((l, r) => all.slice(r * padded.length, r * padded.length + l));
  }

  /** Every rank's JSON value, in rank order. */
  gatherJson<T>(value: T): T[] {
    return this.gatherBytes(Buffer.from(JSON.stringify(value))).map((b) => JSON.parse(Buffer.from(b).toString("utf8")) as T);
  }

  /** Rank 0's bytes on every rank (`bytes` is read on rank 0 only). */
  broadcastBytes(bytes: Uint8Array | null): Uint8Array {
    if (!this.distributed) return bytes ?? new Uint8Array(0);
    const n = torch.fromArray(Float64Array.from([this.isMain ? (bytes as Uint8Array).length : 0]), [1], "float64");
    this.#collective(n, () => torch.distributed.broadcast(n, 0));
    const length = (n.toArray() as Float64Array)[0];
    n.dispose();
    const buf = new Uint8Array(Math.max(1, length));
    if (this.isMain) buf.set(bytes as Uint8Array);
    return torch.tidy(() => {
      const t = torch.fromArray(buf, [buf.length], "uint8");
      this.#collective(t, () => torch.distributed.broadcast(t, 0));
      return (t.toArray() as Uint8Array).slice(0, length);
    });
  }

  #allGatherInts(values: number[]): number[][] {
    const all = torch.tidy(() => {
      const t = torch.fromArray(Float64Array.from(values), [values.length], "float64");
      return this.#collective(t, () => torch.distributed.allGather(t)).toArray() as Float64Array;
    });
    return Array.from({ length: this.worldSize }, (_, r) => Array.from(all.subarray(r * values.length, (r + 1) * values.length)));
  }
}
