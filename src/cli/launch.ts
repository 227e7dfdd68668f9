/**
 * Launching the ranks of a data-parallel command, as torchrun does: `--nproc-per-node N` starts
 * N copies of this very command on this machine, each with torchrun's environment variables
 * (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `GROUP_RANK`, `MASTER_ADDR`,
 * `MASTER_PORT`); a command started with those variables set (by this launcher, torchrun or a
 * cluster scheduler) is a worker and joins the process group. When a worker fails the others
 * stop with a clear error at their next collective; the launcher then sends SIGTERM to any still
 * running after 5 s (SIGKILL 10 s later) and exits with the first failure's code;
 * Ctrl-C is passed on to every worker, which saves a checkpoint.
 */
import { spawn, type ChildProcess } from "node:child_process";
import os from "node:os";
import { Option, type Command } from "commander";
import type { DataParallel } from "../train/data_parallel.js";
import { ConfigError } from "../train/config.js";
import { positiveInt } from "./options.js";

/** The launcher's options, as commander parses them. */
export interface LaunchFlags {
  nprocPerNode?: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  distTimeout: number;
  joinTimeout: number;
}

/** The launcher's command-line flags (stripped from the workers' command line). */
const LAUNCH_FLAGS = ["--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port"];

/** Adds the launch and process-group options to a command. */
export function addLaunchOptions(c: Command): Command {
  return c
    .option("--nproc-per-node <n>", "data-parallel: start this many worker processes on this machine", positiveInt("--nproc-per-node"))
    .option("--nnodes <n>", "data-parallel: number of machines", positiveInt("--nnodes"), 1)
    .addOption(
      new Option("--node-rank <r>", "data-parallel: this machine's index, 0 .. nnodes - 1 (machine 0 hosts the rendezvous)")
        .argParser(nonNegative("--node-rank"))
        .default(0),
    )
    .option(
      "--master-addr <host>",
      "data-parallel: address of machine 0, which every machine reaches",
      process.env.MASTER_ADDR ?? "127.0.0.1",
    )
    .option(
      "--master-port <port>",
      "data-parallel: TCP port of the rendezvous on machine 0",
      positiveInt("--master-port"),
      Number(process.env.MASTER_PORT ?? 29500),
    )
    .option("--dist-timeout <s>", "data-parallel: seconds a collective may wait for the other ranks", positiveInt("--dist-timeout"), 1800)
    .option("--join-timeout <s>", "data-parallel: seconds to wait for every rank to join", positiveInt("--join-timeout"), 120);
}

function nonNegative(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new ConfigError(`${flag} must be an integer >= 0, got '${v}'`);
    return n;
  };
}

/** The command line without the launcher's own flags (and their values). */
export function workerArgs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const flag = LAUNCH_FLAGS.find((f) => a === f || a.startsWith(`${f}=`));
    if (flag === undefined) out.push(a);
    else if (a === flag) i++; // its value is the next argument
  }
  return out;
}

/** This process's rank as torchrun-style environment variables give it, or null when they are not set. */
export function worldFromEnv(env: NodeJS.ProcessEnv = process.env): {
  rank: number;
  worldSize: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
} | null {
  if (env.WORLD_SIZE === undefined && env.RANK === undefined) return null;
  const int = (name: string, fallback?: number): number => {
    const raw = env[name];
    const v = raw === undefined ? fallback : Number(raw);
    if (v === undefined || !Number.isInteger(v) || v < 0)
      throw new ConfigError(`the environment variable ${name} must be an integer >= 0 (got ${raw === undefined ? "nothing" : `'${raw}'`})`);
    return v;
  };
  const worldSize = int("WORLD_SIZE");
  const rank = int("RANK");
  if (worldSize < 1 || rank >= worldSize) throw new ConfigError(`RANK ${rank} is not in 0..${worldSize - 1} (WORLD_SIZE ${worldSize})`);
  return {
    rank,
    worldSize,
    localWorldSize: Math.max(1, int("LOCAL_WORLD_SIZE", 1)),
    masterAddr: env.MASTER_ADDR ?? "127.0.0.1",
    masterPort: int("MASTER_PORT", 29500),
  };
}

