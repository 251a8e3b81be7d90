/**
 * The engine: pods and containers on top of the runtime layer's Backends, the image service and a
 * PodNetwork. Its methods mirror the CRI RuntimeService RPCs; the CRI server (cri/) and the
 * streaming server (stream/, through exec/attach/portForward) are its only callers.
 *
 * ## Lifecycle of a pod
 *   runPodSandbox   → record 'creating' → log dir, pod dir, network (netns), /etc files, then
 *                     where containers only join namespaces (runc, crun): IPC/UTS pinned to files
 *                     under <podDir>/ns by bulkhead-pinns, or a pause container when the pod
 *                     shares one PID namespace (or the helper cannot be built); where the pause is
 *                     the sandbox (gVisor, microVM): the pause container
 *                     → record 'ready' (CRI SANDBOX_READY)
 *   stopPodSandbox  → every container killed, pause killed, network torn down → 'notready'.
 *                     Idempotent; an unknown id succeeds.
 *   removePodSandbox→ record 'removing' → containers removed, pause deleted, network torn down,
 *                     namespace files unpinned, pod dir, default log dir and engine-made cgroup
 *                     parents removed → record gone.
 *                     Idempotent; an unknown id succeeds.
 *
 * ## Lifecycle of a container
 *   createContainer → record 'creating' → rootfs (image service overlay, mounted on
 *                     <runDir>/containers/<id>/rootfs) → spec → backend.createContainer (conmon)
 *                     → 'created' (CONTAINER_CREATED) + CREATED event
 *   startContainer  → backend.start → 'running' + STARTED event; the exit monitor watches it
 *   process exits   → exit monitor: 'exited' with exitCode, finishedAt, reason
 *                     (Completed | Error | OOMKilled) + STOPPED event
 *   stopContainer   → stop signal (image StopSignal, default SIGTERM), wait `timeout` s, SIGKILL
 *   removeContainer → record 'removing' → backend.delete, unmount, image rootfs removed → gone
 *                     + DELETED event. Stop and remove are idempotent; unknown ids succeed.
 *
 * ## Crash safety
 * The daemon may be SIGKILLed at any instruction. Every step that changes the outside world is
 * preceded by a store write that names it (phase 'creating' / 'removing', ids and paths chosen up
 * front). `recover()` (call once after construction, before serving) walks the store: transitional
 * records are finished or undone, 'running' containers are checked against conmon (still running →
 * watched again; exited → exit code from conmon's exit file), orphans the backends still hold are
 * deleted. Containers themselves never depend on the daemon (conmon is their parent).
 *
 * ## Concurrency
 * One async lock per object id (KeyedMutex). Pod-level operations take the pod lock, container
 * operations take the container lock; removing a pod takes the pod lock and then each container's.
 * Work on different pods runs in parallel.
 *
 * IDs are 64 hex chars; every method taking an id also accepts a unique prefix (like crictl).
 */
import { EventEmitter, on } from 'node:events';
import { lstat, mkdir, rm, rmdir, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, isAbsolute, normalize, sep } from 'node:path';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { availableParallelism } from 'node:os';
import type { Duplex, Readable, Writable } from 'node:stream';
import {
  AbortedError, AlreadyExistsError, FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError, PermissionDeniedError, UnavailableError, UnimplementedError, isNotFound,
} from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { DiskReserve } from '../util/disk-reserve.ts';
import type { Backend, ContainerState as RuntimeState, OciLinuxResources } from '../runtime/backend.ts';
import type { PodNetwork, PodNetworkRequest, NetworkMode, PortProtocol } from '../network/pod-network.ts';
import { FAIL_CLOSED, readDecision, type PodDecisionRecord } from '../policy/decision.ts';
import { StateStore, NameConflict, type PodRecord, type ContainerRecord, type PodRuntimeInfo, type ContainerRuntimeInfo } from './store.ts';
import { KeyedMutex } from './mutex.ts';
import { KeyReservations, Slots } from './pod-creation.ts';
import { newId, resolveId } from './ids.ts';
import { writePodFiles, validateHostname } from './pod-files.ts';
import { LoopbackPodNetwork } from './pod-network.ts';
import { ensurePinns, pinNamespaces, unpinNamespaces, checkPinnableSysctls } from '../runtime/pinns/pinns.ts';
import { buildContainerSpec, containerSeccomp, buildPodPauseSpec, ensurePauseRootfs, imageProcessConfig, type EngineImage } from './container-spec.ts';
import { ensureHostMount } from '../runtime/pinns/hostmount.ts';
import type { HostPathGuard } from './container-spec.ts';
import { DANGEROUS_HOST_PATHS } from '../policy/policy.ts';
import { unifiedProblems } from '../policy/cgroup-unified.ts';
import { refuseUserNamespace } from './user-namespace.ts';
import { cgroupMode } from '../runtime/cgroup-stats.ts';
import { refuseSelinuxOnEnabledNode, selinuxEnabled } from './selinux.ts';
import { isUnder, partsBeneath, relativeParts, walkDirsBeneath } from '../util/beneath.ts';
import { mountAll, unmountTree, type RootfsMount } from './mounts.ts';
import type * as cri from '../api/cri.ts';

/**
 * The part of the image service the engine uses. image/image-service.ts's `ImageService`
 * satisfies it as it is (pass the service itself; no adapter needed).
 */
export interface EngineImages {
  /** Image by reference or id; undefined when it is not in the store (the engine answers NotFound). */
  get(refOrId: string): Promise<EngineImage | undefined>;
  /** Prepares a writable rootfs snapshot for `key` from the image; returns the mounts that make it. */
  prepareRootfs(key: string, imageId: string): Promise<RootfsMount[]>;
  /** Removes the snapshot of `key`; idempotent. */
  removeRootfs(key: string): Promise<void>;
}

export interface EngineOptions {
  /** Persistent state: state.db, default log dirs, the pause rootfs. */
  root: string;
  /** Volatile state: pod dirs, container rootfs mount points. */
  runDir: string;
  logger: Logger;
  images: EngineImages;
  /** Handler name (RuntimeClass) → backend. */
  backends: Map<string, Backend>;
  /** Handler used when a pod names none. */
  defaultHandler: string;
  /** CNI-backed pod network; without it every non-host pod gets a loopback-only netns. */
  network?: PodNetwork;
  /** Cgroup parent for pods that name none (cgroupfs path), default "/bulkhead". */
  cgroupParent?: string;
  /** pids.max of every container (fork-bomb guard); default 4096, 0 = no limit. */
  pidsLimit?: number;
  /** Period of the safety-net sweep over running containers; default 2000 ms. */
  sweepIntervalMs?: number;
  /** Size of the disk reserve kept in `root` for a full disk (util/disk-reserve.ts); default 8 MiB, 0 none. */
  diskReserveBytes?: number;
  /**
   * Hold a pod's IPC/UTS namespaces with bind-mounted files (bulkhead-pinns) instead of a pause
   * container where the backend only joins namespaces (runc, crun) and the pod does not share one
   * PID namespace; default true. Without gcc to build the helper the engine uses a pause container.
   */
  pinNamespaces?: boolean;
  /** Where bulkhead-pinns is built and cached; default /var/cache/bulkhead/bin. */
  helperDir?: string;
  /** Pod log directories must lie under one of these (besides <root>/logs); default ["/var/log/pods"]. */
  podLogRoots?: string[];
  /** A pod's cgroup_parent must lie under one of these (cgroupfs paths); default DEFAULT_CGROUP_ROOTS. */
  cgroupRoots?: string[];
  /** Localhost seccomp profiles must be regular files under this; default /var/lib/kubelet/seccomp. */
  seccompProfileRoot?: string;
  /** Host paths are checked at mount time against this; default: kubelet root /var/lib/kubelet, the dangerous paths plus root and runDir. */
  hostPathGuard?: HostPathGuard;
  /** RunPodSandbox calls doing their expensive part at once; default 4 per CPU, 4..16 (creation waits on runtime processes as much as it uses CPU). Others queue. */
  podCreationParallelism?: number;
}

/** Cgroup parents a pod may name: Bulkhead's own and the kubelet's (cgroupfs driver). */
export const DEFAULT_CGROUP_ROOTS: readonly string[] = ['/bulkhead', '/kubepods'];
export const DEFAULT_POD_LOG_ROOT = '/var/log/pods';

/** Extra, non-CRI inputs for runPodSandbox (decided by policy/, not by the request). */
export interface RunPodOptions {
  /**
   * The policy's decision for the pod (level, egress guard, host network, container defaults, ...),
   * stored with the pod as `backendState.decision`; absent = none stored, and everything that reads
   * it (network, container spec, CreateContainer's policy check) applies the fail-closed one.
   */
  decision?: PodDecisionRecord;
  /** Network mode override: 'none' gives a loopback-only netns even with CNI configured. */
  networkMode?: NetworkMode;
  signal?: AbortSignal;
}

/** Standard streams of an exec/attach session (same shape as stream/'s StreamIO). */
export interface EngineStreamIO {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  tty: boolean;
  resize?: AsyncIterable<{ width: number; height: number }>;
}

const EXEC_OUTPUT_CAP = 16 * 1024 * 1024;
const MAX_EXEC_TIMEOUT_MS = 2 ** 31 - 1;

function nowNs(): number {
  return Date.now() * 1e6;
}

function dateNs(d: Date | undefined): number {
  return d ? d.getTime() * 1e6 : nowNs();
}

function matchLabels(labels: cri.StringMap | undefined, selector: cri.StringMap | undefined): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) if (labels?.[k] !== v) return false;
  return true;
}

function str(v: string | undefined | null): string {
  return v ?? '';
}

/** Joins `rel` under `base`, refusing anything that leaves it. */
function joinInside(base: string, rel: string, what: string): string {
  if (isAbsolute(rel)) throw new InvalidArgumentError(`${what} must be relative: ${JSON.stringify(rel)}`);
  const p = normalize(join(base, rel));
  if (p !== base && !p.startsWith(base.endsWith(sep) ? base : base + sep)) throw new InvalidArgumentError(`${what} leaves its directory: ${JSON.stringify(rel)}`);
  return p;
}

const CGROUP_ROOT = '/sys/fs/cgroup';

