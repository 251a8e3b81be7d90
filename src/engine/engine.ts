/**
 * The engine: pods and containers on top of the runtime layer's Backends, the image service and a
 * PodNetwork. Its methods mirror the CRI RuntimeService RPCs; the CRI server (cri/) and the
 * streaming server (stream/, through exec/attach/portForward) are its only callers.
 *
 * ## Lifecycle of a pod
 *   runPodSandbox   → record 'creating' (with the sandbox container's id when the backend's pod
 *                     strategy plans one) → log dir, pod dir, network (netns), /etc files, then
 *                     the backend's pod sandbox (runtime/sandbox/: pinned namespace files or a
 *                     pause container whose namespaces containers join; or the sandbox the
 *                     containers run in) → record 'ready' (CRI SANDBOX_READY)
 *   stopPodSandbox  → every container killed, the sandbox stopped, network torn down → 'notready'.
 *                     Idempotent; an unknown id succeeds.
 *   removePodSandbox→ record 'removing' → the strategy removes the containers, then its sandbox,
 *                     then what held the namespaces; network torn down, pod dir, default log dir
 *                     and engine-made cgroup parents removed → record gone.
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
 *
 * ## Layout
 * This file is the facade: the public `Engine` class whose methods cri/ and stream/ call. The
 * work is done over one shared EngineContext (context.ts) by pod-lifecycle.ts, container-
 * lifecycle.ts, exit-monitor.ts, recovery.ts, cri-view.ts (status and list views, events),
 * stats.ts and sessions.ts (exec, attach, port-forward).
 */
import { on } from 'node:events';
import type { Duplex } from 'node:stream';
import type * as cri from '../api/cri.ts';
import type { PodDecisionRecord } from '../policy/decision.ts';
import type { EngineOptions, EngineStreamIO, RunPodOptions } from './options.ts';
import { EngineContext } from './context.ts';
import * as view from './cri-view.ts';
import * as pods from './pod-lifecycle.ts';
import * as containers from './container-lifecycle.ts';
import * as sessions from './sessions.ts';
import * as stats from './stats.ts';
import { recover } from './recovery.ts';
import { stopMonitor } from './exit-monitor.ts';
import { WarmPools, type WarmPoolStatus } from './warm-pool.ts';

export { DEFAULT_CGROUP_ROOTS, DEFAULT_POD_LOG_ROOT } from './options.ts';
export type { EngineImages, EngineOptions, EngineStreamIO, RunPodOptions } from './options.ts';
export { criToOciResources } from './container-lifecycle.ts';
export type { WarmPoolSpec, WarmPoolStatus } from './warm-pool.ts';

export class Engine {
  readonly #ctx: EngineContext;
  readonly #pools: WarmPools | undefined;

  constructor(opts: EngineOptions) {
    this.#ctx = new EngineContext(opts);
    if (opts.warmPools && opts.warmPools.length > 0) {
      try {
        this.#pools = new WarmPools(this.#ctx, opts.warmPools, opts.warmPoolParallelism);
      } catch (err) {
        this.#ctx.store.close();
        throw err;
      }
      this.#ctx.pool = this.#pools;
    }
  }

  // Startup, shutdown, events

