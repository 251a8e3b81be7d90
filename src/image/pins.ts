/**
 * What pulls, loads and rootfs preparations in progress rely on (blob digests and chain IDs), so
 * GC keeps them. A lease may only grow while no GC runs (`add` waits for the running one), so a GC
 * never deletes a blob a pull has just found present and decided not to download.
 */
export class Pins {
  private readonly counts = new Map<string, number>();
  /** The GC in progress, if any. */
  running: Promise<unknown> | undefined;

  get empty(): boolean { return this.counts.size === 0; }
  /** What is pinned now (a GC takes this before it lists the records: an operation that records its image and releases meanwhile stays covered). */
  snapshot(): Set<string> { return new Set(this.counts.keys()); }

  lease(): Lease {
    const held = new Set<string>();
    return {
      add: async (keys: Iterable<string>) => {
        while (this.running) await this.running.catch(() => {});
        for (const k of keys) {
          if (held.has(k)) continue;
          held.add(k);
          this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
        }
      },
      release: () => {
        for (const k of held) {
          const n = (this.counts.get(k) ?? 1) - 1;
          if (n <= 0) this.counts.delete(k); else this.counts.set(k, n);
        }
        held.clear();
      },
    };
  }
}

export interface Lease {
  add(keys: Iterable<string>): Promise<void>;
  release(): void;
}
