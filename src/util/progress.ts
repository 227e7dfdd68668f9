/**
 * Progress reporting: a live bar (cli-progress) on a terminal, plain periodic lines
 * when stderr is not a TTY (logs, CI), nothing when silent.
 */
import cliProgress from "cli-progress";

/** Receives progress as work advances. */
export interface Progress {
  /** Sets the number of finished units and, optionally, named values shown on the line. */
  update(done: number, values?: Record<string, string | number>): void;
  /** Ends the bar (or prints the final line). */
  stop(): void;
}

/** A progress sink that shows nothing. */
export const silentProgress: Progress = { update: () => {}, stop: () => {} };

/**
 * A progress display for `total` units titled `label`.
 * @param intervalSeconds minimum time between plain lines when not on a terminal
 */
export function createProgress(label: string, total: number, o: { stream?: NodeJS.WriteStream; intervalSeconds?: number } = {}): Progress {
  const stream = o.stream ?? process.stderr;
  const started = performance.now();
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {percentage}% {value}/{total} | {rate}/s | ETA {eta_formatted}{extra}`, stream, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { rate: "0", extra: "" });
    return {
      update(done, values = {}) {
        const secs = (performance.now() - started) / 1000;
        const extra = Object.entries(values)
          .map(([k, v]) => ` | ${k} ${v}`)
          .join("");
        bar.update(done, { rate: secs > 0 ? (done / secs).toFixed(1) : "0", extra });
      },
      stop: () => bar.stop(),
    };
  }
  const interval = (o.intervalSeconds ?? 10) * 1000;
  let last = started;
  let lastDone = 0;
  const line = (done: number, values: Record<string, string | number>): void => {
    const secs = (performance.now() - started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 ? (total - done) / rate : 0;
    const extra = Object.entries(values)
      .map(([k, v]) => ` ${k} ${v}`)
      .join("");
    stream.write(
      `${label}: ${done}/${total} (${((100 * done) / Math.max(1, total)).toFixed(0)}%) ${rate.toFixed(1)}/s ETA ${eta.toFixed(0)} s${extra}\n`,
    );
  };
  return {
    update(done, values = {}) {
      lastDone = done;
      const now = performance.now();
      if (now - last >= interval) {
        last = now;
        line(done, values);
      }
    },
    stop: () => line(lastDone, {}),
  };
}