  /**
   * Reconciles the store with what conmon and the runtimes report, then starts the exit monitor.
   * Call once before serving. Safe to call on an empty root.
   */
  async recover(): Promise<void> {
    await recover(this.#ctx);
    // warm pools fill once what an earlier daemon left is gone (recovery removed its members)
    this.#pools?.start();
  }

  /** The warm pools' levels and counts (empty: none configured). */
  warmPools(): WarmPoolStatus[] {
    return this.#pools?.status() ?? [];
  }

  /**
   * Stops watching, removes the warm pools' members (they are no pods), closes the store.
   * Containers of pods keep running (conmon owns them).
   */
  async close(): Promise<void> {
    const ctx = this.#ctx;
    ctx.closing.abort();
    stopMonitor(ctx);
    await this.#pools?.close();
    await ctx.released.close();
    ctx.events.emit('close');
    ctx.store.close();
  }

  /** Container lifecycle events (created, started, stopped, deleted) as they happen. */
  onEvent(listener: (e: cri.ContainerEventResponse) => void): () => void {
    const events = this.#ctx.events;
    events.on('event', listener);
    return () => { events.off('event', listener); };
  }

  /** The same events as an async iterable, until `signal` aborts or the engine closes. */
  async *events(signal?: AbortSignal): AsyncGenerator<cri.ContainerEventResponse> {
    const events = this.#ctx.events;
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    signal?.addEventListener('abort', stop, { once: true });
    events.once('close', stop);
    try {
      for await (const [e] of on(events, 'event', { signal: ac.signal })) yield e as cri.ContainerEventResponse;
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    } finally {
      signal?.removeEventListener('abort', stop);
      events.off('close', stop);
    }
  }

  // Pods (pod-lifecycle.ts, views in cri-view.ts)

  /**
   * CRI RunPodSandbox: creates and starts a pod sandbox; returns its id. On failure everything
   * made so far is undone before the error is thrown.
   */
  async runPodSandbox(config: cri.PodSandboxConfig, runtimeHandler = '', opts: RunPodOptions = {}): Promise<string> {
    return await pods.runPodSandbox(this.#ctx, config, runtimeHandler, opts);
  }

  /** CRI StopPodSandbox: kills every container and the pause process, frees the network. Idempotent. */
  async stopPodSandbox(idOrPrefix: string, signal?: AbortSignal): Promise<void> {
    await pods.stopPodSandbox(this.#ctx, idOrPrefix, signal);
  }

  /** CRI RemovePodSandbox: removes the pod and all its containers. Idempotent. */
  async removePodSandbox(idOrPrefix: string, signal?: AbortSignal): Promise<void> {
    await pods.removePodSandbox(this.#ctx, idOrPrefix, signal);
  }

  /** CRI PodSandboxStatus. */
  async podSandboxStatus(idOrPrefix: string, verbose = false): Promise<cri.PodSandboxStatusResponse> {
    return view.podSandboxStatus(this.#ctx, idOrPrefix, verbose);
  }

  /**
   * The stored record of a ready pod as the policy judges it: its config, handler and decision
   * (undefined when none was stored or it does not parse: the caller applies the default level).
   */
  storedPod(idOrPrefix: string): { id: string; config: cri.PodSandboxConfig; handler: string; decision: PodDecisionRecord | undefined } {
    return view.storedPod(this.#ctx, idOrPrefix);
  }

  /** CRI ListPodSandbox. */
  listPodSandbox(filter?: cri.PodSandboxFilter | null): cri.PodSandbox[] {
    return view.listPodSandbox(this.#ctx, filter);
  }

  // Containers (container-lifecycle.ts, views in cri-view.ts)

  /** CRI CreateContainer: creates a container in a ready pod; returns its id. */
  async createContainer(podIdOrPrefix: string, config: cri.ContainerConfig, podConfig?: cri.PodSandboxConfig | null, signal?: AbortSignal): Promise<string> {
    void podConfig; // the pod's stored config is what counts, never the request's copy
    return await containers.createContainer(this.#ctx, podIdOrPrefix, config, signal);
  }

  /** CRI StartContainer: starts a created container. */
  async startContainer(idOrPrefix: string, signal?: AbortSignal): Promise<void> {
    await containers.startContainer(this.#ctx, idOrPrefix, signal);
  }

  /**
   * CRI StopContainer: the stop signal, up to `timeoutSec` seconds of grace, then SIGKILL.
   * Idempotent: an exited, created or unknown container succeeds.
   */
  async stopContainer(idOrPrefix: string, timeoutSec = 0, signal?: AbortSignal): Promise<void> {
    await containers.stopContainer(this.#ctx, idOrPrefix, timeoutSec, signal);
  }

  /** CRI RemoveContainer: kills it if running, removes runtime state, rootfs and record. Idempotent. */
  async removeContainer(idOrPrefix: string, signal?: AbortSignal): Promise<void> {
    await containers.removeContainer(this.#ctx, idOrPrefix, signal);
  }

  /** CRI ContainerStatus. */
  async containerStatus(idOrPrefix: string, verbose = false): Promise<cri.ContainerStatusResponse> {
    return view.containerStatus(this.#ctx, idOrPrefix, verbose);
  }

  /** CRI ListContainers. */
  listContainers(filter?: cri.ContainerFilter | null): cri.Container[] {
    return view.listContainers(this.#ctx, filter);
  }

  /** CRI UpdateContainerResources: applies new limits to a created or running container. */
  async updateContainerResources(idOrPrefix: string, linux: cri.LinuxContainerResources | null | undefined, signal?: AbortSignal): Promise<void> {
    await containers.updateContainerResources(this.#ctx, idOrPrefix, linux, signal);
  }

  /** CRI ReopenContainerLog: conmon reopens the log file (after rotation). Running containers only. */
  async reopenContainerLog(idOrPrefix: string): Promise<void> {
    await containers.reopenContainerLog(this.#ctx, idOrPrefix);
  }

  // Exec, attach, port-forward (sessions.ts)

  /**
   * CRI ExecSync: runs `cmd` in a running container; stdout/stderr capped at 16 MiB each.
   * `timeoutSec` 0 = no limit. On timeout the command is killed and DeadlineExceededError thrown.
   */
  async execSync(idOrPrefix: string, cmd: string[], timeoutSec = 0, signal?: AbortSignal): Promise<cri.ExecSyncResponse> {
    return await sessions.execSync(this.#ctx, idOrPrefix, cmd, timeoutSec, signal);
  }

  /** Streaming exec (for stream/): resolves with the exit code. */
  async exec(containerId: string, cmd: string[], io: EngineStreamIO, signal: AbortSignal): Promise<number> {
    return await sessions.exec(this.#ctx, containerId, cmd, io, signal);
  }

  /** Streaming attach (for stream/): until the container exits or `signal` aborts. */
  async attach(containerId: string, io: EngineStreamIO, signal: AbortSignal): Promise<void> {
    await sessions.attach(this.#ctx, containerId, io, signal);
  }

  /**
   * Port-forward (for stream/): copies bytes between `conn` and 127.0.0.1:`port` inside the
   * pod's network namespace until both sides are done.
   */
  async portForward(podIdOrPrefix: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    await sessions.portForward(this.#ctx, podIdOrPrefix, port, conn, signal);
  }

  // Stats (stats.ts)

  /** CRI ContainerStats. */
  async containerStats(idOrPrefix: string, signal?: AbortSignal): Promise<cri.ContainerStats> {
    return await stats.containerStats(this.#ctx, idOrPrefix, signal);
  }

  /** CRI ListContainerStats (running containers only, like the other runtimes). */
  async listContainerStats(filter?: cri.ContainerStatsFilter | null, signal?: AbortSignal): Promise<cri.ContainerStats[]> {
    return await stats.listContainerStats(this.#ctx, filter, signal);
  }

  /** CRI PodSandboxStats. */
  async podSandboxStats(idOrPrefix: string, signal?: AbortSignal): Promise<cri.PodSandboxStats> {
    return await stats.podSandboxStats(this.#ctx, idOrPrefix, signal);
  }

  /** CRI ListPodSandboxStats (ready pods). */
  async listPodSandboxStats(filter?: cri.PodSandboxStatsFilter | null, signal?: AbortSignal): Promise<cri.PodSandboxStats[]> {
    return await stats.listPodSandboxStats(this.#ctx, filter, signal);
  }
}
