/**
 * Pod cgroups left busy at their pod's removal (cgroup/owner.ts: the owner record stays, marked
 * released). The next daemon start's sweep removes them; a daemon that runs for weeks would keep
 * each one until then, with what still runs there and the memory it charges. So the engine
 * retries them while it runs (retryReleasedCgroup: what runs in the pod's own cgroup is killed,
 * as the sweep does): on a timer whose delay doubles from `firstMs` up to MAX_DELAY_MS, at most
 * `attempts` timed tries per cgroup, and at each later pod removal (not counted: bounded by the
 * removals). A cgroup still there after its last try is logged, with the pids still in it, and
 * left to the next start's sweep.
 *
 * A cgroup a pod in the store names (a kubelet's parent, given again to a new sandbox of the same
 * pod) is never touched; one under a parent the pod was given waits while pods are being created
 * (a creation reads which of its directories exist before its record is written).
 */
import type { Logger } from '../util/log.ts';
import { pidsUnder, retryReleasedCgroup } from '../cgroup/owner.ts';

const MAX_DELAY_MS = 5 * 60_000;

export interface ReleasedRetry {
  /** Delay before the first timed try (ms); default 5000. */
  firstMs?: number;
  /** Timed tries per cgroup before it is left to the next start; default 10 (~25 min in all). */
  attempts?: number;
}

export interface ReleasedCgroupsDeps {
  log: Logger;
  /** The owner records' anchor: the daemon's root. */
  anchor: string;
  /** Whether cgroup `path` must not be touched now (a pod names it; `shared`: a creation is in flight). */
  inUse(path: string, shared: boolean): boolean;
  retry?: ReleasedRetry;
  /** The owner records' directory (tests); default CGROUP_OWNERS_DIR. */
  ownersDir?: string;
}

interface Entry { shared: boolean; attempts: number; left: string[] }

export class ReleasedCgroups {
  readonly #deps: ReleasedCgroupsDeps;
  readonly #firstMs: number;
  readonly #attempts: number;
  readonly #entries = new Map<string, Entry>();
  #delay: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again: 'timed' | 'kick' | undefined;
  #closed = false;

  constructor(deps: ReleasedCgroupsDeps) {
    this.#deps = deps;
    this.#firstMs = Math.max(1, deps.retry?.firstMs ?? 5000);
    this.#attempts = Math.max(1, Math.min(100, deps.retry?.attempts ?? 10));
    this.#delay = this.#firstMs;
  }

  /** The cgroups waiting for a retry (for tests and status). */
  get pending(): string[] { return [...this.#entries.keys()]; }

  /** Cgroup `path` was left busy (its record marked released); `shared`: under a parent the pod was given. */
  add(path: string, shared: boolean): void {
    if (this.#closed) return;
    this.#entries.set(path, { shared, attempts: 0, left: [] });
    // a new one starts the backoff again
    this.#delay = this.#firstMs;
    this.#schedule(true);
  }

  /** A pod was removed: retry now what waits (in the background). */
  kick(): void {
    if (this.#entries.size > 0) this.#run('kick');
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  #schedule(reset: boolean): void {
    if (this.#closed || this.#entries.size === 0) return;
    if (this.#timer && !reset) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => { this.#timer = undefined; this.#run('timed'); }, this.#delay);
    this.#timer.unref();
  }

  #run(how: 'timed' | 'kick'): void {
    if (this.#running) { if (this.#again !== 'timed') this.#again = how; return; }
    this.#running = this.#tryAll(how)
      .catch((err: unknown) => this.#deps.log.warn('retrying the removal of busy pod cgroups failed', { err }))
      .finally(() => {
        this.#running = undefined;
        const again = this.#again;
        this.#again = undefined;
        if (again) this.#run(again);
        else this.#schedule(false);
      });
  }

  async #tryAll(how: 'timed' | 'kick'): Promise<void> {
    const { log, anchor, inUse, ownersDir } = this.#deps;
    for (const [path, e] of [...this.#entries]) {
      if (this.#closed) return;
      if (inUse(path, e.shared)) continue;
      const r = await retryReleasedCgroup(log, path, anchor, ownersDir);
      if (r === 'gone') { this.#entries.delete(path); continue; }
      e.left = r;
      if (how === 'timed' && ++e.attempts >= this.#attempts) {
        this.#entries.delete(path);
        log.warn('pod cgroup still busy after its retries: left for the next daemon start\'s sweep', { cgroup: path, tries: e.attempts, left: r.slice(0, 8), pids: await pidsUnder(path) });
      }
    }
    if (how === 'timed') this.#delay = Math.min(this.#delay * 2, MAX_DELAY_MS);
  }
}
