/**
 * A run's `log.jsonl`: one JSON event per line, each stamped with the time. Appended
 * synchronously, so a run killed at any point leaves every event written before it.
 */
import { appendFileSync } from "node:fs";

/** Where a run's parts write their events. */
export interface EventWriter {
  /** Appends one event (`{ event: "step", ... }`); `time` (ISO 8601) is added first. */
  write(event: Record<string, unknown>): void;
}

/** Appends events to a `log.jsonl` file. */
export class RunLog implements EventWriter {
  /** @param file the `log.jsonl` path (created on the first write) */
  constructor(readonly file: string) {}

  /** @throws Error from the file system when the file cannot be appended to */
  write(event: Record<string, unknown>): void {
    appendFileSync(this.file, JSON.stringify({ time: new Date().toISOString(), ...event }) + "\n");
  }
}
