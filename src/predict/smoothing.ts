/**
 * Temporal smoothing of per-frame expression predictions of one face track.
 */

/**
 * The majority vote of Yu et al. (CVPR 2023 workshops, 5th ABAW): windows of `size` frames
 * every `stride` frames; every frame in a window takes the window's most frequent label, and
 * where windows overlap the later window wins (the reference code's order). Ties go to the
 * lower class index. Applied to one video (or one face track) at a time: the reference ran it
 * across video boundaries, which mixes videos.
 * @param labels per-frame class indices (-1 = no prediction; ignored in the counts and kept)
 * @param size window length in frames (paper: 200)
 * @param stride window step in frames (paper: 100)
 * @returns the smoothed labels, same length
 * @throws RangeError when size or stride is not a positive integer
 */
export function majorityVote(labels: readonly number[], size: number, stride: number): number[] {
  if (!(Number.isInteger(size) && size >= 1)) throw new RangeError(`majorityVote: window size must be a positive integer, got ${size}`);
  if (!(Number.isInteger(stride) && stride >= 1)) throw new RangeError(`majorityVote: stride must be a positive integer, got ${stride}`);
  const out = [...labels];
  for (let start = 0; start < labels.length; start += stride) {
    const end = Math.min(start + size, labels.length);
    const best = majority(labels.slice(start, end));
    if (best >= 0) for (let i = start; i < end; i++) if (labels[i] >= 0) out[i] = best;
    if (end === labels.length) break;
  }
  return out;
}

/**
 * Exponential moving average of class probabilities along a track:
 * `s_0 = p_0`, `s_t = alpha * p_t + (1 - alpha) * s_{t-1}`.
 * @param probs per-frame probability rows (each `[C]`, in [0, 1])
 * @param alpha weight of the newest frame, in (0, 1] (1 = no smoothing)
 * @returns the smoothed rows
 * @throws RangeError when alpha is outside (0, 1]
 */
export function emaProbs(probs: readonly (readonly number[])[], alpha: number): number[][] {
  if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`emaProbs: alpha must be in (0, 1], got ${alpha}`);
  const out: number[][] = [];
  let s: number[] | undefined;
  for (const p of probs) out.push((s = emaStep(s, p, alpha)));
  return out;
}

/**
 * One step of the moving average: `alpha * probs + (1 - alpha) * previous`, or a copy of `probs`
 * when there is no previous average (a track's first frame).
 */
export function emaStep(previous: readonly number[] | undefined, probs: readonly number[], alpha: number): number[] {
  return previous === undefined ? [...probs] : probs.map((v, c) => alpha * v + (1 - alpha) * previous[c]);
}

/** Index of the largest value (the first one on ties). */
export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** The most frequent label of `labels` (ignoring -1), ties to the lower label; -1 when none. */
function majority(labels: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const l of labels) if (l >= 0) counts.set(l, (counts.get(l) ?? 0) + 1);
  let best = -1;
  let bestCount = 0;
  for (const [label, count] of counts) if (count > bestCount || (count === bestCount && label < best)) [best, bestCount] = [label, count];
  return best;
}

/**
 * {@link majorityVote} on a stream: items are pushed one at a time and come back with their
 * voted label as soon as no later window can change it (at most `size + stride` items later),
 * so a long video is smoothed with bounded memory. Gives exactly the labels of `majorityVote`
 * on the whole sequence.
 */
export class StreamingMajorityVote<T> {
  private buffer: { item: T; raw: number; voted: number }[] = [];
  /** Sequence index of `buffer[0]`. */
  private base = 0;
  private n = 0;
  private nextStart = 0;

  /** @throws RangeError when size or stride is not a positive integer */
  constructor(
    private readonly size: number,
    private readonly stride: number,
  ) {
    majorityVote([], size, stride);
  }

  /** The oldest item not yet returned, if any. */
  oldest(): T | undefined {
    return this.buffer[0]?.item;
  }

  /** Adds the next item with its raw label; returns the items whose voted label is now final, in order. */
  push(item: T, label: number): { item: T; label: number }[] {
    this.buffer.push({ item, raw: label, voted: label });
    this.n++;
    // A full window is applied only once an item after it exists: if the sequence ended
    // exactly at its end, majorityVote would stop there (flush handles that case).
    while (this.nextStart + this.size < this.n) {
      this.apply(this.nextStart, this.nextStart + this.size);
      this.nextStart += this.stride;
    }
    return this.release(Math.min(this.nextStart, this.n));
  }

  /** Ends the sequence: applies the remaining windows and returns every remaining item. */
  flush(): { item: T; label: number }[] {
    while (this.nextStart < this.n) {
      const end = Math.min(this.nextStart + this.size, this.n);
      this.apply(this.nextStart, end);
      if (end === this.n) break;
      this.nextStart += this.stride;
    }
    return this.release(this.n);
  }

  private apply(start: number, end: number): void {
    const window = this.buffer.slice(start - this.base, end - this.base);
    const best = majority(window.map((e) => e.raw));
    if (best >= 0) for (const e of window) if (e.raw >= 0) e.voted = best;
  }

  private release(upTo: number): { item: T; label: number }[] {
    const k = Math.max(0, upTo - this.base);
    const out = this.buffer.splice(0, k).map((e) => ({ item: e.item, label: e.voted }));
    this.base += k;
    return out;
  }
}
