/**
 * Collectives across processes, on PyTorch's c10d as libtorch ships it (native/src/dist.cc): a
 * `TCPStore` rendezvous (rank 0 hosts it at `masterAddr:masterPort`) and a Gloo process group,
 * one per process, like `torch.distributed`'s default group. Tensors are CPU tensors; the
 * collectives block until every rank took part. A peer that dies, or a collective that takes longer
 * than `timeoutMs`, throws a {@link DistributedError} on the ranks still waiting; nothing hangs.
 */
import { createSocket } from "node:dgram";
import { isIP } from "node:net";
import { lookup } from "node:dns/promises";
import { native } from "./native.js";
import type { Tensor } from "./tensor.js";
import { Tensor as TensorClass } from "./tensor.js";

/** A collective (or the rendezvous) failed: a peer died, timed out, or the group is not set up. */
export class DistributedError extends Error {
  override name = "DistributedError";
}

/** Where and how to join a process group (torchrun's MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE). */
export interface ProcessGroupOptions {
  /** Address of rank 0, which hosts the rendezvous store (an IP address or host name). */
  masterAddr: string;
  /** TCP port of the store on rank 0 (1-65535); Gloo's own connections use other, free ports. */
  masterPort: number;
  /** This process's rank, 0 .. worldSize - 1. */
  rank: number;
  /** Number of processes in the group. */
  worldSize: number;
  /** How long each collective may take, in milliseconds (default 1,800,000: c10d's 30 minutes). */
  timeoutMs?: number;
  /** How long joining may take (every rank reaching the master), in milliseconds (default 120,000). */
  rendezvousTimeoutMs?: number;
  /**
   * This machine's address on the network that reaches the master: Gloo's connections bind to it
   * (default: found by {@link localAddressFor}; the master's own address when it is a loopback one).
   */
  localAddr?: string;
}

/** How {@link allReduce} combines the ranks' values: element-wise sum, mean, max, min or product. */
export type ReduceOp = "sum" | "mean" | "max" | "min" | "product";

function guard<T>(op: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    // The binding names its function ("distAllReduce: allReduce failed on rank 0 of 2: ..."): one name is enough.
    const message = (err as Error).message.split("\n")[0].replace(/^dist\w+: /, "");
    throw new DistributedError(message.startsWith(op) ? message : `${op}: ${message}`, { cause: err });
  }
}

/**
 * The local address this machine uses to reach `host` (the route's source address, as the
 * kernel picks it for a UDP socket "connected" to the host; no packet is sent).
 * @throws DistributedError when the host name does not resolve or no route reaches it
 */
export async function localAddressFor(host: string): Promise<string> {
  let ip = host;
  try {
    if (isIP(host) === 0) ip = (await lookup(host, { family: 4 })).address;
  } catch (err) {
    throw new DistributedError(`the master address ${host} does not resolve: ${(err as Error).message}`, { cause: err });
  }
  if (ip.startsWith("127.")) return ip;
  const socket = createSocket("udp4");
  try {
    return await new Promise<string>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(9, ip, () => resolve(socket.address().address));
    });
  } catch (err) {
    throw new DistributedError(`no route from this machine to the master address ${host}: ${(err as Error).message}`, { cause: err });
  } finally {
    socket.close();
  }
}

/**
 * Joins the process group; returns when all `worldSize` ranks have joined.
 * @throws DistributedError when the rendezvous does not complete within its timeout, the port is
 *   taken on rank 0, the master does not resolve, or this process is already in a group;
 *   RangeError on bad options
 */
