/**
 * What the CRI server needs from the rest of the daemon. The daemon (src/daemon/daemon.ts) builds
 * these from config and hands them to `CriServer.listen`; tests can build them the same way.
 * Each seam is the smallest slice of the real part's API that the RPC handlers call.
 */
import type {
  Container, ContainerConfig, ContainerEventResponse, ContainerFilter, ContainerStats, ContainerStatsFilter,
  ContainerStatusResponse, ExecSyncResponse, LinuxContainerResources, PodSandbox, PodSandboxConfig, PodSandboxFilter,
  PodSandboxStats, PodSandboxStatsFilter, PodSandboxStatusResponse,
} from '../api/cri.ts';
import type { PodDecisionRecord } from '../policy/decision.ts';
import type { WarmPoolInfo } from '../api/cri-messages.ts';
import type { RunPodOptions } from '../engine/options.ts';

export type { RunPodOptions };
import type { Logger } from '../util/log.ts';
import type { RuntimeHandlers } from '../runtime/handlers.ts';
import type { RpcObserver } from './status.ts';

/**
 * The engine's RuntimeService-shaped API (src/engine/engine.ts). RunPodSandbox's extra inputs are
 * the engine's own RunPodOptions type (not a copy), so the two cannot drift apart.
 */
export interface CriEngine {
  runPodSandbox(config: PodSandboxConfig, runtimeHandler: string, opts?: RunPodOptions): Promise<string>;
  /** Warm pools' levels and counts (bulkhead info); absent or [] = none. */
  warmPools?(): WarmPoolInfo[];
  /** The daemon's own record of a ready pod: what CreateContainer is judged by. */
  storedPod(idOrPrefix: string): CriStoredPod;
  stopPodSandbox(id: string, signal?: AbortSignal): Promise<void>;
  removePodSandbox(id: string, signal?: AbortSignal): Promise<void>;
  podSandboxStatus(id: string, verbose: boolean): Promise<PodSandboxStatusResponse>;
  listPodSandbox(filter?: PodSandboxFilter | null): Promise<PodSandbox[]> | PodSandbox[];
  createContainer(podId: string, config: ContainerConfig, podConfig: PodSandboxConfig | null, signal?: AbortSignal): Promise<string>;
  startContainer(id: string, signal?: AbortSignal): Promise<void>;
  stopContainer(id: string, timeoutSec: number, signal?: AbortSignal): Promise<void>;
  removeContainer(id: string, signal?: AbortSignal): Promise<void>;
  listContainers(filter?: ContainerFilter | null): Promise<Container[]> | Container[];
  containerStatus(id: string, verbose: boolean): Promise<ContainerStatusResponse>;
  updateContainerResources(id: string, linux: LinuxContainerResources | null, signal?: AbortSignal): Promise<void>;
  reopenContainerLog(id: string): Promise<void>;
  execSync(id: string, cmd: string[], timeoutSec: number, signal?: AbortSignal): Promise<ExecSyncResponse>;
  containerStats(id: string): Promise<ContainerStats>;
  listContainerStats(filter?: ContainerStatsFilter | null): Promise<ContainerStats[]>;
  podSandboxStats(id: string): Promise<PodSandboxStats>;
  listPodSandboxStats(filter?: PodSandboxStatsFilter | null): Promise<PodSandboxStats[]>;
  /** Container lifecycle events from now on, until `signal` aborts. */
  events(signal?: AbortSignal): AsyncIterable<ContainerEventResponse>;
}

/** An image as the image service describes it (src/image/image-service.ts). */
export interface CriImageRecord {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: number;
  /** The OCI image config's `config` object (User, Env, Cmd, ...). */
  config: { User?: string | undefined };
  pinned?: boolean | undefined;
}

export interface CriPullProgress { id: string; status: string; current?: number; total?: number }

export interface CriRegistryAuth { username?: string; password?: string; auth?: string; identityToken?: string; registryToken?: string; serverAddress?: string }

/** The image service's API (src/image/image-service.ts). */
export interface CriImages {
  pull(ref: string, opts: { signal?: AbortSignal; onProgress?: (ev: CriPullProgress) => void; auth?: CriRegistryAuth }): Promise<CriImageRecord & { pulledDigest?: string }>;
  get(refOrId: string): Promise<CriImageRecord | undefined> | CriImageRecord | undefined;
  list(): Promise<CriImageRecord[]> | CriImageRecord[];
  remove(refOrId: string): Promise<unknown>;
  load(path: string, opts: { signal?: AbortSignal }): Promise<CriImageRecord[]>;
  fsUsage(): Promise<{ mountpoint?: string; usedBytes?: number; inodesUsed?: number; bytes?: number; inodes?: number }>;
  /** `bulkhead df` and `bulkhead system prune` (src/image/image-service.ts); absent = Unimplemented. */
  diskUsage?(): Promise<CriDiskUsage>;
  prune?(opts: { all: boolean; containers: ReadonlySet<string> }): Promise<{ removedImages: string[]; removedSnapshots: string[]; removedBlobs: number; reclaimedBytes: number }>;
}

export interface CriDiskUsage {
  images: { id: string; repoTags: string[]; size: number; uniqueSize: number; containers: number }[];
  imagesSize: number;
  imagesReclaimable: number;
  containers: { key: string; size: number }[];
  unused: { count: number; size: number };
  space: { mountpoint: string; totalBytes: number; availBytes: number; reserveBytes: number };
}

/** URLs for the streaming server (src/stream/); absent until it is wired in. */
export interface CriStreaming {
  getExec(req: { containerId: string; cmd: string[]; tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }): { url: string } | Promise<{ url: string }>;
  getAttach(req: { containerId: string; tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }): { url: string } | Promise<{ url: string }>;
  getPortForward(req: { podSandboxId: string; port?: number[] }): { url: string } | Promise<{ url: string }>;
}

/** A pod as the engine stored it; `decision` undefined = none stored (judged as the default level). */
export interface CriStoredPod { id: string; config: PodSandboxConfig; handler: string; decision: PodDecisionRecord | undefined }

/** The trust policy's decision for a pod: the handler, and the record stored with the pod. */
export interface PodDecision { handler: string; record: PodDecisionRecord }

/** The trust policy's node enforcement (src/policy/); absent = no extra rules beyond handlers. */
export interface CriPolicy {
  /** Chooses the handler and the decision record for a pod or throws PermissionDeniedError naming the rule. */
  enforcePod(config: PodSandboxConfig, requestedHandler: string): Promise<PodDecision> | PodDecision;
  /** Throws PermissionDeniedError when the container is not allowed in its (stored) pod. */
  enforceContainer?(pod: CriStoredPod, config: ContainerConfig): Promise<void> | void;
}

export interface CriNetworkStatus { ready: boolean; reason?: string; message?: string }

export interface CriInfo {
  version: string;
  root: string;
  runDir: string;
  socket: string;
  config: string;
  streamAddress: string;
}

export interface CriDeps {
  engine: CriEngine;
  images: CriImages;
  handlers: RuntimeHandlers;
  logger: Logger;
  info: CriInfo;
  streaming?: CriStreaming;
  policy?: CriPolicy;
  /** Network readiness for Status; absent = ready (pods get a private netns). */
  networkStatus?: () => Promise<CriNetworkStatus>;
  /** Pod CIDR handed over by UpdateRuntimeConfig; also passed to `onPodCidr`. */
  state: { podCidr: string };
  onPodCidr?: (cidr: string) => void | Promise<void>;
  /** Watches every unary call (src/metrics/ times them); absent = not watched. */
  observeRpc?: RpcObserver;
}
