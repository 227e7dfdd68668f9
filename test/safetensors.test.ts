/**
 * safetensors: round trips, the byte-level format (so Python's safetensors reads
 * our files), rejection of malformed files, module state dicts, atomic saves.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import * as torch from "../src/torch/index.js";
import "./helpers.js"; // one intra-op thread, as every test file

const { nn } = torch;

const dir = mkdtempSync(path.join(tmpdir(), "ferkit-st-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string): string => path.join(dir, name);

interface Parsed {
  headerLength: number;
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  dataStart: number;
  bytes: Buffer;
}

/** Parses a safetensors file by hand, independently of loadSafetensors. */
function parse(p: string): Parsed {
  const bytes = readFileSync(p);
  const n = bytes.readBigUInt64LE(0);
  const headerLength = Number(n);
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Parsed["header"];
  return { headerLength, header, dataStart: 8 + headerLength, bytes };
}

/** A header for hand-made (malformed) files. */
function writeRaw(p: string, headerJson: string, data: Buffer, lengthOverride?: bigint): void {
  const h = Buffer.from(headerJson, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  writeFileSync(p, Buffer.concat([prefix, h, data]));
}

describe("round trip", () => {
  test("several dtypes and shapes, 0-d and empty tensors, and metadata", () =>
    torch.tidy(() => {
      torch.manualSeed(0);
      const tensors = new Map<string, torch.Tensor>([
        ["f32", torch.randn([2, 3])],
        ["f64", torch.randn([4], "float64")],
        ["f16", torch.tensor([0.5, -2, 1024], { dtype: "float16" })],
        ["bf16", torch.tensor([1.5, -3], { dtype: "bfloat16" })],
        ["i64", torch.fromArray(BigInt64Array.from([2n ** 60n, -5n, 0n]), [3])],
        [
          "i32",
          torch.tensor(
            [
              [1, -2],
              [3, 2147483647],
            ],
            { dtype: "int32" },
          ),
        ],
        ["i16", torch.tensor([-32768, 7], { dtype: "int16" })],
        ["i8", torch.tensor([-128, 127], { dtype: "int8" })],
        ["u8", torch.tensor([0, 255], { dtype: "uint8" })],
        ["bool", torch.tensor([true, false, true], { dtype: "bool" })],
        ["scalar", torch.tensor(3.25)],
        ["scalar_i64", torch.zeros([], "int64").add(41)],
        ["empty", torch.zeros([0])],
        ["empty_2d", torch.zeros([3, 0], "int32")],
        ["layer1.0.conv1.weight", torch.randn([2, 1, 3, 3])],
      ]);
      const metadata = { format: "pt", note: "ünïcode ✓", epoch: "3" };
      torch.saveSafetensors(file("round.safetensors"), tensors, metadata);
      const loaded = torch.loadSafetensors(file("round.safetensors"));
      assert.deepEqual(loaded.metadata, metadata);
      assert.deepEqual([...loaded.tensors.keys()].sort(), [...tensors.keys()].sort());
      for (const [name, t] of tensors) {
        const u = loaded.tensors.get(name) as torch.Tensor;
        assert.equal(u.dtype, t.dtype, `${name} dtype`);
        assert.deepEqual([...u.shape], [...t.shape], `${name} shape`);
        assert.deepEqual(u.toBytes(), t.toBytes(), `${name} bytes`);
      }
      assert.equal((loaded.tensors.get("scalar") as torch.Tensor).item(), 3.25);
      assert.equal((loaded.tensors.get("i64") as torch.Tensor).toArray()[0], 2n ** 60n);
      torch.dispose(loaded.tensors);
    }));

  test("a tensor named __proto__ is stored like any other name", () =>
    torch.tidy(() => {
      torch.saveSafetensors(file("proto.safetensors"), new Map([["__proto__", torch.tensor([1, 2])]]));
      const loaded = torch.loadSafetensors(file("proto.safetensors"));
      assert.deepEqual([...loaded.tensors.keys()], ["__proto__"]);
      assert.deepEqual(loaded.tensors.get("__proto__")?.toNumbers(), [1, 2]);
      for (const t of loaded.tensors.values()) t.dispose();
    }));

  test("no metadata gives an empty map and no __metadata__ entry", () =>
    torch.tidy(() => {
      torch.saveSafetensors(file("nometa.safetensors"), new Map([["x", torch.ones([2])]]));
      const { header } = parse(file("nometa.safetensors"));
      assert.equal("__metadata__" in header, false);
      const loaded = torch.loadSafetensors(file("nometa.safetensors"));
      assert.deepEqual(loaded.metadata, {});
      torch.dispose(loaded.tensors);
    }));

  test("non-contiguous views are written in logical (row-major) order", () =>
    torch.tidy(() => {
      const base = torch.arange(0, 6, 1, "float32").reshape(2, 3);
      torch.saveSafetensors(file("view.safetensors"), new Map([["t", base.t()]]));
      const loaded = torch.loadSafetensors(file("view.safetensors"));
      const t = loaded.tensors.get("t") as torch.Tensor;
      assert.deepEqual([...t.shape], [3, 2]);
      assert.deepEqual(t.toNumbers(), [0, 3, 1, 4, 2, 5]);
      torch.dispose(loaded.tensors);
    }));

  test("an empty tensor map and invalid names", () =>
    torch.tidy(() => {
      torch.saveSafetensors(file("nothing.safetensors"), new Map(), { a: "b" });
      const loaded = torch.loadSafetensors(file("nothing.safetensors"));
      assert.equal(loaded.tensors.size, 0);
      assert.deepEqual(loaded.metadata, { a: "b" });
      assert.throws(() => torch.saveSafetensors(file("bad.safetensors"), new Map([["", torch.ones([1])]])), /invalid tensor name/);
      assert.throws(
        () => torch.saveSafetensors(file("bad.safetensors"), new Map([["__metadata__", torch.ones([1])]])),
        /invalid tensor name/,
      );
    }));
});

describe("byte-level format", () => {
  test("header length, JSON header, alignment, contiguous offsets and little-endian data", () =>
    torch.tidy(() => {
      const known = new Float32Array([1, -2.5, 3.14159, 1e-8, -0]);
      const tensors = new Map<string, torch.Tensor>([
        ["b_known", torch.fromArray(known, [5])],
        ["a_ids", torch.fromArray(BigInt64Array.from([1n, -1n]), [2])],
        ["c_half", torch.tensor([1, 2, 3], { dtype: "float16" })],
        ["d_mask", torch.tensor([true, false, true], { dtype: "bool" })],
        ["e_scalar", torch.tensor(2, { dtype: "float64" })],
        ["f_empty", torch.zeros([0, 4])],
        ["g_u8", torch.tensor([9], { dtype: "uint8" })],
        ["h_i32", torch.tensor([-7], { dtype: "int32" })],
        ["i_bf16", torch.tensor([1], { dtype: "bfloat16" })],
      ]);
      torch.saveSafetensors(file("format.safetensors"), tensors, { format: "pt" });
      const { headerLength, header, dataStart, bytes } = parse(file("format.safetensors"));

      // 8-byte little-endian u64 header length N; bytes 8..8+N are the JSON header.
      assert.equal(Number(bytes.readBigUInt64LE(0)), headerLength);
      assert.ok(headerLength > 0 && 8 + headerLength <= bytes.length);
      assert.equal(bytes[8], "{".charCodeAt(0));
      // The data region starts 8-byte aligned (the header is padded with spaces).
      assert.equal(dataStart % 8, 0);
      assert.match(bytes.subarray(8, dataStart).toString("utf8"), /^\{.*\} *$/s);

      assert.deepEqual(header.__metadata__, { format: "pt" });
      const expectedDtype: Record<string, string> = {
        b_known: "F32",
        a_ids: "I64",
        c_half: "F16",
        d_mask: "BOOL",
        e_scalar: "F64",
        f_empty: "F32",
        g_u8: "U8",
        h_i32: "I32",
        i_bf16: "BF16",
      };
      const entries = Object.entries(header)
        .filter(([k]) => k !== "__metadata__")
        .map(([k, v]) => [k, v as { dtype: string; shape: number[]; data_offsets: [number, number] }] as const);
      assert.equal(entries.length, tensors.size);
      for (const [name, e] of entries) {
        assert.equal(e.dtype, expectedDtype[name], `${name} dtype`);
        assert.deepEqual(e.shape, [...(tensors.get(name) as torch.Tensor).shape], `${name} shape`);
        assert.equal(e.data_offsets[1] - e.data_offsets[0], (tensors.get(name) as torch.Tensor).toBytes().length, `${name} size`);
      }
      assert.deepEqual((header.e_scalar as { shape: number[] }).shape, []);

      // Offsets are contiguous from 0 and cover the data region exactly.
      const ranges = entries.map(([, e]) => e.data_offsets).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
      let end = 0;
      for (const [b, e] of ranges) {
        assert.equal(b, end, "offsets contiguous");
        assert.ok(e >= b);
        end = e;
      }
      assert.equal(end, bytes.length - dataStart, "offsets cover the data exactly");

      // The known float32 tensor's bytes are Float32Array's little-endian bytes.
      const [kb, ke] = (header.b_known as { data_offsets: [number, number] }).data_offsets;
      const raw = bytes.subarray(dataStart + kb, dataStart + ke);
      const le = Buffer.alloc(known.length * 4);
      known.forEach((v, i) => le.writeFloatLE(v, i * 4));
      assert.deepEqual([...raw], [...le]);
      const [ib, ie] = (header.a_ids as { data_offsets: [number, number] }).data_offsets;
      assert.equal(bytes.readBigInt64LE(dataStart + ib), 1n);
      assert.equal(bytes.readBigInt64LE(dataStart + ib + 8), -1n);
      assert.equal(ie - ib, 16);
      const [bb] = (header.d_mask as { data_offsets: [number, number] }).data_offsets;
      assert.deepEqual([...bytes.subarray(dataStart + bb, dataStart + bb + 3)], [1, 0, 1]);
    }));

  test("a file written by hand in the reference layout loads (as written by Python)", () =>
    torch.tidy(() => {
      const data = Buffer.alloc(12 + 8);
      [1.5, 2.5, -3].forEach((v, i) => data.writeFloatLE(v, i * 4));
      data.writeBigInt64LE(-9n, 12);
      writeRaw(
        file("python.safetensors"),
        JSON.stringify({
          __metadata__: { format: "pt" },
          w: { dtype: "F32", shape: [1, 3], data_offsets: [0, 12] },
          n: { dtype: "I64", shape: [], data_offsets: [12, 20] },
        }),
        data,
      );
      const loaded = torch.loadSafetensors(file("python.safetensors"));
      const w = loaded.tensors.get("w") as torch.Tensor;
      assert.deepEqual([...w.shape], [1, 3]);
      assert.deepEqual(w.toNumbers(), [1.5, 2.5, -3]);
      assert.equal((loaded.tensors.get("n") as torch.Tensor).item(), -9);
      assert.deepEqual(loaded.metadata, { format: "pt" });
      torch.dispose(loaded.tensors);
    }));
});

describe("malformed files raise an Error naming the file", () => {
  const good = (): Buffer => {
    torch.tidy(() => torch.saveSafetensors(file("good.safetensors"), new Map([["x", torch.arange(0, 4, 1, "float32")]])));
    return readFileSync(file("good.safetensors"));
  };
  const expectBad = (name: string, reason: RegExp): void => {
    const p = file(name);
    const before = torch.liveTensors();
    assert.throws(
      () => torch.loadSafetensors(p),
      (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.ok(e.message.includes(p), `message does not name the file: ${e.message}`);
        assert.match(e.message, reason);
        return true;
      },
    );
    assert.equal(torch.liveTensors(), before, "a failed load leaks no tensors");
  };

  test("shorter than 8 bytes", () => {
    writeFileSync(file("short.safetensors"), Buffer.from([1, 2, 3]));
    expectBad("short.safetensors", /8-byte/);
    writeFileSync(file("zero.safetensors"), Buffer.alloc(0));
    expectBad("zero.safetensors", /not a valid safetensors file/);
  });

  test("truncated data region", () => {
    const b = good();
    writeFileSync(file("truncated.safetensors"), b.subarray(0, b.length - 3));
    expectBad("truncated.safetensors", /data_offsets|truncated/);
  });

  test("truncated header", () => {
    const b = good();
    writeFileSync(file("cut-header.safetensors"), b.subarray(0, 20));
    expectBad("cut-header.safetensors", /header length/);
  });

  test("bad header length (larger than the file, and absurdly large)", () => {
    const b = Buffer.from(good());
    b.writeBigUInt64LE(BigInt(b.length), 0);
    writeFileSync(file("badlen.safetensors"), b);
    expectBad("badlen.safetensors", /header length/);
    b.writeBigUInt64LE(2n ** 64n - 1n, 0);
    writeFileSync(file("hugelen.safetensors"), b);
    expectBad("hugelen.safetensors", /header length/);
  });

  test("bad JSON and a header that is not an object", () => {
    writeRaw(file("badjson.safetensors"), '{"x": {"dtype": "F32", ', Buffer.alloc(0));
    expectBad("badjson.safetensors", /JSON/);
    writeRaw(file("array.safetensors"), "[1, 2, 3]", Buffer.alloc(0));
    expectBad("array.safetensors", /object/);
    writeRaw(file("nullheader.safetensors"), "null", Buffer.alloc(0));
    expectBad("nullheader.safetensors", /object/);
  });

  test("offsets past the end, reversed offsets, size mismatch, unknown dtype, bad shape", () => {
    const data = Buffer.alloc(16);
    writeRaw(file("past.safetensors"), JSON.stringify({ x: { dtype: "F32", shape: [8], data_offsets: [0, 32] } }), data);
    expectBad("past.safetensors", /data_offsets/);
    writeRaw(file("reversed.safetensors"), JSON.stringify({ x: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }), data);
    expectBad("reversed.safetensors", /data_offsets/);
    writeRaw(file("mismatch.safetensors"), JSON.stringify({ x: { dtype: "F32", shape: [3], data_offsets: [0, 16] } }), data);
    expectBad("mismatch.safetensors", /needs 12/);
    writeRaw(file("dtype.safetensors"), JSON.stringify({ x: { dtype: "F128", shape: [1], data_offsets: [0, 16] } }), data);
    expectBad("dtype.safetensors", /unsupported dtype 'F128'/);
    writeRaw(file("shape.safetensors"), JSON.stringify({ x: { dtype: "F32", shape: [-4], data_offsets: [0, 16] } }), data);
    expectBad("shape.safetensors", /shape/);
    writeRaw(file("noentry.safetensors"), JSON.stringify({ x: 5 }), data);
    expectBad("noentry.safetensors", /dtype/);
    // The second entry is bad: the first one, already read, must not leak.
    writeRaw(
      file("second.safetensors"),
      JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [4], data_offsets: [8, 40] } }),
      data,
    );
    expectBad("second.safetensors", /'b'/);
  });

  test("byte ranges with a gap, an overlap, or unused trailing data", () => {
    const data = Buffer.alloc(16);
    const f32 = (begin: number, end: number) => ({ dtype: "F32", shape: [(end - begin) / 4], data_offsets: [begin, end] });
    writeRaw(file("gap.safetensors"), JSON.stringify({ a: f32(0, 4), b: f32(8, 16) }), data);
    expectBad("gap.safetensors", /gap or overlap/);
    writeRaw(file("overlap.safetensors"), JSON.stringify({ a: f32(0, 8), b: f32(4, 16) }), data);
    expectBad("overlap.safetensors", /gap or overlap/);
    writeRaw(file("trailing.safetensors"), JSON.stringify({ a: f32(0, 8) }), data);
    expectBad("trailing.safetensors", /cover 8 of 16/);
  });

  test("a missing file throws an Error naming it", () => {
    const p = file("does-not-exist.safetensors");
    assert.throws(
      () => torch.loadSafetensors(p),
      (e: unknown) => e instanceof Error && e.message.includes(p),
    );
  });
});