export async function initProcessGroup(o: ProcessGroupOptions): Promise<void> {
  const timeout = o.timeoutMs ?? 1_800_000;
  const rendezvous = o.rendezvousTimeoutMs ?? 120_000;
  if (!(Number.isInteger(o.worldSize) && o.worldSize >= 1)) throw new RangeError(`worldSize must be an integer >= 1, got ${o.worldSize}`);
  if (!(Number.isInteger(o.rank) && o.rank >= 0 && o.rank < o.worldSize))
    throw new RangeError(`rank must be in 0..${o.worldSize - 1}, got ${o.rank}`);
  if (!(Number.isInteger(o.masterPort) && o.masterPort >= 1 && o.masterPort <= 65535))
    throw new RangeError(`masterPort must be in 1..65535, got ${o.masterPort}`);
  for (const [name, v] of [
    ["timeoutMs", timeout],
    ["rendezvousTimeoutMs", rendezvous],
  ] as const)
    if (!(Number.isInteger(v) && v > 0)) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  const local = o.localAddr ?? (await localAddressFor(o.masterAddr));
  guard(`joining the process group at ${o.masterAddr}:${o.masterPort} as rank ${o.rank} of ${o.worldSize}`, () =>
    native.distInit(o.masterAddr, o.masterPort, o.rank, o.worldSize, timeout, local, rendezvous),
  );
}

/** Leaves the process group (its connections close); a no-op when there is none. */
export function destroyProcessGroup(): void {
  native.distDestroy();
}

/** This process's rank, or -1 outside a process group. */
export function getRank(): number {
  return native.distRank() as number;
}

/** The number of ranks, or 0 outside a process group. */
export function getWorldSize(): number {
  return native.distWorldSize() as number;
}

/** Whether this process is in a process group. */
export function isInitialized(): boolean {
  return getWorldSize() > 0;
}

/**
 * Combines `t` across ranks, in place: every rank ends with the same values. `"mean"` is the sum
 * divided by the world size (Gloo has no average).
 * @param t a contiguous CPU tensor of the same shape and dtype on every rank
 * @throws DistributedError when a peer died or the collective timed out
 */
export function allReduce(t: Tensor, op: ReduceOp = "sum"): void {
  guard("allReduce", () => native.distAllReduce(t.handle, op === "mean" ? "sum" : op));
  if (op === "mean") t.div_(getWorldSize());
}

/**
 * Copies rank `root`'s `t` into every rank's `t`, in place.
 * @throws DistributedError when a peer died or the collective timed out
 */
export function broadcast(t: Tensor, root = 0): void {
  guard("broadcast", () => native.distBroadcast(t.handle, root));
}

/**
 * Every rank's `t`, stacked in rank order.
 * @param t a CPU tensor of the same shape and dtype on every rank
 * @returns `[worldSize, ...t.shape]`, owned by the caller
 * @throws DistributedError when a peer died or the collective timed out
 */
export function allGather(t: Tensor): Tensor {
  return TensorClass.fromHandle(guard("allGather", () => native.distAllGather(t.handle)));
}

/**
 * Returns when every rank has called it.
 * @throws DistributedError when a peer died or the barrier timed out
 */
export function barrier(): void {
  guard("barrier", () => native.distBarrier());
}

/**
 * Batch normalisation in training mode over every rank's batch together (PyTorch's
 * `SyncBatchNorm`): the per-channel mean and variance are those of all ranks' `x`, the running
 * statistics move with them (unbiased variance), and the backward pass all-reduces sum(dy) and
 * sum(dy * xhat) so each rank's input gradient is exact. The weight and bias gradients are this
 * rank's own (data-parallel training averages them). Every rank must call it for the same layers
 * in the same order.
 * @param x `[N, C, ...]` float32 or bfloat16 (statistics are float32)
 * @param weight, bias `[C]` or null; runningMean, runningVar `[C]` float32 or null (updated in place)
 * @throws DistributedError when a peer died or the collective timed out, or outside a process group
 */
export function syncBatchNorm(
  x: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  weight: Tensor | null,
  bias: Tensor | null,
  o: { momentum?: number; eps?: number } = {},
): Tensor {
  return TensorClass.fromHandle(
    guard("syncBatchNorm", () =>
      native.syncBatchNorm(
        x.handle,
        weight?.handle,
        bias?.handle,
        runningMean?.handle,
        runningVar?.handle,
        o.momentum ?? 0.1,
        o.eps ?? 1e-5,
      ),
    ),
  );
}
