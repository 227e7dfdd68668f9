/**
 * What `ferkit serve` predicts with: the same pipeline as `ferkit predict` (detection on the
 * shared worker pool, eye alignment, flip averaging, tracking by appearance for videos), loaded
 * once, and the type of an uploaded file told from its bytes.
 */
import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { HEIC_REFUSED, ImageError, probeImage } from "../data/image.js";
import { sharedDetectorPool, FaceDetector, type Detects } from "../faces/index.js";
import { FaceAppearance } from "../predict/appearance.js";
import { FaceClassifier } from "../predict/classifier.js";
import { probeVideo, VideoError } from "../predict/ffmpeg.js";
import { predictImages, PREDICT_LANDMARKS, type FacePrediction, type ImagePrediction } from "../predict/images.js";
import { argmax, emaStep } from "../predict/smoothing.js";
import { ShotCuts } from "../predict/shots.js";
import { FaceTracker } from "../predict/tracker.js";
import { decodeImage } from "../faces/index.js";
import { predictVideo, type VideoRow, type VideoSummary } from "../predict/video.js";

/** What `POST /api/predict` answers for a video: `ferkit predict --json`'s line for it. */
export interface VideoPrediction {
  file: string;
  type: "video";
  rows: VideoRow[];
  summary: Omit<VideoSummary, "mainLabels"> & { seconds: number };
  /** Why the video stopped early (a truncated file); rows hold the frames before the damage. */
  error?: string;
}

/** A face of a webcam frame: the photo's fields plus its track and its smoothed probabilities. */
export interface LiveFace extends FacePrediction {
  /** Track id: the same person keeps it from frame to frame. */
  track: number;
  /** Exponential moving average of the track's probabilities (weight `EMA_ALPHA` for the newest frame). */
  probs_ema: Record<string, number>;
  label_ema: string;
}

/** Weight of the newest frame in a webcam track's probability average (as `predict --ema`'s default). */
export const EMA_ALPHA = 0.3;

/**
 * The state of one webcam stream between its frames: the tracker (by position and appearance),
 * shot cuts, and each track's probability average.
 */
export class LiveSession {
  readonly tracker = new FaceTracker({ maxAge: 10 });
  readonly shots = new ShotCuts();
  readonly ema = new Map<number, number[]>();
  frame = 0;
}

/** An uploaded file's kind, from its bytes (not its name). */
export type UploadKind = "image" | "video" | "unknown";

/** The models and detectors of a server. Dispose it to free them. */
export class Predictor {
  private constructor(
    readonly classifier: FaceClassifier,
    private readonly detector: Detects,
    private readonly ownDetector: FaceDetector | null,
    private readonly appearance: FaceAppearance,
  ) {}

  /**
   * Loads the expression model (default: the shipped one), the face-recognition model for
   * tracking and a detector (the shared pool of two workers when there are two cores).
   * @throws ConfigError naming the model file when it is not a usable ferkit model
   */
  static async load(model?: string): Promise<Predictor> {
    const classifier = FaceClassifier.load(model);
    const options = { landmarks: PREDICT_LANDMARKS };
    const own = availableParallelism() >= 2 ? null : await FaceDetector.create(options);
    return new Predictor(classifier, own ?? sharedDetectorPool(2, options), own, FaceAppearance.load());
  }

  /**
   * Whether a stored upload is an image ferkit can decode, a video ffprobe can read, or neither;
   * for an image file that cannot be used (too large or small, HEIC) the decoder's reason.
   */
  static async kind(file: string): Promise<{ kind: UploadKind; reason?: string }> {
    const bytes = await readFile(file);
    try {
      await probeImage(bytes, file);
      return { kind: "image" };
    } catch (err) {
      // Images refused for their size or format say so; anything else may still be a video.
      if (err instanceof ImageError && (err.reason !== "unreadable_image" || err.detail === HEIC_REFUSED))
        return { kind: "unknown", reason: err.detail };
    }
    try {
      return { kind: probeVideo(file).width > 0 ? "video" : "unknown" };
    } catch {
      return { kind: "unknown" };
    }
  }

  /**
   * Faces and expressions of one photo.
   * @param name what the answer's `file` field says (the uploaded file's name)
   */
  async photo(file: string, name: string): Promise<ImagePrediction> {
    const [r] = await predictImages([file], this.classifier, { tta: true, workers: 0 });
    const out = { ...r, file: name };
    if (out.error !== undefined) out.error = out.error.split(file).join(name);
    return out;
  }

  /**
   * One webcam frame: the photo's prediction, each face matched to the session's tracks (by
   * position and its face-recognition descriptor) and its probabilities averaged over the track.
   */
  async liveFrame(file: string, name: string, session: LiveSession): Promise<ImagePrediction & { faces: LiveFace[] }> {
    const r = await this.photo(file, name);
    if (r.faces.length === 0 || r.width === undefined) return { ...r, faces: [] };
    const image = await decodeImage(file, { minSide: 1 });
    const k = image.width / r.width;
    const faces = r.faces.map((f) => ({
      box: f.box.map((v) => v * k) as [number, number, number, number],
      leftEye: [f.landmarks.left_eye[0] * k, f.landmarks.left_eye[1] * k] as [number, number],
      rightEye: [f.landmarks.right_eye[0] * k, f.landmarks.right_eye[1] * k] as [number, number],
      score: f.detection_score ?? 0,
    }));
    const { cut } = session.shots.next(image);
    const ids = session.tracker.update(
      session.frame++,
      faces.map((f) => f.box),
      { descriptors: this.appearance.describe(image, faces), cut },
    );
    for (const id of session.tracker.takeEnded()) session.ema.delete(id);
    const classes = this.classifier.classes;
    return {
      ...r,
      faces: r.faces.map((f, i) => {
        const probs = classes.map((c) => f.probs[c]);
        const prev = session.ema.get(ids[i]);
        const avg = emaStep(prev, probs, EMA_ALPHA);
        session.ema.set(ids[i], avg);
        return {
          ...f,
          track: ids[i],
          probs_ema: Object.fromEntries(classes.map((c, j) => [c, Math.round(avg[j] * 1e6) / 1e6])),
          label_ema: classes[argmax(avg)],
        };
      }),
    };
  }

  /**
   * Faces, tracks and smoothed expressions of every frame of a video.
   * @param onProgress the frame being read and the video's frame count (estimated from its duration; 0 when unknown)
   */
  async video(file: string, name: string, onProgress?: (frame: number, frames: number) => void): Promise<VideoPrediction> {
    const rows: VideoRow[] = [];
    const started = performance.now();
    try {
      const s = await predictVideo(file, this.classifier, this.detector, {
        tta: true,
        appearance: this.appearance,
        onRow: (r) => rows.push(r),
        onProgress: (frame, info) => onProgress?.(frame, info.duration === null ? 0 : Math.round(info.duration * info.fps)),
      });
      const { mainLabels: _mainLabels, ...summary } = s;
      const seconds = Math.round((performance.now() - started) / 100) / 10;
      const out: VideoPrediction = { file: name, type: "video", rows, summary: { ...summary, file: name, seconds } };
      if (s.warning !== undefined) out.error = s.warning.split(file).join(name);
      return out;
    } catch (err) {
      if (!(err instanceof VideoError)) throw err;
      throw new VideoError(err.message.split(file).join(name));
    }
  }

  /** Frees the models (the shared detector pool stays with the process). */
  dispose(): void {
    this.classifier.dispose();
    this.appearance.dispose();
    this.ownDetector?.dispose();
  }
}