export class Engine {
  readonly #opts: EngineOptions;
  readonly #log: Logger;
  readonly #store: StateStore;
  readonly #locks = new KeyedMutex();
  /** RunPodSandbox admission: bounded parallelism, one attempt per pod name in flight. */
  readonly #podSlots: Slots;
  readonly #podNames = new KeyReservations();
  /** Pods being created: Stop/RemovePodSandbox cancel them and wait for the rollback. */
  readonly #creating = new Map<string, { abort: AbortController; done: Promise<void> }>();
  readonly #network: PodNetwork;
  readonly #fallbackNetwork: LoopbackPodNetwork;
  readonly #events = new EventEmitter();
  readonly #watchers = new Map<string, AbortController>();
  readonly #lastCpu = new Map<string, { ns: number; at: number }>();
  readonly #closing = new AbortController();
  /** SELinux on this node (read once): selinux_options are refused there, not silently dropped (selinux.ts). */
  readonly #selinux = selinuxEnabled();
  #sweepTimer: NodeJS.Timeout | undefined;
  readonly #reserve: DiskReserve | undefined;
  #pauseRootfs: Promise<string> | undefined;
  #pinnsWarned = false;

  constructor(opts: EngineOptions) {
    if (!opts.backends.has(opts.defaultHandler)) throw new InvalidArgumentError(`default handler ${opts.defaultHandler} has no backend`);
    this.#opts = opts;
    this.#log = opts.logger.child({ part: 'engine' });
    if (opts.diskReserveBytes !== 0) this.#reserve = new DiskReserve(opts.root, { logger: this.#log, ...(opts.diskReserveBytes ? { bytes: opts.diskReserveBytes } : {}) });
    this.#store = new StateStore(join(opts.root, 'state.db'), this.#reserve ? { reserve: this.#reserve } : {});
    this.#fallbackNetwork = new LoopbackPodNetwork(this.#log, opts.pinNamespaces === false ? undefined : () => ensurePinns(opts.helperDir));
    this.#network = opts.network ?? this.#fallbackNetwork;
    this.#events.setMaxListeners(0);
    this.#podSlots = new Slots(opts.podCreationParallelism ?? Math.min(16, Math.max(4, 4 * availableParallelism())), 4096, 'RunPodSandbox');
  }

  // =============================================================================================
  // Startup, shutdown, events

