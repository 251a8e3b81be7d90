/**
 * The fallback PodNetwork (the interface lives in ./pod-network.ts): a private network namespace
 * with only loopback up, for mode "none" and for daemons built without CNI. Pods reach nothing
 * and nothing reaches them. Mode "host" means no netns at all.
 *
 * Names are `bulkhead-<first 16 hex of the pod id>-<6 random hex>`: unique although other tenants
 * share /run/netns, and found again by pod id after a restart (teardown scans for the prefix), so
 * a daemon killed between making the netns and its next database write leaks nothing.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { PermissionDeniedError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { createNetns, deleteNetns, NETNS_DIR, netnsPathOf } from './host.ts';
import type { PodNetwork, PodNetworkRequest, PodNetworkResult, PodNetworkStatus } from './pod-network.ts';
import { dropNetnsOwner, recordNetnsOwner } from './netns-owner.ts';

/**
 * A faster maker of netns files than two `ip` runs (the runtime layer's namespace helper: one
 * ~2 ms process makes the netns with lo up). `remove` takes paths under /run/netns.
 */
export interface NetnsMaker {
  create(path: string, signal: AbortSignal): Promise<void>;
  remove(paths: string[], signal: AbortSignal): Promise<void>;
}

function prefixFor(podId: string): string {
  return `bulkhead-${podId.replace(/[^0-9a-zA-Z]/g, '').slice(0, 16)}-`;
}

/** Names in /run/netns made by LoopbackPodNetwork for this pod id. */
export async function netnsNamesOf(podId: string): Promise<string[]> {
  let names: string[] = [];
  try { names = await readdir(NETNS_DIR); } catch { return []; }
  const p = prefixFor(podId);
  return names.filter((n) => n.startsWith(p));
}

export class LoopbackPodNetwork implements PodNetwork {
  readonly #log: Logger;
  readonly #maker: (() => Promise<NetnsMaker>) | undefined;

  readonly #owner: { anchor: string; dir?: string } | undefined;

  /**
   * `maker` yields the fast netns maker; when it is absent or rejects, `ip netns` is used.
   * `owner.anchor`: a path that exists while the state that finds these netns again does (the
   * daemon's root): recorded with each netns (netns-owner.ts), so one left when it is gone is removed.
   */
  constructor(logger: Logger, maker?: () => Promise<NetnsMaker>, owner?: { anchor: string; dir?: string }) {
    this.#log = logger;
    this.#maker = maker;
    this.#owner = owner;
  }

  async #fast(): Promise<NetnsMaker | undefined> {
    try { return await this.#maker?.(); } catch { return undefined; }
  }

  async setup(pod: PodNetworkRequest, signal: AbortSignal): Promise<PodNetworkResult> {
    if (pod.mode === 'host') {
      if (pod.trust !== 'trusted') throw new PermissionDeniedError(`pod ${pod.namespace}/${pod.name}: host network is not allowed for an untrusted pod`);
      return { netnsPath: null, ips: [], mode: 'host' };
    }
    const name = prefixFor(pod.id) + randomBytes(3).toString('hex');
    if (this.#owner) await recordNetnsOwner(name, this.#owner.anchor, this.#owner.dir);
    const fast = await this.#fast();
    let path: string;
    try {
      if (fast) {
        path = netnsPathOf(name);
        await mkdir(NETNS_DIR, { recursive: true });
        await fast.create(path, signal);
      } else {
        path = await createNetns(name, signal, { loopbackUp: true });
      }
    } catch (err) {
      if (this.#owner) await dropNetnsOwner(name, this.#owner.dir);
      throw err;
    }
    this.#log.debug('pod netns created', { pod: pod.id, netns: path });
    return { netnsPath: path, ips: [], mode: 'none' };
  }

  async teardown(podId: string, signal: AbortSignal): Promise<void> {
    const names = await netnsNamesOf(podId);
    if (names.length === 0) return;
    const fast = await this.#fast();
    if (fast) await fast.remove(names.map((n) => netnsPathOf(n)), signal);
    else for (const name of names) await deleteNetns(name, signal);
    if (this.#owner) for (const name of names) await dropNetnsOwner(name, this.#owner.dir);
  }

  async status(podId: string): Promise<PodNetworkStatus | undefined> {
    const names = await netnsNamesOf(podId);
    if (names.length === 0) return undefined;
    return { netnsPath: netnsPathOf(names[0]!), ips: [], mode: 'none', trust: 'untrusted' };
  }

  async list(): Promise<string[]> {
    return [];
  }

  async ready(): Promise<{ ready: boolean }> {
    return { ready: true };
  }
}
