/**
 * Face detection with eye landmarks, on the models that ship inside the `@vladmandic/human` npm
 * package, run by ferkit's libtorch engine (the default, src/faces/blazeface.ts) or by
 * `@tensorflow/tfjs-backend-wasm` through Human (`engine: "wasm"`: single-threaded WebAssembly
 * with SIMD). Nothing is downloaded at run time: the model files are read from `node_modules`
 * (with a `file://` loader registered here for tfjs), and the `.wasm` binaries come from the
 * tfjs-backend-wasm package.
 *
 * Models:
 * - detector: MediaPipe BlazeFace, the "back camera" (full-range) 256x256 variant, which gives a
 *   box, a score and 6 keypoints (both eye centres, nose tip, mouth centre, both ear tragions).
 *   V. Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs",
 *   CVPR Workshops 2019, arXiv:1907.05047.
 * - landmark refinement (`landmarks: "mesh"`, the default): MediaPipe FaceMesh, 468 points from a
 *   192x192 crop. Here the crop is cut by this module, rotated so BlazeFace's eyes are level (Human's
 *   own pipeline only rotates beyond 11.5 degrees, estimates the angle from nose and mouth, and
 *   truncates the points to integers, which left errors of 5 to 12 degrees; see
 *   {@link FaceDetectorOptions.landmarks}). Y. Kartynnik et al., "Real-time Facial Surface Geometry from Monocular Video on Mobile GPUs",
 *   CVPR Workshops 2019, arXiv:1907.06724.
 */
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Config, FaceResult, Human as HumanInstance } from "@vladmandic/human";
import { applyAffine, eyeAngle, invertAffine, warpAffine, type Affine } from "./align.js";
import type { BlazeFace } from "./blazeface.js";

const require = createRequire(import.meta.url);

