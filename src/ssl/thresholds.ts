/**
 * Thresholding rules: which pseudo-labels of an unlabeled batch are confident enough to
 * train on (the `mask`). Each rule is a small module that owns its state (thresholds,
 * per-sample records, running averages), saves it with {@link ThresholdRule.stateDict} and
 * restores it on resume, as GUIDE section 3 asks (USB keeps this state in hooks that the
 * algorithm reaches into; here the rule saves its own).
 *
 * Rules work on the batch's probabilities read back into JavaScript arrays: a batch has a
 * few hundred rows at most, and plain arrays keep the state JSON-serialisable and the rules
 * testable without tensors.
 */

/** The pseudo-labeling view of one unlabeled batch of U images and C classes. */
export interface MaskInput {
  /** `[U, C]` row-major class probabilities (rows sum to 1). */
  probs: Float32Array;
  /** `[U]` max probability of each row (the confidence), in [0, 1]. */
  conf: Float32Array;
  /** `[U]` argmax class of each row (the hard `pseudo_label`). */
  label: Int32Array;
  /** `[U]` index of each image in the unlabeled set. */
  index: Int32Array;
}

/** The teacher's predictions on the labeled training set (see ssl/types.ts). */
export interface LabeledStats {
  probs: Float32Array;
  labels: Int32Array;
  numClasses: number;
}

/** A thresholding rule with its own state. */
export interface ThresholdRule {
  /** Returns the mask (1 = train on this pseudo-label) and updates per-batch state. */
  mask(b: MaskInput): Uint8Array;
  /** The current per-class thresholds tau, probabilities in [0, 1]. */
  thresholds(): number[];
  /**
   * Updates per-epoch state from the teacher's predictions on the labeled training set;
   * returns the fields of the epoch's `thresholds` log event.
   */
  epochEnd(epoch: number, stats: () => LabeledStats): Record<string, unknown>;
  stateDict(): unknown;
  /** @throws Error when the state does not fit the rule (another class count or pool size) */
  loadStateDict(state: unknown): void;
}

/** conf >= tau per image; tau rounded to float32 first, as PyTorch compares a float32 tensor with a scalar. */
function maskWith(b: MaskInput, tau: (c: number) => number): Uint8Array {
  const m = new Uint8Array(b.conf.length);
  for (let i = 0; i < m.length; i++) m[i] = b.conf[i] >= Math.fround(tau(b.label[i])) ? 1 : 0;
  return m;
}

function numberArray(x: unknown, n: number, what: string): number[] {
  if (!Array.isArray(x) || x.length !== n || !x.every((v) => typeof v === "number"))
    throw new Error(`checkpoint: ${what} must be an array of ${n} numbers (was the run made with another number of classes?)`);
  return x as number[];
}

function record(state: unknown, what: string): Record<string, unknown> {
  if (typeof state !== "object" || state === null) throw new Error(`checkpoint: missing state of the ${what} threshold`);
  return state as Record<string, unknown>;
}

/** Per-class confidence of the correctly classified labeled samples (DTM and Ada-CM). */
export interface ClassConfidence {
  /** mu_c: mean max-probability over class c's correctly classified samples; null when there are none. */
  mu: (number | null)[];
  /** Number of correctly classified samples of each class. */
  correctCounts: number[];
}

/**
 * mu_c = mean of max_k p(k|x) over the samples x of class c that the model classifies
 * correctly (Li et al., Ada-CM, CVPR 2022; Yu et al., CVPR 2023 workshops).
 */
export function classConfidence(s: LabeledStats): ClassConfidence {
  const C = s.numClasses;
  const sum = new Array<number>(C).fill(0);
  const count = new Array<number>(C).fill(0);
  for (let i = 0; i < s.labels.length; i++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (s.probs[i * C + c] > s.probs[i * C + best]) best = c;
    if (best === s.labels[i]) {
      sum[best] += s.probs[i * C + best];
      count[best]++;
    }
  }
  return { mu: sum.map((v, c) => (count[c] > 0 ? v / count[c] : null)), correctCounts: count };
}

/** A fixed threshold tau for every class (FixMatch, Sohn et al. 2020). */
export class FixedThreshold implements ThresholdRule {
  /** @param tau probability in [0, 1] */
  constructor(
    readonly numClasses: number,
    readonly tau: number,
  ) {}
  mask(b: MaskInput): Uint8Array {
    return maskWith(b, () => this.tau);
  }
  thresholds(): number[] {
    return new Array<number>(this.numClasses).fill(this.tau);
  }
  epochEnd(): Record<string, unknown> {
    return { tau: this.thresholds() };
  }
  stateDict(): unknown {
    return {};
  }
  loadStateDict(): void {}
}

