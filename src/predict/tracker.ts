/**
 * A face tracker for video. Each frame's detections are matched to the live tracks by box overlap
 * and, when descriptors are given (appearance.ts), by appearance, so that a track follows a person
 * rather than a position:
 *
 * - a pair is allowed when the boxes overlap (IoU >= `minIou`) or the face moved less than
 *   `maxJump` box sides per frame since the track was last seen (up to 4 frames), or when the two look alike
 *   (cosine >= `reidSimilarity`) wherever the face is; a pair that looks clearly different
 *   (cosine < `minSimilarity`) is never allowed, however well the boxes overlap;
 * - allowed pairs are taken greedily by score, overlap plus twice the similarity;
 * - at a shot cut (`cut: true`, a large frame difference found by the caller) positions mean
 *   nothing: only appearance matches (cosine >= `reidSimilarity`), and tracks not found again end
 *   at once;
 * - a track unseen for more than `maxAge` frames ends; unmatched detections start new tracks.
 */
import { cosine, normalize } from "./appearance.js";

/** A box `[x, y, w, h]` in pixels. */
export type Box = readonly [number, number, number, number];

/** Intersection over union of two boxes, in [0, 1]. */
export function iou(a: Box, b: Box): number {
  const x1 = Math.max(a[0], b[0]);
  const y1 = Math.max(a[1], b[1]);
  const x2 = Math.min(a[0] + a[2], b[0] + b[2]);
  const y2 = Math.min(a[1] + a[3], b[1] + b[3]);
  const inter = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
  const union = a[2] * a[3] + b[2] * b[3] - inter;
  return union > 0 ? inter / union : 0;
}

/** Options of {@link FaceTracker}. */
export interface TrackerOptions {
  /** Minimum overlap to continue a track by position, in [0, 1] (default 0.3). */
  minIou?: number;
  /** Largest move, in box sides per frame since the track was last seen, that still continues a track by position (default 0.5). */
  maxJump?: number;
  /** Frames a track may go unseen before it ends (default 15). */
  maxAge?: number;
  /** Cosine of descriptors below which a face is never matched to a track (default 0.15; different people's median is 0.24, a half-hidden face's can be 0.2). */
  minSimilarity?: number;
  /** Cosine from which a face continues a track wherever it is, and across a cut (default 0.6). */
  reidSimilarity?: number;
  /** Weight of the newest descriptor in a track's running appearance (default 0.3). */
  appearanceAlpha?: number;
}

/** What {@link FaceTracker.update} knows about a frame besides the boxes. */
export interface FrameCues {
  /** One unit-length descriptor per box (appearance.ts), or none to match by position alone. */
  descriptors?: readonly Float32Array[];
  /** This frame starts a new shot. */
  cut?: boolean;
}

interface Track {
  id: number;
  box: Box;
  lastFrame: number;
  /** Running mean of the track's descriptors (unit length), null when none was given. */
  appearance: Float32Array | null;
}

/** Assigns track ids (0, 1, 2, ... in order of appearance) to the faces of successive frames. */
export class FaceTracker {
  private tracks: Track[] = [];
  private nextId = 0;
  private ended: number[] = [];
  private readonly o: Required<TrackerOptions>;

  /** @throws RangeError on options out of range */
  constructor(o: TrackerOptions = {}) {
    this.o = {
      minIou: o.minIou ?? 0.3,
      maxJump: o.maxJump ?? 0.5,
      maxAge: o.maxAge ?? 15,
      minSimilarity: o.minSimilarity ?? 0.15,
      reidSimilarity: o.reidSimilarity ?? 0.6,
      appearanceAlpha: o.appearanceAlpha ?? 0.3,
    };
    const { minIou, maxJump, maxAge, minSimilarity, reidSimilarity, appearanceAlpha } = this.o;
    if (!(minIou >= 0 && minIou <= 1)) throw new RangeError(`FaceTracker: minIou must be in [0, 1], got ${minIou}`);
    if (!(maxJump >= 0)) throw new RangeError(`FaceTracker: maxJump must be >= 0, got ${maxJump}`);
    if (!(Number.isInteger(maxAge) && maxAge >= 0)) throw new RangeError(`FaceTracker: maxAge must be an integer >= 0, got ${maxAge}`);
    if (!(minSimilarity >= -1 && minSimilarity <= reidSimilarity && reidSimilarity <= 1))
      throw new RangeError(`FaceTracker: need -1 <= minSimilarity <= reidSimilarity <= 1, got ${minSimilarity} and ${reidSimilarity}`);
    if (!(appearanceAlpha > 0 && appearanceAlpha <= 1))
      throw new RangeError(`FaceTracker: appearanceAlpha must be in (0, 1], got ${appearanceAlpha}`);
  }