/** A decoded image: 8-bit RGB, row-major, `height * width * 3` bytes, interleaved R, G, B. */
export interface RgbImage {
  /** `height * width * 3` bytes. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/** A 2-D point `[x, y]` in continuous pixel coordinates (pixel `(c, r)` spans `[c, c+1) x [r, r+1)`). */
export type Point2 = [number, number];

/** One detected face. All coordinates are in pixels of the image passed to {@link FaceDetector.detect}. */
export interface DetectedFace {
  /** `[x, y, w, h]`: top-left corner, width and height, clipped to the image. */
  box: [number, number, number, number];
  /** Detector confidence in [0, 1] (BlazeFace's sigmoid score). */
  score: number;
  /** The *subject's* left eye centre (on the image's right in an upright, non-mirrored photo). */
  leftEye: Point2;
  /** The *subject's* right eye centre (on the image's left in an upright, non-mirrored photo). */
  rightEye: Point2;
  /**
   * All landmarks of {@link DetectedFace.landmarkSource}: for `"blazeface"` 6 points in the order
   * subject's right eye, subject's left eye, nose tip, mouth centre, right ear tragion, left ear
   * tragion; for `"mesh"` the 468 MediaPipe FaceMesh points (x, y only).
   */
  landmarks: Point2[];
  /** Which model gave the landmarks. With `landmarks: "mesh"`, faces the mesh rejects fall back to `"blazeface"`. */
  landmarkSource: "blazeface" | "mesh";
  /** FaceMesh's face-presence confidence in [0, 1] on its crop (absent with `landmarks: "blazeface"`). */
  meshScore?: number;
}

/** Options of {@link FaceDetector.create}. */
export interface FaceDetectorOptions {
  /** Minimum detector score in [0, 1] (default 0.5). */
  minScore?: number;
  /** Minimum face box side in pixels of the input image (default 20). */
  minFaceSize?: number;
  /** At most this many faces per image, the highest-scoring ones (default 20). */
  maxFaces?: number;
  /** Intersection-over-union above which overlapping detections are merged by non-maximum suppression (default 0.3). */
  iouThreshold?: number;
  /**
   * Where the eye centres come from: `"mesh"` (the default: centres of FaceMesh's 16-point eye
   * contours, FaceMesh run on a crop levelled by BlazeFace's eyes) or `"blazeface"` (the detector's
   * own eye keypoints). Measured on 40 LFW photos rotated by -25, 0 and +25 degrees (80 pairs), the
   * error of the measured roll change, median / 90th percentile / max, in degrees: `"blazeface"`
   * 1.5 / 5.3 / 16.4; `"mesh"` with 1 pass 0.6 / 2.3 / 5.1; with 2 passes 0.5 / 1.4 / 2.8 (for
   * comparison, Human's own FaceMesh pipeline: 1.0 / 4.9 / 12.1). CPU per photo on this machine:
   * 43 ms, 58 ms, 72 ms. Faces whose FaceMesh score is below `minScore` keep BlazeFace's eyes
   * (`landmarkSource: "blazeface"`).
   */
  landmarks?: "blazeface" | "mesh";
  /**
   * Grey (128) border added on every side before detection, as a fraction of the image's longer
   * side (default 0.25); the shorter side gets more, so the detector's input is square. BlazeFace was trained on faces with context around them: on tightly
   * cropped faces (UTKFace, ORL, FER2013) a 25 % border removes nearly all spurious part-of-face
   * detections and raises the true face's score (measured on 100 images per source: extra boxes
   * 132 -> 1 on UTKFace, 106 -> 4 on FER2013). The cost is that the smallest detectable face grows
   * by the same factor (1.5x). Use 0 for wide photos with small faces.
   */
  pad?: number;
  /**
   * Second detection pass for small faces (default true): on images whose longer side exceeds
   * {@link TILE_FRACTION}'s inverse times 256 px (640 px), BlazeFace also runs on overlapping
   * square tiles of 0.4 x the longer side, so a face's pixels are squashed 2.5x less than in the
   * whole-image pass. Tile detections that touch an inner tile edge are dropped, and the passes'
   * detections are merged by non-maximum suppression. Measured in docs/prediction.md ("Small
   * faces", `npm run bench:faces`): all faces from 24 px (1.9 % of a 1280x720 frame's longer
   * side), against 96 px (7.5 %) for the whole-image pass alone, at 4x its detection time.
   */
  tiles?: boolean;
  /**
   * Re-detection of faces that were small in the detector's input (default true): a face whose
   * box is under {@link REFINE_BELOW} pixels of the 256-px input is detected again on a square crop
   * of 3x its side around it, where it fills about 85 px, and takes that pass's box and keypoints.
   * Without it, BlazeFace's eye lines on faces of 24 to 64 px in a 1280x720 frame (3 to 9 px of
   * its input) were 12 to 30 degrees off (medians, `npm run bench:faces`), enough to tilt the
   * aligned crop; with it, 1.6 to 2.3 degrees.
   */
  refineSmall?: boolean;
  /** FaceMesh passes with `landmarks: "mesh"` (default 1); 2 re-runs it on a crop levelled by the first pass's eyes (more precise, 14 ms more per face). */
  meshPasses?: 1 | 2;
  /**
   * What runs the two models: `"libtorch"` (the default: ferkit's engine, through
   * {@link BlazeFace}; 1.4-1.6x faster per photo on one thread, measured on 200 LFW/UTKFace photos:
   * 13.6 against 19.5 ms) or `"wasm"` (tfjs' WebAssembly backend through `@vladmandic/human`, the
   * reference the libtorch path was checked against: the same faces on those 200 photos, eye
   * points within 0.15 px at the median and 2.2 px at the 99th percentile, where two overlapping
   * anchors score nearly alike and the other one wins).
   */
  engine?: "libtorch" | "wasm";
  /** Directory holding `blazeface.json` / `facemesh.json` and their `.bin` weights (default: the installed `@vladmandic/human/models`). */
  modelDir?: string;
  /** Directory holding `tfjs-backend-wasm*.wasm` (default: the installed `@tensorflow/tfjs-backend-wasm/dist`). */
  wasmDir?: string;
}

/** Subject-eye contour indices of MediaPipe FaceMesh (upper0 + lower0 rings). */
const MESH_LEFT_EYE = [466, 388, 387, 386, 385, 384, 398, 263, 249, 390, 373, 374, 380, 381, 382, 362];
const MESH_RIGHT_EYE = [246, 161, 160, 159, 158, 157, 173, 33, 7, 163, 144, 145, 153, 154, 155, 133];
/** BlazeFace keypoint indices: 0 is the subject's right eye, 1 the subject's left eye. */
const BLAZE_RIGHT_EYE = 0;
const BLAZE_LEFT_EYE = 1;
/** Side of a small-face tile as a fraction of the image's longer side (see {@link FaceDetectorOptions.tiles}). */
export const TILE_FRACTION = 0.4;
/** Tiles overlap by this fraction of their side, so faces up to that size lie wholly inside one. */
const TILE_OVERLAP = 0.25;
/** Faces smaller than this many pixels of BlazeFace's 256-px input are re-detected on a crop around them. */
export const REFINE_BELOW = 48;
/** Side of the re-detection crop as a multiple of the face box side. */
const REFINE_CROP = 3;
/** FaceMesh crop side as a multiple of BlazeFace's (squared) box side, as in Human and MediaPipe. */
const MESH_BOX_SCALE = 1.4;
/** FaceMesh input side in pixels. */
const MESH_INPUT = 192;

type HumanModule = { Human: new (config?: Partial<Config>) => HumanInstance };
type TfIo = {
  registerLoadRouter(router: (url: string | string[]) => unknown): void;
  getModelArtifactsForJSON(json: unknown, loadWeights: (manifest: WeightGroup[]) => Promise<[unknown[], ArrayBuffer]>): Promise<unknown>;
};
type WeightGroup = { paths: string[]; weights: unknown[] };
type TfTensor = { shape: number[]; dispose(): void; data(): Promise<Float32Array | Int32Array | Uint8Array> };
type GraphModel = { execute(input: TfTensor): TfTensor | TfTensor[]; dispose(): void };
type Tf = {
  io: TfIo;
  tensor(values: Uint8Array | Float32Array, shape: number[], dtype: string): TfTensor;
  getBackend(): string;
  loadGraphModel(url: string): Promise<GraphModel>;
};

/** Resolves the installed package directories (their `exports` maps hide the files we need). */
function packagePaths(): { humanDist: string; models: string; wasm: string } {
  const humanMain = require.resolve("@vladmandic/human"); // <pkg>/dist/human.node.js
  const humanDist = path.dirname(humanMain);
  const wasmMain = require.resolve("@tensorflow/tfjs-backend-wasm"); // <pkg>/dist/tf-backend-wasm.node.js
  return { humanDist, models: path.join(humanDist, "..", "models"), wasm: path.dirname(wasmMain) };
}

const routedTf = new WeakSet<object>();

/**
 * Makes tfjs load `file://` model URLs from disk (tfjs-core alone only knows http and browser
 * storage; tfjs-node, which would add a file system handler, cannot be installed here).
 */
function registerFileLoader(tf: Tf): void {
  if (routedTf.has(tf)) return;
  routedTf.add(tf);
  tf.io.registerLoadRouter((url) => {
    const u = Array.isArray(url) ? url[0] : url;
    if (typeof u !== "string" || !u.startsWith("file://")) return null;
    const file = decodeURIComponent(u.slice("file://".length));
    return {
      load: async () => {
        const json = JSON.parse(readFileSync(file, "utf8")) as { weightsManifest: WeightGroup[] };
        return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
          const specs: unknown[] = [];
          const parts: Buffer[] = [];
          for (const group of manifest) {
            specs.push(...group.weights);
            for (const p of group.paths) parts.push(readFileSync(path.join(path.dirname(file), p)));
          }
          const all = Buffer.concat(parts);
          return [specs, all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer];
        });
      },
    };
  });
}

