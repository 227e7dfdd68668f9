/**
 * A pool of worker threads, each holding one {@link FaceDetector} that runs on one core (libtorch
 * with one thread, or tfjs-backend-wasm, which runs a single thread in Node), so parallel
 * detection needs one detector per thread. The pool stays up between
 * calls (the models load once, about 0.3 s per worker) and does not keep the process alive while
 * it is idle. Photos are decoded inside the workers; video frames are sent as RGB pixels.
 */
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import * as torch from "../torch/index.js";
import { FaceDetector, type DetectedFace, type FaceDetectorOptions, type RgbImage } from "./detector.js";
import { checkAlignOptions, decodeSafely, detectDecoded, type Detects, type FileResult, type PhotoOptions } from "./photos.js";

const WORKER_KIND = "ferkit-detector-pool";

type ToWorker = { type: "file"; id: number; file: string; options: PhotoOptions } | { type: "image"; id: number; image: RgbImage };
type FromWorker =
  | { type: "fatal"; message: string }
  | { type: "file"; id: number; result?: FileResult; error?: string }
  | { type: "image"; id: number; faces?: DetectedFace[]; error?: string };

interface Slot {
  worker: Worker;
  inflight: Map<number, { resolve: (value: never) => void; reject: (err: Error) => void }>;
}

/**
 * Detection on `size` worker threads. Jobs go to the worker with the fewest jobs in flight; each
 * worker runs its detections one at a time. A photo job starts decoding as soon as its worker
 * receives it, so callers bound the jobs in flight (`detectAndAlign` keeps 3 per worker).
 *
 * A worker that cannot start (missing model files) or dies breaks the pool: every pending and
 * later call rejects with that error. Call {@link DetectorPool.close} to stop the threads.
 */
export class DetectorPool implements Detects {
  private readonly slots: Slot[] = [];
  private nextId = 0;
  private broken: Error | null = null;
  private closed = false;
  /** Jobs posted and not yet answered, over every worker. */
  private inflight = 0;
  /** This pool holds OpenBLAS at one thread (see {@link holdBlasThreads}). */
  private holding = false;
  /** The workers run libtorch (the default engine), so OpenBLAS is held at one thread while they work. */
  private readonly onLibtorch: boolean;

  /**
   * Starts the workers (they load their models in the background).
   * @param size worker threads, an integer >= 1
   * @param detector options of each worker's detector
   * @throws RangeError when `size` is not an integer >= 1
   */
  constructor(
    readonly size: number,
    readonly detector: FaceDetectorOptions = {},
  ) {
    if (!(Number.isInteger(size) && size >= 1)) throw new RangeError(`DetectorPool: size must be an integer >= 1, got ${size}`);
    this.onLibtorch = (detector.engine ?? "libtorch") === "libtorch";
    for (let i = 0; i < size; i++) {
      const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { kind: WORKER_KIND, detector } });
      const slot: Slot = { worker, inflight: new Map() };
      worker.on("message", (m: FromWorker) => {
        if (m.type === "fatal") return this.fail(new Error(`face detection worker failed to start: ${m.message}`));
        const job = slot.inflight.get(m.id);
        if (!job) return;
        slot.inflight.delete(m.id);
        if (slot.inflight.size === 0) worker.unref();
        this.jobDone();
        if (m.error !== undefined) job.reject(new Error(m.error));
        else job.resolve((m.type === "file" ? m.result : m.faces) as never);
      });
      worker.on("error", (err) => this.fail(err));
      worker.on("exit", (code) => {
        if (!this.closed) this.fail(new Error(`face detection worker exited with code ${code}`));
      });
      // After the listeners: adding a "message" listener refs the worker's port again, and a worker
      // that never got a job then kept the process alive (one detection on a 2-worker pool hung at exit).
      worker.unref();
      this.slots.push(slot);
    }
  }

  /**
   * Detects the faces in one image on a worker (the pixels are copied; `image` stays usable).
   * @returns as {@link FaceDetector.detect}: the faces, largest first
   * @throws Error when detection fails on this image, or the pool is broken or closed
   */
  detect(image: RgbImage): Promise<DetectedFace[]> {
    // Posting a view clones its whole backing buffer: send a view of exactly the image's bytes.
    const { data } = image;
    const exact = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
    return this.dispatch({ type: "image", image: { data: exact, width: image.width, height: image.height } });
  }

  /**
   * Decodes, detects and aligns one photo file on a worker.
   * @returns the file's result; an unreadable file or a photo without a face is a result, not an error
   * @throws RangeError on a bad crop size or channel count; Error naming the file when aligning its
   *   faces fails (e.g. a degenerate template), or when the pool is broken or closed
   */
  detectFile(file: string, options: PhotoOptions): Promise<FileResult> {
    try {
      checkAlignOptions(options);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.dispatch({ type: "file", file, options });
  }

  /** Stops the workers; pending calls reject. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    forgetShared(this);
    this.rejectAll(new Error("DetectorPool: closed"));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.letBlasGo(); // only once no worker can be inside a BLAS call
  }

  private dispatch<T>(job: Omit<Extract<ToWorker, { type: "file" }>, "id"> | Omit<Extract<ToWorker, { type: "image" }>, "id">): Promise<T> {
    if (this.closed) return Promise.reject(new Error("DetectorPool: used after close()"));
    if (this.broken) return Promise.reject(this.broken);
    const slot = this.slots.reduce((a, b) => (b.inflight.size < a.inflight.size ? b : a));
    const id = this.nextId++;
    // Held before the job can start, so a worker never sees OpenBLAS's own count mid-job.
    if (this.onLibtorch && !this.holding) {
      holdBlasThreads();
      this.holding = true;
    }
    return new Promise<T>((resolve, reject) => {
      try {
        slot.worker.postMessage({ ...job, id } as ToWorker);
      } catch (err) {
        reject(err as Error); // e.g. options that cannot be cloned (a function)
        this.settle();
        return;
      }
      slot.inflight.set(id, { resolve: resolve as (value: never) => void, reject });
      slot.worker.ref(); // pending work keeps the process alive
      this.inflight++;
    });
  }

  private fail(err: Error): void {
    if (this.broken || this.closed) return;
    this.broken = err;
    this.rejectAll(err);
    void Promise.allSettled(this.slots.map((s) => s.worker.terminate())).then(() => this.letBlasGo());
    forgetShared(this);
  }

  /** One job answered. */
  private jobDone(): void {
    if (this.inflight > 0) this.inflight--;
    this.settle();
  }

  /**
   * With no job left, OpenBLAS gets its threads back, a turn of the event loop later: a caller
   * that posts its next job as soon as one is answered keeps the hold instead of toggling it.
   */
  private settle(): void {
    if (this.inflight > 0 || !this.holding) return;
    setImmediate(() => {
      if (this.inflight === 0 && !this.closed && !this.broken) this.letBlasGo();
    });
  }

  private letBlasGo(): void {
    if (!this.holding) return;
    this.holding = false;
    releaseBlasThreads();
  }

  private rejectAll(err: Error): void {
    for (const s of this.slots) {
      for (const job of s.inflight.values()) job.reject(err);
      s.inflight.clear();
      s.worker.unref();
    }
    this.inflight = 0; // the hold goes once the workers have stopped (close, fail)
  }
}

