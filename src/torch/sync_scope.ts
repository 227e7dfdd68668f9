/**
 * The shape shared by the engine's scoped modes (inference mode, autocast, the profiler): a
 * native state entered by the caller, a synchronous body, and the state left again after it,
 * also when the body throws. Internal to src/torch/.
 */

/**
 * Runs `fn` and then `exit`, also when `fn` throws.
 * @param name the caller, for the error message
 * @throws TypeError when `fn` returns a Promise (native modes are per synchronous call)
 */
export function syncScope<T>(name: string, fn: () => T, exit: () => void): T {
  try {
    const out = fn();
    if (out instanceof Promise) throw new TypeError(`${name}: the callback must be synchronous`);
    return out;
  } finally {
    exit();
  }
}
