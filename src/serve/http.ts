/**
 * Small pieces of `ferkit serve`'s HTTP side: errors with a status, and the entries a client
 * names in a query parameter (a webcam's `?session=`, a video's `?job=`).
 */

/** An error with an HTTP status, answered as JSON. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Entries the client names with `?<param>=<id>`: ids of 1-64 letters, digits, `-` or `_`; an
 * entry unused for `ttlMs` is dropped; at most `max` are kept.
 */
export class NamedEntries<T> {
  readonly #entries = new Map<string, { value: T; used: number }>();

  constructor(
    readonly param: string,
    readonly ttlMs: number,
    readonly max: number,
  ) {}

  /**
   * The entry named by a query value: null when the request names none, the kept one, or a new
   * one from `create` (also replacing the kept one when `fresh`).
   * @throws HttpError 400 for a malformed id, 503 when `max` entries are in use
   */
  take(id: unknown, create: () => T, fresh = false): T | null {
    if (id === undefined) return null;
    if (typeof id !== "string" || !/^[\w-]{1,64}$/.test(id))
      throw new HttpError(400, `malformed request: ${this.param} must be 1-64 letters, digits, '-' or '_'`);
    const now = Date.now();
    for (const [k, e] of this.#entries) if (now - e.used > this.ttlMs) this.#entries.delete(k);
    let e = fresh ? undefined : this.#entries.get(id);
    if (e === undefined) {
      if (!this.#entries.has(id) && this.#entries.size >= this.max)
        throw new HttpError(503, `busy: too many ${this.param}s in use; try again shortly`);
      this.#entries.set(id, (e = { value: create(), used: now }));
    }
    e.used = now;
    return e.value;
  }

  /** The entry `id`, if it is kept. */
  get(id: string): T | undefined {
    return this.#entries.get(id)?.value;
  }
}
