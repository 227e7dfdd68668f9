/**
 * Label spaces of the FER datasets, each with the dataset's own class order and names,
 * and explicit mappings between them through one canonical list of expressions.
 * A model records the label space it was trained on; predictions use its names.
 */

/** The canonical expression names every dataset's classes map to. */
export const CANONICAL_EXPRESSIONS = [
  "neutral",
  "anger",
  "disgust",
  "fear",
  "happiness",
  "sadness",
  "surprise",
  "contempt",
  "other",
] as const;

/** One canonical expression. */
export type Expression = (typeof CANONICAL_EXPRESSIONS)[number];

/** A dataset's classes in its own order, with the canonical expression of each. */
export interface LabelSpace {
  /** Identifier, e.g. "fer2013". */
  readonly name: string;
  /** Class names as the dataset spells them, by label index. */
  readonly classes: readonly string[];
  /** Canonical expression of each class, by label index. */
  readonly canonical: readonly Expression[];
}

/** FER2013 (Goodfellow et al. 2013): 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral. */
export const FER2013: LabelSpace = {
  name: "fer2013",
  classes: ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
  canonical: ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"],
};

/** FER+ (Barsoum et al. 2016) emotion vote columns, in fer2013new.csv order (without `unknown` and `NF`). */
export const FERPLUS: LabelSpace = {
  name: "ferplus",
  classes: ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"],
  canonical: ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"],
};

/** ABAW / Aff-Wild2 expression annotations (Kollias et al.): the header line of every annotation file. */
export const ABAW: LabelSpace = {
  name: "abaw",
  classes: ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"],
  canonical: ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other"],
};

/** The built-in label spaces by name. */
export const LABEL_SPACES: Readonly<Record<string, LabelSpace>> = { fer2013: FER2013, ferplus: FERPLUS, abaw: ABAW };

/** FER2013's class names by label index (kept for callers that need the tuple type). */
export const FER2013_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"] as const;

/**
 * The label index of a class name in `space` (case-insensitive; canonical names are
 * accepted too, so "happiness" finds FER2013's "happy").
 * @throws RangeError naming the allowed names when the class is not in the space
 */
export function classIndex(space: LabelSpace, name: string): number {
  const lower = name.toLowerCase();
  let i = space.classes.findIndex((c) => c.toLowerCase() === lower);
  if (i < 0) i = space.canonical.indexOf(lower as Expression);
  if (i < 0) throw new RangeError(`unknown ${space.name} class '${name}' (allowed: ${space.classes.join(", ")})`);
  return i;
}

/** The FER2013 index of a class name. @throws RangeError for an unknown name */
export function fer2013Index(name: string): number {
  return classIndex(FER2013, name);
}

/**
 * For each class of `from`, the index of the class of `to` with the same canonical
 * expression, or -1 when `to` has none (e.g. FER+ contempt into FER2013).
 */
export function labelMapping(from: LabelSpace, to: LabelSpace): number[] {
  return from.canonical.map((e) => to.canonical.indexOf(e));
}

/**
 * A label space for classes given by name (ImageFolder sub-folders, CSV labels):
 * each name is matched case-insensitively to a canonical expression or a common
 * synonym (angry, happy, sad, ...), else mapped to "other".
 */
export function labelSpaceFromNames(name: string, classes: readonly string[]): LabelSpace {
  const synonyms: Record<string, Expression> = {
    angry: "anger",
    happy: "happiness",
    sad: "sadness",
    surprised: "surprise",
    disgusted: "disgust",
    fearful: "fear",
    scared: "fear",
    calm: "neutral",
  };
  const canonical = classes.map((c) => {
    const lower = c.toLowerCase();
    if ((CANONICAL_EXPRESSIONS as readonly string[]).includes(lower)) return lower as Expression;
    return synonyms[lower] ?? "other";
  });
  return { name, classes: [...classes], canonical };
}
