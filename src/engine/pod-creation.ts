/**
 * Admission of RunPodSandbox calls: a bounded number run their expensive part at once (runtime
 * processes, namespaces, network), the rest wait in arrival order; and one attempt per pod name
 * (namespace, name, attempt) is in flight at a time, so the kubelet's retry of a call it gave up
 * on waits for that call to finish or be rolled back instead of racing it.
 *
 * Every wait ends when the caller's signal aborts (client deadline or cancel): a call that never
 * got a slot made nothing.
 */
import { ResourceExhaustedError } from '../errors.ts';

/** Waits for `p` or throws when `signal` aborts first. */
async function untilAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  let onAbort!: () => void;
  const aborted = new Promise<never>((_r, reject) => {
    onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError'));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** A counting semaphore with a bounded, FIFO wait list. */
export class Slots {
  readonly #limit: number;
  readonly #maxWaiting: number;
  readonly #what: string;
  #used = 0;
  readonly #waiting: { grant: () => void }[] = [];

  constructor(limit: number, maxWaiting: number, what: string) {
    this.#limit = Math.max(1, limit);
    this.#maxWaiting = maxWaiting;
    this.#what = what;
  }

  get used(): number { return this.#used; }
  get waiting(): number { return this.#waiting.length; }

  /**
   * Resolves with a release function once a slot is free. Throws ResourceExhausted when
   * `maxWaiting` calls already wait, and the signal's reason when it aborts while waiting.
   */
  async acquire(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.#used < this.#limit && this.#waiting.length === 0) {
      this.#used++;
      return this.#releaser();
    }
    if (this.#waiting.length >= this.#maxWaiting) {
      throw new ResourceExhaustedError(`${this.#waiting.length} ${this.#what} calls are already queued (limit ${this.#maxWaiting}); retry later`);
    }
    let granted = false;
    const entry = { grant: () => {} };
    const p = new Promise<void>((resolve) => { entry.grant = () => { granted = true; resolve(); }; });
    this.#waiting.push(entry);
    try {
      await untilAbort(p, signal);
    } catch (err) {
      if (granted) this.#release(); // granted and aborted in the same turn: pass the slot on
      else this.#waiting.splice(this.#waiting.indexOf(entry), 1);
      throw err;
    }
    return this.#releaser();
  }

  #releaser(): () => void {
    let done = false;
    return () => { if (!done) { done = true; this.#release(); } };
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next.grant(); // the slot passes on; #used stays
    else this.#used--;
  }
}

/** One holder per key at a time; later callers wait for the holder to let go. */
export class KeyReservations {
  readonly #held = new Map<string, Promise<void>>();

  /** Waits until nobody holds `key` (or `signal` aborts), then holds it; returns the release. */
  async reserve(key: string, signal: AbortSignal): Promise<() => void> {
    for (;;) {
      const cur = this.#held.get(key);
      if (!cur) break;
      await untilAbort(cur, signal);
    }
    let release!: () => void;
    const mine = new Promise<void>((r) => { release = r; });
    this.#held.set(key, mine);
    return () => {
      if (this.#held.get(key) === mine) this.#held.delete(key);
      release();
    };
  }

  has(key: string): boolean { return this.#held.has(key); }
}
