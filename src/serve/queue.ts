/**
 * A bounded work queue: at most `concurrency` jobs run at once and at most `maxWaiting` wait;
 * a job offered beyond that is refused at once (the server answers 503) rather than piling up.
 */

/** Thrown by {@link WorkQueue.run} when the queue is full. */
export class QueueFullError extends Error {
  override name = "QueueFullError";
}

export class WorkQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  /** @throws RangeError unless concurrency >= 1 and maxWaiting >= 0 are integers */
  constructor(
    readonly concurrency = 1,
    readonly maxWaiting = 4,
  ) {
    if (!(Number.isInteger(concurrency) && concurrency >= 1))
      throw new RangeError(`WorkQueue: concurrency must be an integer >= 1, got ${concurrency}`);
    if (!(Number.isInteger(maxWaiting) && maxWaiting >= 0))
      throw new RangeError(`WorkQueue: maxWaiting must be an integer >= 0, got ${maxWaiting}`);
  }

  /** Jobs running and waiting now. */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  /** Whether a job offered now would be refused. */
  get full(): boolean {
    return this.running >= this.concurrency && this.waiting.length >= this.maxWaiting;
  }

  /**
   * Runs `job` when a slot is free.
   * @throws QueueFullError at once when every slot and every waiting place is taken
   */
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.full) throw new QueueFullError(`busy: ${this.running} job(s) running and ${this.waiting.length} waiting`);
    if (this.running >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      return await job();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}