/** Constants of the Dynamic Threshold Module; defaults are the paper's (GUIDE section 4). */
export interface DtmOptions {
  /** Starting threshold of every class (0.8). */
  tauInit: number;
  /** A class's mu must reach this for the moving average to apply (0.8). */
  muMin: number;
  /** Threshold a class falls back to when it has no correct sample or mu < muMin (0.8). */
  tauReset: number;
  /** Weight of the old threshold in the moving average (0.9). */
  momentum: number;
  /** false keeps tau at tauInit (the fixed-threshold ablation). */
  dynamic: boolean;
}

/**
 * One threshold per class, set once per epoch from mu_c, the teacher's mean confidence on
 * the correctly classified labeled samples of class c (DTM and Ada-CM). Subclasses give the
 * starting value and the update rule; the mask, the log fields and the state are shared.
 */
abstract class ClassConfidenceThreshold implements ThresholdRule {
  protected tau: number[];

  constructor(
    readonly numClasses: number,
    tauInit: number,
    private readonly what: string,
  ) {
    this.tau = new Array<number>(numClasses).fill(tauInit);
  }
  /** The thresholds after `epoch`, from the current ones and mu (null: no correct sample). */
  protected abstract next(epoch: number, mu: (number | null)[]): number[];
  /** false: thresholds stay as they are and the labeled set is not evaluated. */
  protected get dynamic(): boolean {
    return true;
  }
  mask(b: MaskInput): Uint8Array {
    return maskWith(b, (c) => this.tau[c]);
  }
  thresholds(): number[] {
    return [...this.tau];
  }
  epochEnd(epoch: number, stats: () => LabeledStats): Record<string, unknown> {
    const before = [...this.tau];
    if (!this.dynamic) return { dynamic: false, tau_before: before, tau: before };
    const { mu, correctCounts } = classConfidence(stats());
    this.tau = this.next(epoch, mu);
    return { mu, correct_counts: correctCounts, tau_before: before, tau: [...this.tau] };
  }
  stateDict(): unknown {
    return { tau: [...this.tau] };
  }
  loadStateDict(state: unknown): void {
    this.tau = [...numberArray(record(state, this.what).tau, this.numClasses, `${this.what} tau`)];
  }
}

/**
 * The Dynamic Threshold Module (Yu et al., CVPR 2023 workshops, 5th ABAW): one threshold
 * per class, all starting at 0.8, updated once per epoch from the EMA teacher's predictions
 * on the labeled training set: tau_c <- 0.9 tau_c + 0.1 mu_c when class c has correctly
 * classified samples and mu_c >= 0.8, else tau_c <- 0.8.
 */
export class DtmThreshold extends ClassConfidenceThreshold {
  constructor(
    numClasses: number,
    readonly o: DtmOptions,
  ) {
    super(numClasses, o.tauInit, "dtm");
  }
  protected override get dynamic(): boolean {
    return this.o.dynamic;
  }
  protected next(_epoch: number, mu: (number | null)[]): number[] {
    const { muMin, momentum, tauReset } = this.o;
    return this.tau.map((t, c) => {
      const m = mu[c];
      return m !== null && m >= muMin ? momentum * t + (1 - momentum) * m : tauReset;
    });
  }
}

/**
 * DTM's constants stated for a model trained without label smoothing, mapped into the range of
 * one trained with smoothing eps over C classes: p -> p (1 - eps) + eps / C, the probability the
 * smoothed target gives a class the hard target gives p (cross-entropy with label smoothing,
 * Szegedy et al., CVPR 2016). The moving average is linear, so mapping its constants is the
 * same as running DTM on unsmoothed confidences. A variant, not the paper.
 * @param eps label smoothing in [0, 1)
 */
export function smoothedDtmOptions(o: DtmOptions, eps: number, numClasses: number): DtmOptions {
  const map = (p: number) => p * (1 - eps) + eps / numClasses;
  return { ...o, tauInit: map(o.tauInit), muMin: map(o.muMin), tauReset: map(o.tauReset) };
}

/** Bins of the confidence histograms of {@link UnlabeledQuantileThreshold} over [0, 1]. */
const QUANTILE_BINS = 1000;
/** Fewer pseudo-labels of a class in an epoch than this leave its threshold where it was. */
const QUANTILE_MIN_COUNT = 10;

/**
 * A variant of DTM (not the paper): per-class thresholds from the unlabeled images themselves.
 * Each batch is masked with the current thresholds and its confidences are counted into one
 * histogram per pseudo-label class (1000 bins over [0, 1]); after each epoch tau_c becomes the
 * `quantile` of class c's confidences in that epoch (linear within the bin), so about
 * 1 - quantile of each class's pseudo-labels pass the next epoch, whatever the teacher's
 * calibration; a class with fewer than 10 pseudo-labels keeps its threshold. All start at tauInit.
 */
