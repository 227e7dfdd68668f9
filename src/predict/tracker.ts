/**
 * A simple face tracker for video: each frame's detections are matched to the live tracks by
 * box overlap (greedy, highest intersection-over-union first), so a face keeps its id while it
 * moves; unmatched detections start new tracks, and tracks unseen for `maxAge` frames end.
 */

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
  /** Minimum overlap to continue a track, in [0, 1] (default 0.3). */
  minIou?: number;
  /** Frames a track may go unseen before it ends (default 15). */
  maxAge?: number;
}

/** Assigns track ids (0, 1, 2, ... in order of appearance) to the faces of successive frames. */
export class FaceTracker {
  private tracks: { id: number; box: Box; lastFrame: number }[] = [];
  private nextId = 0;
  private ended: number[] = [];
  private readonly minIou: number;
  private readonly maxAge: number;

  /** @throws RangeError on options out of range */
  constructor(o: TrackerOptions = {}) {
    this.minIou = o.minIou ?? 0.3;
    this.maxAge = o.maxAge ?? 15;
    if (!(this.minIou >= 0 && this.minIou <= 1)) throw new RangeError(`FaceTracker: minIou must be in [0, 1], got ${this.minIou}`);
    if (!(Number.isInteger(this.maxAge) && this.maxAge >= 0))
      throw new RangeError(`FaceTracker: maxAge must be an integer >= 0, got ${this.maxAge}`);
  }

  /**
   * Matches one frame's boxes to the tracks.
   * @param frame the frame index (increasing)
   * @returns the track id of each box, in the order given
   */
  update(frame: number, boxes: readonly Box[]): number[] {
    for (const t of this.tracks) if (frame - t.lastFrame > this.maxAge) this.ended.push(t.id);
    this.tracks = this.tracks.filter((t) => frame - t.lastFrame <= this.maxAge);
    const pairs: { d: number; t: number; overlap: number }[] = [];
    boxes.forEach((b, d) =>
      this.tracks.forEach((tr, t) => {
        const overlap = iou(b, tr.box);
        if (overlap >= this.minIou && overlap > 0) pairs.push({ d, t, overlap });
      }),
    );
    pairs.sort((a, b) => b.overlap - a.overlap);
    const ids = new Array<number>(boxes.length).fill(-1);
    const usedTrack = new Set<number>();
    for (const p of pairs) {
      if (ids[p.d] >= 0 || usedTrack.has(p.t)) continue;
      ids[p.d] = this.tracks[p.t].id;
      usedTrack.add(p.t);
      this.tracks[p.t].box = boxes[p.d];
      this.tracks[p.t].lastFrame = frame;
    }
    boxes.forEach((b, d) => {
      if (ids[d] >= 0) return;
      ids[d] = this.nextId++;
      this.tracks.push({ id: ids[d], box: b, lastFrame: frame });
    });
    return ids;
  }

  /** Number of tracks started so far. */
  get count(): number {
    return this.nextId;
  }

  /** Ids of the tracks that ended (unseen for more than `maxAge` frames) since the last call. */
  takeEnded(): number[] {
    const out = this.ended;
    this.ended = [];
    return out;
  }
}
