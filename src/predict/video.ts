/**
 * Prediction on a video: frames decoded by ffmpeg one at a time, faces detected and aligned,
 * classified in batches across frames, tracked by position and appearance so a person keeps one
 * id (tracker.ts; appearance.ts; shot cuts from shots.ts), and smoothed per track
 * (the paper's majority vote and an exponential moving average). Rows come out in frame order
 * through a callback; memory is bounded by the batch and the vote window, not the video length.
 */
import { alignFaces, type AlignedFace, type DetectedFace, type Detects } from "../faces/index.js";
import { annotateFrame } from "./annotate.js";
import type { FaceClassifier } from "./classifier.js";
import { Mp4Writer, decodedSize, probeVideo, readFrames, type VideoInfo } from "./ffmpeg.js";
import { argmax, emaStep, StreamingMajorityVote } from "./smoothing.js";
import { FaceTracker } from "./tracker.js";
import type { FaceAppearance } from "./appearance.js";
import { ShotCuts } from "./shots.js";
import { facePrediction, predictOutputs, type FacePrediction } from "./images.js";
import type { CropWriter } from "./crops.js";
import type { Box, BoxEntry } from "./boxes.js";
import { alignLocated, locateBoxFaces, locateCropFace, type GivenAlign, type LocatedFace } from "./locate.js";

/**
 * One face in one frame: the fields of a photo's face (box and landmarks in pixels of the video
 * frame, `probs` for this frame alone) plus where it is and its smoothed labels.
 */
export interface VideoRow extends FacePrediction {
  frame: number;
  /** Frame time in seconds. */
  time_s: number;
  /** Track id: the same face keeps its id across frames. */
  face: number;
  /** The label after the majority vote over the track's window (Yu et al. 2023). */
  label_vote: string;
  /** The label of the exponential moving average of the track's probabilities. */
  label_ema: string;
}

/** Options of {@link predictVideo}. */
export interface VideoOptions {
  /**
   * Face descriptors that tracks are matched by as well as by position (appearance.ts), so ids
   * follow people; null or absent: by position alone, and a shot cut ends every track.
   */
  appearance?: FaceAppearance | null;
  tta?: boolean;
  /** Classify every n-th frame (default 1: all). */
  every?: number;
  /** Majority-vote window in processed frames of a track (paper: 200) and its stride (paper: 100). */
  voteWindow?: number;
  voteStride?: number;
  /** Weight of the newest frame in the probability EMA, in (0, 1] (default 0.3). */
  emaAlpha?: number;
  /** Longer frame side for detection; larger frames are scaled down by ffmpeg (default 1024 px). */
  maxSide?: number;
  /** Write an MP4 with boxes and labels (EMA-smoothed) drawn here. */
  annotate?: string;
  /** Faces per model batch (default 64). */
  batchFaces?: number;
  /**
   * Detections that may run at once (default 4): with a `DetectorPool` of n workers, at least n
   * keeps them all busy. At most 8x this many frames wait for their turn; they are still tracked
   * and reported in order.
   */
  detectAhead?: number;
  /** Keep at most this many faces per frame, the largest (by box area) first (default: all). */
  maxFaces?: number;
  /**
   * Write each face's aligned input as a PNG here (a folder, or a {@link CropWriter}), named by
   * the video, frame and track id; each row gets a `crop` field.
   */
  saveCrops?: string | CropWriter;
  /**
   * Faces given instead of detected: `"crops"` (every frame is one face crop) or boxes in the
   * video's pixels (a box with a `frame` applies to that frame, one without to every frame).
   * Rows then have `align`, and `detection_score` null where BlazeFace did not confirm the face.
   */
  given?: "crops" | readonly BoxEntry[];
  /** How given faces are aligned (default `"resize"` for crops, `"eyes"` for boxes, which uses `detector`). */
  align?: GivenAlign;
  /** Called with each row, in frame order. */
  onRow?: (row: VideoRow) => void;
  onProgress?: (frame: number, info: VideoInfo) => void;
}

/** What a video gave, besides its rows. */
export interface VideoSummary {
  file: string;
  fps: number;
  width: number;
  height: number;
  /** Frames decoded. */
  frames: number;
  /** Frames classified (every `every`-th). */
  processed: number;
  /** Rows (faces over all frames). */
  rows: number;
  tracks: number;
  /**
   * Per decoded frame, the voted label index (model classes) of the frame's largest face, or -1
   * where no face was classified: the input of the ABAW writer.
   */
  mainLabels: Int16Array;
  /**
   * Set when ffmpeg stopped early (a truncated file): the frames before it were used; or when a
   * crop could not be saved (no further crops were written).
   */
  warning?: string;
  /** With given boxes: the boxes that could not be used (outside the frame, or a frame past the video's end), once each. */
  box_errors?: { where: string; box: Box; error: string }[];
}

