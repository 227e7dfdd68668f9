/**
 * The soft targets of a distillation run (`algorithm.name: "distill"`): the teacher models'
 * class probabilities on every labeled and unlabeled image of the run, flip-averaged and
 * averaged over the teachers, computed once when the run starts and kept in the run folder
 * (`teacher_targets.safetensors`) so that a resumed run reads them instead of recomputing.
 */
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import * as torch from "../torch/index.js";
import { predictProbs, argmaxRows } from "../eval/evaluate.js";
import type { SoftTargets } from "../ssl/distill.js";
import { ConfigError } from "./config.js";
import { loadModelFile } from "./model_file.js";

/** Images of one set: `[n, C, H, W]` uint8. */
interface ImageSet {
  images: Uint8Array;
  shape: [number, number, number];
  n: number;
}

/** File of the targets in a run folder. */
export const TARGETS_FILE = "teacher_targets.safetensors";

/** Options of {@link teacherTargets}. */
export interface TeacherOptions {
  /** Teachers: run folders, model files or shipped model names. */
  teachers: string[];
  /** The student's classes: every teacher must have these, in this order. */
  classes: readonly string[];
  labeled: ImageSet & { labels: Int32Array };
  unlabeled: ImageSet | null;
  /** The run folder: targets are read from it when there (from the same teachers), else computed and written to it. */
  runDir: string;
  /** Write the file (one rank of a data-parallel run does). */
  write: boolean;
  precision: "bf16" | "fp32";
  log: (line: string) => void;
}

/**
 * The teachers' soft targets for a run's labeled and unlabeled images. Each teacher sees the
 * images at its own input: resized bilinearly from the student's input when the sizes differ,
 * gray repeated into RGB or RGB weighted into gray (ITU-R BT.601) when the channels do.
 * Logs each teacher's and the ensemble's accuracy on the labeled images.
 * @throws ConfigError naming `algorithm.teachers` when a teacher cannot be loaded or has other
 *   classes, or when the run folder's saved targets do not fit the run's images
 */
export function teacherTargets(o: TeacherOptions): SoftTargets {
  const C = o.classes.length;
  const file = path.join(o.runDir, TARGETS_FILE);
  const saved = existsSync(file) ? torch.loadSafetensors(file) : null;
  if (saved !== null && saved.metadata.teachers !== JSON.stringify(o.teachers)) {
    o.log(`distill: ${file} holds the targets of other teachers (${saved.metadata.teachers}): computing them again`);
    for (const t of saved.tensors.values()) t.dispose();
  } else if (saved !== null) {
    const { tensors } = saved;
    const read = (name: string): Float32Array | null => {
      const t = tensors.get(name);
      if (t === undefined) return null;
      const v = t.toArray() as Float32Array;
      t.dispose();
      return v;
    };
    const labeled = read("labeled");
    const unlabeled = read("unlabeled");
    if (labeled?.length !== o.labeled.n * C || (unlabeled?.length ?? 0) !== (o.unlabeled?.n ?? 0) * C)
      throw new ConfigError(`${file} does not fit this run's images (${o.labeled.n} labeled, ${o.unlabeled?.n ?? 0} unlabeled)`);
    o.log(`distill: soft targets read from ${file}`);
    return { numClasses: C, labeled, unlabeled };
  }
  const sets = [o.labeled, ...(o.unlabeled === null ? [] : [o.unlabeled])];
  const sums = sets.map((s) => new Float32Array(s.n * C));
  for (const teacher of o.teachers) {
    let loaded;
    try {
      loaded = loadModelFile(teacher);
    } catch (err) {
      throw new ConfigError(`algorithm.teachers: ${(err as Error).message}`, { cause: err });
    }
    const { model, card } = loaded;
    try {
      if (card.classes.join() !== o.classes.join())
        throw new ConfigError(
          `algorithm.teachers: ${teacher} predicts ${card.classes.join(", ")}; the student's classes are ${o.classes.join(", ")} (same names, same order)`,
        );
      const input = card.input as [number, number, number];
      sets.forEach((s, k) => {
        const p = probsAt(model, s, input, C, o.precision);
        for (let i = 0; i < p.length; i++) sums[k][i] += p[i];
        if (k === 0) o.log(`distill: teacher ${teacher}: ${pct(accuracy(p, o.labeled.labels, C))} on the labeled images`);
      });
    } finally {
      model.dispose();
    }
  }
  const [labeled, unlabeled = null] = sums.map((s) => s.map((v) => v / o.teachers.length));
  o.log(`distill: the teachers' mean: ${pct(accuracy(labeled, o.labeled.labels, C))} on the labeled images`);
  const tensors = new Map([["labeled", torch.fromArray(labeled, [o.labeled.n, C])]]);
  if (unlabeled !== null) tensors.set("unlabeled", torch.fromArray(unlabeled, [(o.unlabeled as ImageSet).n, C]));
  if (o.write) {
    mkdirSync(o.runDir, { recursive: true });
    torch.saveSafetensors(file, tensors, { teachers: JSON.stringify(o.teachers) });
  }
  for (const t of tensors.values()) t.dispose();
  return { numClasses: C, labeled, unlabeled };
}

const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;

function accuracy(probs: Float32Array, labels: Int32Array, C: number): number {
  const pred = argmaxRows(probs, C);
  let right = 0;
  pred.forEach((p, i) => (right += p === labels[i] ? 1 : 0));
  return labels.length === 0 ? 0 : right / labels.length;
}

/**
 * Flip-averaged probabilities of `model` on `set` (`[n, numClasses]`), its images brought to the
 * model's `[C, H, W]` input in chunks.
 */
function probsAt(
  model: torch.nn.Module,
  set: ImageSet,
  input: [number, number, number],
  numClasses: number,
  precision: "bf16" | "fp32",
): Float32Array {
  const same = input.every((v, i) => v === set.shape[i]);
  if (same) return predictProbs(model, set.images, set.shape, { tta: true, precision });
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  const chunk = 1024;
  const out = new Float32Array(set.n * numClasses);
  for (let start = 0; start < set.n; start += chunk) {
    const m = Math.min(chunk, set.n - start);
    const pixels = torch.tidy(() => {
      let x = torch.fromArray(set.images.subarray(start * per, (start + m) * per), [m, ...set.shape]).float();
      if (input[1] !== set.shape[1] || input[2] !== set.shape[2]) x = torch.F.interpolate(x, [input[1], input[2]], "bilinear");
      if (input[0] === 3 && set.shape[0] === 1) x = x.expand(m, 3, input[1], input[2]).contiguous();
      if (input[0] === 1 && set.shape[0] === 3) {
        const [r, g, b] = x.split([1, 1, 1], 1);
        x = r.mul(0.299).add(g.mul(0.587)).add(b.mul(0.114));
      }
      return x.round().clamp(0, 255).to("uint8").toArray() as Uint8Array;
    });
    out.set(predictProbs(model, pixels, input, { tta: true, precision }), start * numClasses);
  }
  return out;
}
