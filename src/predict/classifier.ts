/**
 * A trained expression classifier for aligned face crops: a ferkit model file (or the default
 * model shipped in `models/`) and batched inference on the crops that `src/faces` produces.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { toPlanar } from "../data/image.js";
import { predictProbs } from "../eval/evaluate.js";
import type { AlignedFace } from "../faces/index.js";
import { PACKAGE_ROOT } from "../torch/native.js";
import { loadModelFile, type ModelCard } from "../train/model_file.js";
import * as torch from "../torch/index.js";
import type { nn } from "../torch/index.js";

/** The model that ships with ferkit (see `models/README.md`, its model card). */
export const DEFAULT_MODEL = path.join(PACKAGE_ROOT, "models", "ferkit-faceres-fer2013.safetensors");

/** A classifier of aligned faces. Dispose it to free the native weights. */
export class FaceClassifier {
  private constructor(
    private readonly model: nn.Module,
    /** Architecture, options, class names and `[C, H, W]` input of the model. */
    readonly card: ModelCard,
    /** The model file it was read from. */
    readonly file: string,
    /** What the forward passes run at: bfloat16 autocast or float32. */
    readonly precision: "bf16" | "fp32",
  ) {}

  /**
   * Loads a model file or a run folder (default: {@link DEFAULT_MODEL}).
   * @param o.precision "auto" (default): bf16 where the CPU has native bfloat16, else fp32. On
   *   the default model (FaceRes, 96x96 gray) bf16 gives PrivateTest accuracy 69.77 % against
   *   69.49 % and macro-F1 67.27 % against 67.01 % (flip averaging; models/README.md).
   * @throws ConfigError naming the file when it is missing, not a ferkit model, or its weights do
   *   not fit its architecture
   */
  static load(fileOrRun: string = DEFAULT_MODEL, o: { precision?: torch.Precision } = {}): FaceClassifier {
    const { model, card, file } = loadModelFile(fileOrRun);
    return new FaceClassifier(model, card, file, torch.resolvePrecision(o.precision ?? "auto").precision);
  }

  /** Class names of the outputs, in the label space the model was trained on. */
  get classes(): string[] {
    return this.card.classes;
  }

  /** Crop side in pixels the model takes (96 for the default FaceRes model, 48 for VGG-FER). */
  get size(): number {
    return this.card.input[1];
  }

  /** 1 (grayscale) or 3 (RGB). */
  get channels(): 1 | 3 {
    return this.card.input[0] as 1 | 3;
  }

  /**
   * Class probabilities of aligned face crops, in batches.
   * @param faces crops of `size x size x channels` (interleaved, as `alignFaces` returns them)
   * @returns `[faces.length, classes.length]` float32 probabilities, rows summing to 1
   * @throws RangeError when a crop's size or channels differ from the model's input
   */
  classify(
    faces: readonly Pick<AlignedFace, "pixels" | "size" | "channels">[],
    o: { tta?: boolean; batchSize?: number } = {},
  ): Float32Array {
    const [c, h, w] = this.card.input;
    const per = c * h * w;
    const images = new Uint8Array(faces.length * per);
    faces.forEach((f, i) => {
      if (f.size !== h || f.channels !== c)
        throw new RangeError(`classify: crop ${i} is ${f.size}x${f.size}x${f.channels}, the model takes ${h}x${w}x${c}`);
      images.set(toPlanar(f.pixels, h * w, c), i * per);
    });
    return this.#stable(() =>
      predictProbs(this.model, images, [c, h, w], { tta: o.tta, batchSize: o.batchSize ?? 64, precision: this.precision }),
    );
  }

  /**
   * Class probabilities of crops already in the model's layout (e.g. a prepared dataset split).
   * @param images `[n, C, H, W]` uint8, the model's input shape
   * @returns `[n, classes.length]` float32 probabilities
   */
  classifyPlanar(images: Uint8Array, o: { tta?: boolean; batchSize?: number } = {}): Float32Array {
    const [c, h, w] = this.card.input;
    if (images.length % (c * h * w) !== 0)
      throw new RangeError(`classifyPlanar: ${images.length} bytes is not a whole number of [${c}, ${h}, ${w}] images`);
    return this.#stable(() =>
      predictProbs(this.model, images, [c, h, w], { tta: o.tta, batchSize: o.batchSize ?? 256, precision: this.precision }),
    );
  }

  /**
   * Runs a prediction with OpenBLAS at one thread: a detection pool holds it there while it
   * works, and the probabilities would otherwise differ in the last bits depending on whether
   * detection was running (the linear layers' cost is small next to the convolutions').
   */
  #stable<T>(fn: () => T): T {
    return torch.withBlasThreads(1, fn);
  }

  /** Frees the model's native memory. */
  dispose(): void {
    this.model.dispose();
  }
}

/** Whether the default model file is present (it ships in the repository). */
export function hasDefaultModel(): boolean {
  return existsSync(DEFAULT_MODEL);
}
