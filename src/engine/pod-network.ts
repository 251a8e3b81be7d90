/**
 * The engine's fallback PodNetwork (the interface lives in network/pod-network.ts): a private
 * network namespace with only loopback up, for mode "none" and for daemons built without CNI.
 * Pods reach nothing and nothing reaches them. Mode "host" means no netns at all.
 *
 * Names are `bulkhead-<first 16 hex of the pod id>-<6 random hex>`: unique although other tenants
 * share /run/netns, and found again by pod id after a restart (teardown scans for the prefix), so
 * a daemon killed between `ip netns add` and its next database write leaks nothing.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { run } from '../util/exec.ts';
import { InternalError, PermissionDeniedError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { pinNamespaces, unpinNamespaces } from '../runtime/pinns/pinns.ts';
import type { PodNetwork, PodNetworkRequest, PodNetworkResult, PodNetworkStatus } from '../network/pod-network.ts';

const NETNS_DIR = '/run/netns';

function prefixFor(podId: string): string {
  return `bulkhead-${podId.replace(/[^0-9a-zA-Z]/g, '').slice(0, 16)}-`;
}

/** Creates `/run/netns/<name>` with loopback up; returns its path. */
export async function createNetns(name: string, signal?: AbortSignal): Promise<string> {
  const opts = signal ? { timeoutMs: 20_000, signal } : { timeoutMs: 20_000 };
  const r = await run('ip', ['netns', 'add', name], opts);
  if (r.code !== 0) throw new InternalError(`ip netns add ${name}: ${r.stderr.trim()}`);
  const up = await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'], opts);
  if (up.code !== 0) {
    await deleteNetns(name);
    throw new InternalError(`ip -n ${name} link set lo up: ${up.stderr.trim()}`);
  }
  return `${NETNS_DIR}/${name}`;
}

/** Deletes `/run/netns/<name>`; a missing one is fine. */
export async function deleteNetns(name: string, signal?: AbortSignal): Promise<void> {
  const opts = signal ? { timeoutMs: 20_000, signal } : { timeoutMs: 20_000 };
  const r = await run('ip', ['netns', 'delete', name], opts);
  if (r.code === 0) return;
  // Half-made netns (file without mount, or mount without file): clean up by hand.
  await run('umount', ['-l', `${NETNS_DIR}/${name}`], { timeoutMs: 10_000 });
  await rm(`${NETNS_DIR}/${name}`, { force: true });
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
  readonly #pinns: (() => Promise<string>) | undefined;

  /**
   * `pinns` yields the bulkhead-pinns helper: one ~2 ms process makes the netns with loopback up
   * (instead of two `ip` runs); when it rejects, `ip netns` is used.
   */
  constructor(logger: Logger, pinns?: () => Promise<string>) {
    this.#log = logger;
    this.#pinns = pinns;
  }

  async #helper(): Promise<string | undefined> {
    try { return await this.#pinns?.(); } catch { return undefined; }
  }

  async setup(pod: PodNetworkRequest, signal: AbortSignal): Promise<PodNetworkResult> {
    if (pod.mode === 'host') {
      if (pod.trust !== 'trusted') throw new PermissionDeniedError(`pod ${pod.namespace}/${pod.name}: host network is not allowed for an untrusted pod`);
      return { netnsPath: null, ips: [], mode: 'host' };
    }
    const name = prefixFor(pod.id) + randomBytes(3).toString('hex');
    const bin = await this.#helper();
    let path: string;
    if (bin) {
      path = `${NETNS_DIR}/${name}`;
      await mkdir(NETNS_DIR, { recursive: true });
      await pinNamespaces(bin, { net: path, loopbackUp: true, signal });
    } else {
      path = await createNetns(name, signal);
    }
    this.#log.debug('pod netns created', { pod: pod.id, netns: path });
    return { netnsPath: path, ips: [], mode: 'none' };
  }

  async teardown(podId: string, signal: AbortSignal): Promise<void> {
    const names = await netnsNamesOf(podId);
    if (names.length === 0) return;
    const bin = await this.#helper();
    if (bin) await unpinNamespaces(bin, names.map((n) => `${NETNS_DIR}/${n}`), signal);
    else for (const name of names) await deleteNetns(name, signal);
  }

  async status(podId: string): Promise<PodNetworkStatus | undefined> {
    const names = await netnsNamesOf(podId);
    if (names.length === 0) return undefined;
    return { netnsPath: `${NETNS_DIR}/${names[0]}`, ips: [], mode: 'none', trust: 'untrusted' };
  }

  async list(): Promise<string[]> {
    return [];
  }

  async ready(): Promise<{ ready: boolean }> {
    return { ready: true };
  }
}
