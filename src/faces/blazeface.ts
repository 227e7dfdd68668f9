/**
 * MediaPipe BlazeFace ("back camera", full-range, 256x256; V. Bazarevsky et al., arXiv:1907.05047)
 * and FaceMesh (468 points from a 192x192 crop; Y. Kartynnik et al., arXiv:1907.06724) from the
 * `@vladmandic/human` npm package, run on ferkit's libtorch engine through {@link TfjsGraph}.
 *
 * The pre- and post-processing follow Human's (src/face/blazeface.ts there), so the faces match
 * what the same model gives on tfjs: the square input is resized to 256x256 by TensorFlow's
 * bilinear rule (source = destination x in / out), scaled to [-1, 1]; each of the 896 anchors
 * (16x16 cells x 2 at stride 16, then 8x8 x 6 at stride 32) predicts a score logit, a box centre
 * offset and size, and 6 keypoint offsets in input pixels; non-maximum suppression as tfjs's; each
 * box made square around its centre; scores rounded to two decimals.
 */
import * as torch from "../torch/index.js";
import type { Tensor } from "../torch/index.js";
import { TfjsGraph } from "../models/tfjs_graph.js";

/** BlazeFace's input side in pixels. */
export const BLAZEFACE_INPUT = 256;

/** One raw detection, in pixels of the square image given to {@link BlazeFace.detect}. */
export interface BlazeDetection {
  /** Centre of the square box. */
  cx: number;
  cy: number;
  /** Side of the square box (the larger of the predicted width and height). */
  side: number;
  /** Score in [0, 1], rounded to two decimals (as Human reports it). */
  score: number;
  /** The 6 keypoints: subject's right eye, left eye, nose tip, mouth centre, right and left ear tragion. */
  keypoints: [number, number][];
}

/** The anchor centres in input pixels, in the order of the model's outputs. */
function anchors(): Float32Array {
  const out: number[] = [];
  for (const [stride, perCell] of [
    [16, 2],
    [32, 6],
  ]) {
    const cells = Math.ceil(BLAZEFACE_INPUT / stride);
    for (let y = 0; y < cells; y++)
      for (let x = 0; x < cells; x++) for (let k = 0; k < perCell; k++) out.push(stride * (x + 0.5), stride * (y + 0.5));
  }
  return Float32Array.from(out);
}

/**
 * Runs `fn` in a tidy scope on one libtorch thread and one OpenBLAS thread. libtorch picks its
 * convolution algorithm by its thread count (a 1x1 convolution goes to oneDNN on several
 * threads, to im2col + BLAS on one) and OpenBLAS's results move in the last bits with its own,
 * so fixed counts make a detector give the same faces in a pool's workers (which run that way)
 * and in the calling thread.
 */
function oneThread<T>(fn: () => T): T {
  const threads = torch.getNumThreads();
  if (threads !== 1) torch.setNumThreads(1);
  try {
    return torch.withBlasThreads(1, () => torch.tidy(fn));
  } finally {
    if (threads !== 1) torch.setNumThreads(threads);
  }
}

/**
 * Intersection over union of boxes i and j of a `[n, 4]` array of corners (x0, y0, x1, y1), each
 * box's corners put in order first, as tfjs does.
 */
function iou(b: Float32Array, i: number, j: number): number {
  const box = (k: number) => [
    Math.min(b[4 * k], b[4 * k + 2]),
    Math.min(b[4 * k + 1], b[4 * k + 3]),
    Math.max(b[4 * k], b[4 * k + 2]),
    Math.max(b[4 * k + 1], b[4 * k + 3]),
  ];
  const [p, q] = [box(i), box(j)];
  const areaI = (p[2] - p[0]) * (p[3] - p[1]);
  const areaJ = (q[2] - q[0]) * (q[3] - q[1]);
  if (areaI <= 0 || areaJ <= 0) return 0;
  const w = Math.max(Math.min(p[2], q[2]) - Math.max(p[0], q[0]), 0);
  const h = Math.max(Math.min(p[3], q[3]) - Math.max(p[1], q[1]), 0);
  return (w * h) / (areaI + areaJ - w * h);
}

/** Resize grids kept per detector: a few input sides recur (a video's frames, a folder of same-size photos). */
const GRID_CACHE = 4;

/**
 * Greedy non-maximum suppression as tfjs's `image.nonMaxSuppression`: candidates above
 * `minScore` by falling score; one is dropped when its IoU with a kept box is >= `iouThreshold`.
 * @returns kept indices, highest score first
 */
export function nonMaxSuppression(
  boxes: Float32Array,
  scores: Float32Array,
  maxOut: number,
  iouThreshold: number,
  minScore: number,
): number[] {
  const order = [...scores.keys()].filter((i) => scores[i] > minScore).sort((a, b) => scores[b] - scores[a] || a - b);
  const kept: number[] = [];
  for (const i of order) {
    if (kept.length >= maxOut) break;
    if (kept.every((j) => iou(boxes, i, j) < iouThreshold)) kept.push(i);
  }
  return kept;
}

/** BlazeFace (and optionally FaceMesh) on libtorch. Calls are synchronous; dispose to free the weights. */
export class BlazeFace {
  readonly #anchors = anchors();
  readonly #grids = new Map<number, Tensor>();

  private constructor(
    readonly detector: TfjsGraph,
    readonly mesh: TfjsGraph | null,
  ) {}

