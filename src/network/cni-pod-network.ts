/**
 * CniPodNetwork: the PodNetwork of this node — named netns per pod, CNI plugins from Debian,
 * nftables egress guard for pods whose decision asks for it. See pod-network.ts for the contract.
 *
 * Crash safety: a record per pod (<cacheDir>/pods/<key>.json) is written before anything is
 * created and after every step, holding the netns name, the exact CNI config used and the
 * latest CNI result; teardown() works from it alone, so it undoes half-done setups and works
 * after a restart even when the config files changed since.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { CniConfig } from './cni-config.ts';
import { FailedPreconditionError, InvalidArgumentError, PermissionDeniedError, wrapError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { CniInvoker, loadFirstNetworkList, parseNetworkList, type CniNetworkList, type CniResult, type CniRuntimeConf } from './cni.ts';
import { parseNetworkConfig, shortHash, type NetworkConfig } from './config.ts';
import { ensureManagedBridge, managedBridgeOf, removeManagedBridge, writeDefaultNetwork } from './default-network.ts';
import { EgressGuard, type GuardedPod } from './guard.ts';
import { createNetns, deleteNetns, listLinks, netnsPathOf } from './host.ts';
import { dropNetnsOwner, dropOwner, NETNS_OWNERS_DIR, recordNetnsOwner, recordOwner } from './netns-owner.ts';
import type { NetworkMode, PodNetwork, PodNetworkRequest, PodNetworkResult, PodNetworkStatus, PodTrust } from './pod-network.ts';

export const POD_IFNAME = 'eth0';
const LOOPBACK_LIST: CniNetworkList = parseNetworkList(JSON.stringify({ cniVersion: '1.0.0', name: 'bulkhead-loopback', plugins: [{ type: 'loopback' }] }), '(built in)');

interface PodRecord {
  version: 1;
  podId: string;
  key: string;
  name: string;
  namespace: string;
  uid: string;
  trust: PodTrust;
  /** Absent in records written before the guard had its own field (then: trust !== 'trusted'). */
  egressGuard?: boolean;
  mode: NetworkMode;
  phase: 'creating' | 'ready';
  netnsName: string | null;
  portMappings: PodNetworkRequest['portMappings'];
  /** The network list as used at ADD time (raw JSON document). */
  conflist?: Record<string, unknown>;
  /** Latest CNI result (final once phase is ready). */
  result?: CniResult;
  ips: string[];
  guard?: GuardedPod;
  guardRemoved?: boolean;
}

export interface CniPodNetworkOptions {
  cni: CniConfig;
  /** Raw [network] section (config.sections.network), validated here. */
  network?: unknown;
  logger: Logger;
  /** Where the netns owner files go (netns-owner.ts); default NETNS_OWNERS_DIR (node-wide). */
  ownersDir?: string;
}

/** Safe key for files and CNI_CONTAINERID: the id itself when tame, else its hash. */
function keyOf(podId: string): string {
  if (podId.length === 0) throw new InvalidArgumentError('pod id must not be empty');
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(podId) ? podId : createHash('sha256').update(podId).digest('hex');
}

function stripPrefix(addr: string): string {
  return addr.split('/')[0] ?? addr;
}

export class CniPodNetwork implements PodNetwork {
  readonly config: NetworkConfig;
  readonly guard: EgressGuard;
  readonly #cni: CniConfig;
  readonly #invoker: CniInvoker;
  readonly #log: Logger;
  readonly #podsDir: string;
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #ownersDir: string;

  private constructor(opts: CniPodNetworkOptions, config: NetworkConfig) {
    this.config = config;
    this.#cni = opts.cni;
    this.#log = opts.logger.child({ part: 'network' });
    this.#invoker = new CniInvoker({ binDirs: opts.cni.binDirs, timeoutMs: config.pluginTimeoutMs });
    this.#podsDir = join(opts.cni.cacheDir, 'pods');
    this.#ownersDir = opts.ownersDir ?? NETNS_OWNERS_DIR;
    this.guard = new EgressGuard({ instance: config.instance || shortHash(opts.cni.cacheDir, 10), blocked: config.blocked, routed: config.routed });
  }