/** A square region of an image that BlazeFace ran on: top-left corner and side, image pixels. */
interface Region {
  x0: number;
  y0: number;
  side: number;
}

/** BlazeFace's output for one face, in pixels of the square it ran on: 6 keypoints, box centre and side, score. */
interface RawFace {
  pts: Point2[];
  cx: number;
  cy: number;
  side: number;
  score: number;
}

/** One detection before landmark refinement: the face, its FaceMesh crop and the region it was found in. */
type Detection = (FaceWithCrop & { region: Region }) | null;

/** BlazeFace's input side in pixels (as src/faces/blazeface.ts; repeated here so the wasm engine does not load libtorch). */
const BLAZEFACE_SIDE = 256;

/**
 * The `side x side` RGB square of `image` whose top-left corner is at `(x0, y0)`, grey (128)
 * where it lies outside the image.
 */
function cutSquare(image: RgbImage, x0: number, y0: number, side: number): Uint8Array {
  const { data, width, height } = image;
  const out = new Uint8Array(side * side * 3).fill(128);
  const c0 = Math.max(0, x0);
  const c1 = Math.min(width, x0 + side);
  if (c1 <= c0) return out;
  for (let r = Math.max(0, y0); r < Math.min(height, y0 + side); r++)
    out.set(data.subarray((r * width + c0) * 3, (r * width + c1) * 3), ((r - y0) * side + (c0 - x0)) * 3);
  return out;
}

