/** Helpers shared by the benchmarks: machine load, the PyTorch interpreter, medians. */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** Debian's interpreter, which links the same libtorch 1.13 as ferkit (package python3-torch). */
export const PYTHON = "/usr/bin/python3";

/** CPU seconds the whole machine spent busy (all cores), from /proc/stat (0 where unavailable). */
export function machineBusySeconds(): number {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0].trim().split(/\s+/).slice(1).map(Number);
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100; // user nice system irq softirq steal, USER_HZ = 100
  } catch {
    return 0;
  }
}

/** Runs a command to completion, capturing (or showing) its output. */
export function run(cmd: string, args: string[], inherit = false): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: inherit ? "inherit" : "pipe", maxBuffer: 64 * 2 ** 20 });
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/**
 * Makes sure {@link PYTHON} can import torch, installing Debian's python3-torch with apt-get if not.
 * @throws Error when the installation fails
 */
export function ensurePyTorch(): void {
  if (run(PYTHON, ["-c", "import torch"]).status === 0) return;
  console.log(`PyTorch is missing from ${PYTHON}; installing Debian's python3-torch with apt-get`);
  const sudo = process.getuid?.() === 0 ? [] : ["sudo"];
  const apt = (...a: string[]): number | null => {
    const [cmd, ...rest] = [...sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", ...a];
    return run(cmd, rest, true).status;
  };
  if (apt("install", "-y", "--no-install-recommends", "python3-torch") !== 0) {
    apt("update", "-qq");
    if (apt("install", "-y", "--no-install-recommends", "python3-torch") !== 0) throw new Error("apt-get install python3-torch failed");
  }
  if (run(PYTHON, ["-c", "import torch"]).status !== 0) throw new Error(`${PYTHON} still cannot import torch`);
}

/** The median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}