  /** Validates the [network] section, writes the default network when none exists. */
  static async create(opts: CniPodNetworkOptions, signal: AbortSignal): Promise<CniPodNetwork> {
    const config = parseNetworkConfig(opts.network);
    const n = new CniPodNetwork(opts, config);
    await mkdir(n.#podsDir, { recursive: true, mode: 0o700 });
    const file = await writeDefaultNetwork({
      confDir: opts.cni.confDir,
      cacheDir: opts.cni.cacheDir,
      bridge: config.bridge || `bh-${shortHash(opts.cni.confDir, 8)}`,
      subnet: config.subnet,
      avoid: [...config.blocked, ...config.routed],
    }, signal);
    if (file) n.#log.info('wrote default pod network', { file });
    return n;
  }

  /** The network list pods get now (first file in confDir). */
  async networkList(): Promise<CniNetworkList> {
    const list = await loadFirstNetworkList(this.#cni.confDir);
    if (!list) throw new FailedPreconditionError(`no CNI network config in ${this.#cni.confDir}`);
    return list;
  }

  async ready(): Promise<{ ready: boolean; reason?: string }> {
    try {
      const list = await this.networkList();
      managedBridgeOf(list);
      for (const p of [...list.plugins, ...LOOPBACK_LIST.plugins]) await this.#invoker.findPlugin(p.type);
      return { ready: true };
    } catch (err) {
      return { ready: false, reason: (err as Error).message };
    }
  }

  async setup(pod: PodNetworkRequest, signal: AbortSignal): Promise<PodNetworkResult> {
    validate(pod);
    if (pod.mode === 'host' && pod.trust !== 'trusted') throw new PermissionDeniedError(`pod ${pod.namespace}/${pod.name}: host networking is refused for untrusted pods`);
    const key = keyOf(pod.id);
    return await this.#locked(key, async () => {
      const old = await this.#read(key);
      if (old?.phase === 'ready' && old.mode === pod.mode && old.trust === pod.trust && (old.egressGuard ?? old.trust !== 'trusted') === pod.egressGuard) return resultOf(old);
      if (old) await this.#teardown(old, signal);
      const rec: PodRecord = {
        version: 1, podId: pod.id, key, name: pod.name, namespace: pod.namespace, uid: pod.uid, trust: pod.trust, egressGuard: pod.egressGuard, mode: pod.mode,
        phase: 'creating', netnsName: null, portMappings: pod.portMappings, ips: [],
      };
      if (pod.mode === 'host') {
        rec.phase = 'ready';
        await this.#write(rec);
        return resultOf(rec);
      }
      rec.netnsName = `bulkhead-${key.slice(0, 12)}-${randomBytes(3).toString('hex')}`;
      await this.#write(rec); // before creating anything: a crash from here on is undone by teardown
      // and should this record go with its daemon (a deleted root), any daemon's start removes the netns
      await recordNetnsOwner(rec.netnsName, this.#file(key), this.#ownersDir);
      try {
        await this.#build(rec, pod, signal);
        rec.phase = 'ready';
        await this.#write(rec);
        this.#log.info('pod network ready', { pod: pod.id, mode: pod.mode, trust: pod.trust, ips: rec.ips.join(','), netns: rec.netnsName });
        return resultOf(rec);
      } catch (err) {
        this.#log.warn('pod network setup failed, undoing', { pod: pod.id, err });
        try { await this.#teardown(rec, AbortSignal.timeout(120_000), true); } catch (undoErr) {
          this.#log.error('undoing failed pod network setup failed', { pod: pod.id, err: undoErr });
        }
        throw wrapError(err, `network setup of pod ${pod.namespace}/${pod.name}`);
      }
    });
  }

  async #build(rec: PodRecord, pod: PodNetworkRequest, signal: AbortSignal): Promise<void> {
    const netnsPath = await createNetns(rec.netnsName!, signal);
    await this.#invoker.addList(LOOPBACK_LIST, { ...this.#rt(rec, netnsPath), ifName: 'lo' }, signal);
    if (pod.mode === 'none') return;
    const list = await this.networkList();
    rec.conflist = list.raw;
    await this.#write(rec);
    const managed = managedBridgeOf(list);
    if (managed) {
      // found again through the config that names it; should that go with its daemon, any daemon's start removes it
      await recordOwner('bridge', managed.bridge, this.#cni.confDir, this.#ownersDir);
      await ensureManagedBridge(managed, this.config.routed.length > 0, signal);
    }
    const result = await this.#invoker.addList(list, this.#rt(rec, netnsPath), signal, async (_i, r) => {
      rec.result = r;
      await this.#write(rec);
    });
    rec.ips = (result.ips ?? []).map((i) => stripPrefix(i.address));
    if (rec.ips.length === 0) throw new FailedPreconditionError(`CNI network "${list.name}" gave the pod no IP address`);
    if (pod.egressGuard) {
      const g = await this.#describeForGuard(rec, signal);
      rec.guard = g;
      await this.#write(rec);
      await recordOwner('guard', this.guard.table.slice('bulkhead_'.length), this.#cni.cacheDir, this.#ownersDir);
      await this.guard.addPod(g, signal);
    }
  }

