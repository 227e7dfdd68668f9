/**
 * `train.pid` in a run folder while a `ferkit train` process works on it: its process id and host
 * name. It keeps two processes from training one run, and tells `ferkit serve` which runs are
 * running. A process killed with SIGKILL leaves the file behind; a lock whose process is gone (on
 * this host) is stale and is taken over.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { ConfigError } from "./config.js";

/** What `train.pid` holds. */
export interface RunLock {
  pid: number;
  host: string;
  /** When the process took the lock (ISO 8601). */
  started: string;
}

const LOCK_FILE = "train.pid";

/** The run folder's lock, or null when there is none (or it cannot be read). */
export function readRunLock(dir: string): RunLock | null {
  try {
    const lock = JSON.parse(readFileSync(path.join(dir, LOCK_FILE), "utf8")) as RunLock;
    return Number.isInteger(lock.pid) && typeof lock.host === "string" ? lock : null;
  } catch {
    return null;
  }
}

/**
 * Whether a lock's process is alive: checked with signal 0 on this host, a zombie (killed, not yet
 * reaped by its parent) counting as gone; a lock from another host is taken as alive (it cannot be
 * checked from here).
 */
export function lockAlive(lock: RunLock): boolean {
  if (lock.host !== hostname()) return true;
  try {
    process.kill(lock.pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state ..."; Z and X are dead processes.
    const stat = readFileSync(`/proc/${lock.pid}/stat`, "utf8");
    return !/^\S+ \(.*\) [ZX]/s.test(stat);
  } catch {
    return true; // no /proc: signal 0 is all there is
  }
}

/**
 * Takes the run folder's lock for this process.
 * @returns a function that releases it (removes the file if it is still this process's)
 * @throws ConfigError when another live process holds it
 */
export function acquireRunLock(dir: string): () => void {
  const held = readRunLock(dir);
  if (held !== null && held.pid !== process.pid && lockAlive(held))
    throw new ConfigError(`${dir} is being trained by process ${held.pid} on ${held.host} (since ${held.started}); wait for it or stop it`);
  const file = path.join(dir, LOCK_FILE);
  writeFileSync(file, JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() }) + "\n");
  return () => {
    if (existsSync(file) && readRunLock(dir)?.pid === process.pid) rmSync(file, { force: true });
  };
}
