/**
 * Label spaces of the FER datasets, each in the dataset's own order and names.
 * The full set of mappings between datasets comes with the dataset readers.
 */

/** FER2013's classes by label index 0..6 (Goodfellow et al. 2013). */
export const FER2013_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"] as const;

/** One FER2013 class name. */
export type Fer2013Class = (typeof FER2013_CLASSES)[number];

/**
 * The FER2013 index of a class name.
 * @throws RangeError naming the allowed names when `name` is not a FER2013 class
 */
export function fer2013Index(name: string): number {
  const i = (FER2013_CLASSES as readonly string[]).indexOf(name);
  if (i < 0) throw new RangeError(`unknown FER2013 class '${name}' (allowed: ${FER2013_CLASSES.join(", ")})`);
  return i;
}
