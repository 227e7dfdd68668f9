/**
 * Deterministic release of native tensor memory.
 *
 * Every tensor created inside {@link tidy} is disposed when the callback returns,
 * except the tensors it returns (they move to the enclosing scope) and those passed
 * to {@link keep}. This mirrors tfjs `tidy`; TypeScript `using` declarations work too,
 * since Tensor implements `Symbol.dispose`. A native finalizer frees a forgotten
 * tensor only when the garbage collector runs, which is a backstop, not a plan.
 */

/** Anything that owns native memory and can release it now. */
export interface Disposable {
  dispose(): void;
}

/** A tensor-like object that the scope machinery can track. */
export interface Tracked extends Disposable {
  /** The scope currently responsible for disposing it, or null when kept. */
  scope: Set<Tracked> | null;
}

const scopes: Set<Tracked>[] = [];

/** Called by every new tensor: the innermost open scope takes ownership. */
export function track(t: Tracked): void {
  const top = scopes[scopes.length - 1];
  if (top !== undefined) {
    top.add(t);
    t.scope = top;
  }
}

/** Removes `t` from automatic disposal; the caller now owns it. Returns `t`. */
export function keep<T extends Tracked>(t: T): T {
  t.scope?.delete(t);
  t.scope = null;
  return t;
}

function collect(value: unknown, into: Set<Tracked>, seen: Set<unknown>): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  if ("scope" in value && "dispose" in value) {
    into.add(value as Tracked);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collect(v, into, seen);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, into, seen);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into, seen);
  }
}

/**
 * Runs `fn` and disposes every tensor it created, except those reachable from its
 * result (a tensor, or arrays, Maps and plain objects holding tensors).
 *
 * @throws TypeError when `fn` returns a Promise: tensors created after an `await`
 *   cannot be attributed to the scope, so async callbacks are refused.
 */
export function tidy<T>(fn: () => T): T {
  const own = new Set<Tracked>();
  scopes.push(own);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    scopes.pop();
    for (const t of own) t.dispose();
    throw err;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of own) t.dispose();
    throw new TypeError("tidy: the callback returned a Promise; tidy only accepts synchronous functions");
  }
  const survivors = new Set<Tracked>();
  collect(result, survivors, new Set());
  for (const t of own) {
    if (survivors.has(t)) {
      t.scope = null;
      track(t);
    } else {
      t.dispose();
    }
  }
  return result;
}

/** Disposes every tensor found in `value` (a tensor, array, Map or plain object). */
export function dispose(value: unknown): void {
  const found = new Set<Tracked>();
  collect(value, found, new Set());
  for (const t of found) t.dispose();
}
