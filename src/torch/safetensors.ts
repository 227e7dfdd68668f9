/**
 * Reading and writing safetensors files (the Hugging Face format: an 8-byte
 * little-endian header length, a JSON header, then the raw little-endian tensor
 * bytes), so a Python user opens ferkit's weights with
 * `safetensors.torch.load_file(path)` and ferkit opens theirs.
 * Spec: https://github.com/huggingface/safetensors (format section).
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { fromBytes } from "./creation.js";
import { DTYPE_BYTES, type DType, type Tensor } from "./tensor.js";

const TO_SAFETENSORS: Record<DType, string> = {
  float32: "F32",
  float64: "F64",
  float16: "F16",
  bfloat16: "BF16",
  int64: "I64",
  int32: "I32",
  int16: "I16",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};
const FROM_SAFETENSORS = new Map(Object.entries(TO_SAFETENSORS).map(([k, v]) => [v, k as DType]));
const ELEMENT_SIZE = DTYPE_BYTES;

/** Header entry of one tensor. */
interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Contents of a safetensors file. */
export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  /** The free-form string map stored under `__metadata__` (empty when absent). */
  metadata: Record<string, string>;
}

/**
 * Writes `tensors` to `path` atomically: a temporary file is written and synced, then
 * renamed over `path`, so an interrupted save leaves the previous file intact.
 * @param metadata string-to-string map stored under `__metadata__`
 * @throws Error when a name is empty or `__metadata__`, or the file cannot be written
 */
export function saveSafetensors(path: string, tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): void {
  const names = [...tensors.keys()].sort();
  // A prototype-less object, so a tensor named "__proto__" is an ordinary key.
  const header: Record<string, HeaderEntry | Record<string, string>> = Object.create(null) as Record<
    string,
    HeaderEntry | Record<string, string>
  >;
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const blobs: Buffer[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === "" || name === "__metadata__") throw new Error(`saveSafetensors: invalid tensor name '${name}'`);
    const t = tensors.get(name) as Tensor;
    const bytes = t.toBytes();
    header[name] = { dtype: TO_SAFETENSORS[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    blobs.push(bytes);
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));

  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, prefix);
    writeSync(fd, headerBytes);
    for (const b of blobs) writeSync(fd, b);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

function fail(path: string, why: string): never {
  throw new Error(`${path}: not a valid safetensors file (${why})`);
}

/**
 * Reads every tensor of a safetensors file into new tensors (the caller owns them).
 * @throws Error naming the file when it is truncated, its header is malformed, a dtype
 *   is unknown, or an entry's byte range does not match its shape
 */
export function loadSafetensors(path: string): SafetensorsFile {
  const buf = readFileSync(path);
  if (buf.length < 8) fail(path, "shorter than the 8-byte header length");
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(buf.length - 8)) fail(path, `header length ${n} exceeds the file size ${buf.length}`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + Number(n)).toString("utf8")) as Record<string, unknown>;
  } catch {
    fail(path, "header is not JSON");
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) fail(path, "header is not a JSON object");
  const dataStart = 8 + Number(n);
  const dataLength = buf.length - dataStart;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors = new Map<string, Tensor>();
  const ranges: [number, number, string][] = [];
  try {
    for (const [name, raw] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      const e = raw as HeaderEntry;
      const dtype = FROM_SAFETENSORS.get(e?.dtype);
      if (dtype === undefined) fail(path, `tensor '${name}' has unsupported dtype '${String(e?.dtype)}'`);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0))
        fail(path, `tensor '${name}' has a malformed shape`);
      const [begin, end] = Array.isArray(e.data_offsets) ? e.data_offsets : [NaN, NaN];
      if (!Number.isInteger(begin) || !Number.isInteger(end) || begin < 0 || end < begin || end > dataLength) {
        fail(path, `tensor '${name}' has data_offsets outside the data (file truncated?)`);
      }
      const expected = e.shape.reduce((a, b) => a * b, 1) * ELEMENT_SIZE[dtype];
      if (end - begin !== expected)
        fail(path, `tensor '${name}' has ${end - begin} bytes but shape [${e.shape.join(", ")}] of ${dtype} needs ${expected}`);
      ranges.push([begin, end, name]);
      tensors.set(name, fromBytes(buf.subarray(dataStart + begin, dataStart + end), e.shape, dtype));
    }
    // The format requires the byte ranges to tile the data region: no gap, no overlap.
    ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let cursor = 0;
    for (const [begin, end, name] of ranges) {
      if (begin !== cursor) fail(path, `tensor '${name}' starts at byte ${begin}, expected ${cursor} (gap or overlap in the data)`);
      cursor = end;
    }
    if (cursor !== dataLength) fail(path, `the tensors cover ${cursor} of ${dataLength} data bytes`);
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  }
  return { tensors, metadata };
}