export class UnlabeledQuantileThreshold implements ThresholdRule {
  private tau: number[];
  private hist: Float64Array[];

  /** @param quantile and tauInit probabilities in [0, 1] */
  constructor(
    readonly numClasses: number,
    readonly quantile: number,
    tauInit: number,
  ) {
    this.tau = new Array<number>(numClasses).fill(tauInit);
    this.hist = Array.from({ length: numClasses }, () => new Float64Array(QUANTILE_BINS));
  }
  mask(b: MaskInput): Uint8Array {
    const m = maskWith(b, (c) => this.tau[c]);
    for (let i = 0; i < b.conf.length; i++) this.hist[b.label[i]][Math.min(QUANTILE_BINS - 1, Math.floor(b.conf[i] * QUANTILE_BINS))]++;
    return m;
  }
  thresholds(): number[] {
    return [...this.tau];
  }
  /** The q-quantile of a histogram, interpolated linearly within its bin. */
  private static quantileOf(h: Float64Array, n: number, q: number): number {
    const target = q * n;
    let below = 0;
    for (let k = 0; k < h.length; k++) {
      if (h[k] > 0 && below + h[k] >= target) return (k + (target - below) / h[k]) / h.length;
      below += h[k];
    }
    return 1;
  }
  epochEnd(): Record<string, unknown> {
    const before = [...this.tau];
    const counts = this.hist.map((h) => h.reduce((a, x) => a + x, 0));
    this.tau = this.tau.map((t, c) =>
      counts[c] < QUANTILE_MIN_COUNT ? t : UnlabeledQuantileThreshold.quantileOf(this.hist[c], counts[c], this.quantile),
    );
    for (const h of this.hist) h.fill(0);
    return { quantile: this.quantile, pseudo_counts: counts, tau_before: before, tau: [...this.tau] };
  }
  stateDict(): unknown {
    return { tau: [...this.tau], hist: this.hist.map((h) => Array.from(h)) };
  }
  loadStateDict(state: unknown): void {
    const s = record(state, "unlabeled-quantile");
    const tau = numberArray(s.tau, this.numClasses, "unlabeled-quantile tau");
    if (!Array.isArray(s.hist) || s.hist.length !== this.numClasses)
      throw new Error(`checkpoint: unlabeled-quantile hist must hold ${this.numClasses} histograms`);
    this.hist = s.hist.map((h, c) => Float64Array.from(numberArray(h, QUANTILE_BINS, `unlabeled-quantile hist of class ${c}`)));
    this.tau = [...tau];
  }
}

/** Constants of Ada-CM's threshold; defaults from its reference code. */
export interface AdaCmOptions {
  /** Lowest threshold, and the value when a class has no correct sample (0.8). */
  tauMin: number;
  /** Scale of mu_c (0.97). */
  scale: number;
}

/**
 * Ada-CM's adaptive confidence margin (Li et al., CVPR 2022): after epoch e,
 * tau_c = max(tauMin, scale * mu_c * sigmoid(e)), or tauMin when class c has no correctly
 * classified labeled sample. All thresholds start at tauMin.
 */
export class AdaCmThreshold extends ClassConfidenceThreshold {
  constructor(
    numClasses: number,
    readonly o: AdaCmOptions,
  ) {
    super(numClasses, o.tauMin, "adacm");
  }
  protected next(epoch: number, mu: (number | null)[]): number[] {
    const ramp = 1 / (1 + Math.exp(-epoch));
    return mu.map((m) => (m === null ? this.o.tauMin : Math.max(this.o.tauMin, this.o.scale * m * ramp)));
  }
}

/**
 * FlexMatch's curriculum pseudo-labeling (Zhang et al., NeurIPS 2021; USB's
 * FlexMatchThresholdingHook): each unlabeled sample records its last prediction whose
 * confidence reached tau (-1 until then); sigma(c) = number of records equal to c;
 * beta(c) = sigma(c) / max(max_c sigma, number still unrecorded) during warm-up (without
 * warm-up, / max_c sigma); the mask uses tau(c) = tau * beta(c) / (2 - beta(c)) (the convex
 * mapping). As in USB, a batch is masked with the beta of the previous batches, then its
 * confident predictions are recorded.
 */
export class FlexMatchThreshold implements ThresholdRule {
  private selected: Int32Array;
  /** counts[c + 1] = number of records equal to c (counts[0]: unrecorded). */
  private counts: number[];
  private beta: number[];

