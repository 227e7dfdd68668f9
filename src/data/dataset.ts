/**
 * The shapes every reader returns: labeled datasets and unlabeled pools, as lists of
 * files with their labels, plus a count of what was skipped and why. Readers only
 * list and validate files; decoding, alignment and caching come later in the flow.
 */
import type { LabelSpace } from "./labels.js";

/** One labeled image. */
export interface LabeledSample {
  /** Absolute path of the image file. */
  path: string;
  /** Label index in the dataset's {@link LabelSpace}. */
  label: number;
  /** Split name as the dataset calls it (e.g. "Training", "PublicTest", "Train_Set"). */
  split: string;
  /** Group the sample belongs to (a video for ABAW), used for per-video post-processing. */
  group?: string;
  /** Frame number within the group (1-based, ABAW). */
  frame?: number;
}

/** One unlabeled image. */
export interface UnlabeledSample {
  path: string;
  /** Which pool or dataset it came from (e.g. "lfw", "fer2013:Training"). */
  source: string;
  /** The true label, when the pool was made from a labeled set; never used for training. */
  hiddenLabel?: number;
}

/**
 * Counts of skipped inputs by reason, with the first few files of each reason, so a
 * run can go on past bad files and still say exactly what it left out.
 */
export class SkipLog {
  readonly counts: Record<string, number> = {};
  readonly examples: Record<string, string[]> = {};

  constructor(private readonly warn: (message: string) => void = () => {}) {}

  /**
   * Records one skipped input. The first 3 of each reason are also passed to `warn`,
   * unless `expected` (a documented exclusion of the dataset, only counted).
   */
  add(reason: string, file: string, detail = "", expected = false): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
    const ex = (this.examples[reason] ??= []);
    if (ex.length < 3) {
      ex.push(file);
      if (!expected) this.warn(`skipped ${file}: ${reason}${detail ? ` (${detail})` : ""}`);
    }
  }

  /** Total number of skipped inputs. */
  get total(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }
}

/** A labeled dataset: its label space and samples in a stable order. */
export interface LabeledDataset {
  name: string;
  space: LabelSpace;
  samples: LabeledSample[];
  skipped: SkipLog;
}

/** A pool of unlabeled images. */
export interface UnlabeledPool {
  name: string;
  samples: UnlabeledSample[];
  skipped: SkipLog;
}

/**
 * A user mistake in the data (a wrong layout, nothing usable left): the CLI prints its
 * one-line message and exits with code 2, without a stack trace.
 */
export class DataError extends Error {
  override name = "DataError";
}

/**
 * Image file extensions ferkit reads (lower case, with the dot): the one list for files named on
 * the command line and for folder walks. HEIC is listed so that such a file is reported (skipped
 * with a reason saying how to convert it) rather than silently passed over.
 */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  ".jpg",
  ".jpeg",
  ".png",
  ".pgm",
  ".ppm",
  ".tif",
  ".tiff",
  ".webp",
  ".bmp",
  ".gif",
  ".avif",
  ".heif",
  ".heic",
]);

/** The samples of one split. */
export function splitOf(ds: LabeledDataset, split: string): LabeledSample[] {
  return ds.samples.filter((s) => s.split === split);
}

/** The split names of a dataset, in first-seen order. */
export function splitNames(ds: LabeledDataset): string[] {
  return [...new Set(ds.samples.map((s) => s.split))];
}

/**
 * An unlabeled pool made from labeled samples, labels hidden (kept only to measure
 * pseudo-label accuracy later).
 */
export function hideLabels(samples: readonly LabeledSample[], source: string): UnlabeledSample[] {
  return samples.map((s) => ({ path: s.path, source, hiddenLabel: s.label }));
}

/**
 * The samples of `ds` whose class is one of `classes` (names of its label space), relabeled
 * 0..k-1 in the order given: a k-class problem such as happy vs surprise.
 * @throws DataError naming an unknown class and the known ones, or when fewer than 2 classes are given
 */
export function selectClasses(ds: LabeledDataset, classes: readonly string[]): LabeledDataset {
  const index = classes.map((name) => {
    const i = ds.space.classes.indexOf(name);
    if (i < 0) throw new DataError(`dataset ${ds.name} has no class '${name}' (classes: ${ds.space.classes.join(", ")})`);
    return i;
  });
  if (new Set(index).size < 2) throw new DataError(`a class subset needs at least two different classes, got [${classes.join(", ")}]`);
  const remap = new Map(index.map((old, k) => [old, k]));
  return {
    name: `${ds.name}-${classes.join("+")}`,
    space: { name: `${ds.space.name}-${classes.join("+")}`, classes: [...classes], canonical: index.map((i) => ds.space.canonical[i]) },
    samples: ds.samples.flatMap((s) => {
      const k = remap.get(s.label);
      return k === undefined ? [] : [{ ...s, label: k }];
    }),
    skipped: ds.skipped,
  };
}