  /** Finds the pod's host-side veth (peer of eth0), its bridge, MAC and IPv4 for the guard. */
  async #describeForGuard(rec: PodRecord, signal: AbortSignal): Promise<GuardedPod> {
    const inner = (await listLinks(signal, rec.netnsName!)).find((l) => l.ifname === POD_IFNAME);
    const ip4 = rec.ips.find((i) => /^\d+\.\d+\.\d+\.\d+$/.test(i));
    if (!inner?.address || inner.link_index === undefined || !ip4) throw new FailedPreconditionError(`egress guard: pod ${rec.podId} has no ${POD_IFNAME} veth with an IPv4 address; untrusted pods need a bridge network`);
    const host = (await listLinks(signal)).find((l) => l.ifindex === inner.link_index);
    if (!host?.master) throw new FailedPreconditionError(`egress guard: the host side of pod ${rec.podId}'s ${POD_IFNAME} is not a bridge port; untrusted pods need a bridge network`);
    return { key: shortHash(rec.key, 12), ip: ip4, mac: inner.address.toLowerCase(), hostVeth: host.ifname, bridge: host.master };
  }

  #rt(rec: PodRecord, netnsPath: string): CniRuntimeConf {
    const portMappings = rec.portMappings.filter((p) => p.hostPort > 0).map((p) => ({
      hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol, ...(p.hostIp ? { hostIP: p.hostIp } : {}),
    }));
    return {
      containerId: rec.key,
      netnsPath,
      ifName: POD_IFNAME,
      args: [['K8S_POD_NAMESPACE', rec.namespace], ['K8S_POD_NAME', rec.name], ['K8S_POD_INFRA_CONTAINER_ID', rec.key], ['K8S_POD_UID', rec.uid]],
      capabilityArgs: portMappings.length ? { portMappings } : {},
    };
  }

  async teardown(podId: string, signal: AbortSignal): Promise<void> {
    const key = keyOf(podId);
    await this.#locked(key, async () => {
      const rec = await this.#read(key);
      if (rec) await this.#teardown(rec, signal);
      // a write of the record cut short (the daemon killed in it) left its temporary file
      await unlink(`${this.#file(key)}.tmp`).catch(() => undefined);
    });
  }

  /**
   * force (undoing a failed setup): a CNI DEL failure is logged and the rest is removed anyway —
   * the ADD failed, and a config that cannot ADD usually cannot DEL either. Otherwise a DEL
   * failure keeps the record so a later teardown retries it.
   */
  async #teardown(rec: PodRecord, signal: AbortSignal, force = false): Promise<void> {
    // Guard rules go first (before the IP is released for reuse), and only once.
    if (rec.guard && !rec.guardRemoved) {
      await this.guard.removePod(rec.guard, signal);
      rec.guardRemoved = true;
      await this.#write(rec);
    }
    if (rec.netnsName && rec.conflist) {
      const list = parseNetworkList(JSON.stringify(rec.conflist), `(cached for pod ${rec.podId})`);
      try {
        await this.#invoker.delList(list, this.#rt(rec, netnsPathOf(rec.netnsName)), rec.result ?? null, signal);
      } catch (err) {
        if (!force) throw err;
        this.#log.warn('CNI DEL after a failed ADD failed; removing the netns anyway', { pod: rec.podId, err });
      }
      delete rec.conflist;
      await this.#write(rec);
    }
    if (rec.netnsName) {
      await deleteNetns(rec.netnsName, signal);
      await dropNetnsOwner(rec.netnsName, this.#ownersDir);
    }
    await unlink(this.#file(rec.key)).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
    this.#log.info('pod network removed', { pod: rec.podId });
  }

  /** Runs CNI CHECK for a ready bridge-mode pod (throws the plugin's error when it fails). */
  async check(podId: string, signal: AbortSignal): Promise<void> {
    const rec = await this.#read(keyOf(podId));
    if (!rec || rec.phase !== 'ready') throw new FailedPreconditionError(`pod ${podId} has no ready network`);
    if (!rec.conflist || !rec.netnsName || !rec.result) return;
    const list = parseNetworkList(JSON.stringify(rec.conflist), `(cached for pod ${rec.podId})`);
    await this.#invoker.checkList(list, this.#rt(rec, netnsPathOf(rec.netnsName)), rec.result, signal);
  }

  async status(podId: string): Promise<PodNetworkStatus | undefined> {
    const rec = await this.#read(keyOf(podId));
    if (!rec || rec.phase !== 'ready') return undefined;
    return { ...resultOf(rec), trust: rec.trust, ...(rec.mode === 'bridge' ? { ifName: POD_IFNAME } : {}) };
  }

  async list(): Promise<string[]> {
    const ids: string[] = [];
    for (const f of await readdir(this.#podsDir).catch(() => [] as string[])) {
      if (!f.endsWith('.json')) continue;
      const rec = await this.#read(f.slice(0, -5));
      if (rec) ids.push(rec.podId);
    }
    return ids;
  }

  /**
   * Removes host-level objects (guard tables, the managed bridge) when no pod has a network
   * record any more; with pods left it does nothing (their rules must stay). For daemon
   * shutdown with no pods, and for tests.
   */
  async close(signal: AbortSignal): Promise<void> {
    if ((await this.list()).length > 0) return;
    await this.guard.removeAll(signal);
    await dropOwner('guard', this.guard.table.slice('bulkhead_'.length), this.#ownersDir);
    const list = await loadFirstNetworkList(this.#cni.confDir).catch(() => undefined);
    const managed = list ? managedBridgeOf(list) : undefined;
    if (managed) {
      await removeManagedBridge(managed, signal);
      await dropOwner('bridge', managed.bridge, this.#ownersDir);
    }
  }

  #file(key: string): string {
    return join(this.#podsDir, `${key}.json`);
  }

  async #read(key: string): Promise<PodRecord | undefined> {
    let text: string;
    try { text = await readFile(this.#file(key), 'utf8'); } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return JSON.parse(text) as PodRecord;
  }

  async #write(rec: PodRecord): Promise<void> {
    const file = this.#file(rec.key);
    const tmp = `${file}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(rec));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  }

  async #locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(key) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.#locks.set(key, next);
    try { return await next; } finally {
      if (this.#locks.get(key) === next) this.#locks.delete(key);
    }
  }
}

function resultOf(rec: PodRecord): PodNetworkResult {
  return { netnsPath: rec.netnsName ? netnsPathOf(rec.netnsName) : null, ips: [...rec.ips], mode: rec.mode };
}

function validate(pod: PodNetworkRequest): void {
  if (!['bridge', 'none', 'host'].includes(pod.mode)) throw new InvalidArgumentError(`network mode must be bridge, none or host, not ${JSON.stringify(pod.mode)}`);
  if (pod.trust !== 'trusted' && pod.trust !== 'untrusted') throw new InvalidArgumentError(`trust must be trusted or untrusted`);
  if (typeof pod.egressGuard !== 'boolean') throw new InvalidArgumentError('egressGuard must be true or false');
  for (const [k, v] of [['name', pod.name], ['namespace', pod.namespace], ['uid', pod.uid]] as const) {
    if (/[;=\0\n]/.test(v) || v.length > 253) throw new InvalidArgumentError(`pod ${k} ${JSON.stringify(v)} is not a valid name`);
  }
  const seen = new Set<string>();
  for (const p of pod.portMappings) {
    if (!['tcp', 'udp', 'sctp'].includes(p.protocol)) throw new InvalidArgumentError(`port mapping protocol must be tcp, udp or sctp`);
    if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535) throw new InvalidArgumentError(`containerPort ${p.containerPort} is not a port`);
    if (!Number.isInteger(p.hostPort) || p.hostPort < 0 || p.hostPort > 65535) throw new InvalidArgumentError(`hostPort ${p.hostPort} is not a port`);
    if (p.hostIp && !/^\d{1,3}(\.\d{1,3}){3}$/.test(p.hostIp)) throw new InvalidArgumentError(`hostIp ${p.hostIp} is not an IPv4 address`);
    if (p.hostPort > 0) {
      const k = `${p.protocol}/${p.hostIp}/${p.hostPort}`;
      if (seen.has(k)) throw new InvalidArgumentError(`hostPort ${p.hostPort}/${p.protocol} is mapped twice`);
      seen.add(k);
    }
  }
}

