/**
 * Per-epoch statistics of the pseudo-labels an algorithm produced: the mask rate, the class
 * histogram of the pseudo-labels that passed the mask, and, for unlabeled images whose
 * label is known but hidden, the accuracy of the pseudo-labels, overall and per
 * pseudo-label class. Plain counters, saved in checkpoints so a resumed epoch reports the
 * same figures.
 */
import type { PseudoLabels } from "../ssl/types.js";

/** The counters of one epoch. */
export interface PseudoCounters {
  /** Unlabeled images seen. */
  seen: number;
  /** Masked-in pseudo-labels per class. */
  masked: number[];
  /** All pseudo-labels per class (masked in or not). */
  all: number[];
  /** Masked-in pseudo-labels per class on images with a hidden label. */
  maskedHidden: number[];
  /** ... of which correct. */
  maskedCorrect: number[];
  /** All pseudo-labels on images with a hidden label, and how many were correct. */
  hidden: number;
  hiddenCorrect: number;
}

const ratio = (a: number, b: number): number | null => (b > 0 ? a / b : null);

/** Accumulates {@link PseudoLabels} over an epoch. */
export class PseudoStats {
  c: PseudoCounters;

  constructor(readonly numClasses: number) {
    this.c = PseudoStats.empty(numClasses);
  }

  private static empty(C: number): PseudoCounters {
    const z = (): number[] => new Array<number>(C).fill(0);
    return { seen: 0, masked: z(), all: z(), maskedHidden: z(), maskedCorrect: z(), hidden: 0, hiddenCorrect: 0 };
  }

  /**
   * Adds one batch.
   * @param hidden hidden label of each image of the batch, -1 when unknown
   */
  add(p: PseudoLabels, hidden: ArrayLike<number>): void {
    const c = this.c;
    for (let i = 0; i < p.label.length; i++) {
      const y = p.label[i];
      c.seen++;
      c.all[y]++;
      const known = hidden[i] >= 0;
      if (known) {
        c.hidden++;
        if (hidden[i] === y) c.hiddenCorrect++;
      }
      if (p.mask[i] === 1) {
        c.masked[y]++;
        if (known) {
          c.maskedHidden[y]++;
          if (hidden[i] === y) c.maskedCorrect[y]++;
        }
      }
    }
  }

  /**
   * Replaces this rank's counters by their sums over the ranks of a data-parallel run (every
   * rank calls it at the same moment, before {@link flush}).
   * @param sum element-wise sum over the ranks
   */
  sumOverRanks(sum: (values: number[]) => number[]): void {
    const c = this.c;
    const C = this.numClasses;
    const flat = sum([c.seen, c.hidden, c.hiddenCorrect, ...c.masked, ...c.all, ...c.maskedHidden, ...c.maskedCorrect]);
    const part = (k: number): number[] => flat.slice(3 + k * C, 3 + (k + 1) * C);
    this.c = {
      seen: flat[0],
      hidden: flat[1],
      hiddenCorrect: flat[2],
      masked: part(0),
      all: part(1),
      maskedHidden: part(2),
      maskedCorrect: part(3),
    };
  }

  /** The `pseudo_labels` log event of the epoch (fields as documented in docs/training.md), then resets. */
  flush(epoch: number, step: number, classes: readonly string[]): Record<string, unknown> {
    const c = this.c;
    const maskedTotal = c.masked.reduce((a, b) => a + b, 0);
    const maskedHiddenTotal = c.maskedHidden.reduce((a, b) => a + b, 0);
    const event = {
      event: "pseudo_labels",
      epoch,
      step,
      classes: [...classes],
      n: c.seen,
      mask_rate: ratio(maskedTotal, c.seen),
      histogram: [...c.masked],
      histogram_all: [...c.all],
      n_hidden: c.hidden,
      accuracy: ratio(
        c.maskedCorrect.reduce((a, b) => a + b, 0),
        maskedHiddenTotal,
      ),
      accuracy_all: ratio(c.hiddenCorrect, c.hidden),
      per_class_accuracy: c.maskedCorrect.map((k, i) => ratio(k, c.maskedHidden[i])),
      per_class_hidden: [...c.maskedHidden],
    };
    this.c = PseudoStats.empty(this.numClasses);
    return event;
  }

  /** The counters, for checkpoints. */
  state(): PseudoCounters {
    return structuredClone(this.c);
  }

  /** Restores counters from {@link state}. */
  loadState(s: PseudoCounters): void {
    this.c = structuredClone(s);
  }
}
