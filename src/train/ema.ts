/**
 * The EMA teacher: an exponential moving average of the student's weights
 * (Tarvainen & Valpola 2017; FixMatch's evaluation model). Parameters follow
 * `ema = decay * ema + (1 - decay) * student`; BatchNorm buffers (running statistics,
 * batch counts) are copied, not averaged, as in USB's EMA.
 */
import * as torch from "../torch/index.js";
import type { nn, Tensor } from "../torch/index.js";

/** An EMA copy of a model, updated after every optimizer step. */
export class EmaTeacher {
  readonly #pairs: [Tensor, Tensor][];
  readonly #buffers: [Tensor, Tensor][];

  /**
   * @param student the model being trained
   * @param teacher a second instance of the same architecture (its weights are overwritten)
   * @param decay in [0, 1): weight of the old average at each update
   * @throws Error when the two models' parameters or buffers do not match
   */
  constructor(
    readonly student: nn.Module,
    readonly teacher: nn.Module,
    readonly decay: number,
  ) {
    const sp = student.namedParameters();
    const tp = new Map(teacher.namedParameters());
    const sb = student.namedBuffers();
    const tb = new Map(teacher.namedBuffers());
    if (sp.length !== tp.size || sb.length !== tb.size) throw new Error("EmaTeacher: student and teacher have different architectures");
    this.#pairs = sp.map(([name, p]) => [tp.get(name) as Tensor, p]);
    this.#buffers = sb.map(([name, b]) => [tb.get(name) as Tensor, b]);
    for (const [t] of this.#pairs) t.requiresGrad_(false);
    this.copyFromStudent();
    teacher.eval();
  }

  /** Sets the teacher equal to the student. */
  copyFromStudent(): void {
    torch.noGrad(() => {
      for (const [t, s] of this.#pairs) t.copy_(s);
      for (const [t, s] of this.#buffers) t.copy_(s);
    });
  }

  /**
   * One EMA step: parameters move `1 - d` of the way to the student; buffers are copied.
   * @param step optimizer steps done so far (1 after the first); with it, the decay warms up
   *   as TensorFlow's ExponentialMovingAverage(num_updates) does: d = min(decay, (1 + step) / (10 + step)).
   *   Without a warm-up, the early teacher averages weights from very different points of
   *   training while holding the student's current BatchNorm statistics, and predicts one class.
   */
  update(step?: number): void {
    const d = step === undefined ? this.decay : Math.min(this.decay, (1 + step) / (10 + step));
    torch.noGrad(() => {
      for (const [t, s] of this.#pairs) t.lerp_(s, 1 - d);
      for (const [t, s] of this.#buffers) t.copy_(s);
    });
  }
}
