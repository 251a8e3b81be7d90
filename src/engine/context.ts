/**
 * The state every part of the engine shares: options, store, locks, networks, the event emitter,
 * the exit monitor's watchers, and the lookups (handler → backend, id/prefix → record) all of them
 * use. One EngineContext per Engine; the lifecycle files are functions over it.
 */
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { InvalidArgumentError, NotFoundError, UnavailableError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { DiskReserve } from '../util/disk-reserve.ts';
import type { Backend } from '../runtime/backend.ts';
import { handlersOf, type RuntimeHandlers } from '../runtime/handlers.ts';
import type { PodNetwork } from '../network/pod-network.ts';
import { netnsMaker } from '../runtime/helpers/netns.ts';
import { StateStore, type PodRecord, type ContainerRecord } from './store.ts';
import { KeyedMutex } from './mutex.ts';
import { KeyReservations, Slots } from './pod-creation.ts';
import { resolveId } from './ids.ts';
import { LoopbackPodNetwork } from '../network/loopback-pod-network.ts';
import { selinuxEnabled } from './selinux.ts';
import type { EngineOptions } from './options.ts';
import type { SandboxPool } from './warm-pool-member.ts';
import { ReleasedCgroups } from './released-cgroups.ts';

export class EngineContext {
  readonly opts: EngineOptions;
  readonly log: Logger;
  readonly store: StateStore;
  readonly locks = new KeyedMutex();
  /** RunPodSandbox admission: bounded parallelism, one attempt per pod name in flight. */
  readonly podSlots: Slots;
  readonly podNames = new KeyReservations();
  /** Pods being created: Stop/RemovePodSandbox cancel them and wait for the rollback. */
  readonly creating = new Map<string, { abort: AbortController; done: Promise<void> }>();
  readonly network: PodNetwork;
  readonly fallbackNetwork: LoopbackPodNetwork;
  /** 'event' (cri.ContainerEventResponse) and 'close'. */
  readonly events = new EventEmitter();
  /** Exit monitor: container or pause id → the watch's abort. */
  readonly watchers = new Map<string, AbortController>();
  /** Last CPU sample per container, for usageNanoCores. */
  readonly lastCpu = new Map<string, { ns: number; at: number }>();
  readonly closing = new AbortController();
  /** SELinux on this node (read once): selinux_options are refused there, not silently dropped (selinux.ts). */
  readonly selinux = selinuxEnabled();
  readonly reserve: DiskReserve | undefined;
  /** The handler registry (shared with the CRI layer when the daemon passes one). */
  readonly handlers: RuntimeHandlers;
  sweepTimer: NodeJS.Timeout | undefined;
  pauseRootfs: Promise<string> | undefined;
  /** The warm pools RunPodSandbox adopts from (engine/warm-pool.ts); undefined = none configured. */
  pool: SandboxPool | undefined;
  /** Pod cgroups left busy at their removal, retried while the engine runs (released-cgroups.ts). */
  readonly released: ReleasedCgroups;

  constructor(opts: EngineOptions) {
    if (!opts.backends.has(opts.defaultHandler)) throw new InvalidArgumentError(`default handler ${opts.defaultHandler} has no backend`);
    this.opts = opts;
    this.handlers = opts.handlers ?? handlersOf(opts.defaultHandler, opts.backends);
    this.log = opts.logger.child({ part: 'engine' });
    if (opts.diskReserveBytes !== 0) this.reserve = new DiskReserve(opts.root, { logger: this.log, ...(opts.diskReserveBytes ? { bytes: opts.diskReserveBytes } : {}) });
    this.store = new StateStore(join(opts.root, 'state.db'), this.reserve ? { reserve: this.reserve } : {});
    this.fallbackNetwork = new LoopbackPodNetwork(this.log, opts.pinNamespaces === false ? undefined : () => netnsMaker(opts.helperDir), { anchor: opts.root });
    this.network = opts.network ?? this.fallbackNetwork;
    this.events.setMaxListeners(0);
    this.released = new ReleasedCgroups({
      log: this.log, anchor: opts.root, ...(opts.releasedCgroupRetry ? { retry: opts.releasedCgroupRetry } : {}),
      inUse: (path, shared) => (shared && this.podSlots.used > 0) || this.store.listPods().some((p) => namesCgroup(p, path)),
    });
    this.podSlots = new Slots(opts.podCreationParallelism ?? Math.min(16, Math.max(4, 4 * availableParallelism())), 4096, 'RunPodSandbox');
  }

  /**
   * The handler a request names ("" = default), known and usable here: the registry's answer
   * (InvalidArgument unknown, FailedPrecondition when its backend cannot run on this host), the
   * same the CRI layer gives.
   */
  async backendFor(handler: string, signal?: AbortSignal): Promise<{ name: string; backend: Backend }> {
    const entry = await this.handlers.resolve(handler, signal);
    const backend = this.opts.backends.get(entry.name);
    if (!backend) throw new UnavailableError(`runtime handler ${entry.name} has no backend in this engine`);
    return { name: entry.name, backend };
  }

  backendOf(p: PodRecord): Backend {
    const b = this.opts.backends.get(p.handler);
    if (!b) throw new UnavailableError(`pod ${p.id}: runtime handler ${p.handler} is no longer configured`);
    return b;
  }

  /** A settled pod (or, with `creating`, one being created too: status reads it as NOTREADY). */
  resolvePod(idOrPrefix: string, opts: { creating?: boolean } = {}): PodRecord {
    const id = resolveId('pod sandbox', idOrPrefix, (p) => this.store.podIdsWithPrefix(p));
    const p = this.store.getPod(id);
    if (!p || (p.phase === 'creating' && !opts.creating) || p.phase === 'removing') throw new NotFoundError(`pod sandbox ${idOrPrefix} not found`, { reason: 'BH_POD_NOT_FOUND' });
    return p;
  }

  resolveContainer(idOrPrefix: string): ContainerRecord {
    const id = resolveId('container', idOrPrefix, (p) => this.store.containerIdsWithPrefix(p));
    const c = this.store.getContainer(id);
    if (!c || !visible(c)) throw new NotFoundError(`container ${idOrPrefix} not found`, { reason: 'BH_CONTAINER_NOT_FOUND' });
    return c;
  }

  podOfContainer(c: ContainerRecord): PodRecord {
    const p = this.store.getPod(c.podId);
    if (!p) throw new NotFoundError(`pod sandbox ${c.podId} of container ${c.id} not found`, { reason: 'BH_POD_NOT_FOUND' });
    return p;
  }

  /** Stops the exit monitor's watch of a container or pause (if any). */
  unwatch(id: string): void {
    this.watchers.get(id)?.abort();
    this.watchers.delete(id);
  }
}

/** Whether pod `p` names cgroup `path`, or one above or below it. */
function namesCgroup(p: PodRecord, path: string): boolean {
  const nested = (a: string, b: string): boolean => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
  return [p.runtime.cgroupParent, ...(p.runtime.engine.extraCgroups ?? [])].some((c) => nested(c, path));
}

/** A container the CRI sees (not being created or removed). */
export function visible(c: ContainerRecord): boolean {
  return c.phase !== 'creating' && c.phase !== 'removing';
}

export function nowNs(): number {
  return Date.now() * 1e6;
}

export function dateNs(d: Date | undefined): number {
  return d ? d.getTime() * 1e6 : nowNs();
}

/** Like Promise.all, but waits for every promise to settle before rejecting with the first error. */
export async function settleAll<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === 'rejected') throw r.reason;
  return rs.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
