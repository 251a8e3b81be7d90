/**
 * Single-use tokens for streaming requests: random (16 bytes, base64url), expiring, and bounded in
 * number twice: per key (the container for exec/attach, the pod for port-forward) and in all. A
 * client that asks for many URLs and never uses them exhausts only its own key's share; the global
 * bound is the last resort for many keys at once. Expired tokens are reclaimed before every
 * insert. A token is consumed by the first lookup, whether or not the stream then succeeds.
 */
import { randomBytes } from 'node:crypto';
import { ResourceExhaustedError } from '../errors.ts';

export class TokenCache<T> {
  readonly #entries = new Map<string, { value: T; key: string; expiresAt: number }>();
  readonly #perKey = new Map<string, number>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #maxPerKey: number;
  readonly #now: () => number;

  constructor(opts: { ttlMs: number; max: number; maxPerKey?: number; now?: () => number }) {
    this.#ttlMs = opts.ttlMs;
    this.#max = opts.max;
    this.#maxPerKey = opts.maxPerKey ?? opts.max;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Live tokens held under `key`. */
  countFor(key: string): number {
    return this.#perKey.get(key) ?? 0;
  }

  /**
   * Stores `value` under a fresh token, counted against `key` (`what` names the key in errors).
   * Throws ResourceExhausted when `key` already holds `maxPerKey` live tokens or `max` exist in all.
   */
  insert(value: T, key = '', what = 'this target'): string {
    this.#evictExpired();
    const held = this.countFor(key);
    if (held >= this.#maxPerKey) {
      throw new ResourceExhaustedError(`${what} already has ${held} unused streaming URLs (limit ${this.#maxPerKey} per container/pod, stream token cap); use or let them expire (${Math.round(this.#ttlMs / 1000)} s) and retry`);
    }
    if (this.#entries.size >= this.#max) {
      throw new ResourceExhaustedError(`too many unused streaming URLs on this node (limit ${this.#max}, stream token cap); retry when some are used or expire (${Math.round(this.#ttlMs / 1000)} s)`);
    }
    const token = randomBytes(16).toString('base64url');
    this.#entries.set(token, { value, key, expiresAt: this.#now() + this.#ttlMs });
    this.#perKey.set(key, held + 1);
    return token;
  }

  /** Returns and forgets the value for `token`; undefined when unknown, used or expired. */
  consume(token: string): T | undefined {
    const e = this.#entries.get(token);
    if (!e) return undefined;
    this.#forget(token, e.key);
    return e.expiresAt > this.#now() ? e.value : undefined;
  }

  clear(): void {
    this.#entries.clear();
    this.#perKey.clear();
  }

  #forget(token: string, key: string): void {
    this.#entries.delete(token);
    const n = (this.#perKey.get(key) ?? 1) - 1;
    if (n <= 0) this.#perKey.delete(key); else this.#perKey.set(key, n);
  }

  #evictExpired(): void {
    const now = this.#now();
    // Entries are in insertion order and share one TTL, so expired ones are at the front.
    for (const [k, e] of this.#entries) {
      if (e.expiresAt > now) break;
      this.#forget(k, e.key);
    }
  }
}