/**
 * Merges the detections of several passes: by falling score, a detection is dropped when its IoU
 * with a kept one is at least `iouThreshold` or when it lies mostly (over half its area) inside a
 * kept one. At most `maxFaces` are kept.
 */
function mergeDetections(found: Detection[], iouThreshold: number, maxFaces: number): Detection[] {
  const faces = found.filter((f): f is NonNullable<Detection> => f !== null).sort((a, b) => b.score - a.score);
  const kept: NonNullable<Detection>[] = [];
  for (const f of faces) {
    if (kept.length >= maxFaces) break;
    const clash = kept.some((k) => {
      const [ax, ay, aw, ah] = f.box;
      const [bx, by, bw, bh] = k.box;
      const iw = Math.max(0, Math.min(ax + aw, bx + bw) - Math.max(ax, bx));
      const ih = Math.max(0, Math.min(ay + ah, by + bh) - Math.max(ay, by));
      const inter = iw * ih;
      return inter / (aw * ah + bw * bh - inter) >= iouThreshold || inter > 0.5 * Math.min(aw * ah, bw * bh);
    });
    if (!clash) kept.push(f);
  }
  return kept;
}

/**
 * Converts Human's BlazeFace result on a `side x side` square to a {@link RawFace}. Human clips its
 * (square) box to the input; the unclipped square is rebuilt from the unclipped size and whichever
 * edges were not clipped.
 */
function fromBlazeFace(f: FaceResult, side: number): RawFace | null {
  if (f.mesh.length < 6) return null;
  const boxSide = Math.max(f.size[0], f.size[1]);
  const [bx, by, bw, bh] = f.box;
  const centre = (start: number, len: number) =>
    start <= 0 ? start + len - boxSide / 2 : start + len >= side ? start + boxSide / 2 : start + len / 2;
  return { pts: f.mesh.map((p) => [p[0], p[1]] as Point2), cx: centre(bx, bw), cy: centre(by, bh), side: boxSide, score: f.boxScore };
}

/** A detection with the square FaceMesh crop around it (dropped before faces are returned). */
type FaceWithCrop = DetectedFace & { crop: { cx: number; cy: number; side: number } };

/**
 * A face from BlazeFace's square box (centre and side, photo pixels, not clipped) and its 6
 * keypoints; the box is clipped to the photo.
 * @returns null when the box lies outside the photo
 */
function squareFace(
  pts: Point2[],
  cx: number,
  cy: number,
  side: number,
  score: number,
  width: number,
  height: number,
): FaceWithCrop | null {
  const x0 = Math.max(0, cx - side / 2);
  const y0 = Math.max(0, cy - side / 2);
  const w = Math.min(width, cx + side / 2) - x0;
  const h = Math.min(height, cy + side / 2) - y0;
  if (w <= 0 || h <= 0) return null;
  return {
    box: [x0, y0, w, h],
    score,
    leftEye: pts[BLAZE_LEFT_EYE],
    rightEye: pts[BLAZE_RIGHT_EYE],
    landmarks: pts,
    landmarkSource: "blazeface",
    crop: { cx, cy, side: side * MESH_BOX_SCALE },
  };
}

function mean(points: readonly (readonly number[])[], indices: readonly number[]): Point2 {
  let x = 0;
  let y = 0;
  for (const i of indices) {
    x += points[i][0];
    y += points[i][1];
  }
  return [x / indices.length, y / indices.length];
}

