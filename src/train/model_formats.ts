/**
 * Recognises model files of other tools from their first and last bytes, so that `--model` on a
 * PyTorch checkpoint, a TorchScript archive, an ONNX graph, a Keras HDF5 file or a tfjs
 * `model.json` is refused with what the file is and what ferkit accepts, instead of a
 * safetensors header error ("header length 85966670672").
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

/** How much of the start and of the end of a file is read to tell its format. */
const SNIFF_BYTES = 64 * 1024;

/** What ferkit reads, said once for every refusal. */
const ACCEPTED =
  "ferkit reads safetensors model files with a model card in their metadata, as `ferkit train` and `ferkit export` write them (docs/prediction.md, 'Model files')";

/** How a PyTorch state_dict of a ferkit architecture becomes a ferkit model file. */
const FROM_STATE_DICT =
  "a state_dict of a ferkit architecture (same parameter names) converts with Python's safetensors: save_file(state_dict, 'model.safetensors', metadata={'format': 'pt', 'ferkit_model': json.dumps(card)}), the card as docs/prediction.md describes";

function readEnds(file: string): { head: Buffer; tail: Buffer; size: number } {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(SNIFF_BYTES, size));
    readSync(fd, head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(SNIFF_BYTES, size));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    return { head, tail, size };
  } finally {
    closeSync(fd);
  }
}

/**
 * ONNX's ModelProto starts with field 1 (`ir_version`, a varint: byte 0x08) and names its
 * producer and opset domain in its first bytes ("pytorch", "tf2onnx", "ai.onnx", ...).
 */
function looksLikeOnnx(head: Buffer, file: string): boolean {
  if (head[0] !== 0x08) return false;
  const text = head.toString("latin1");
  return file.toLowerCase().endsWith(".onnx") || /onnx|pytorch|tf2onnx|skl2onnx|keras2onnx/.test(text);
}

/**
 * Says what a file is when it is another tool's model format.
 * @returns one sentence naming the format, what ferkit accepts and how to convert where that is
 *   possible; null when the file may be safetensors (or is something this does not know)
 */
export function foreignModelFormat(file: string): string | null {
  const { head, tail, size } = readEnds(file);
  if (size === 0) return "the file is empty (0 bytes)";
  // A safetensors file: an 8-byte little-endian header length that fits the file, then '{'.
  if (head.length > 8 && head[8] === 0x7b && Number(head.readBigUInt64LE(0)) <= size - 8) return null;
  const magic = head.toString("latin1", 0, 8);
  if (magic.startsWith("PK\x03\x04")) {
    // A zip: torch.save (since PyTorch 1.6) and torch.jit.save both write one; the central
    // directory at the end lists the entry names.
    const names = tail.toString("latin1") + head.toString("latin1");
    if (/constants\.pkl|\/code\/__torch__/.test(names))
      return `a TorchScript archive (torch.jit.save), which ferkit cannot run; ${ACCEPTED}; save the scripted module's state_dict() instead: ${FROM_STATE_DICT}`;
    if (/data\.pkl/.test(names)) return `a PyTorch checkpoint (torch.save zip archive); ${ACCEPTED}; ${FROM_STATE_DICT}`;
    return `a ZIP archive, not a model file; ${ACCEPTED}`;
  }
  if (head[0] === 0x80 && head[1] >= 2 && head[1] <= 5)
    return `a Python pickle (a PyTorch checkpoint in the legacy torch.save format); ${ACCEPTED}; ${FROM_STATE_DICT}`;
  if (magic === "\x89HDF\r\n\x1a\n") return `an HDF5 file (a Keras .h5 model?), which ferkit cannot read; ${ACCEPTED}`;
  if (magic.startsWith("GGUF")) return `a GGUF file (a llama.cpp model), not a face expression model; ${ACCEPTED}`;
  const text = head.toString("utf8").trimStart();
  if (text.startsWith("{") && text.includes('"modelTopology"'))
    return `a TensorFlow.js model.json, which ferkit reads only for the face-recognition backbones it knows (\`ferkit models\`); ${ACCEPTED}`;
  if (looksLikeOnnx(head, file)) return `an ONNX model, which ferkit cannot run; ${ACCEPTED}`;
  return null;
}
