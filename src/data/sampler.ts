/**
 * Seeded sampling of dataset indices: a small deterministic PRNG whose state can be
 * checkpointed, epoch-wise shuffling, a class-balanced sampler, and the few-label
 * splits of the semi-supervised FER literature (N labeled images per class).
 * Independent of libtorch's generator, so data order does not shift when a model
 * draws a different number of random numbers.
 */

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, PractRand-tested),
 * seeded through splitmix32. State: four uint32 words.
 */
export class Rng {
  #s: Uint32Array;

  constructor(seed: number) {
    this.#s = new Uint32Array(4);
    let z = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      z = (z + 0x9e3779b9) >>> 0;
      let t = z;
      t = Math.imul(t ^ (t >>> 16), 0x21f0aaad);
      t = Math.imul(t ^ (t >>> 15), 0x735a2d97);
      this.#s[i] = (t ^ (t >>> 15)) >>> 0;
    }
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.#s;
    const t = (((s[0] + s[1]) >>> 0) + s[3]) >>> 0;
    s[3] = (s[3] + 1) >>> 0;
    s[0] = s[1] ^ (s[1] >>> 9);
    s[1] = (s[2] + (s[2] << 3)) >>> 0;
    s[2] = ((s[2] << 21) | (s[2] >>> 11)) >>> 0;
    s[2] = (s[2] + t) >>> 0;
    return t;
  }

  /** A uniform float in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** The generator's state, to store in a checkpoint. */
  getState(): number[] {
    return [...this.#s];
  }

  /** Restores a state from {@link getState}. @throws RangeError on a malformed state */
  setState(state: readonly number[]): void {
    if (state.length !== 4 || !state.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32))
      throw new RangeError("Rng.setState: need 4 uint32 words");
    this.#s = Uint32Array.from(state);
  }
}

/** Shuffles `items` in place with Fisher-Yates and returns it. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** The checkpointable state of a sampler. */
export interface SamplerState {
  rng: number[];
  order: number[];
  cursor: number;
  epoch: number;
}

/** Endless batches of indices `0..n-1`: each epoch a fresh seeded permutation, no repeats within it. */
export class RandomSampler {
  readonly rng: Rng;
  #order: number[] = [];
  #cursor = 0;
  /** Completed passes over the data. */
  epoch = 0;

  constructor(
    readonly n: number,
    seed: number,
  ) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`RandomSampler: need at least one sample, got ${n}`);
    this.rng = new Rng(seed);
    this.#reshuffle();
  }

  #reshuffle(): void {
    this.#order = shuffleInPlace(
      Array.from({ length: this.n }, (_, i) => i),
      this.rng,
    );
    this.#cursor = 0;
  }

  /** The next `size` indices; an epoch boundary inside a batch continues with the next permutation. */
  nextBatch(size: number): number[] {
    const out: number[] = [];
    while (out.length < size) {
      if (this.#cursor >= this.n) {
        this.epoch++;
        this.#reshuffle();
      }
      out.push(this.#order[this.#cursor++]);
    }
    return out;
  }

  /** State for a checkpoint. */
  state(): SamplerState {
    return { rng: this.rng.getState(), order: [...this.#order], cursor: this.#cursor, epoch: this.epoch };
  }

  /** Restores a state from {@link state}. */
  loadState(s: SamplerState): void {
    if (s.order.length !== this.n)
      throw new RangeError(`RandomSampler: state is for ${s.order.length} samples, this sampler has ${this.n}`);
    this.rng.setState(s.rng);
    this.#order = [...s.order];
    this.#cursor = s.cursor;
    this.epoch = s.epoch;
  }
}

/**
 * Draws indices with replacement so that every class is equally likely: sample i has
 * weight 1 / count(label_i). Classes without samples are ignored.
 */
export class ClassBalancedSampler {
  readonly rng: Rng;
  readonly #byClass: number[][];

  constructor(labels: readonly number[], seed: number) {
    const byClass = new Map<number, number[]>();
    labels.forEach((l, i) => {
      const list = byClass.get(l) ?? [];
      list.push(i);
      byClass.set(l, list);
    });
    if (byClass.size === 0) throw new RangeError("ClassBalancedSampler: no samples");
    this.#byClass = [...byClass.keys()].sort((a, b) => a - b).map((k) => byClass.get(k) as number[]);
    this.rng = new Rng(seed);
  }

  /** `size` indices: a uniform class, then a uniform sample of it, each time. */
  nextBatch(size: number): number[] {
    return Array.from({ length: size }, () => {
      const members = this.#byClass[this.rng.int(this.#byClass.length)];
      return members[this.rng.int(members.length)];
    });
  }
}

/**
 * The few-label protocol: for each class, `perClass` indices drawn by a seeded shuffle
 * become labeled, the others unlabeled. The same seed, labels and order give the same
 * split. A class with fewer than `perClass` samples gives all of them.
 * @returns indices into `labels`, each list ascending
 */
export function fewLabelSplit(labels: readonly number[], perClass: number, seed: number): { labeled: number[]; unlabeled: number[] } {
  if (!Number.isInteger(perClass) || perClass < 1)
    throw new RangeError(`fewLabelSplit: perClass must be a positive integer, got ${perClass}`);
  const chosen = new Set(shuffledClasses(labels, new Rng(seed)).flatMap((members) => members.slice(0, perClass)));
  const [labeled, unlabeled] = partition(labels.length, chosen);
  return { labeled, unlabeled };
}

/** Each class's indices into `labels` (classes in increasing order), each list shuffled by `rng` in turn. */
function shuffledClasses(labels: readonly number[], rng: Rng): number[][] {
  return [...new Set(labels)]
    .sort((a, b) => a - b)
    .map((c) =>
      shuffleInPlace(
        labels.flatMap((l, i) => (l === c ? [i] : [])),
        rng,
      ),
    );
}

/** Indices 0..n-1 split into those in `chosen` and the others, each ascending. */
function partition(n: number, chosen: Set<number>): [number[], number[]] {
  const inside: number[] = [];
  const outside: number[] = [];
  for (let i = 0; i < n; i++) (chosen.has(i) ? inside : outside).push(i);
  return [inside, outside];
}

/**
 * Splits labeled images into the part trained on and a held-out part, class by class: each
 * class with n >= 2 images gives max(1, round(fraction n)) of them (seeded choice), a class with
 * one image keeps it for training.
 * @param labels class index of each image
 * @param fraction in [0, 1)
 * @returns indices into `labels`, each list in increasing order
 * @throws RangeError when fraction is outside [0, 1)
 */
export function holdoutSplit(labels: readonly number[], fraction: number, seed: number): { train: number[]; heldout: number[] } {
  if (!(fraction >= 0 && fraction < 1)) throw new RangeError(`holdoutSplit: fraction must be in [0, 1), got ${fraction}`);
  const classes = fraction > 0 ? shuffledClasses(labels, new Rng(seed)) : [];
  const k = (n: number) => (n < 2 ? 0 : Math.min(n - 1, Math.max(1, Math.round(fraction * n))));
  const [heldout, train] = partition(labels.length, new Set(classes.flatMap((members) => members.slice(0, k(members.length)))));
  return { train, heldout };
}