  constructor(
    readonly numClasses: number,
    readonly numUnlabeled: number,
    readonly tau: number,
    readonly warmup: boolean,
  ) {
    this.selected = new Int32Array(numUnlabeled).fill(-1);
    this.counts = [numUnlabeled, ...new Array<number>(numClasses).fill(0)];
    this.beta = new Array<number>(numClasses).fill(0);
  }
  private updateBeta(): void {
    const perClass = this.counts.slice(1);
    const maxClass = Math.max(...perClass);
    if (maxClass === 0) return; // nothing recorded yet: USB leaves beta at 0
    const denom = this.warmup ? Math.max(maxClass, this.counts[0]) : maxClass;
    this.beta = perClass.map((s) => s / denom);
  }
  mask(b: MaskInput): Uint8Array {
    const m = maskWith(b, (c) => this.tau * (this.beta[c] / (2 - this.beta[c])));
    for (let i = 0; i < b.conf.length; i++) {
      if (b.conf[i] < Math.fround(this.tau)) continue;
      const idx = b.index[i];
      if (idx < 0 || idx >= this.numUnlabeled) throw new RangeError(`flexmatch: unlabeled index ${idx} outside [0, ${this.numUnlabeled})`);
      this.counts[this.selected[idx] + 1]--;
      this.selected[idx] = b.label[i];
      this.counts[b.label[i] + 1]++;
    }
    this.updateBeta();
    return m;
  }
  thresholds(): number[] {
    return this.beta.map((x) => this.tau * (x / (2 - x)));
  }
  epochEnd(): Record<string, unknown> {
    return { tau: this.thresholds(), beta: [...this.beta], unrecorded: this.counts[0] };
  }
  stateDict(): unknown {
    return { selected: Array.from(this.selected), beta: [...this.beta] };
  }
  loadStateDict(state: unknown): void {
    const s = record(state, "flexmatch");
    const selected = numberArray(s.selected, this.numUnlabeled, "flexmatch records");
    this.beta = [...numberArray(s.beta, this.numClasses, "flexmatch beta")];
    this.selected = Int32Array.from(selected);
    this.counts = [0, ...new Array<number>(this.numClasses).fill(0)];
    for (const c of this.selected) this.counts[c + 1]++;
  }
}

/**
 * FreeMatch's self-adaptive thresholds (Wang et al., ICLR 2023; USB's
 * FreeMatchThresholingHook): per batch, with momentum m (0.999),
 * tau_global <- m tau_global + (1 - m) mean(max p), p_model <- m p_model + (1 - m) mean(p),
 * label_hist <- m label_hist + (1 - m) hist(argmax p) / U; then tau(c) = tau_global *
 * p_model(c) / max p_model. All three start at 1/C as in the paper (USB starts them at 1;
 * only tau_global's start differs in effect). Updated before masking, as in USB.
 */
export class FreeMatchThreshold implements ThresholdRule {
  timeP: number;
  pModel: number[];
  labelHist: number[];

  constructor(
    readonly numClasses: number,
    readonly momentum: number,
  ) {
    this.timeP = 1 / numClasses;
    this.pModel = new Array<number>(numClasses).fill(1 / numClasses);
    this.labelHist = new Array<number>(numClasses).fill(1 / numClasses);
  }
  mask(b: MaskInput): Uint8Array {
    const C = this.numClasses;
    const U = b.conf.length;
    const m = this.momentum;
    const meanConf = b.conf.reduce((a, x) => a + x, 0) / U;
    const meanP = new Array<number>(C).fill(0);
    const hist = new Array<number>(C).fill(0);
    for (let i = 0; i < U; i++) {
      for (let c = 0; c < C; c++) meanP[c] += b.probs[i * C + c] / U;
      hist[b.label[i]]++;
    }
    this.timeP = m * this.timeP + (1 - m) * meanConf;
    this.pModel = this.pModel.map((p, c) => m * p + (1 - m) * meanP[c]);
    this.labelHist = this.labelHist.map((h, c) => m * h + (1 - m) * (hist[c] / U));
    const tau = this.thresholds();
    return maskWith(b, (c) => tau[c]);
  }
  thresholds(): number[] {
    const max = Math.max(...this.pModel);
    return this.pModel.map((p) => (this.timeP * p) / max);
  }
  epochEnd(): Record<string, unknown> {
    return { tau: this.thresholds(), tau_global: this.timeP, p_model: [...this.pModel], label_hist: [...this.labelHist] };
  }
  stateDict(): unknown {
    return { time_p: this.timeP, p_model: [...this.pModel], label_hist: [...this.labelHist] };
  }
  loadStateDict(state: unknown): void {
    const s = record(state, "freematch");
    if (typeof s.time_p !== "number") throw new Error("checkpoint: freematch time_p must be a number");
    this.timeP = s.time_p;
    this.pModel = [...numberArray(s.p_model, this.numClasses, "freematch p_model")];
    this.labelHist = [...numberArray(s.label_hist, this.numClasses, "freematch label_hist")];
  }
}
