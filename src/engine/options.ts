/**
 * What the engine is built from (EngineOptions) and the non-CRI inputs of its calls. engine.ts
 * re-exports all of it; the engine's parts (context.ts and the lifecycle files) read it.
 */
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../util/log.ts';
import type { Backend } from '../runtime/backend.ts';
import type { RuntimeHandlers } from '../runtime/handlers.ts';
import type { PodNetwork } from '../network/pod-network.ts';
import type { PodDecisionRecord } from '../policy/decision.ts';
import type { EngineImage, HostPathGuard } from './container-spec.ts';
import type { RootfsMount } from './mounts.ts';
import type { WarmPoolSpec } from './warm-pool-member.ts';
import type { ReleasedRetry } from './released-cgroups.ts';

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
  /** The handler registry over `backends` (the daemon shares its own with the CRI layer); default one built from `backends`. */
  handlers?: RuntimeHandlers;
  /** Handler used when a pod names none. */
  defaultHandler: string;
  /** CNI-backed pod network; without it every non-host pod gets a loopback-only netns. */
  network?: PodNetwork;
  /** `[network] default_mode`: 'none' gives pods that do not ask for the host network a loopback-only netns even with `network` set. Default 'bridge'. */
  defaultNetworkMode?: 'bridge' | 'none';
  /** Cgroup parent for pods that name none (cgroupfs path), default "/bulkhead". */
  cgroupParent?: string;
  /** pids.max of every container (fork-bomb guard); default 4096, 0 = no limit. */
  pidsLimit?: number;
  /** Period of the safety-net sweep over running containers; default 2000 ms. */
  sweepIntervalMs?: number;
  /** Retries of pod cgroups left busy at their removal (released-cgroups.ts): first delay, tries. */
  releasedCgroupRetry?: ReleasedRetry;
  /** Size of the disk reserve kept in `root` for a full disk (util/disk-reserve.ts); default 8 MiB, 0 none. */
  diskReserveBytes?: number;
  /**
   * Let a backend hold a pod's namespaces with bind-mounted files instead of a pause container
   * where it can (its pod strategy decides; runtime/sandbox/), and the loopback network make its
   * netns the same way; default true. Without gcc to build the helper a pause container is used.
   */
  pinNamespaces?: boolean;
  /** Where Bulkhead's small C helpers are built and cached; default /var/cache/bulkhead/bin. */
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
  /** Warm pools per (handler, trust level) (engine/warm-pool.ts); default none. */
  warmPools?: WarmPoolSpec[];
  /** Warm pool members made at once across all pools; default 1. */
  warmPoolParallelism?: number;
}

/** Cgroup parents a pod may name: Bulkhead's own and the kubelet's (cgroupfs driver). */
export const DEFAULT_CGROUP_ROOTS: readonly string[] = ['/bulkhead', '/kubepods'];
export const DEFAULT_POD_LOG_ROOT = '/var/log/pods';

/** Extra, non-CRI inputs for runPodSandbox (decided by policy/, not by the request). */
export interface RunPodOptions {
  /**
   * The policy's decision for the pod (level, egress guard, host network, container defaults, ...),
   * stored with the pod (PodEngineState.decision in store.ts); absent = none stored, and everything that reads
   * it (network, container spec, CreateContainer's policy check) applies the fail-closed one.
   */
  decision?: PodDecisionRecord;
  /**
   * 'none' gives a loopback-only netns even with CNI configured (the pod asked for no network). The
   * only override: the host network comes from the pod's NODE namespace option, judged by the policy.
   */
  networkMode?: 'none';
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