/**
 * Joins the process group the environment describes (a worker), or returns the one-process world.
 * @returns the world and the libtorch threads this process should use (`threads` when given,
 *   else the machine's cores divided among its local workers)
 * @throws DistributedError when the rendezvous fails; ConfigError on malformed variables
 */
export async function joinFromEnv(o: { distTimeout: number; joinTimeout: number; threads?: number }): Promise<{
  world: DataParallel;
  threads: number | undefined;
}> {
  // Loaded here, not at the top: the CLI starts without libtorch until a command needs it.
  const { DataParallel } = await import("../train/data_parallel.js");
  const { distributed } = await import("../torch/index.js");
  const env = worldFromEnv();
  if (env === null || env.worldSize === 1) return { world: DataParallel.single, threads: o.threads };
  await distributed
    .initProcessGroup({
      masterAddr: env.masterAddr,
      masterPort: env.masterPort,
      rank: env.rank,
      worldSize: env.worldSize,
      timeoutMs: o.distTimeout * 1000,
      rendezvousTimeoutMs: o.joinTimeout * 1000,
    })
    .catch((err: unknown) => {
      throw new distributed.DistributedError(
        `${(err as Error).message} (does every machine run with the same --nnodes and --nproc-per-node, can it reach ${env.masterAddr}:${env.masterPort}, and is that port free on machine 0?)`,
        { cause: err },
      );
    });
  return {
    world: new DataParallel(env.rank, env.worldSize),
    threads: o.threads ?? Math.max(1, Math.floor(os.availableParallelism() / env.localWorldSize)),
  };
}

/**
 * Starts `nprocPerNode` workers of this command on this machine and waits for them.
 * @returns the exit code: 0 when every worker succeeded, else the first failure's
 * @throws ConfigError on inconsistent launch options
 */
export async function launchWorkers(o: LaunchFlags, argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  const n = o.nprocPerNode as number;
  if (o.nodeRank >= o.nnodes) throw new ConfigError(`--node-rank ${o.nodeRank} is not in 0..${o.nnodes - 1} (--nnodes ${o.nnodes})`);
  if (worldFromEnv() !== null)
    throw new ConfigError("--nproc-per-node launches workers; this process already is one (RANK / WORLD_SIZE are set)");
  const worldSize = n * o.nnodes;
  const args = [process.argv[1], ...workerArgs(argv)];
  const children: ChildProcess[] = [];
  let failure: number | null = null;
  const timers: NodeJS.Timeout[] = [];
  // The others notice a dead peer at their next collective (about a second) and exit with its
  // error; whoever has not exited 5 s later gets SIGTERM, and SIGKILL 10 s after that.
  const alive = (): ChildProcess[] => children.filter((c) => c.exitCode === null && c.signalCode === null);
  const stopOthers = (): void => {
    timers.push(
      setTimeout(() => {
        for (const c of alive()) c.kill("SIGTERM");
        timers.push(setTimeout(() => alive().forEach((c) => c.kill("SIGKILL")), 10_000));
      }, 5_000),
    );
  };
  const onSigint = (): void => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGINT");
  };
  process.on("SIGINT", onSigint);
  try {
    const exits = Array.from({ length: n }, (_, local) => {
      const rank = o.nodeRank * n + local;
      const child = spawn(process.execPath, args, {
        stdio: "inherit",
        env: {
          ...process.env,
          RANK: String(rank),
          WORLD_SIZE: String(worldSize),
          LOCAL_RANK: String(local),
          LOCAL_WORLD_SIZE: String(n),
          GROUP_RANK: String(o.nodeRank),
          MASTER_ADDR: o.masterAddr,
          MASTER_PORT: String(o.masterPort),
        },
      });
      children.push(child);
      return new Promise<number>((resolve) =>
        child.on("exit", (code, signal) => {
          const status = code ?? (signal === "SIGINT" ? 130 : 128 + (os.constants.signals[signal as NodeJS.Signals] ?? 0));
          if (status !== 0 && failure === null) {
            failure = status;
            if (status !== 130) {
              console.error(`ferkit: rank ${rank} exited with ${code !== null ? `code ${code}` : signal}; stopping the other workers`);
              stopOthers();
            }
          }
          resolve(status);
        }),
      );
    });
    await Promise.all(exits);
    return failure ?? 0;
  } finally {
    process.off("SIGINT", onSigint);
    timers.forEach(clearTimeout);
  }
}
