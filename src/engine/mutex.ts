/**
 * A small async mutex keyed by string (a pod or container id). Work on one object is serialised;
 * work on different objects runs in parallel. Entries are dropped when nobody holds or waits.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `fn` while holding the lock for `key`; releases it however `fn` ends. */
  async with<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => { release = r; });
    const tail = prev.then(() => mine);
    this.#tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Runs `fn` holding the locks of all `keys` (taken in sorted order, so no deadlock). */
  async withAll<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const step = async (i: number): Promise<T> => {
      const k = sorted[i];
      if (k === undefined) return await fn();
      return await this.with(k, () => step(i + 1));
    };
    return await step(0);
  }

  /** Whether anyone holds or waits for `key`. */
  busy(key: string): boolean {
    return this.#tails.has(key);
  }
}