interface PendingFrame {
  index: number;
  time: number;
  image: { data: Uint8Array; width: number; height: number } | null;
  faces: AlignedFace[];
  /** For given faces: how each was aligned and BlazeFace's score (null when it did not confirm it). */
  given: { align: LocatedFace["align"]; score: number | null }[] | null;
  ids: number[];
  /** Index into `faces` of the largest face, or -1. */
  main: number;
}

/** Growable per-frame array of labels. */
class FrameLabels {
  private a = new Int16Array(1024).fill(-1);
  length = 0;
  set(frame: number, label: number): void {
    while (frame >= this.a.length) {
      const b = new Int16Array(this.a.length * 2).fill(-1);
      b.set(this.a);
      this.a = b;
    }
    this.a[frame] = label;
    this.length = Math.max(this.length, frame + 1);
  }
  toArray(frames: number): Int16Array {
    const out = new Int16Array(frames).fill(-1);
    out.set(this.a.subarray(0, Math.min(frames, this.length)));
    return out;
  }
}

/** Given faces of a frame, in decoded-frame pixels. */
type Located = { located: LocatedFace[] };

/**
 * Runs detection, classification, tracking and smoothing over a video.
 * @param detector finds the faces (or, with `given` and `align: "eyes"`, their eyes); may be null
 *   only with `given` and `align: "resize"`
 * @throws VideoError naming the file when it is not a readable video (before any row);
 *   RangeError on bad options; ConfigError when `saveCrops` is not a writable folder
 */
