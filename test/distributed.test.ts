// c10d through the binding (src/torch/distributed.ts), with real processes on 127.0.0.1: the
// collectives' results for 2 and 3 ranks, a peer that dies (an exception within the timeout,
// never a hang), a rendezvous nobody joins (the same), and bad options.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import * as torch from "../src/torch/index.js";
import { PACKAGE_ROOT } from "../src/torch/native.js";
import { freePort } from "./helpers.js";

const worker = path.join(PACKAGE_ROOT, "dist", "test", "dist_worker.js");

/** Runs `world` workers (in `mode`) and returns each one's JSON line and exit code, in rank order. */
async function runRanks(
  world: number,
  mode: string,
  timeoutMs = 10_000,
): Promise<{ out: Record<string, unknown> | null; code: number | null }[]> {
  const port = await freePort();
  return Promise.all(
    Array.from({ length: world }, (_, rank) => {
      const child = spawn(process.execPath, [worker, String(rank), String(world), String(port), mode, String(timeoutMs)], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, OMP_NUM_THREADS: "1" },
      });
      let stdout = "";
      child.stdout.on("data", (d) => (stdout += d));
      return new Promise<{ out: Record<string, unknown> | null; code: number | null }>((resolve) =>
        child.once("exit", (code) =>
          resolve({
            out: stdout.trim() ? (JSON.parse(stdout.trim().split("\n").at(-1) as string) as Record<string, unknown>) : null,
            code,
          }),
        ),
      );
    }),
  );
}

describe("c10d collectives across processes (Gloo, TCPStore)", () => {
  for (const world of [2, 3])
    test(`${world} ranks: all_reduce (sum, mean, max), broadcast, all_gather, barrier`, async () => {
      const ranks = await runRanks(world, "ok");
      const total = (world * (world + 1)) / 2;
      for (const [rank, { out, code }] of ranks.entries()) {
        assert.equal(code, 0, JSON.stringify(out));
        assert.equal(out?.world, world);
        assert.deepEqual(
          out?.sum,
          [1, 2, 3].map((v) => v * total),
        );
        assert.deepEqual(out?.mean, [(world - 1) / 2]);
        assert.deepEqual(out?.max, [world - 1]);
        assert.deepEqual(out?.bcast, [world - 1, 7], `rank ${rank} got the last rank's tensor`);
        assert.deepEqual(out?.gather, Array.from({ length: world }, (_, r) => [r * 10, r]).flat());
        assert.deepEqual(out?.gatherShape, [world, 2]);
      }
    });

  test("a peer that dies: the others get an exception naming the collective, within the timeout", async () => {
    const started = performance.now();
    const ranks = await runRanks(2, "die", 5000);
    assert.equal(ranks[1].code, 3);
    assert.equal(ranks[0].code, 1);
    assert.match(String(ranks[0].out?.error), /^DistributedError: allReduce failed on rank 0 of 2: /);
    assert.ok(performance.now() - started < 15_000, "no hang");
  });

  test("a rendezvous the other ranks never join times out with an exception", async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [worker, "0", "2", String(port), "alone", "1500"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(code, 1);
    const out = JSON.parse(stdout.trim()) as { error: string; ms: number };
    assert.match(out.error, /^DistributedError: joining the process group at 127\.0\.0\.1:\d+ as rank 0 of 2/);
    assert.ok(out.ms < 10_000, `${out.ms} ms`);
  });

  test("outside a group: rank -1, world size 0, a collective throws; bad options are RangeErrors", async () => {
    assert.equal(torch.distributed.getRank(), -1);
    assert.equal(torch.distributed.isInitialized(), false);
    assert.throws(() => torch.distributed.barrier(), /DistributedError|no process group/);
    await assert.rejects(
      torch.distributed.initProcessGroup({ masterAddr: "127.0.0.1", masterPort: 70000, rank: 0, worldSize: 1 }),
      RangeError,
    );
    await assert.rejects(
      torch.distributed.initProcessGroup({ masterAddr: "127.0.0.1", masterPort: 29500, rank: 2, worldSize: 2 }),
      RangeError,
    );
    await assert.rejects(
      torch.distributed.initProcessGroup({ masterAddr: "no-such-host.invalid", masterPort: 29500, rank: 0, worldSize: 2 }),
      /does not resolve/,
    );
  });
});