/**
 * OpenBLAS has one thread pool for the whole process. Detection workers that each run libtorch
 * on one core contend for it when it has more threads (BlazeFace: 24 ms per photo per worker on
 * 2 workers, 15 ms with OpenBLAS at one thread), so it is held at one thread while any pool has
 * libtorch jobs in flight, and given back its count when the last one is answered.
 */
let blasHolds = 0;
let blasSaved = -1;

function holdBlasThreads(): void {
  if (blasHolds++ > 0) return;
  blasSaved = torch.getBlasThreads();
  if (blasSaved > 1) torch.setBlasThreads(1);
}

function releaseBlasThreads(): void {
  if (blasHolds === 0 || --blasHolds > 0) return;
  if (blasSaved > 1) torch.setBlasThreads(blasSaved);
}

const shared = new Map<string, DetectorPool>();

function forgetShared(pool: DetectorPool): void {
  for (const [key, p] of shared) if (p === pool) shared.delete(key);
}

/**
 * A pool kept for the life of the process (one per distinct size and detector options), so
 * repeated calls do not pay the workers' start-up again. It does not keep the process alive.
 * @throws RangeError when `size` is not an integer >= 1
 */
export function sharedDetectorPool(size: number, detector: FaceDetectorOptions = {}): DetectorPool {
  const key = JSON.stringify([size, detector], Object.keys(detector).sort()); // key order does not matter
  let pool = shared.get(key);
  if (!pool) {
    pool = new DetectorPool(size, detector);
    shared.set(key, pool);
  }
  return pool;
}

/** Closes every pool made by {@link sharedDetectorPool}. */
export async function closeSharedDetectorPools(): Promise<void> {
  const pools = [...shared.values()];
  shared.clear();
  await Promise.all(pools.map((p) => p.close()));
}

/** Worker side: one detector; photo jobs decode while earlier detections run. */
async function workerMain(options: FaceDetectorOptions): Promise<void> {
  const port = parentPort;
  if (!port) return;
  const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);
  // One core per worker: libtorch's OpenMP threads would otherwise follow the main thread's count.
  if ((options.engine ?? "libtorch") === "libtorch") torch.setNumThreads(1);
  const ready = FaceDetector.create(options);
  ready.catch((err: Error) => post({ type: "fatal", message: err.message }));
  port.on("message", (m: ToWorker) => {
    // Every job gets an answer, an error included, so no caller waits forever.
    if (m.type === "file") {
      const decoded = decodeSafely(m.file, m.options);
      void ready
        .then(async (detector) => detectDecoded(m.file, await decoded, detector, m.options))
        .then(
          (result) => {
            const transfer = result.status === "ok" ? result.faces.map((f) => f.pixels.buffer as ArrayBuffer) : [];
            post({ type: "file", id: m.id, result }, transfer);
          },
          (err: Error) => post({ type: "file", id: m.id, error: `${m.file}: ${err.message}` }),
        );
    } else {
      void ready
        .then((detector) => detector.detect(m.image))
        .then(
          (faces) => post({ type: "image", id: m.id, faces }),
          (err: Error) => post({ type: "image", id: m.id, error: err.message }),
        );
    }
  });
}

if (!isMainThread && (workerData as { kind?: string } | null)?.kind === WORKER_KIND) {
  void workerMain((workerData as { detector: FaceDetectorOptions }).detector);
}