  /**
   * Reconciles the store with what conmon and the runtimes report, then starts the exit monitor.
   * Call once before serving. Safe to call on an empty root.
   */
  async recover(): Promise<void> {
    const signal = this.#closing.signal;
    for (const c of this.#store.listContainers()) {
      await this.#locks.with(c.id, async () => {
        try {
          await this.#recoverContainer(c, signal);
        } catch (err) {
          this.#log.error('recovering container failed', { container: c.id, err });
        }
      });
    }
    for (const p of this.#store.listPods()) {
      await this.#locks.with(p.id, async () => {
        try {
          await this.#recoverPod(p, signal);
        } catch (err) {
          this.#log.error('recovering pod failed', { pod: p.id, err });
        }
      });
    }
    // Bundle dirs no record names (records lost): their staged host paths and rootfs are unmounted
    // (or this stops, leaving them) before the dir goes, so a removal never reaches into the host.
    await this.#sweepOrphanBundles();
    // Orphans: containers a backend holds that the store does not know (e.g. records lost).
    for (const [handler, backend] of this.#opts.backends) {
      let found: { id: string }[] = [];
      try { found = await backend.list(); } catch (err) { this.#log.warn('backend list failed', { handler, err }); }
      for (const r of found) {
        if (this.#store.getContainer(r.id) || this.#isPauseId(r.id)) continue;
        this.#log.warn('deleting orphan container', { handler, container: r.id });
        await backend.delete(r.id, signal).catch((err: unknown) => this.#log.warn('orphan delete failed', { container: r.id, err }));
      }
    }
    this.#reserve?.ensure();
    this.#startSweep();
  }

  async #sweepOrphanBundles(): Promise<void> {
    const dir = join(this.#opts.runDir, 'containers');
    let names: string[] = [];
    try { names = await readdir(dir); } catch { return; }
    for (const name of names) {
      if (!/^[0-9a-f]{64}$/.test(name) || this.#store.getContainer(name) || this.#isPauseId(name)) continue;
      const bundle = join(dir, name);
      try {
        await unmountTree(join(bundle, 'mounts'));
        await unmountTree(join(bundle, 'rootfs'));
        await rm(bundle, { recursive: true, force: true });
        this.#log.info('removed an orphan container bundle', { bundle });
      } catch (err) {
        this.#log.warn('orphan container bundle left in place', { bundle, err });
      }
    }
  }

  #isPauseId(id: string): boolean {
    return this.#store.listPods().some((p) => p.runtime.pauseId === id);
  }

  async #recoverContainer(c: ContainerRecord, signal: AbortSignal): Promise<void> {
    const pod = this.#store.getPod(c.podId);
    if (c.phase === 'creating' || c.phase === 'removing' || !pod) {
      this.#log.info('cleaning up interrupted container', { container: c.id, phase: c.phase });
      await this.#destroyContainer(c, pod, signal);
      return;
    }
    if (c.phase === 'exited') return;
    const backend = this.#backendOf(pod);
    let st: RuntimeState;
    try {
      st = await backend.state(c.id, signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      st = { id: c.id, status: 'unknown', pid: 0 };
    }
    if (st.status === 'running') {
      if (c.phase === 'created') {
        c.phase = 'running';
        c.startedAt = nowNs();
        this.#store.updateContainer(c);
      }
      this.#watch(c.id, backend);
    } else if (st.status === 'stopped') {
      if (c.phase === 'created' && st.exitCode === undefined) return;
      this.#applyExit(c, st);
    } else if (st.status === 'created') {
      // start never happened (or was interrupted before the runtime acted): still created.
      if (c.phase === 'running') { c.phase = 'created'; this.#store.updateContainer(c); }
    } else {
      c.phase = 'exited';
      c.finishedAt = nowNs();
      c.exitCode = 255;
      c.reason = 'Error';
      c.message = 'container state was lost while the daemon was down';
      this.#store.updateContainer(c);
    }
  }

  async #recoverPod(p: PodRecord, signal: AbortSignal): Promise<void> {
    if (p.phase === 'creating' || p.phase === 'removing') {
      this.#log.info('cleaning up interrupted pod', { pod: p.id, phase: p.phase });
      await this.#destroyPod(p, signal);
      return;
    }
    if (p.phase === 'ready' && p.runtime.pauseId) {
      const backend = this.#backendOf(p);
      let st: RuntimeState | undefined;
      try { st = await backend.state(p.runtime.pauseId, signal); } catch { st = undefined; }
      if (st?.status === 'running') this.#watchPause(p.id, p.runtime.pauseId, backend);
      else { p.phase = 'notready'; this.#store.updatePod(p); }
    }
  }

  /** Stops watching, closes the store. Containers keep running (conmon owns them). */
  async close(): Promise<void> {
    this.#closing.abort();
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    for (const ac of this.#watchers.values()) ac.abort();
    this.#watchers.clear();
    this.#events.emit('close');
    this.#store.close();
  }

  /** Container lifecycle events (created, started, stopped, deleted) as they happen. */
  onEvent(listener: (e: cri.ContainerEventResponse) => void): () => void {
    this.#events.on('event', listener);
    return () => { this.#events.off('event', listener); };
  }

  /** The same events as an async iterable, until `signal` aborts or the engine closes. */
  async *events(signal?: AbortSignal): AsyncGenerator<cri.ContainerEventResponse> {
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    signal?.addEventListener('abort', stop, { once: true });
    this.#events.once('close', stop);
    try {
      for await (const [e] of on(this.#events, 'event', { signal: ac.signal })) yield e as cri.ContainerEventResponse;
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    } finally {
      signal?.removeEventListener('abort', stop);
      this.#events.off('close', stop);
    }
  }

  #emit(type: cri.ContainerEventType, c: ContainerRecord): void {
    const pod = this.#store.getPod(c.podId);
    const e: cri.ContainerEventResponse = {
      containerId: c.id,
      containerEventType: type,
      createdAt: nowNs(),
      podSandboxStatus: pod ? this.#podStatusOf(pod) : null,
      containersStatuses: type === 'CONTAINER_DELETED_EVENT' ? [] : [this.#containerStatusOf(c)],
    };
    this.#events.emit('event', e);
  }

  // =============================================================================================
  // Pods

  #backendFor(handler: string): { name: string; backend: Backend } {
    const name = handler || this.#opts.defaultHandler;
    const backend = this.#opts.backends.get(name);
    if (!backend) throw new InvalidArgumentError(`unknown runtime handler ${JSON.stringify(name)} (configured: ${[...this.#opts.backends.keys()].join(', ')})`);
    return { name, backend };
  }

  #backendOf(p: PodRecord): Backend {
    const b = this.#opts.backends.get(p.handler);
    if (!b) throw new UnavailableError(`pod ${p.id}: runtime handler ${p.handler} is no longer configured`);
    return b;
  }

  /** A settled pod (or, with `creating`, one being created too: status reads it as NOTREADY). */
  #resolvePod(idOrPrefix: string, opts: { creating?: boolean } = {}): PodRecord {
    const id = resolveId('pod sandbox', idOrPrefix, (p) => this.#store.podIdsWithPrefix(p));
    const p = this.#store.getPod(id);
    if (!p || (p.phase === 'creating' && !opts.creating) || p.phase === 'removing') throw new NotFoundError(`pod sandbox ${idOrPrefix} not found`);
    return p;
  }

  /** When `idOrPrefix` names a pod still being created, cancels that creation and waits for its rollback. */
  async #cancelCreation(idOrPrefix: string): Promise<void> {
    if (this.#creating.size === 0) return;
    let id: string;
    try { id = resolveId('pod sandbox', idOrPrefix, (p) => this.#store.podIdsWithPrefix(p)); } catch { return; }
    const c = this.#creating.get(id);
    if (!c) return;
    c.abort.abort(new AbortedError(`pod sandbox ${id} was stopped or removed while being created`));
    await c.done;
  }

  #podNetworkMode(config: cri.PodSandboxConfig, opts: RunPodOptions): NetworkMode {
    const ns = config.linux?.securityContext?.namespaceOptions;
    if (ns?.network === 'NODE') return 'host';
    if (opts.networkMode) return opts.networkMode;
    return this.#opts.network ? 'bridge' : 'none';
  }

  #networkFor(mode: NetworkMode): PodNetwork {
    return mode === 'bridge' ? this.#network : this.#fallbackNetwork;
  }

  #netRequest(p: PodRecord, mode: NetworkMode): PodNetworkRequest {
    const d = readDecision(p.runtime.backendState.decision) ?? FAIL_CLOSED;
    return {
      id: p.id,
      name: p.name,
      namespace: p.namespace,
      uid: p.uid,
      trust: d.hostNetwork ? 'trusted' : 'untrusted',
      egressGuard: d.egressGuard,
      mode,
      portMappings: (p.config.portMappings ?? []).map((m) => ({
        protocol: (m.protocol ?? 'TCP').toLowerCase() as PortProtocol,
        containerPort: m.containerPort ?? 0,
        hostPort: m.hostPort ?? 0,
        hostIp: m.hostIp ?? '',
      })),
    };
  }

  /**
   * CRI RunPodSandbox: creates and starts a pod sandbox; returns its id. On failure everything
   * made so far is undone before the error is thrown.
   */
  async runPodSandbox(config: cri.PodSandboxConfig, runtimeHandler = '', opts: RunPodOptions = {}): Promise<string> {
    const md = config.metadata;
    if (!md?.name || !md.namespace || !md.uid) throw new InvalidArgumentError('pod sandbox metadata must have name, namespace and uid');
    refuseUserNamespace(config.linux?.securityContext?.namespaceOptions, `pod ${md.namespace}/${md.name}`);
    refuseSelinuxOnEnabledNode({ options: [config.linux?.securityContext?.selinuxOptions] }, this.#selinux, `pod ${md.namespace}/${md.name}`);
    const { name: handler, backend } = this.#backendFor(runtimeHandler);
    const probe = await backend.probe(opts.signal);
    if (!probe.available) throw new UnavailableError(`runtime handler ${handler} is not available here: ${probe.reason ?? 'unknown reason'}`);
    const hostname = config.hostname ?? '';
    if (hostname) validateHostname(hostname);
    const mode = this.#podNetworkMode(config, opts);
    const callerSignal = opts.signal ? AbortSignal.any([opts.signal, this.#closing.signal]) : this.#closing.signal;
    // One attempt per pod name in flight: the kubelet's retry of a call it gave up on waits here
    // until that call is done or rolled back. Then a bounded number of creations run at once; a
    // call whose client goes away while it waits has made nothing.
    const unreserve = await this.#podNames.reserve(`${md.namespace}\0${md.name}\0${md.attempt ?? 0}`, callerSignal);
    let releaseSlot: (() => void) | undefined;
    try {
      releaseSlot = await this.#podSlots.acquire(callerSignal);
      return await this.#createPod(config, { name: md.name, namespace: md.namespace, uid: md.uid, attempt: md.attempt ?? 0 }, handler, backend, hostname, mode, callerSignal, opts);
    } finally {
      releaseSlot?.();
      unreserve();
    }
  }

  async #createPod(
    config: cri.PodSandboxConfig, md: { name: string; namespace: string; uid: string; attempt: number }, handler: string,
    backend: Backend, hostname: string, mode: NetworkMode, callerSignal: AbortSignal, opts: RunPodOptions,
  ): Promise<string> {
    const id = newId();
    // Aborted by the caller (deadline, cancel), the daemon closing, or Stop/RemovePodSandbox.
    const cancel = new AbortController();
    const signal = AbortSignal.any([callerSignal, cancel.signal]);
    const podDir = join(this.#opts.runDir, 'pods', id);
    const logLoc = this.#logRootOf(config.logDirectory || join(this.#opts.root, 'logs', id));
    const logDirectory = join(logLoc.root, ...logLoc.parts);
    const logDirMade = await firstMissing(logLoc.root, logLoc.parts);
    const ownCgroup = !config.linux?.cgroupParent;
    const cgroupParent = config.linux?.cgroupParent ? this.#checkCgroupParent(config.linux.cgroupParent) : `${this.#opts.cgroupParent ?? '/bulkhead'}/pod-${id.slice(0, 16)}`;
    const cgroupMade = ownCgroup ? {} : await missingCgroupDirs(cgroupParent);
    const pins = await this.#pinPlan(config, backend, mode, podDir);
    const runtime: PodRuntimeInfo = {
      netnsPath: '', ownNetns: mode !== 'bridge', networkMode: mode === 'host' ? 'host' : mode === 'none' ? 'none' : 'pod', ips: [],
      podDir, logDirectory, cgroupParent, pauseId: backend.podModel.infraContainer && !pins ? newId() : '',
      namespacePaths: {}, backendState: { mode, ownCgroup, cgroupMade, ownLogDir: !config.logDirectory, logDirMade: logDirMade ?? '', ...(opts.decision ? { decision: opts.decision } : {}) },
    };
    const rec: PodRecord = {
      id, name: md.name, namespace: md.namespace, uid: md.uid, attempt: md.attempt ?? 0, handler,
      phase: 'creating', createdAt: nowNs(), config, runtime,
    };
    let settled!: () => void;
    const done = new Promise<void>((r) => { settled = r; });
    return await this.#locks.with(id, async () => {
      try {
        this.#store.insertPod(rec);
      } catch (err) {
        settled();
        if (err instanceof NameConflict) throw new AlreadyExistsError(err.message);
        throw err;
      }
      this.#creating.set(id, { abort: cancel, done });
      try {
        // Independent steps run side by side; every one is settled before an error is thrown, so
        // the cleanup below never races a half-finished step (e.g. a netns still being made).
        const [, , netR, pauseR] = await settleAll([
          mkdir(podDir, { recursive: true, mode: 0o711 }),
          mkdir(logLoc.root, { recursive: true, mode: 0o755 }).then(() => walkDirsBeneath(logLoc.root, logLoc.parts, { create: true, mode: 0o755, what: 'log_directory', rule: 'no symlinks under the pod log root' })),
          this.#networkFor(mode).setup(this.#netRequest(rec, mode), signal),
          runtime.pauseId ? this.#ensurePauseRootfs() : Promise.resolve(''),
        ] as const);
        const net = netR;
        runtime.netnsPath = net.netnsPath ?? '';
        runtime.ips = net.ips;
        this.#store.updatePod(rec);
        signal.throwIfAborted();
        const files = await writePodFiles(join(podDir, 'etc'), hostname, net.ips, config.dnsConfig);
        if (pins) {
          await mkdir(join(podDir, 'ns'), { mode: 0o700 });
          const sysctls = config.linux?.sysctls ?? {};
          await pinNamespaces(pins.bin, {
            ...(pins.ipc ? { ipc: pins.ipc } : {}),
            ...(pins.uts ? { uts: pins.uts } : {}),
            ...(pins.uts && hostname ? { hostname } : {}),
            ...(runtime.netnsPath && Object.keys(sysctls).some((k) => k.replaceAll('/', '.').startsWith('net.')) ? { joinNet: runtime.netnsPath } : {}),
            sysctls, signal,
          });
          runtime.namespacePaths = { ...(pins.ipc ? { ipc: pins.ipc } : {}), ...(pins.uts ? { uts: pins.uts } : {}) };
        }
        signal.throwIfAborted();
        if (runtime.pauseId) {
          const pauseRootfs = pauseR;
          const spec = await buildPodPauseSpec({ id: runtime.pauseId, pod: rec, rootfs: pauseRootfs, files });
          const podRef = runtime.netnsPath ? { podId: id, role: 'sandbox' as const, netnsPath: runtime.netnsPath } : { podId: id, role: 'sandbox' as const };
          const { pid } = await backend.createContainer({
            id: runtime.pauseId, name: `${md.namespace}_${md.name}_pause`, spec, pod: podRef,
            logPath: join(podDir, 'pause.log'), signal,
          });
          signal.throwIfAborted();
          await backend.start(runtime.pauseId, signal);
          if (backend.podModel.joinInfraNamespaces && pid > 0) {
            runtime.namespacePaths = { ipc: `/proc/${pid}/ns/ipc`, uts: `/proc/${pid}/ns/uts`, pid: `/proc/${pid}/ns/pid` };
          } else if (backend.podModel.pidNamespaceByPath && pid > 0) {
            runtime.namespacePaths = { pid: `/proc/${pid}/ns/pid` };
          }
          backend.podModel.joinInfraNamespaces && (runtime.backendState.pausePid = pid);
          this.#watchPause(id, runtime.pauseId, backend);
        }
        runtime.backendState.files = files;
        // a caller that went away during the last step gets nothing, so nothing may stay
        signal.throwIfAborted();
        rec.phase = 'ready';
        this.#store.updatePod(rec);
        this.#log.info('pod sandbox ready', { pod: id, name: `${md.namespace}/${md.name}`, handler });
        return id;
      } catch (err) {
        this.#log.warn('pod sandbox creation failed; cleaning up', { pod: id, err });
        try {
          await this.#destroyPod(rec, this.#closing.signal);
        } catch (e) {
          // Never a hidden half-made record that holds the name: what could not be undone is a
          // NOTREADY pod, listed, that RemovePodSandbox (the kubelet's next step) retries.
          this.#log.error('cleanup after failed pod creation failed; the pod stays NOTREADY for RemovePodSandbox', { pod: id, err: e });
          if (this.#store.getPod(id)) { rec.phase = 'notready'; this.#store.updatePod(rec); }
        }
        throw err;
      } finally {
        this.#creating.delete(id);
        settled();
      }
    });
  }

  /**
   * Which namespaces of a new pod are pinned to files instead of held by a pause container, or
   * undefined for a pause container (backends whose pods are sandboxes, a shared PID namespace,
   * pinning turned off or the helper cannot be built).
   */
  async #pinPlan(config: cri.PodSandboxConfig, backend: Backend, mode: NetworkMode, podDir: string): Promise<{ bin: string; ipc?: string; uts?: string } | undefined> {
    if (this.#opts.pinNamespaces === false || !backend.podModel.infraContainer || !backend.podModel.joinInfraNamespaces) return undefined;
    const nsOpt = config.linux?.securityContext?.namespaceOptions;
    if ((nsOpt?.pid ?? 'POD') === 'POD') return undefined; // the pod's PID namespace needs a process
    let bin: string;
    try {
      bin = await ensurePinns(this.#opts.helperDir);
    } catch (err) {
      if (!this.#pinnsWarned) this.#log.warn('bulkhead-pinns unavailable; pods use a pause container', { err });
      this.#pinnsWarned = true;
      return undefined;
    }
    const ipc = nsOpt?.ipc !== 'NODE';
    const uts = !(mode === 'host' && !config.hostname);
    checkPinnableSysctls(config.linux?.sysctls ?? {}, { ipc, uts, net: mode !== 'host' });
    return {
      bin,
      ...(ipc ? { ipc: join(podDir, 'ns', 'ipc') } : {}),
      ...(uts ? { uts: join(podDir, 'ns', 'uts') } : {}),
    };
  }

  #ensurePauseRootfs(): Promise<string> {
    this.#pauseRootfs ??= ensurePauseRootfs(join(this.#opts.root, 'pause'));
    return this.#pauseRootfs;
  }

  /** CRI StopPodSandbox: kills every container and the pause process, frees the network. Idempotent. */
  async stopPodSandbox(idOrPrefix: string, signal?: AbortSignal): Promise<void> {
    await this.#cancelCreation(idOrPrefix);
    let p: PodRecord;
    try { p = this.#resolvePod(idOrPrefix); } catch (err) { if (isNotFound(err)) return; throw err; }
    const sig = signal ?? this.#closing.signal;
    for (const c of this.#store.listContainers(p.id)) {
      await this.#locks.with(c.id, async () => {
        const cur = this.#store.getContainer(c.id);
        if (cur && cur.phase === 'running') await this.#stopLocked(cur, p, 0, sig);
      });
    }
    await this.#locks.with(p.id, async () => {
      const cur = this.#store.getPod(p.id);
      if (!cur || cur.phase !== 'ready' && cur.phase !== 'notready') return;
      const backend = this.#backendOf(cur);
      if (cur.runtime.pauseId) {
        this.#watchers.get(cur.runtime.pauseId)?.abort();
        this.#watchers.delete(cur.runtime.pauseId);
        await this.#killAndWait(backend, cur.runtime.pauseId, sig);
      }
      const mode = (cur.runtime.backendState.mode as NetworkMode | undefined) ?? 'none';
      if (mode !== 'host') await this.#networkFor(mode).teardown(cur.id, sig);
      if (cur.phase !== 'notready') {
        cur.phase = 'notready';
        this.#store.updatePod(cur);
        this.#log.info('pod sandbox stopped', { pod: cur.id });
      }
    });
  }

  async #killAndWait(backend: Backend, id: string, signal: AbortSignal): Promise<RuntimeState | undefined> {
    try {
      const st = await backend.state(id, signal);
      if (st.status !== 'running') return st;
      await backend.kill(id, 'SIGKILL', signal);
      return await backend.wait(id, AbortSignal.any([signal, AbortSignal.timeout(30_000)]));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** CRI RemovePodSandbox: removes the pod and all its containers. Idempotent. */
  async removePodSandbox(idOrPrefix: string, signal?: AbortSignal): Promise<void> {
    await this.#cancelCreation(idOrPrefix);
    let p: PodRecord;
    try { p = this.#resolvePod(idOrPrefix); } catch (err) { if (isNotFound(err)) return; throw err; }
    const sig = signal ?? this.#closing.signal;
    await this.#locks.with(p.id, async () => {
      const cur = this.#store.getPod(p.id);
      if (!cur) return;
      cur.phase = 'removing';
      this.#store.setPodPhase(cur.id, 'removing');
      await this.#destroyPod(cur, sig);
      this.#log.info('pod sandbox removed', { pod: cur.id });
    });
  }

  /** Undoes everything a pod may have (containers, pause, network, dirs, cgroups); then the record. */
  async #destroyPod(p: PodRecord, signal: AbortSignal): Promise<void> {
    // The containers go side by side (each `delete --force` kills what still runs); everything is
    // settled before the first error is thrown, and the pod record goes only when all went.
    const backend = this.#opts.backends.get(p.handler);
    const pauseId = p.runtime.pauseId;
    if (pauseId) {
      this.#watchers.get(pauseId)?.abort();
      this.#watchers.delete(pauseId);
    }
    // Only where app containers merely join the pause's namespaces (runc, crun); where the pause
    // is the sandbox the containers live in (a VM), it goes after them.
    const pauseAlongside = backend?.podModel.joinInfraNamespaces === true;
    const mode = (p.runtime.backendState.mode as NetworkMode | undefined) ?? 'none';
    // the pod's own namespaces and files; a process still inside keeps a namespace alive, so
    // where containers only join them this runs alongside the containers' removal
    const podLevel = (): Promise<unknown> => settleAll([
      mode !== 'host' ? this.#networkFor(mode).teardown(p.id, signal) : Promise.resolve(),
      this.#unpinPod(p.runtime.podDir, signal).then(() => rm(p.runtime.podDir, { recursive: true, force: true })),
    ]);
    await settleAll([
      ...this.#store.listContainers(p.id).map((c) => this.#locks.with(c.id, async () => {
        const cur = this.#store.getContainer(c.id);
        if (!cur) return;
        this.#store.setContainerPhase(cur.id, 'removing');
        await this.#destroyContainer(cur, p, signal);
        this.#emit('CONTAINER_DELETED_EVENT', cur);
      })),
      pauseId && backend && pauseAlongside ? backend.delete(pauseId, signal) : Promise.resolve(),
      pauseAlongside ? podLevel() : Promise.resolve(),
    ]);
    // where the pause is the sandbox the containers live in (a VM, a gVisor sandbox), it goes
    // after them, and the pod's network after it
    if (pauseId && backend && !pauseAlongside) await backend.delete(pauseId, signal);
    await settleAll([
      pauseAlongside ? Promise.resolve() : podLevel(),
      // after the containers: conmon may still be writing their last log lines
      // the pod's log directory, when Bulkhead created it (from the topmost directory it made)
      removeLogDir(p),
    ]);
    // cgroups last: only empty ones can go, and the netns teardown may still have held a process
    if (p.runtime.backendState.ownCgroup) await removeCgroupDirs(p.runtime.cgroupParent);
    else await removeMadeCgroupDirs(p.runtime.cgroupParent, p.runtime.backendState.cgroupMade);
    this.#store.deletePod(p.id);
  }

  /** Releases the namespace files of a pod (whatever is under <podDir>/ns, record or not). */
  async #unpinPod(podDir: string, signal: AbortSignal): Promise<void> {
    let names: string[];
    try { names = await readdir(join(podDir, 'ns')); } catch { return; }
    if (names.length === 0) return;
    await unpinNamespaces(await ensurePinns(this.#opts.helperDir), names.map((n) => join(podDir, 'ns', n)), signal);
  }

  #podStatusOf(p: PodRecord): cri.PodSandboxStatus {
    const md = p.config.metadata;
    const ns = p.config.linux?.securityContext?.namespaceOptions;
    return {
      id: p.id,
      metadata: { name: p.name, uid: p.uid, namespace: p.namespace, attempt: p.attempt },
      state: p.phase === 'ready' ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY',
      createdAt: p.createdAt,
      network: { ip: p.runtime.ips[0] ?? '', additionalIps: p.runtime.ips.slice(1).map((ip) => ({ ip })) },
      linux: {
        namespaces: {
          options: {
            network: ns?.network ?? 'POD', pid: ns?.pid ?? 'POD', ipc: ns?.ipc ?? 'POD', targetId: ns?.targetId ?? '',
            usernsOptions: null,
          },
        },
      },
      labels: p.config.labels ?? {},
      annotations: p.config.annotations ?? {},
      runtimeHandler: p.handler,
    };
    void md;
  }

  /** CRI PodSandboxStatus. */
  async podSandboxStatus(idOrPrefix: string, verbose = false): Promise<cri.PodSandboxStatusResponse> {
    const p = this.#resolvePod(idOrPrefix, { creating: true });
    const info: cri.StringMap = {};
    if (verbose) {
      info.info = JSON.stringify({
        handler: p.handler, netnsPath: p.runtime.netnsPath, networkMode: p.runtime.networkMode,
        pauseId: p.runtime.pauseId, cgroupParent: p.runtime.cgroupParent, podDir: p.runtime.podDir,
        logDirectory: p.runtime.logDirectory, config: p.config,
        // The stored policy decision the pod's containers are judged by (null: none, fail closed).
        decision: readDecision(p.runtime.backendState.decision) ?? null,
      });
    }
    return {
      status: this.#podStatusOf(p),
      info,
      containersStatuses: this.#store.listContainers(p.id).filter((c) => this.#visible(c)).map((c) => this.#containerStatusOf(c)),
      timestamp: nowNs(),
    };
  }

  /**
   * The stored record of a ready pod as the policy judges it: its config, handler and decision
   * (undefined when none was stored or it does not parse: the caller applies the default level).
   */
  storedPod(idOrPrefix: string): { id: string; config: cri.PodSandboxConfig; handler: string; decision: PodDecisionRecord | undefined } {
    const p = this.#resolvePod(idOrPrefix);
    if (p.phase !== 'ready') throw new FailedPreconditionError(`pod sandbox ${p.id} is not ready`);
    return { id: p.id, config: p.config, handler: p.handler, decision: readDecision(p.runtime.backendState.decision) };
  }

  /** CRI ListPodSandbox. */
  listPodSandbox(filter?: cri.PodSandboxFilter | null): cri.PodSandbox[] {
    const out: cri.PodSandbox[] = [];
    for (const p of this.#store.listPods()) {
      // a pod being created is listed NOTREADY (never hidden); one being removed is gone
      if (p.phase === 'removing') continue;
      if (filter?.id && !p.id.startsWith(filter.id)) continue;
      const st = this.#podStatusOf(p);
      if (filter?.state && (filter.state.state ?? 'SANDBOX_READY') !== st.state) continue;
      if (!matchLabels(p.config.labels, filter?.labelSelector)) continue;
      out.push({
        id: p.id, metadata: st.metadata, state: st.state, createdAt: p.createdAt,
        labels: st.labels, annotations: st.annotations, runtimeHandler: p.handler,
      });
    }
    return out;
  }

  // =============================================================================================
  // Containers

  #visible(c: ContainerRecord): boolean {
    return c.phase !== 'creating' && c.phase !== 'removing';
  }

  #resolveContainer(idOrPrefix: string): ContainerRecord {
    const id = resolveId('container', idOrPrefix, (p) => this.#store.containerIdsWithPrefix(p));
    const c = this.#store.getContainer(id);
    if (!c || !this.#visible(c)) throw new NotFoundError(`container ${idOrPrefix} not found`);
    return c;
  }

  #podOfContainer(c: ContainerRecord): PodRecord {
    const p = this.#store.getPod(c.podId);
    if (!p) throw new NotFoundError(`pod sandbox ${c.podId} of container ${c.id} not found`);
    return p;
  }

  #logPathFor(p: PodRecord, config: cri.ContainerConfig, name: string, attempt: number): string {
    if (config.logPath) {
      relativeParts(config.logPath, 'log_path', 'a container log path is relative to the pod log directory, without ".."');
      return joinInside(p.runtime.logDirectory, config.logPath, 'logPath');
    }
    return join(p.runtime.logDirectory, `${name}_${attempt}.log`);
  }

  /** The directories a pod's log_directory may lie under: the configured pod-log roots and <root>/logs. */
  #logRoots(): string[] {
    return [...(this.#opts.podLogRoots ?? [DEFAULT_POD_LOG_ROOT]), join(this.#opts.root, 'logs')].map((r) => normalize(r).replace(/(.)\/+$/, '$1'));
  }

  /** The root a log directory lies under (with its components below it), or INVALID_ARGUMENT naming the rule. */
  #logRootOf(dir: string): { root: string; parts: string[] } {
    const roots = this.#logRoots();
    const rule = `pod log directories must be under ${roots.join(' or ')} (engine pod_log_root)`;
    const n = isAbsolute(dir) ? normalize(dir) : dir;
    const root = roots.find((r) => isUnder(n, r) && n !== r);
    if (!root) throw new InvalidArgumentError(`log_directory ${JSON.stringify(dir.slice(0, 200))} is not allowed: ${rule}`);
    return { root, parts: partsBeneath(root, dir, 'log_directory', rule) };
  }

  /** Creates the directories between a pod's log directory and a container's log file, refusing symlinks. */
  async #makeLogParents(logDirectory: string, logPath: string): Promise<void> {
    const rel = logPath.slice(logDirectory.length + 1).split('/');
    const rule = 'no symlinks under the pod log root';
    await walkDirsBeneath(logDirectory, rel.slice(0, -1), { create: true, mode: 0o755, what: 'log_path', rule });
    const st = await lstat(logPath).catch(() => undefined);
    if (st && !st.isFile()) throw new InvalidArgumentError(`log_path ${logPath} exists and is not a regular file (${rule})`);
  }

  /** A requested cgroup_parent: a clean cgroupfs path strictly under one of the configured roots. */
  #checkCgroupParent(cp: string): string {
    const roots = (this.#opts.cgroupRoots ?? DEFAULT_CGROUP_ROOTS).map((r) => normalize(r).replace(/(.)\/+$/, '$1'));
    const rule = `cgroup_parent must be a cgroupfs path under ${roots.join(' or ')} (engine cgroup_roots)`;
    if (!/^\/[A-Za-z0-9_.:@=+\/-]*$/.test(cp) || cp.split('/').some((x) => x === '..' || x === '.')) {
      throw new InvalidArgumentError(`cgroup_parent ${JSON.stringify(cp.slice(0, 200))} is not allowed: ${rule}, without "..")`);
    }
    const n = normalize(cp).replace(/(.)\/+$/, '$1');
    if (!roots.some((r) => isUnder(n, r) && n !== r)) throw new InvalidArgumentError(`cgroup_parent ${n} is not allowed: ${rule}`);
    return n;
  }

  #hostPathGuard(): HostPathGuard {
    return this.#opts.hostPathGuard ?? { kubeletRoot: '/var/lib/kubelet', protect: [...DANGEROUS_HOST_PATHS, this.#opts.root, this.#opts.runDir] };
  }

  /** CRI CreateContainer: creates a container in a ready pod; returns its id. */
  async createContainer(podIdOrPrefix: string, config: cri.ContainerConfig, podConfig?: cri.PodSandboxConfig | null, signal?: AbortSignal): Promise<string> {
    const name = config.metadata?.name;
    if (!name) throw new InvalidArgumentError('container metadata must have a name');
    const imageRef = config.image?.image;
    if (!imageRef) throw new InvalidArgumentError('container image must be given');
    // Never silently dropped: a container that asked for a device must not start without it.
    refuseUserNamespace(config.linux?.securityContext?.namespaceOptions, `container ${name}`);
    refuseSelinuxOnEnabledNode({ options: [config.linux?.securityContext?.selinuxOptions], relabel: (config.mounts ?? []).some((m) => m.selinuxRelabel) }, this.#selinux, `container ${name}`);
    if ((config.CDIDevices ?? []).length > 0) throw new UnimplementedError('CDI_devices are not supported: Bulkhead has no CDI registry (no /etc/cdi specs are read); pass the device nodes in devices instead');
    await refuseUnifiedOnV1(config.linux?.resources?.unified, `container ${name}`);
    const p0 = this.#resolvePod(podIdOrPrefix);
    const sig = signal ?? this.#closing.signal;
    const id = newId();
    return await this.#locks.withAll([p0.id, id], async () => {
      const p = this.#store.getPod(p0.id);
      if (!p || p.phase !== 'ready') throw new FailedPreconditionError(`pod sandbox ${p0.id} is not ready`);
      const backend = this.#backendOf(p);
      const image = await this.#opts.images.get(imageRef);
      if (!image) throw new NotFoundError(`image ${JSON.stringify(imageRef)} is not present on this node; pull it first`);
      const attempt = config.metadata?.attempt ?? 0;
      let targetPid = 0;
      const target = config.linux?.securityContext?.namespaceOptions;
      if (target?.pid === 'TARGET') {
        const t = target.targetId ? this.#store.getContainer(resolveId('container', target.targetId, (x) => this.#store.containerIdsWithPrefix(x))) : undefined;
        if (!t || t.podId !== p.id || t.phase !== 'running') throw new FailedPreconditionError('pid namespace target must be a running container of the same pod');
        targetPid = t.runtime.pid;
      }
      const logPath = this.#logPathFor(p, config, name, attempt);
      const seccompProfileRoot = this.#opts.seccompProfileRoot ?? '/var/lib/kubelet/seccomp';
      const seccomp = await containerSeccomp(config, p, seccompProfileRoot);
      const containerDir = join(this.#opts.runDir, 'containers', id);
      const runtime: ContainerRuntimeInfo = {
        bundleDir: containerDir, rootfsDir: join(containerDir, 'rootfs'), rootfsPrepared: false,
        conmonPidFile: '', exitDir: '', pid: 0, cgroupPath: `${p.runtime.cgroupParent}/${id}`,
        stopSignal: imageProcessConfig(image).StopSignal || 'SIGTERM', backendState: {},
      };
      const rec: ContainerRecord = {
        id, podId: p.id, name, attempt, phase: 'creating', createdAt: nowNs(), startedAt: 0, finishedAt: 0,
        exitCode: 0, reason: '', message: '', imageRef: image.repoDigests?.[0] ?? image.id, imageId: image.id,
        logPath, config, runtime,
      };
      try {
        this.#store.insertContainer(rec);
      } catch (err) {
        if (err instanceof NameConflict) throw new AlreadyExistsError(err.message);
        throw err;
      }
      const t0 = performance.now();
      try {
        await mkdir(runtime.rootfsDir, { recursive: true, mode: 0o700 });
        runtime.rootfsPrepared = true;
        this.#store.updateContainer(rec);
        const mounts = await this.#opts.images.prepareRootfs(id, image.id);
        await mountAll(mounts, runtime.rootfsDir);
        const t1 = performance.now();
        await this.#makeLogParents(p.runtime.logDirectory, logPath);
        const spec = await buildContainerSpec({
          id, rootfs: runtime.rootfsDir, image, config, pod: p, podModel: backend.podModel,
          cgroupParent: p.runtime.cgroupParent, pidsLimit: this.#opts.pidsLimit ?? 4096,
          ...(targetPid ? { targetPid } : {}),
          seccompProfileRoot, seccomp,
          hostPaths: { ...this.#hostPathGuard(), helper: () => ensureHostMount(this.#opts.helperDir), stagingDir: join(containerDir, 'mounts'), signal: sig },
        });
        const podRef = {
          podId: p.id, role: 'container' as const,
          ...(p.runtime.pauseId ? { sandboxContainerId: p.runtime.pauseId } : {}),
          ...(p.runtime.netnsPath ? { netnsPath: p.runtime.netnsPath } : {}),
        };
        const t2 = performance.now();
        const { pid } = await backend.createContainer({
          id, name: `${p.namespace}_${p.name}_${name}_${attempt}`, spec, pod: podRef, logPath,
          stdin: !!config.stdin, stdinOnce: !!config.stdinOnce, tty: !!config.tty, signal: sig,
        });
        const t3 = performance.now();
        runtime.pid = pid;
        rec.phase = 'created';
        this.#store.updateContainer(rec);
        // where the time went (bench/run.ts --profile reads these)
        const ms = (a: number, b: number): number => Math.round((b - a) * 10) / 10;
        this.#log.info('container created', { container: id, pod: p.id, name, rootfsMs: ms(t0, t1), specMs: ms(t1, t2), runtimeMs: ms(t2, t3) });
        this.#emit('CONTAINER_CREATED_EVENT', rec);
        return id;
      } catch (err) {
        this.#log.warn('container creation failed; cleaning up', { container: id, err });
        await this.#destroyContainer(rec, p, this.#closing.signal).catch((e: unknown) => this.#log.error('cleanup after failed create failed', { container: id, err: e }));
        throw err;
      }
    });
  }

  /** CRI StartContainer: starts a created container. */
  async startContainer(idOrPrefix: string, signal?: AbortSignal): Promise<void> {
    const c0 = this.#resolveContainer(idOrPrefix);
    await this.#locks.with(c0.id, async () => {
      const c = this.#store.getContainer(c0.id);
      if (!c || !this.#visible(c)) throw new NotFoundError(`container ${idOrPrefix} not found`);
      if (c.phase !== 'created') throw new FailedPreconditionError(`container ${c.id} is ${c.phase}, not created`);
      const p = this.#podOfContainer(c);
      const backend = this.#backendOf(p);
      const startedAt = nowNs();
      try {
        await backend.start(c.id, signal ?? this.#closing.signal);
      } catch (err) {
        c.phase = 'exited';
        c.finishedAt = nowNs();
        c.exitCode = 128;
        c.reason = 'ContainerCannotRun';
        c.message = err instanceof Error ? err.message : String(err);
        this.#store.updateContainer(c);
        this.#emit('CONTAINER_STOPPED_EVENT', c);
        throw err;
      }
      c.phase = 'running';
      c.startedAt = startedAt;
      this.#store.updateContainer(c);
      this.#log.info('container started', { container: c.id });
      this.#emit('CONTAINER_STARTED_EVENT', c);
      this.#watch(c.id, backend);
    });
  }

  /** Records an exit (under the container's lock). No-op when it is no longer running/created. */
  #applyExit(c: ContainerRecord, st: RuntimeState): void {
    if (c.phase !== 'running' && c.phase !== 'created') return;
    c.phase = 'exited';
    c.exitCode = st.exitCode ?? 255;
    // the exit file's time can be coarser than our clock: never report finishing before starting
    c.finishedAt = Math.max(st.exitedAt ? dateNs(st.exitedAt) : nowNs(), c.startedAt);
    c.reason = st.oomKilled ? 'OOMKilled' : c.exitCode === 0 ? 'Completed' : 'Error';
    if (st.exitCode === undefined) c.message = st.exitUnknownReason ? `${st.exitUnknownReason}; exit code unknown` : 'exit code unknown';
    this.#store.updateContainer(c);
    this.#lastCpu.delete(c.id);
    this.#log.info('container exited', { container: c.id, exitCode: c.exitCode, reason: c.reason });
    this.#emit('CONTAINER_STOPPED_EVENT', c);
  }

  /** Exit monitor for one container: backend.wait, then record the exit. */
  #watch(id: string, backend: Backend): void {
    if (this.#watchers.has(id) || this.#closing.signal.aborted) return;
    const ac = new AbortController();
    this.#watchers.set(id, ac);
    void (async () => {
      try {
        const st = await backend.wait(id, ac.signal);
        if (ac.signal.aborted) return;
        // only an exit is recorded: a backend that cannot tell (yet) leaves it to the sweep
        if (st.status !== 'stopped') throw new InternalError(`wait returned while the container is ${st.status}`);
        await this.#locks.with(id, async () => {
          const c = this.#store.getContainer(id);
          if (c) this.#applyExit(c, st);
        });
      } catch (err) {
        if (!ac.signal.aborted && !this.#closing.signal.aborted) this.#log.warn('exit watch failed; sweep will retry', { container: id, err });
      } finally {
        if (this.#watchers.get(id) === ac) this.#watchers.delete(id);
      }
    })();
  }

  /** Watches a pod's pause process: when it dies the pod becomes NOTREADY. */
  #watchPause(podId: string, pauseId: string, backend: Backend): void {
    if (this.#watchers.has(pauseId) || this.#closing.signal.aborted) return;
    const ac = new AbortController();
    this.#watchers.set(pauseId, ac);
    void (async () => {
      try {
        await backend.wait(pauseId, ac.signal);
        if (ac.signal.aborted) return;
        await this.#locks.with(podId, async () => {
          const p = this.#store.getPod(podId);
          if (p && p.phase === 'ready') {
            p.phase = 'notready';
            this.#store.updatePod(p);
            this.#log.warn('pod infra process exited; pod not ready', { pod: podId });
          }
        });
      } catch { /* aborted or lost: the sweep checks again */ } finally {
        if (this.#watchers.get(pauseId) === ac) this.#watchers.delete(pauseId);
      }
    })();
  }

  /** Safety net for the exit monitor: running containers nobody watches are checked and re-watched. */
  #startSweep(): void {
    const every = this.#opts.sweepIntervalMs ?? 2000;
    this.#sweepTimer = setInterval(() => { void this.#sweep(); }, every);
    this.#sweepTimer.unref();
  }

  async #sweep(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    // the disk reserve, made again once a full disk has room (cheap when it is there)
    this.#reserve?.ensure();
    try {
      for (const c of this.#store.listContainers()) {
        if (c.phase !== 'running' || this.#watchers.has(c.id)) continue;
        const p = this.#store.getPod(c.podId);
        if (!p) continue;
        const backend = this.#backendOf(p);
        const st = await backend.state(c.id, this.#closing.signal).catch(() => undefined);
        if (st?.status === 'running') this.#watch(c.id, backend);
        else if (st?.status === 'stopped') await this.#locks.with(c.id, async () => {
          const cur = this.#store.getContainer(c.id);
          if (cur) this.#applyExit(cur, st);
        });
      }
    } catch (err) {
      if (!this.#closing.signal.aborted) this.#log.warn('sweep failed', { err });
    }
  }

  /**
   * CRI StopContainer: the stop signal, up to `timeoutSec` seconds of grace, then SIGKILL.
   * Idempotent: an exited, created or unknown container succeeds.
   */
  async stopContainer(idOrPrefix: string, timeoutSec = 0, signal?: AbortSignal): Promise<void> {
    let c0: ContainerRecord;
    try { c0 = this.#resolveContainer(idOrPrefix); } catch (err) { if (isNotFound(err)) return; throw err; }
    await this.#locks.with(c0.id, async () => {
      const c = this.#store.getContainer(c0.id);
      if (!c || c.phase !== 'running') return;
      await this.#stopLocked(c, this.#podOfContainer(c), timeoutSec, signal ?? this.#closing.signal);
    });
  }

  async #stopLocked(c: ContainerRecord, p: PodRecord, timeoutSec: number, signal: AbortSignal): Promise<void> {
    const backend = this.#backendOf(p);
    this.#watchers.get(c.id)?.abort();
    this.#watchers.delete(c.id);
    let st: RuntimeState | undefined;
    try {
      if (timeoutSec > 0) {
        await backend.kill(c.id, c.runtime.stopSignal as NodeJS.Signals, signal);
        try {
          st = await backend.wait(c.id, AbortSignal.any([signal, AbortSignal.timeout(timeoutSec * 1000)]));
        } catch (err) {
          if (signal.aborted) throw err;
          st = undefined; // grace period over
        }
      }
      if (!st || st.status !== 'stopped') {
        await backend.kill(c.id, 'SIGKILL', signal);
        st = await backend.wait(c.id, AbortSignal.any([signal, AbortSignal.timeout(60_000)]));
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
      st = { id: c.id, status: 'unknown', pid: 0 };
    }
    this.#applyExit(c, st);
  }

  /** CRI RemoveContainer: kills it if running, removes runtime state, rootfs and record. Idempotent. */
  async removeContainer(idOrPrefix: string, signal?: AbortSignal): Promise<void> {
    let c0: ContainerRecord;
    try { c0 = this.#resolveContainer(idOrPrefix); } catch (err) { if (isNotFound(err)) return; throw err; }
    await this.#locks.with(c0.id, async () => {
      const c = this.#store.getContainer(c0.id);
      if (!c) return;
      this.#store.setContainerPhase(c.id, 'removing');
      await this.#destroyContainer(c, this.#store.getPod(c.podId), signal ?? this.#closing.signal);
      this.#log.info('container removed', { container: c.id });
      this.#emit('CONTAINER_DELETED_EVENT', c);
    });
  }

  /** Undoes everything a container may have (runtime, mounts, snapshot, dirs); then the record. */
  async #destroyContainer(c: ContainerRecord, p: PodRecord | undefined, signal: AbortSignal): Promise<void> {
    this.#watchers.get(c.id)?.abort();
    this.#watchers.delete(c.id);
    this.#lastCpu.delete(c.id);
    const backend = p ? this.#opts.backends.get(p.handler) : undefined;
    const deleting = backend ? backend.delete(c.id, signal)
      : (async () => { for (const b of this.#opts.backends.values()) await b.delete(c.id, signal).catch(() => undefined); })();
    // an exited container's rootfs is used by nothing: unmount it while the runtime deletes;
    // otherwise only after the delete has killed what still runs
    if (c.phase === 'exited') await settleAll([deleting, unmountTree(c.runtime.rootfsDir)]);
    else await deleting;
    await unmountTree(c.runtime.rootfsDir);
    // host paths staged for the container: unmounted (or this throws) before the bundle is removed
    await unmountTree(join(c.runtime.bundleDir, 'mounts'));
    if (c.runtime.rootfsPrepared) await this.#opts.images.removeRootfs(c.id);
    await rm(c.runtime.bundleDir, { recursive: true, force: true });
    this.#store.deleteContainer(c.id);
  }

  #containerStatusOf(c: ContainerRecord): cri.ContainerStatus {
    const state: cri.ContainerState = c.phase === 'created' ? 'CONTAINER_CREATED'
      : c.phase === 'running' ? 'CONTAINER_RUNNING'
        : c.phase === 'exited' ? 'CONTAINER_EXITED' : 'CONTAINER_UNKNOWN';
    const img = c.config.image;
    return {
      id: c.id,
      metadata: { name: c.name, attempt: c.attempt },
      state,
      createdAt: c.createdAt,
      startedAt: c.startedAt,
      finishedAt: c.finishedAt,
      exitCode: c.exitCode,
      image: { image: str(img?.image), annotations: img?.annotations ?? {}, userSpecifiedImage: str(img?.userSpecifiedImage), runtimeHandler: str(img?.runtimeHandler) },
      imageRef: c.imageRef,
      reason: c.reason,
      message: c.message,
      labels: c.config.labels ?? {},
      annotations: c.config.annotations ?? {},
      mounts: c.config.mounts ?? [],
      logPath: c.logPath,
      resources: c.config.linux?.resources ? { linux: c.config.linux.resources, windows: null } : null,
      imageId: c.imageId,
      user: null,
      imageSource: '',
    };
  }

  /** CRI ContainerStatus. */
  async containerStatus(idOrPrefix: string, verbose = false): Promise<cri.ContainerStatusResponse> {
    const c = this.#resolveContainer(idOrPrefix);
    const info: cri.StringMap = {};
    if (verbose) {
      const p = this.#store.getPod(c.podId);
      info.info = JSON.stringify({
        sandboxID: c.podId, pid: c.runtime.pid, handler: p?.handler, rootfs: c.runtime.rootfsDir,
        cgroupsPath: c.runtime.cgroupPath, stopSignal: c.runtime.stopSignal, config: c.config,
      });
    }
    return { status: this.#containerStatusOf(c), info };
  }

  /** CRI ListContainers. */
  listContainers(filter?: cri.ContainerFilter | null): cri.Container[] {
    const out: cri.Container[] = [];
    for (const c of this.#store.listContainers()) {
      if (!this.#visible(c)) continue;
      if (filter?.id && !c.id.startsWith(filter.id)) continue;
      if (filter?.podSandboxId && !c.podId.startsWith(filter.podSandboxId)) continue;
      const st = this.#containerStatusOf(c);
      if (filter?.state && (filter.state.state ?? 'CONTAINER_CREATED') !== st.state) continue;
      if (!matchLabels(c.config.labels, filter?.labelSelector)) continue;
      out.push({
        id: c.id, podSandboxId: c.podId, metadata: st.metadata, image: st.image, imageRef: c.imageRef,
        state: st.state, createdAt: c.createdAt, labels: st.labels, annotations: st.annotations, imageId: c.imageId,
      });
    }
    return out;
  }

  /** CRI UpdateContainerResources: applies new limits to a created or running container. */
  async updateContainerResources(idOrPrefix: string, linux: cri.LinuxContainerResources | null | undefined, signal?: AbortSignal): Promise<void> {
    const c0 = this.#resolveContainer(idOrPrefix);
    if (!linux) return;
    await this.#locks.with(c0.id, async () => {
      const c = this.#store.getContainer(c0.id);
      if (!c) throw new NotFoundError(`container ${idOrPrefix} not found`);
      if (c.phase !== 'created' && c.phase !== 'running') throw new FailedPreconditionError(`container ${c.id} is ${c.phase}`);
      const p = this.#podOfContainer(c);
      // Judged by the pod's stored decision (none stored: fail closed), as CreateContainer is.
      const d = readDecision(p.runtime.backendState.decision);
      const bad = d?.unifiedAny ? [] : unifiedProblems(linux.unified);
      await refuseUnifiedOnV1(bad.length > 0 ? undefined : linux.unified, `container ${c.id}`);
      if (bad.length > 0) throw new PermissionDeniedError(`policy: UpdateContainerResources for container ${c.id} denied by rule ${d?.level ?? 'default'}/cgroup-unified: linux.unified: ${bad.join('; ')} (only a level that allows privileged containers may set other cgroup files)`);
      await this.#backendOf(p).updateResources(c.id, criToOciResources(linux), signal ?? this.#closing.signal);
      c.config = { ...c.config, linux: { ...(c.config.linux ?? {}), resources: linux } };
      this.#store.updateContainer(c);
    });
  }

  /** CRI ReopenContainerLog: conmon reopens the log file (after rotation). Running containers only. */
  async reopenContainerLog(idOrPrefix: string): Promise<void> {
    const c = this.#resolveContainer(idOrPrefix);
    if (c.phase !== 'running') throw new FailedPreconditionError(`container ${c.id} is not running`);
    await this.#backendOf(this.#podOfContainer(c)).reopenLog(c.id);
  }

  // =============================================================================================
  // Exec, attach, port-forward

  #runningContainer(idOrPrefix: string): { c: ContainerRecord; backend: Backend; p: PodRecord } {
    const c = this.#resolveContainer(idOrPrefix);
    if (c.phase !== 'running') throw new FailedPreconditionError(`container ${c.id} is not running`);
    const p = this.#podOfContainer(c);
    return { c, p, backend: this.#backendOf(p) };
  }

  /**
   * CRI ExecSync: runs `cmd` in a running container; stdout/stderr capped at 16 MiB each.
   * `timeoutSec` 0 = no limit. On timeout the command is killed and DeadlineExceededError thrown.
   */
  async execSync(idOrPrefix: string, cmd: string[], timeoutSec = 0, signal?: AbortSignal): Promise<cri.ExecSyncResponse> {
    if (cmd.length === 0) throw new InvalidArgumentError('exec: command must not be empty');
    const { c, backend } = this.#runningContainer(idOrPrefix);
    const timeoutMs = timeoutSec > 0 ? Math.min(timeoutSec * 1000, MAX_EXEC_TIMEOUT_MS) : MAX_EXEC_TIMEOUT_MS;
    const r = await backend.exec(c.id, { args: cmd, timeoutMs, ...(signal ? { signal } : {}) });
    return {
      stdout: r.stdout.subarray(0, EXEC_OUTPUT_CAP),
      stderr: r.stderr.subarray(0, EXEC_OUTPUT_CAP),
      exitCode: r.exitCode,
    };
  }

  /** Streaming exec (for stream/): resolves with the exit code. */
  async exec(containerId: string, cmd: string[], io: EngineStreamIO, signal: AbortSignal): Promise<number> {
    if (cmd.length === 0) throw new InvalidArgumentError('exec: command must not be empty');
    const { c, backend } = this.#runningContainer(containerId);
    const proc = await backend.execInteractive(c.id, { args: cmd, tty: io.tty, stdin: !!io.stdin, signal });
    return await pumpSession(proc, io, signal, true);
  }

  /** Streaming attach (for stream/): until the container exits or `signal` aborts. */
  async attach(containerId: string, io: EngineStreamIO, signal: AbortSignal): Promise<void> {
    // A created container can be attached too (conmon's attach socket exists from create on), so a
    // client can attach before StartContainer and miss no output, as `docker run -i` does.
    const c = this.#resolveContainer(containerId);
    if (c.phase !== 'running' && c.phase !== 'created') throw new FailedPreconditionError(`container ${c.id} is not running`);
    const backend = this.#backendOf(this.#podOfContainer(c));
    const proc = await backend.attach(c.id, { stdin: !!io.stdin, stdout: !!io.stdout, stderr: !!io.stderr, signal });
    if (io.tty && io.resize) void (async () => { for await (const s of io.resize!) await backend.resize(c.id, s.width, s.height).catch(() => undefined); })();
    await pumpSession(proc, { ...io, resize: undefined as never }, signal, false);
  }

  /**
   * Port-forward (for stream/): copies bytes between `conn` and 127.0.0.1:`port` inside the
   * pod's network namespace until both sides are done.
   */
  async portForward(podIdOrPrefix: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`invalid port ${port}`);
    const p = this.#resolvePod(podIdOrPrefix);
    if (p.phase !== 'ready') throw new FailedPreconditionError(`pod sandbox ${p.id} is not ready`);
    const backend = this.#backendOf(p);
    if (p.runtime.networkMode === 'host') {
      const sock = connect({ host: '127.0.0.1', port });
      await pipeBoth(conn, sock, sock, () => sock.destroy(), signal);
      return;
    }
    if (backend.podModel.network === 'sandbox' && p.runtime.pauseId) {
      // The sandbox has its own network stack (gVisor netstack, VM): connect from inside it.
      const proc = await backend.execInteractive(p.runtime.pauseId, { args: ['/bin/busybox', 'nc', '127.0.0.1', String(port)], stdin: true, signal });
      await pipeBoth(conn, proc.stdout, proc.stdin!, () => proc.close(), signal);
      await proc.wait().catch(() => undefined);
      return;
    }
    const child = spawn('nsenter', [`--net=${p.runtime.netnsPath}`, '/bin/busybox', 'nc', '127.0.0.1', String(port)], { stdio: ['pipe', 'pipe', 'ignore'], signal });
    child.on('error', () => undefined);
    const done = new Promise<void>((resolve) => child.on('close', () => resolve()));
    await pipeBoth(conn, child.stdout, child.stdin, () => child.kill('SIGKILL'), signal);
    await done;
  }

  // =============================================================================================
  // Stats

  #cpuRate(id: string, ns: number, at: number): number | null {
    const prev = this.#lastCpu.get(id);
    this.#lastCpu.set(id, { ns, at });
    if (!prev || at <= prev.at || ns < prev.ns) return null;
    return Math.round(((ns - prev.ns) / (at - prev.at)) * 1e9);
  }

  async #statsOf(c: ContainerRecord, backend: Backend, signal: AbortSignal): Promise<cri.ContainerStats> {
    const attributes = { id: c.id, metadata: { name: c.name, attempt: c.attempt }, labels: c.config.labels ?? {}, annotations: c.config.annotations ?? {} };
    if (c.phase !== 'running') return { attributes, cpu: null, memory: null, writableLayer: null, swap: null };
    const s = await backend.stats(c.id, signal);
    const ts = s.timestamp.getTime() * 1e6;
    const rate = this.#cpuRate(c.id, s.cpuUsageNs, ts);
    const limit = c.config.linux?.resources?.memoryLimitInBytes ?? 0;
    return {
      attributes,
      cpu: { timestamp: ts, usageCoreNanoSeconds: { value: s.cpuUsageNs }, usageNanoCores: rate === null ? null : { value: rate } },
      memory: {
        timestamp: ts, workingSetBytes: { value: s.memoryWorkingSetBytes },
        availableBytes: limit > 0 ? { value: Math.max(0, limit - s.memoryWorkingSetBytes) } : null,
        usageBytes: { value: s.memoryUsageBytes }, rssBytes: null, pageFaults: null, majorPageFaults: null,
      },
      writableLayer: null,
      swap: null,
    };
  }

  /** CRI ContainerStats. */
  async containerStats(idOrPrefix: string, signal?: AbortSignal): Promise<cri.ContainerStats> {
    const c = this.#resolveContainer(idOrPrefix);
    return await this.#statsOf(c, this.#backendOf(this.#podOfContainer(c)), signal ?? this.#closing.signal);
  }

  /** CRI ListContainerStats (running containers only, like the other runtimes). */
  async listContainerStats(filter?: cri.ContainerStatsFilter | null, signal?: AbortSignal): Promise<cri.ContainerStats[]> {
    const out: cri.ContainerStats[] = [];
    for (const c of this.listContainers({ ...(filter?.id ? { id: filter.id } : {}), ...(filter?.podSandboxId ? { podSandboxId: filter.podSandboxId } : {}), ...(filter?.labelSelector ? { labelSelector: filter.labelSelector } : {}), state: { state: 'CONTAINER_RUNNING' } })) {
      const rec = this.#store.getContainer(c.id);
      if (!rec) continue;
      try {
        out.push(await this.#statsOf(rec, this.#backendOf(this.#podOfContainer(rec)), signal ?? this.#closing.signal));
      } catch (err) {
        if (!isNotFound(err)) this.#log.debug('stats failed', { container: c.id, err });
      }
    }
    return out;
  }

  async #podStats(p: PodRecord, signal: AbortSignal): Promise<cri.PodSandboxStats> {
    const containers: cri.ContainerStats[] = [];
    for (const c of this.#store.listContainers(p.id)) {
      if (c.phase !== 'running') continue;
      try { containers.push(await this.#statsOf(c, this.#backendOf(p), signal)); } catch { /* exited meanwhile */ }
    }
    const ts = nowNs();
    let cpuNs = 0;
    let rate = 0;
    let ws = 0;
    let usage = 0;
    let procs = 0;
    for (const s of containers) {
      cpuNs += s.cpu?.usageCoreNanoSeconds?.value ?? 0;
      rate += s.cpu?.usageNanoCores?.value ?? 0;
      ws += s.memory?.workingSetBytes?.value ?? 0;
      usage += s.memory?.usageBytes?.value ?? 0;
    }
    for (const c of this.#store.listContainers(p.id)) {
      if (c.phase !== 'running') continue;
      try { procs += (await this.#backendOf(p).stats(c.id, signal)).pids; } catch { /* gone */ }
    }
    return {
      attributes: { id: p.id, metadata: { name: p.name, uid: p.uid, namespace: p.namespace, attempt: p.attempt }, labels: p.config.labels ?? {}, annotations: p.config.annotations ?? {} },
      linux: {
        cpu: { timestamp: ts, usageCoreNanoSeconds: { value: cpuNs }, usageNanoCores: { value: rate } },
        memory: { timestamp: ts, workingSetBytes: { value: ws }, availableBytes: null, usageBytes: { value: usage }, rssBytes: null, pageFaults: null, majorPageFaults: null },
        network: null,
        process: { timestamp: ts, processCount: { value: procs } },
        containers,
      },
      windows: null,
    };
  }

  /** CRI PodSandboxStats. */
  async podSandboxStats(idOrPrefix: string, signal?: AbortSignal): Promise<cri.PodSandboxStats> {
    return await this.#podStats(this.#resolvePod(idOrPrefix), signal ?? this.#closing.signal);
  }

  /** CRI ListPodSandboxStats (ready pods). */
  async listPodSandboxStats(filter?: cri.PodSandboxStatsFilter | null, signal?: AbortSignal): Promise<cri.PodSandboxStats[]> {
    const out: cri.PodSandboxStats[] = [];
    for (const s of this.listPodSandbox({ ...(filter?.id ? { id: filter.id } : {}), ...(filter?.labelSelector ? { labelSelector: filter.labelSelector } : {}), state: { state: 'SANDBOX_READY' } })) {
      const p = this.#store.getPod(s.id);
      if (p) out.push(await this.#podStats(p, signal ?? this.#closing.signal));
    }
    return out;
  }
}

// ===============================================================================================
// Helpers

/** CRI LinuxContainerResources → OCI linux.resources (0 / "" mean "not set"). */
export function criToOciResources(r: cri.LinuxContainerResources): OciLinuxResources {
  const out: OciLinuxResources = {};
  const cpu: NonNullable<OciLinuxResources['cpu']> = {};
  if (r.cpuShares) cpu.shares = r.cpuShares;
  if (r.cpuQuota) cpu.quota = r.cpuQuota;
  if (r.cpuPeriod) cpu.period = r.cpuPeriod;
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  if (r.memoryLimitInBytes) {
    // no swap unless asked, as at creation (runtime/spec.ts); on cgroup v1 a limit above the old
    // memory+swap limit is refused unless memsw moves with it
    out.memory = { limit: r.memoryLimitInBytes, swap: r.memorySwapLimitInBytes || r.memoryLimitInBytes };
  }
  if (r.hugepageLimits && r.hugepageLimits.length > 0) out.hugepageLimits = r.hugepageLimits.map((h) => ({ pageSize: h.pageSize ?? '', limit: h.limit ?? 0 }));
  if (r.unified && Object.keys(r.unified).length > 0) out.unified = r.unified;
  return out;
}

/** Removes a cgroupfs path (and nothing above it) in every hierarchy; busy or missing dirs are left. */
/** Like Promise.all, but waits for every promise to settle before rejecting with the first error. */
async function settleAll<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === 'rejected') throw r.reason;
  return rs.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

async function removeCgroupDirs(path: string): Promise<void> {
  const rel = path.replace(/^\/+/, '');
  if (!rel || rel.includes('..')) return;
  // v1: every controller hierarchy; v2: the one unified tree
  for (const h of await cgroupHierarchies()) {
    const dir = join(CGROUP_ROOT, h, rel);
    if (!existsSync(dir)) continue;
    await rmdirDeep(dir);
  }
}

/** The cgroupfs hierarchies: [''] on cgroup v2, every controller mount (not the alias symlinks) on v1/hybrid. */
async function cgroupHierarchies(): Promise<string[]> {
  if (existsSync(join(CGROUP_ROOT, 'cgroup.controllers'))) return [''];
  const out: string[] = [];
  try {
    for (const e of await readdir(CGROUP_ROOT, { withFileTypes: true })) if (e.isDirectory()) out.push(e.name);
  } catch { /* no cgroupfs */ }
  return out;
}

/** Per hierarchy, the shallowest directory of `path` that does not exist yet (what creating the pod will make). */
async function missingCgroupDirs(path: string): Promise<Record<string, string>> {
  const parts = path.split('/').filter(Boolean);
  const out: Record<string, string> = {};
  for (const h of await cgroupHierarchies()) {
    for (let i = 1; i <= parts.length; i++) {
      const rel = '/' + parts.slice(0, i).join('/');
      if (!existsSync(join(CGROUP_ROOT, h, rel))) { out[h] = rel; break; }
    }
  }
  return out;
}

/** Removes what Bulkhead made of a requested cgroup parent: per hierarchy, from `path` up to the recorded top. */
async function removeMadeCgroupDirs(path: string, made: unknown): Promise<void> {
  if (typeof made !== 'object' || made === null) return;
  for (const [h, top] of Object.entries(made as Record<string, unknown>)) {
    if (typeof top !== 'string' || top.includes('..') || h.includes('/') || h.includes('..') || !(path === top || path.startsWith(top + '/'))) continue;
    await rmdirDeep(join(CGROUP_ROOT, h, path));
    for (let dir = path; dir !== top && dir.length > top.length;) {
      dir = dir.slice(0, dir.lastIndexOf('/'));
      await rmdir(join(CGROUP_ROOT, h, dir)).catch(() => undefined);
    }
  }
}

/** The first of `parts` below `root` that does not exist (the topmost directory creating them will make). */
async function firstMissing(root: string, parts: readonly string[]): Promise<string | undefined> {
  let cur = root;
  for (const name of parts) {
    cur = join(cur, name);
    try { await lstat(cur); } catch { return cur; }
  }
  return undefined;
}

/**
 * Removes a pod's log directory when Bulkhead created it, and the empty directories above it up to
 * the topmost one it made (older records: only its own default directory).
 */
async function removeLogDir(p: PodRecord): Promise<void> {
  const made = p.runtime.backendState.logDirMade;
  const dir = p.runtime.logDirectory;
  if (typeof made !== 'string') {
    if (p.runtime.backendState.ownLogDir) await rm(dir, { recursive: true, force: true });
    return;
  }
  if (!made || !(dir === made || dir.startsWith(made + '/'))) return;
  await rm(dir, { recursive: true, force: true });
  for (let d = dir; d !== made && d.length > made.length;) {
    d = d.slice(0, d.lastIndexOf('/'));
    await rmdir(d).catch(() => undefined);
  }
}

async function rmdirDeep(dir: string): Promise<void> {
  let entries: import('node:fs').Dirent[] = [];
  try { entries = await readdir(dir, { withFileTypes: true }); } catch { return; }
  for (const e of entries) if (e.isDirectory()) await rmdirDeep(join(dir, e.name));
  await rmdir(dir).catch(() => undefined);
}

/** Copies a session's streams both ways; resolves with its exit code (exec) once output is drained. */
async function pumpSession(
  proc: import('../runtime/backend.ts').InteractiveProcess, io: EngineStreamIO, signal: AbortSignal, isExec: boolean,
): Promise<number> {
  const onAbort = (): void => proc.close();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    if (io.stdin && proc.stdin) io.stdin.pipe(proc.stdin);
    else proc.stdin?.end();
    if (io.tty && io.resize) void (async () => { for await (const s of io.resize!) await proc.resize(s.width, s.height).catch(() => undefined); })();
    const drains: Promise<void>[] = [];
    const forward = (from: Readable | null, to: Writable | undefined): void => {
      if (!from) return;
      drains.push(new Promise<void>((resolve) => {
        from.on('end', resolve).on('close', resolve).on('error', () => resolve());
      }));
      if (to) from.pipe(to, { end: false });
      else from.resume();
    };
    forward(proc.stdout, io.stdout);
    forward(proc.stderr, io.stderr);
    const code = await proc.wait();
    await Promise.race([Promise.all(drains), new Promise((r) => setTimeout(r, 2000).unref())]);
    if (signal.aborted && !isExec) return -1;
    return code;
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (io.stdin && proc.stdin) io.stdin.unpipe(proc.stdin);
  }
}

/** Pipes `conn` → `toRemote` and `fromRemote` → `conn` until both are done or `signal` aborts. */
async function pipeBoth(conn: Duplex, fromRemote: Readable, toRemote: Writable, kill: () => void, signal: AbortSignal): Promise<void> {
  const onAbort = (): void => { kill(); conn.destroy(); };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve) => {
      let open = 2;
      const one = (): void => { if (--open === 0) resolve(); };
      let upDone = false;
      let downDone = false;
      const up = (): void => { if (!upDone) { upDone = true; toRemote.end(); one(); } };
      const down = (): void => { if (!downDone) { downDone = true; conn.end(); one(); } };
      conn.pipe(toRemote, { end: false });
      conn.on('end', up).on('close', up).on('error', () => { up(); down(); kill(); });
      fromRemote.pipe(conn, { end: false });
      fromRemote.on('end', down).on('close', down).on('error', () => { down(); up(); });
      toRemote.on('error', () => { up(); });
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * `linux.resources.unified` names cgroup v2 files: on a cgroup v1 node runc refuses the spec and
 * gVisor's cgroup writes (runtime/cgroup-write.ts) have nowhere to put them, so the limit would be
 * silently dropped. The kubelet sends unified only on v2 nodes; anyone else is told.
 */
async function refuseUnifiedOnV1(unified: Record<string, string> | null | undefined, what: string): Promise<void> {
  if (!unified || Object.keys(unified).length === 0) return;
  if ((await cgroupMode()) === 'v1') {
    throw new FailedPreconditionError(`${what}: linux.resources.unified sets cgroup v2 files, but this node runs cgroup v1, where they would not be applied; set the limits through the v1 fields (memory_limit_in_bytes, cpu_quota, ...) or run on a cgroup v2 node`);
  }
}