describe("modules and atomic saves", () => {
  test("a module state_dict round trip reproduces identical outputs", () =>
    torch.tidy(() => {
      const build = (): torch.nn.Sequential =>
        new nn.Sequential(
          new nn.Conv2d(2, 4, 3, { padding: 1 }),
          new nn.BatchNorm2d(4),
          new nn.ReLU(),
          new nn.AdaptiveAvgPool2d(1),
          new nn.Flatten(),
          new nn.Linear(4, 3),
        );
      torch.manualSeed(11);
      const a = build();
      // Train-mode forward passes move the BatchNorm buffers away from their defaults.
      for (let i = 0; i < 3; i++) torch.tidy(() => a.forward(torch.randn([4, 2, 5, 5])));
      a.eval();
      torch.manualSeed(99);
      const b = build().eval();
      const x = torch.randn([3, 2, 5, 5]);
      const before = torch.tidy(() => b.forward(x).toNumbers());
      assert.notDeepEqual(
        before,
        torch.tidy(() => a.forward(x).toNumbers()),
      );

      torch.saveSafetensors(file("model.safetensors"), a.stateDict(), { format: "pt" });
      const loaded = torch.loadSafetensors(file("model.safetensors"));
      assert.deepEqual([...loaded.tensors.keys()].sort(), [...a.stateDict().keys()].sort());
      assert.equal((loaded.tensors.get("1.num_batches_tracked") as torch.Tensor).dtype, "int64");
      assert.equal((loaded.tensors.get("1.num_batches_tracked") as torch.Tensor).item(), 3);
      const r = b.loadStateDict(loaded.tensors);
      assert.deepEqual(r, { missingKeys: [], unexpectedKeys: [] });
      torch.dispose(loaded.tensors);

      const ya = torch.tidy(() => a.forward(x).toNumbers());
      const yb = torch.tidy(() => b.forward(x).toNumbers());
      assert.deepEqual(yb, ya);
      for (const [k, t] of a.stateDict()) assert.deepEqual((b.stateDict().get(k) as torch.Tensor).toBytes(), t.toBytes(), k);
      a.dispose();
      b.dispose();
    }));

  test("save is atomic: it replaces the file and leaves no .tmp- file behind", () =>
    torch.tidy(() => {
      const sub = mkdtempSync(path.join(dir, "atomic-"));
      const p = path.join(sub, "w.safetensors");
      torch.saveSafetensors(p, new Map([["x", torch.ones([3])]]));
      torch.saveSafetensors(p, new Map([["y", torch.zeros([2])]]), { v: "2" });
      assert.deepEqual(readdirSync(sub), ["w.safetensors"]);
      const loaded = torch.loadSafetensors(p);
      assert.deepEqual([...loaded.tensors.keys()], ["y"]);
      assert.deepEqual(loaded.metadata, { v: "2" });
      torch.dispose(loaded.tensors);
      // A save that fails (invalid name) leaves the previous file and no temporary file.
      assert.throws(() => torch.saveSafetensors(p, new Map([["", torch.ones([1])]])));
      assert.deepEqual(readdirSync(sub), ["w.safetensors"]);
      // A save into a missing folder fails without creating anything.
      assert.throws(() => torch.saveSafetensors(path.join(sub, "missing", "w.safetensors"), new Map([["x", torch.ones([1])]])));
      assert.deepEqual(readdirSync(sub), ["w.safetensors"]);
      assert.ok(!readdirSync(dir).some((f) => f.includes(".tmp-")));
    }));
});