  /**
   * Loads `blazeface.json` (and `facemesh.json`) from a folder of tfjs graph models.
   * @throws Error naming the file when a model is missing, malformed or uses an unsupported op
   */
  static load(modelDir: string, withMesh: boolean): BlazeFace {
    const detector = TfjsGraph.load(`${modelDir}/blazeface.json`);
    try {
      return new BlazeFace(detector, withMesh ? TfjsGraph.load(`${modelDir}/facemesh.json`) : null);
    } catch (err) {
      detector.dispose();
      throw err;
    }
  }

  /**
   * Detects faces in a square RGB image.
   * @param pixels `side * side * 3` bytes, interleaved RGB
   * @returns at most `maxFaces` detections, highest score first
   */
  detect(pixels: Uint8Array, side: number, o: { minScore: number; iouThreshold: number; maxFaces: number }): BlazeDetection[] {
    const [logits, regressors] = oneThread(() => {
      const x = torch.fromArray(pixels, [1, side, side, 3]).float().permute(0, 3, 1, 2);
      const resized = torch.F.gridSample(x, this.#grid(side), "bilinear", "border", false);
      const input = resized.div(127.5).sub(1).contiguous("channels_last");
      const out = [...this.detector.run(input).values()].sort((a, b) => a.numel - b.numel);
      // Sorted by size: logits of the 8x8 and 16x16 grids, then their regressors; the 16x16 grid comes first.
      return [
        torch.cat([out[1].reshape(-1), out[0].reshape(-1)]).toArray(),
        torch.cat([out[3].reshape(-1, 16), out[2].reshape(-1, 16)]).toArray(),
      ];
    }) as [Float32Array, Float32Array];
    const n = logits.length;
    const scores = Float32Array.from(logits, (l) => 1 / (1 + Math.exp(-l)));
    const boxes = new Float32Array(4 * n);
    const a = this.#anchors;
    for (let i = 0; i < n; i++) {
      const [cx, cy, w, h] = [
        a[2 * i] + regressors[16 * i],
        a[2 * i + 1] + regressors[16 * i + 1],
        regressors[16 * i + 2],
        regressors[16 * i + 3],
      ];
      boxes.set([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 4 * i);
    }
    const k = side / BLAZEFACE_INPUT;
    return nonMaxSuppression(boxes, scores, o.maxFaces, o.iouThreshold, o.minScore).map((i) => ({
      cx: ((boxes[4 * i] + boxes[4 * i + 2]) / 2) * k,
      cy: ((boxes[4 * i + 1] + boxes[4 * i + 3]) / 2) * k,
      side: Math.max(boxes[4 * i + 2] - boxes[4 * i], boxes[4 * i + 3] - boxes[4 * i + 1]) * k,
      score: Math.round(100 * scores[i]) / 100,
      keypoints: Array.from({ length: 6 }, (_, p): [number, number] => [
        (a[2 * i] + regressors[16 * i + 4 + 2 * p]) * k,
        (a[2 * i + 1] + regressors[16 * i + 5 + 2 * p]) * k,
      ]),
    }));
  }

  /**
   * Runs FaceMesh on one crop.
   * @param input `192 * 192 * 3` floats in [0, 1], interleaved RGB
   * @returns the 468 points `[x, y, z]` in crop pixels (1404 values) and the face-presence score in [0, 1]
   * @throws Error when the detector was loaded without FaceMesh
   */
  meshPoints(input: Float32Array, size: number): { coords: Float32Array; score: number } {
    if (this.mesh === null) throw new Error("BlazeFace: FaceMesh was not loaded");
    const mesh = this.mesh;
    return oneThread(() => {
      const x = torch.fromArray(input, [1, size, size, 3]).permute(0, 3, 1, 2).contiguous("channels_last");
      const out = [...mesh.run(x).values()];
      const coords = out.find((t) => t.numel === 1404);
      const score = out.find((t) => t.numel === 1);
      if (!coords || !score) throw new Error(`BlazeFace: unexpected FaceMesh outputs ${out.map((t) => `[${t.shape}]`).join(" ")}`);
      return { coords: coords.toArray() as Float32Array, score: score.item() };
    });
  }

  /** The sampling grid of TensorFlow's bilinear resize (no half-pixel centres) from `side` to 256. */
  #grid(side: number): Tensor {
    let g = this.#grids.get(side);
    if (g !== undefined) {
      this.#grids.delete(side); // most recently used last
      this.#grids.set(side, g);
    } else {
      if (this.#grids.size >= GRID_CACHE) {
        const [oldest, t] = this.#grids.entries().next().value as [number, Tensor];
        this.#grids.delete(oldest);
        t.dispose();
      }
      const out = BLAZEFACE_INPUT;
      const coord = Float32Array.from({ length: out }, (_, o) => (2 * ((o * side) / out) + 1) / side - 1);
      const grid = new Float32Array(out * out * 2);
      for (let y = 0; y < out; y++)
        for (let x = 0; x < out; x++) {
          grid[2 * (y * out + x)] = coord[x];
          grid[2 * (y * out + x) + 1] = coord[y];
        }
      g = torch.keep(torch.fromArray(grid, [1, out, out, 2]));
      this.#grids.set(side, g);
    }
    return g;
  }

  /** Frees the weights and cached grids. */
  dispose(): void {
    this.detector.dispose();
    this.mesh?.dispose();
    torch.dispose([...this.#grids.values()]);
    this.#grids.clear();
  }
}