export async function predictVideo(
  file: string,
  classifier: FaceClassifier,
  detector: Detects | null,
  o: VideoOptions = {},
): Promise<VideoSummary> {
  const every = o.every ?? 1;
  const emaAlpha = o.emaAlpha ?? 0.3;
  const batchFaces = o.batchFaces ?? 64;
  if (!(Number.isInteger(every) && every >= 1)) throw new RangeError(`every must be a positive integer, got ${every}`);
  if (!(emaAlpha > 0 && emaAlpha <= 1)) throw new RangeError(`emaAlpha must be in (0, 1], got ${emaAlpha}`);
  const detectAhead = o.detectAhead ?? 4;
  if (!(Number.isInteger(detectAhead) && detectAhead >= 1))
    throw new RangeError(`detectAhead must be a positive integer, got ${detectAhead}`);
  const voteWindow = o.voteWindow ?? 200;
  const voteStride = o.voteStride ?? 100;
  new StreamingMajorityVote(voteWindow, voteStride); // validates the window options up front
  const outputs = predictOutputs(o);
  const maxFaces = outputs.maxFaces;
  const align = o.align ?? (o.given === "crops" ? "resize" : "eyes");
  const eyes = o.given === undefined || align === "eyes" ? detector : null;
  if (o.given === undefined || align === "eyes")
    if (!detector) throw new RangeError('predictVideo: a detector is needed unless the faces are given with align "resize"');
  let cropWriter = outputs.writer;

  const info = probeVideo(file);
  const dec = decodedSize(info, o.maxSide);
  const classes = classifier.classes;
  // A face may go undetected for 2 s (a person passing behind another) before its track ends
  // when tracks are also matched by appearance; by position alone, for half a second.
  const appearance = o.appearance ?? null;
  const tracker = new FaceTracker({ maxAge: Math.max(2 * every, Math.round(info.fps * (appearance ? 2 : 0.5))) });
  const shots = new ShotCuts();
  const votes = new Map<number, StreamingMajorityVote<VideoRow>>();
  const ema = new Map<number, number[]>();
  const mainLabels = new FrameLabels();
  const mainOf = new Map<number, number>(); // frame -> track id of its largest face
  const writer = o.annotate ? new Mp4Writer(o.annotate, dec.width, dec.height, info.fps) : null;
  let warning: string | undefined;
  let frames = 0;
  let processed = 0;
  let rowCount = 0;

  // Finished rows wait here until no track can still emit an earlier frame.
  let ready: VideoRow[] = [];
  const emit = (finished: { item: VideoRow; label: number }[]): void => {
    for (const { item, label } of finished) {
      item.label_vote = classes[label];
      if (mainOf.get(item.frame) === item.face) {
        mainLabels.set(item.frame, label);
        mainOf.delete(item.frame);
      }
      ready.push(item);
    }
  };
  const release = (all: boolean): void => {
    let oldest = Infinity;
    if (!all) for (const v of votes.values()) oldest = Math.min(oldest, v.oldest()?.frame ?? Infinity);
    const out = ready.filter((r) => r.frame < oldest).sort((a, b) => a.frame - b.frame || a.face - b.face);
    ready = ready.filter((r) => r.frame >= oldest);
    for (const r of out) {
      rowCount++;
      o.onRow?.(r);
    }
  };

  // Given boxes by frame (video pixels); those without a frame apply to every frame.
  const boxesAt = new Map<number, BoxEntry[]>();
  const everyFrame: BoxEntry[] = [];
  const boxErrors = new Map<BoxEntry, string>();
  if (Array.isArray(o.given))
    for (const e of o.given as readonly BoxEntry[]) {
      if (e.frame === undefined) everyFrame.push(e);
      else boxesAt.set(e.frame, [...(boxesAt.get(e.frame) ?? []), e]);
    }
  const locate = async (index: number, image: { data: Uint8Array; width: number; height: number }): Promise<Located> => {
    if (o.given === "crops") return { located: [await locateCropFace(image, eyes)] };
    const entries = [...(boxesAt.get(index) ?? []), ...everyFrame];
    const { faces, problems } = await locateBoxFaces(
      image,
      entries.map((e) => [e.box[0] / dec.scaleX, e.box[1] / dec.scaleY, e.box[2] / dec.scaleX, e.box[3] / dec.scaleY] as Box),
      eyes,
    );
    for (const p of problems)
      if (!boxErrors.has(entries[p.index]))
        boxErrors.set(
          entries[p.index],
          `box [${entries[p.index].box.join(", ")}] lies outside the ${info.width}x${info.height} frame ${index}`,
        );
    return { located: faces };
  };

  const round = (x: number, k = 1e6): number => Math.round(x * k) / k;
  const px = (v: number, axis: 0 | 1): number => v * (axis === 0 ? dec.scaleX : dec.scaleY);
  const point = (p: readonly [number, number]): [number, number] => [px(p[0], 0), px(p[1], 1)];
  let queue: PendingFrame[] = [];
  const flush = async (): Promise<void> => {
    const crops = queue.flatMap((f) => f.faces);
    const probs = classifier.classify(crops, { tta: o.tta });
    const C = classes.length;
    let k = 0;
    for (const f of queue) {
      const captions: string[] = [];
      for (const [j, face] of f.faces.entries()) {
        const row = Array.from(probs.subarray(C * k, C * ++k));
        const id = f.ids[j];
        const prev = ema.get(id);
        const s = emaStep(prev, row, emaAlpha);
        ema.set(id, s);
        const label = argmax(row);
        // In the video's pixels (frames may have been scaled for decoding).
        const inVideo = {
          box: [px(face.box[0], 0), px(face.box[1], 1), px(face.box[2], 0), px(face.box[3], 1)] as [number, number, number, number],
          leftEye: point(face.leftEye),
          rightEye: point(face.rightEye),
          score: face.score,
        };
        const given = f.given?.[j];
        const r: VideoRow = {
          frame: f.index,
          time_s: round(f.time, 1e4),
          face: id,
          ...facePrediction(given ? { ...inVideo, score: given.score } : inVideo, row, classes),
          ...(given ? { align: given.align } : {}),
          label_vote: classes[label],
          label_ema: classes[argmax(s)],
        };
        if (cropWriter)
          try {
            r.crop = await cropWriter.write(face, file, id, f.index);
          } catch (err) {
            warning ??= `${file}: ${(err as Error).message}; no further crops saved`;
            cropWriter = null;
          }
        if (j === f.main) mainOf.set(f.index, id);
        let v = votes.get(id);
        if (v === undefined) {
          v = new StreamingMajorityVote<VideoRow>(voteWindow, voteStride);
          votes.set(id, v);
        }
        emit(v.push(r, label));
        captions.push(`#${id} ${r.label_ema} ${Math.round(100 * s[argmax(s)])}%`);
      }
      if (writer && f.image) {
        const drawn = await annotateFrame(
          f.image,
          f.faces.map((face, j) => ({ box: face.box, caption: captions[j] })),
          (j) => f.ids[j],
        );
        await writer.write(drawn);
      }
    }
    queue = [];
    release(false);
  };

  type Decoded = { index: number; time: number; image: { data: Uint8Array; width: number; height: number } | null };
  // Detections started ahead of time; a failure is kept as a value and thrown when its frame's turn comes.
  const ahead: { frame: Decoded; detections: Promise<DetectedFace[] | Located | { error: unknown }> | null }[] = [];
  const handle = async (frame: Decoded, detected: DetectedFace[] | Located | { error: unknown } | null): Promise<void> => {
    if (detected !== null && "error" in detected) throw detected.error;
    let faces: AlignedFace[] = [];
    let given: PendingFrame["given"] = null;
    if (detected && frame.image && Array.isArray(detected)) {
      // Detections come largest first: --max-faces keeps the first ones.
      const kept = detected.length > maxFaces ? detected.slice(0, maxFaces) : detected;
      faces = alignFaces(frame.image, kept, { size: classifier.size, channels: classifier.channels, every: true });
    } else if (detected && frame.image && !Array.isArray(detected)) {
      let located = detected.located;
      if (located.length > maxFaces) {
        const keep = new Set([...located].sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]).slice(0, maxFaces));
        located = located.filter((l) => keep.has(l));
      }
      faces = alignLocated(frame.image, located, { size: classifier.size, channels: classifier.channels });
      given = located.map((l) => ({ align: l.align, score: l.score }));
    }
    // Shot cuts and descriptors only on frames with pixels and faces to track.
    let ids: number[] = [];
    if (detected && frame.image) {
      const { cut } = shots.next(frame.image);
      const descriptors = appearance !== null && o.given !== "crops" ? appearance.describe(frame.image, faces) : undefined;
      ids = tracker.update(
        frame.index,
        faces.map((f) => f.box),
        { descriptors, cut },
      );
    }
    for (const id of tracker.takeEnded()) {
      const v = votes.get(id);
      if (v) emit(v.flush());
      votes.delete(id);
      ema.delete(id);
    }
    let main = -1;
    faces.forEach((f, j) => (main < 0 || f.box[2] * f.box[3] > faces[main].box[2] * faces[main].box[3] ? (main = j) : 0));
    queue.push({ index: frame.index, time: frame.time, image: writer ? frame.image : null, faces, given, ids, main });
    const pendingFaces = queue.reduce((a, f) => a + f.faces.length, 0);
    if (pendingFaces >= batchFaces || queue.length >= 32) await flush();
  };
  let detecting = 0; // entries of `ahead` with a detection
  const handleOldest = async (): Promise<void> => {
    const next = ahead.shift();
    if (!next) return;
    if (next.detections) detecting--;
    await handle(next.frame, next.detections ? await next.detections : null);
  };

  try {
    for await (const frame of readFrames(file, info, { maxSide: o.maxSide, onError: (m) => (warning = `${file}: ${m}`) })) {
      frames++;
      o.onProgress?.(frame.index, info);
      const classify = frame.index % every === 0;
      if (classify) processed++;
      const detections = classify
        ? (o.given === undefined ? (detector as Detects).detect(frame.image) : locate(frame.index, frame.image)).catch(
            (error: unknown) => ({
              error,
            }),
          )
        : null;
      // A frame that is neither detected nor drawn needs no pixels while it waits.
      ahead.push({ frame: classify || writer ? frame : { ...frame, image: null }, detections });
      if (detections) detecting++;
      while (detecting >= detectAhead || ahead.length >= 8 * detectAhead) await handleOldest();
    }
    while (ahead.length > 0) await handleOldest();
    await flush();
    for (const v of votes.values()) emit(v.flush());
    votes.clear();
    release(true);
  } finally {
    if (writer) await writer.close();
  }
  if (Array.isArray(o.given))
    for (const e of o.given as readonly BoxEntry[])
      if (e.frame !== undefined && e.frame >= frames) boxErrors.set(e, `frame ${e.frame} is past the video's last frame (${frames - 1})`);
  return {
    file,
    fps: info.fps,
    width: info.width,
    height: info.height,
    frames,
    processed,
    rows: rowCount,
    tracks: tracker.count,
    mainLabels: mainLabels.toArray(frames),
    warning,
    ...(boxErrors.size > 0 ? { box_errors: [...boxErrors].map(([e, error]) => ({ where: e.where, box: e.box, error })) } : {}),
  };
}
