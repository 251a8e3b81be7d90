/**
 * Single-use tokens for streaming requests: random (16 bytes, base64url), expiring, and bounded in
 * number. A token is consumed by the first lookup, whether or not the stream then succeeds.
 */
import { randomBytes } from 'node:crypto';
import { ResourceExhaustedError } from '../errors.ts';

export class TokenCache<T> {
  readonly #entries = new Map<string, { value: T; expiresAt: number }>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;

  constructor(opts: { ttlMs: number; max: number; now?: () => number }) {
    this.#ttlMs = opts.ttlMs;
    this.#max = opts.max;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Stores `value` under a fresh token. Throws ResourceExhausted when `max` live tokens exist. */
  insert(value: T): string {
    this.#evictExpired();
    if (this.#entries.size >= this.#max) {
      throw new ResourceExhaustedError(`too many pending streaming requests (${this.#max}); try again later`);
    }
    const token = randomBytes(16).toString('base64url');
    this.#entries.set(token, { value, expiresAt: this.#now() + this.#ttlMs });
    return token;
  }

  /** Returns and forgets the value for `token`; undefined when unknown, used or expired. */
  consume(token: string): T | undefined {
    const e = this.#entries.get(token);
    if (!e) return undefined;
    this.#entries.delete(token);
    return e.expiresAt > this.#now() ? e.value : undefined;
  }

  clear(): void {
    this.#entries.clear();
  }

  #evictExpired(): void {
    const now = this.#now();
    // Entries are in insertion order and share one TTL, so expired ones are at the front.
    for (const [k, e] of this.#entries) {
      if (e.expiresAt > now) break;
      this.#entries.delete(k);
    }
  }
}
