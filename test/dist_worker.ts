// One rank of the distributed tests (test/distributed.test.ts): joins a Gloo group on 127.0.0.1,
// runs the collectives and prints one JSON line with what it got (or the error it caught).
// Usage: node dist/test/dist_worker.js <rank> <worldSize> <port> <mode: ok | die | alone> [timeoutMs]
import * as torch from "../src/torch/index.js";

const [rank, world, port, mode, timeout] = process.argv.slice(2).map((v, i) => (i === 3 ? v : Number(v))) as [
  number,
  number,
  number,
  string,
  number,
];
const d = torch.distributed;
const started = performance.now();
const report = (o: Record<string, unknown>) => console.log(JSON.stringify({ rank, ms: Math.round(performance.now() - started), ...o }));
try {
  const timeoutMs = Number.isFinite(timeout) ? timeout : 10_000;
  await d.initProcessGroup({
    masterAddr: "127.0.0.1",
    masterPort: port,
    rank,
    worldSize: world,
    timeoutMs,
    rendezvousTimeoutMs: timeoutMs,
  });
  if (mode === "die" && rank === world - 1) process.exit(3); // a peer that dies before the first collective
  const x = torch.fromArray(
    Float32Array.from([1, 2, 3], (v) => v * (rank + 1)),
    [3],
  );
  d.allReduce(x, "sum");
  const mean = torch.fromArray(Float32Array.from([rank]), [1]);
  d.allReduce(mean, "mean");
  const max = torch.fromArray(Float32Array.from([rank]), [1]);
  d.allReduce(max, "max");
  const b = torch.fromArray(Float32Array.from([rank, 7]), [2]);
  d.broadcast(b, world - 1);
  const g = d.allGather(torch.fromArray(Int32Array.from([rank * 10, rank]), [2], "int64"));
  d.barrier();
  report({
    world: d.getWorldSize(),
    sum: [...x.toArray()],
    mean: [...mean.toArray()],
    max: [...max.toArray()],
    bcast: [...b.toArray()],
    gather: [...g.toArray()].map(Number),
    gatherShape: g.shape,
  });
  d.destroyProcessGroup();
} catch (err) {
  report({ error: `${(err as Error).name}: ${(err as Error).message}` });
  process.exitCode = 1;
}
