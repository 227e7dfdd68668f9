/**
 * Classification metrics of the FER literature: accuracy, per-class precision /
 * recall / F1, macro-F1 (the ABAW expression metric) and the confusion matrix.
 * Definitions as in scikit-learn's `precision_recall_fscore_support` with
 * `zero_division=0`.
 */

/** Precision, recall and F1 of one class (all in [0, 1]) and its number of true samples. */
export interface ClassScores {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

/** Metrics of a set of predictions. */
export interface ClassificationReport {
  /** Fraction of correct predictions, in [0, 1]. */
  accuracy: number;
  /** Unweighted mean of the per-class F1 over all classes, in [0, 1]. */
  macroF1: number;
  perClass: ClassScores[];
  /** `confusion[t][p]`: samples of true class t predicted as p. */
  confusion: number[][];
  n: number;
}

/**
 * The confusion matrix `[numClasses][numClasses]` (rows = true class).
 * @throws RangeError when a label is outside `0 .. numClasses-1` or the lengths differ
 */
export function confusionMatrix(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, numClasses: number): number[][] {
  if (yTrue.length !== yPred.length) throw new RangeError(`confusionMatrix: ${yTrue.length} labels but ${yPred.length} predictions`);
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < yTrue.length; i++) {
    const t = yTrue[i];
    const p = yPred[i];
    if (!(t >= 0 && t < numClasses && p >= 0 && p < numClasses) || !Number.isInteger(t) || !Number.isInteger(p)) {
      throw new RangeError(`confusionMatrix: label ${t} or prediction ${p} at index ${i} is outside 0..${numClasses - 1}`);
    }
    m[t][p]++;
  }
  return m;
}

/**
 * Accuracy, per-class scores, macro-F1 and the confusion matrix. A class that is never
 * predicted has precision 0; a class with no true samples has recall 0 (so its F1 is 0
 * and it still counts in the macro average, as in the ABAW challenge's evaluation).
 */
export function classificationReport(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, numClasses: number): ClassificationReport {
  const confusion = confusionMatrix(yTrue, yPred, numClasses);
  const perClass: ClassScores[] = confusion.map((row, c) => {
    const tp = row[c];
    const support = row.reduce((a, b) => a + b, 0);
    const predicted = confusion.reduce((a, r) => a + r[c], 0);
    const precision = predicted === 0 ? 0 : tp / predicted;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { precision, recall, f1, support };
  });
  const n = yTrue.length;
  const correct = confusion.reduce((a, row, c) => a + row[c], 0);
  return {
    accuracy: n === 0 ? 0 : correct / n,
    macroF1: perClass.reduce((a, s) => a + s.f1, 0) / numClasses,
    perClass,
    confusion,
    n,
  };
}