  /**
   * Matches one frame's boxes to the tracks.
   * @param frame the frame index (increasing)
   * @param boxes the faces' boxes, pixels
   * @param cues descriptors (one per box) and whether the frame starts a new shot
   * @returns the track id of each box, in the order given
   * @throws RangeError when the descriptors do not match the boxes
   */
  update(frame: number, boxes: readonly Box[], cues: FrameCues = {}): number[] {
    const { descriptors, cut = false } = cues;
    if (descriptors !== undefined && descriptors.length !== boxes.length)
      throw new RangeError(`FaceTracker.update: ${descriptors.length} descriptors for ${boxes.length} boxes`);
    this.endTracks((t) => frame - t.lastFrame > this.o.maxAge);
    const pairs: { d: number; t: number; score: number }[] = [];
    boxes.forEach((box, d) =>
      this.tracks.forEach((track, t) => {
        const desc = descriptors?.[d];
        const sim = desc !== undefined && track.appearance !== null ? cosine(desc, track.appearance) : null;
        const score = this.pairScore(box, track, frame, sim, cut);
        if (score !== null) pairs.push({ d, t, score });
      }),
    );
    pairs.sort((a, b) => b.score - a.score || a.d - b.d || a.t - b.t);
    const ids = new Array<number>(boxes.length).fill(-1);
    const matched = new Set<number>();
    for (const p of pairs) {
      if (ids[p.d] >= 0 || matched.has(p.t)) continue;
      const track = this.tracks[p.t];
      ids[p.d] = track.id;
      matched.add(p.t);
      track.box = boxes[p.d];
      track.lastFrame = frame;
      const desc = descriptors?.[p.d];
      if (desc !== undefined) track.appearance = this.blend(track.appearance, desc);
    }
    // After a cut, a track whose person was not found again belongs to the last shot.
    if (cut) this.endTracks((t) => !matched.has(this.tracks.indexOf(t)));
    boxes.forEach((box, d) => {
      if (ids[d] >= 0) return;
      ids[d] = this.nextId++;
      const desc = descriptors?.[d];
      this.tracks.push({ id: ids[d], box, lastFrame: frame, appearance: desc === undefined ? null : Float32Array.from(desc) });
    });
    return ids;
  }

  /** The score of continuing `track` with a face at `box`, or null when the pair is not allowed. */
  private pairScore(box: Box, track: Track, frame: number, sim: number | null, cut: boolean): number | null {
    const { minIou, maxJump, minSimilarity, reidSimilarity } = this.o;
    if (cut) return sim !== null && sim >= reidSimilarity ? sim : null;
    if (sim !== null && sim < minSimilarity) return null;
    const overlap = iou(box, track.box);
    const side = Math.max(box[2], box[3], track.box[2], track.box[3]);
    const moved = Math.hypot(
      box[0] + box[2] / 2 - (track.box[0] + track.box[2] / 2),
      box[1] + box[3] / 2 - (track.box[1] + track.box[3] / 2),
    );
    // The allowed move grows with the frames the track went unseen, up to 4 frames' worth.
    const near = (overlap >= minIou && overlap > 0) || moved <= maxJump * side * Math.min(4, Math.max(1, frame - track.lastFrame));
    if (!near && !(sim !== null && sim >= reidSimilarity)) return null;
    // Appearance weighs twice: where the boxes of one person and a track of another overlap (a
    // cut the frame difference missed), a same-person match (cosine about 0.9) still wins.
    return overlap + 2 * (sim ?? 0);
  }

  /** A track's appearance after one more descriptor: the unit-length running mean. */
  private blend(appearance: Float32Array | null, desc: Float32Array): Float32Array {
    if (appearance === null) return Float32Array.from(desc);
    const a = this.o.appearanceAlpha;
    return normalize(appearance.map((v, i) => (1 - a) * v + a * desc[i]));
  }

  private endTracks(ends: (t: Track) => boolean): void {
    const gone = this.tracks.filter(ends);
    if (gone.length === 0) return;
    for (const t of gone) this.ended.push(t.id);
    this.tracks = this.tracks.filter((t) => !gone.includes(t));
  }

  /** Number of tracks started so far. */
  get count(): number {
    return this.nextId;
  }

  /** Ids of the tracks that ended (unseen for more than `maxAge` frames, or lost at a cut) since the last call. */
  takeEnded(): number[] {
    const out = this.ended;
    this.ended = [];
    return out;
  }
}