/**
 * Finds faces and their eye centres in RGB images. Create one with {@link FaceDetector.create}
 * (which loads the models once), call {@link FaceDetector.detect} as often as needed, then
 * {@link FaceDetector.dispose}. Calls on one detector are serialised; for parallelism use one
 * detector per worker thread (tfjs-backend-wasm runs a single thread in Node).
 *
 * Limits (`npm run bench:faces`: LFW faces pasted into a grey 1280x720 frame): the whole-image
 * pass (padded, then squashed to 256x256) finds all faces from about 7 % of the longer side; with
 * the tiles ({@link FaceDetectorOptions.tiles}) all from 24 px (1.9 %) and most at 20 px;
 * `maxSide` in {@link detectAndAlign} bounds the photo size. In-plane rotation up to 90 degrees is found and measured (45 and 90 degrees read as 45.5 and 88);
 * an upside-down face is detected but with its eyes swapped, so its crop stays upside down.
 */
export class FaceDetector {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    /** The libtorch engine's models, or null on the wasm engine. */
    private readonly torchModels: BlazeFace | null,
    /** The wasm engine's Human instance, tfjs and FaceMesh model (null on the libtorch engine). */
    private readonly human: HumanInstance | null,
    private readonly tf: Tf | null,
    private readonly mesh: GraphModel | null,
    private readonly opts: Required<Omit<FaceDetectorOptions, "modelDir" | "wasmDir">>,
  ) {}

  /**
   * Loads the wasm backend and the models from local files (no network).
   * @throws RangeError when an option is out of range; Error when the backend cannot start or a
   *   model file is missing or unreadable
   */
  static async create(options: FaceDetectorOptions = {}): Promise<FaceDetector> {
    const opts = {
      minScore: options.minScore ?? 0.5,
      minFaceSize: options.minFaceSize ?? 20,
      maxFaces: options.maxFaces ?? 20,
      iouThreshold: options.iouThreshold ?? 0.3,
      landmarks: options.landmarks ?? "mesh",
      pad: options.pad ?? 0.25,
      meshPasses: options.meshPasses ?? 1,
      engine: options.engine ?? "libtorch",
      tiles: options.tiles ?? true,
      refineSmall: options.refineSmall ?? true,
    };
    if (opts.meshPasses !== 1 && opts.meshPasses !== 2)
      throw new RangeError(`FaceDetector: meshPasses must be 1 or 2, got ${opts.meshPasses}`);
    if (!(opts.pad >= 0 && opts.pad <= 2)) throw new RangeError(`FaceDetector: pad must be in [0, 2], got ${opts.pad}`);
    if (!(opts.minScore >= 0 && opts.minScore <= 1)) throw new RangeError(`FaceDetector: minScore must be in [0, 1], got ${opts.minScore}`);
    if (!(opts.minFaceSize >= 0)) throw new RangeError(`FaceDetector: minFaceSize must be >= 0, got ${opts.minFaceSize}`);
    if (!(Number.isInteger(opts.maxFaces) && opts.maxFaces >= 1))
      throw new RangeError(`FaceDetector: maxFaces must be an integer >= 1, got ${opts.maxFaces}`);
    if (!(opts.iouThreshold > 0 && opts.iouThreshold <= 1))
      throw new RangeError(`FaceDetector: iouThreshold must be in (0, 1], got ${opts.iouThreshold}`);
    if (opts.landmarks !== "blazeface" && opts.landmarks !== "mesh")
      throw new RangeError(`FaceDetector: unknown landmarks "${String(opts.landmarks)}"`);
    if (opts.engine !== "libtorch" && opts.engine !== "wasm") throw new RangeError(`FaceDetector: unknown engine "${String(opts.engine)}"`);
    const paths = packagePaths();
    const modelDir = path.resolve(options.modelDir ?? paths.models);
    const wasmDir = path.resolve(options.wasmDir ?? paths.wasm);
    const wantMesh = opts.landmarks === "mesh";
    for (const f of ["blazeface.json", ...(wantMesh ? ["facemesh.json"] : [])]) {
      try {
        readFileSync(path.join(modelDir, f), { flag: "r" });
      } catch (err) {
        throw new Error(`FaceDetector: model file ${path.join(modelDir, f)} is not readable: ${(err as Error).message}`, { cause: err });
      }
    }
    if (opts.engine === "libtorch") {
      const { BlazeFace } = await import("./blazeface.js");
      return new FaceDetector(BlazeFace.load(modelDir, wantMesh), null, null, null, opts);
    }
    // human.node-wasm.js requires @tensorflow/tfjs-core, -converter and -backend-wasm (CommonJS).
    const { Human } = require(path.join(paths.humanDist, "human.node-wasm.js")) as HumanModule;
    // Human runs BlazeFace only; the FaceMesh stage is ours (see the module comment).
    const config: Partial<Config> = {
      backend: "wasm",
      wasmPath: wasmDir + path.sep,
      modelBasePath: "file://" + modelDir + path.sep,
      debug: false,
      async: false,
      warmup: "none",
      cacheModels: false,
      cacheSensitivity: 0,
      skipAllowed: false,
      filter: { enabled: false } as Config["filter"],
      gesture: { enabled: false },
      body: { enabled: false } as Config["body"],
      hand: { enabled: false } as Config["hand"],
      object: { enabled: false } as Config["object"],
      segmentation: { enabled: false } as Config["segmentation"],
      face: {
        enabled: true,
        detector: {
          modelPath: "blazeface.json",
          rotation: false,
          square: true,
          maxDetected: opts.maxFaces,
          minConfidence: opts.minScore,
          iouThreshold: opts.iouThreshold,
          minSize: 0,
          scale: 1,
          skipFrames: 0,
          skipTime: 0,
          return: false,
          mask: false,
        },
        mesh: { enabled: false },
        iris: { enabled: false },
        attention: { enabled: false },
        emotion: { enabled: false },
        description: { enabled: false },
        antispoof: { enabled: false },
        liveness: { enabled: false },
        gear: { enabled: false },
      } as unknown as Config["face"],
    };
    const human = new Human(config);
    const tf = human.tf as Tf;
    registerFileLoader(tf);
    await human.load();
    if (tf.getBackend() !== "wasm")
      throw new Error(`FaceDetector: the wasm backend did not start (backend: ${tf.getBackend()}); wasm files expected in ${wasmDir}`);
    const loaded = human.models.loaded();
    if (!loaded.includes("blazeface"))
      throw new Error(`FaceDetector: model blazeface failed to load from ${modelDir} (loaded: ${loaded.join(", ") || "none"})`);
    let mesh: GraphModel | null = null;
    if (wantMesh) {
      try {
        mesh = await tf.loadGraphModel("file://" + path.join(modelDir, "facemesh.json"));
      } catch (err) {
        throw new Error(`FaceDetector: model facemesh failed to load from ${modelDir}: ${(err as Error).message}`, { cause: err });
      }
    }
    return new FaceDetector(null, human, tf, mesh, opts);
  }

  /**
   * Detects faces in one image.
   * @param image 8-bit RGB pixels, `height * width * 3` bytes
   * @returns the faces, largest box area first; an empty array when there is none
   * @throws RangeError on a malformed image; Error after {@link FaceDetector.dispose} or when a model fails
   */
  detect(image: RgbImage): Promise<DetectedFace[]> {
    const run = this.queue.then(() => this.detectNow(image));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async detectNow(image: RgbImage): Promise<DetectedFace[]> {
    if (this.disposed) throw new Error("FaceDetector: used after dispose()");
    const { data, width, height } = image;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
      throw new RangeError(`FaceDetector.detect: bad image size ${width}x${height}`);
    if (!(data instanceof Uint8Array) || data.length !== width * height * 3)
      throw new RangeError(`FaceDetector.detect: expected ${width * height * 3} RGB bytes for ${width}x${height}, got ${data?.length}`);
    // A grey border on every side (see `pad`), then the short side padded up to a square.
    const side = Math.round(Math.max(width, height) * (1 + 2 * this.opts.pad));
    let found = await this.detectRegion(image, -Math.floor((side - width) / 2), -Math.floor((side - height) / 2), side);
    if (this.opts.tiles)
      found = mergeDetections([...found, ...(await this.detectTiles(image))], this.opts.iouThreshold, this.opts.maxFaces);
    if (this.opts.refineSmall) found = await Promise.all(found.map((f) => (f === null ? f : this.refineSmall(image, f))));
    const faces: DetectedFace[] = [];
    for (const face of found) {
      if (!face || face.score < this.opts.minScore || Math.min(face.box[2], face.box[3]) < this.opts.minFaceSize) continue;
      faces.push(this.opts.landmarks === "mesh" ? await this.refineWithMesh(face.crop, face, image) : face);
    }
    for (const f of faces) {
      delete (f as Partial<typeof f & { crop: unknown }>).crop;
      delete (f as Partial<typeof f & { region: unknown }>).region;
    }
    faces.sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]);
    return faces;
  }

  /**
   * BlazeFace on the `side x side` square of the image whose top-left corner is at `(x0, y0)`
   * (image pixels; the square may reach outside the image, where it is grey). Faces come back in
   * image pixels, each with the region it was found in (the detector saw it at 256 / side).
   */
  private async detectRegion(image: RgbImage, x0: number, y0: number, side: number): Promise<Detection[]> {
    const square = cutSquare(image, x0, y0, side);
    const raw = this.torchModels ? this.detectTorch(square, side) : await this.detectWasm(square, side);
    return raw.map((d) => {
      if (d === null) return null;
      const pts = d.pts.map(([x, y]) => [x + x0, y + y0] as Point2);
      const face = squareFace(pts, d.cx + x0, d.cy + y0, d.side, d.score, image.width, image.height);
      return face === null ? null : { ...face, region: { x0, y0, side } };
    });
  }

  /**
   * The tiles pass of {@link FaceDetectorOptions.tiles}: overlapping squares of `TILE_FRACTION`
   * of the longer side covering the image; a tile's faces that touch one of its edges inside the
   * image are left to the neighbouring tile or the whole-image pass.
   */
  private async detectTiles(image: RgbImage): Promise<Detection[]> {
    const { width, height } = image;
    const tile = Math.round(TILE_FRACTION * Math.max(width, height));
    if (tile <= BLAZEFACE_SIDE) return [];
    const starts = (length: number): number[] => {
      if (length <= tile) return [Math.floor((length - tile) / 2)];
      const n = Math.ceil((length - tile) / (tile * (1 - TILE_OVERLAP))) + 1;
      return Array.from({ length: n }, (_, i) => Math.round((i * (length - tile)) / (n - 1)));
    };
    const out: Detection[] = [];
    for (const y0 of starts(height))
      for (const x0 of starts(width))
        for (const d of await this.detectRegion(image, x0, y0, tile)) {
          if (d === null) continue;
          const [bx, by, bw, bh] = d.box;
          const cut = (lo: number, hi: number, start: number, limit: number) =>
            (start > 0 && lo <= start + 1) || (start + tile < limit && hi >= start + tile - 1);
          if (cut(bx, bx + bw, x0, width) || cut(by, by + bh, y0, height)) continue;
          out.push(d);
        }
    return out;
  }

  /**
   * Detects a face again on a square crop of `REFINE_CROP` times its side around it when it was
   * smaller than `REFINE_BELOW` pixels of the detector's input, and takes the crop's detection
   * nearest its centre (its box, score and keypoints); the face is kept as it was when the crop
   * finds nothing there.
   */
  private async refineSmall(image: RgbImage, face: FaceWithCrop & { region: Region }): Promise<Detection> {
    const boxSide = face.crop.side / MESH_BOX_SCALE;
    if ((boxSide * BLAZEFACE_SIDE) / face.region.side >= REFINE_BELOW) return face;
    const side = Math.round(REFINE_CROP * boxSide);
    const x0 = Math.round(face.crop.cx - side / 2);
    const y0 = Math.round(face.crop.cy - side / 2);
    let best: (FaceWithCrop & { region: Region }) | null = null;
    let bestDistance = boxSide / 2;
    for (const d of await this.detectRegion(image, x0, y0, side)) {
      if (d === null) continue;
      const distance = Math.hypot(d.crop.cx - face.crop.cx, d.crop.cy - face.crop.cy);
      if (distance < bestDistance) [best, bestDistance] = [d, distance];
    }
    return best ?? face;
  }

  /** BlazeFace on libtorch, on an exact `side x side` RGB square. */
  private detectTorch(square: Uint8Array, side: number): (RawFace | null)[] {
    const { minScore, iouThreshold, maxFaces } = this.opts;
    return (this.torchModels as BlazeFace)
      .detect(square, side, { minScore, iouThreshold, maxFaces })
      .map((d) => ({ pts: d.keypoints, cx: d.cx, cy: d.cy, side: d.side, score: d.score }));
  }

  /** BlazeFace through Human on tfjs-wasm, on an exact `side x side` RGB square (Human maps boxes right only for square inputs). */
  private async detectWasm(square: Uint8Array, side: number): Promise<(RawFace | null)[]> {
    const tf = this.tf as Tf;
    const input = tf.tensor(square, [1, side, side, 3], "int32");
    let result;
    try {
      result = await (this.human as HumanInstance).detect(input as never);
    } finally {
      input.dispose();
    }
    if (result.error) throw new Error(`FaceDetector.detect: ${result.error}`);
    return (result.face as FaceResult[]).map((f) => fromBlazeFace(f, side));
  }

  /**
   * Runs FaceMesh on a square crop centred on the face and rotated so the current eye estimate is
   * level; with `meshPasses: 2` again on a crop levelled by the first pass's eyes.
   */
  private async refineWithMesh(crop: { cx: number; cy: number; side: number }, face: DetectedFace, image: RgbImage): Promise<DetectedFace> {
    let { leftEye, rightEye } = face;
    let best: { pts: Point2[]; score: number } | null = null;
    for (let pass = 0; pass < this.opts.meshPasses; pass++) {
      const theta = (eyeAngle(leftEye, rightEye) * Math.PI) / 180;
      const [cos, sin] = [Math.cos(theta), Math.sin(theta)];
      const k = 1 / crop.side;
      // Source pixels -> unit crop coordinates: rotate by -theta about the centre, scale, shift to 0.5.
      const m: Affine = [
        cos * k,
        sin * k,
        0.5 - k * (cos * crop.cx + sin * crop.cy),
        -sin * k,
        cos * k,
        0.5 - k * (-sin * crop.cx + cos * crop.cy),
      ];
      const pixels = warpAffine(image.data, image.width, image.height, m, MESH_INPUT, 3, { border: "constant", fill: 128 });
      const input = new Float32Array(pixels.length);
      for (let i = 0; i < pixels.length; i++) input[i] = pixels[i] / 255;
      const { coords: raw, score } = await this.meshPoints(input);
      if (!(score >= this.opts.minScore)) break; // keep the previous (or BlazeFace's) landmarks
      const inv = invertAffine(m);
      const pts: Point2[] = [];
      for (let i = 0; i < 468; i++) pts.push(applyAffine(inv, [raw[3 * i] / MESH_INPUT, raw[3 * i + 1] / MESH_INPUT]));
      best = { pts, score };
      leftEye = mean(pts, MESH_LEFT_EYE);
      rightEye = mean(pts, MESH_RIGHT_EYE);
    }
    if (!best) return face;
    return { ...face, leftEye, rightEye, landmarks: best.pts, landmarkSource: "mesh", meshScore: best.score };
  }

  /** FaceMesh's 1404 coordinates (468 x [x, y, z], crop pixels) and score for a `[192, 192, 3]` crop in [0, 1]. */
  private async meshPoints(input: Float32Array): Promise<{ coords: Float32Array | Int32Array | Uint8Array; score: number }> {
    if (this.torchModels) return this.torchModels.meshPoints(input, MESH_INPUT);
    const t = (this.tf as Tf).tensor(input, [1, MESH_INPUT, MESH_INPUT, 3], "float32");
    let outputs: TfTensor[] = [];
    try {
      const out = (this.mesh as GraphModel).execute(t);
      outputs = Array.isArray(out) ? out : [out];
      const coordsT = outputs.find((o) => o.shape[o.shape.length - 1] === 1404);
      const scoreT = outputs.find((o) => o.shape[o.shape.length - 1] === 1);
      if (!coordsT || !scoreT) throw new Error(`FaceDetector: unexpected FaceMesh outputs ${outputs.map((o) => `[${o.shape}]`).join(" ")}`);
      return { coords: await coordsT.data(), score: (await scoreT.data())[0] };
    } finally {
      t.dispose();
      for (const o of outputs) o.dispose();
    }
  }

  /**
   * Releases this detector. Further {@link FaceDetector.detect} calls throw. The model weights stay
   * cached by Human at module level for the lifetime of the thread, so a later `create` is cheap.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.mesh?.dispose();
    this.torchModels?.dispose();
  }
}
