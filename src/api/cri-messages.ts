/**
 * Request and response envelopes of the CRI v1 RPCs and of Bulkhead's extension service, in the
 * shapes @grpc/proto-loader decodes (see src/cri/proto.ts). The inner messages live in
 * src/api/cri.ts; this file adds only what the engine does not take or return.
 * Requests mark fields optional (the encoder fills proto3 defaults).
 */
import type {
  Container, ContainerConfig, ContainerEventResponse, ContainerFilter, ContainerStats, ContainerStatsFilter,
  ContainerStatusResponse, ExecSyncResponse, FilesystemUsage, ImageSpec, Int64Value, LinuxContainerResources,
  Opt, PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxStats, PodSandboxStatsFilter,
  PodSandboxStatusResponse, StringMap, WindowsContainerResources,
} from './cri.ts';

export type { ContainerEventResponse, ContainerStatusResponse, ExecSyncResponse, PodSandboxStatusResponse };

export interface VersionResponse { version: string; runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }

export interface RuntimeCondition { type: string; status: boolean; reason: string; message: string }
export interface RuntimeHandlerInfo { name: string; features: { recursiveReadOnlyMounts: boolean; userNamespaces: boolean } | null }
export interface StatusResponse {
  status: { conditions: RuntimeCondition[] };
  info: StringMap;
  runtimeHandlers: RuntimeHandlerInfo[];
  features: { supplementalGroupsPolicy: boolean } | null;
}
export interface RuntimeConfigResponse { linux: { cgroupDriver: 'SYSTEMD' | 'CGROUPFS' } | null }

export interface RunPodSandboxRequest { config?: Opt<PodSandboxConfig>; runtimeHandler?: string }
export interface CreateContainerRequest { podSandboxId?: string; config?: Opt<ContainerConfig>; sandboxConfig?: Opt<PodSandboxConfig> }
export interface UpdateContainerResourcesRequest {
  containerId?: string;
  linux?: Opt<LinuxContainerResources>;
  windows?: Opt<WindowsContainerResources>;
  annotations?: StringMap;
}
export interface ExecRequest { containerId?: string; cmd?: string[]; tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean }
export interface AttachRequest { containerId?: string; stdin?: boolean; tty?: boolean; stdout?: boolean; stderr?: boolean }
export interface PortForwardRequest { podSandboxId?: string; port?: number[] }

export interface MetricDescriptor { name: string; help: string; labelKeys: string[] }
export interface PodSandboxMetrics { podSandboxId: string; metrics: unknown[]; containerMetrics: unknown[] }

// Images

export interface Image {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: number;
  uid: Int64Value | null;
  username: string;
  spec: ImageSpec | null;
  pinned: boolean;
}
export interface AuthConfig {
  username?: string;
  password?: string;
  auth?: string;
  serverAddress?: string;
  identityToken?: string;
  registryToken?: string;
}
export interface PullImageRequest { image?: Opt<ImageSpec>; auth?: Opt<AuthConfig>; sandboxConfig?: Opt<PodSandboxConfig> }
export interface ImageStatusResponse { image: Image | null; info: StringMap }
export interface ImageFsInfoResponse { imageFilesystems: FilesystemUsage[]; containerFilesystems: FilesystemUsage[] }

// Bulkhead extension service

export interface LayerProgress { id: string; status: string; current: number; total: number }
export interface PullDone { imageRef: string; imageId: string; repoTags: string[]; repoDigests: string[]; size: number; repoDigest?: string }
export interface DiskUsageRow { type: string; total: number; active: number; size: number; reclaimable: number }
export interface DiskUsageResponse {
  rows: DiskUsageRow[];
  images: { id: string; repoTags: string[]; size: number; uniqueSize: number; containers: number }[];
  containers: { id: string; name: string; image: string; state: string; size: number }[];
  mountpoint: string;
  fsTotal: number;
  fsAvailable: number;
  fsReserve: number;
}
export interface PruneImagesResponse { removedImages: string[]; removedSnapshots: string[]; removedBlobs: number; reclaimedBytes: number }
/** One event of PullImageWithProgress: a layer update, or the final `done`. */
export interface PullProgressEvent { layer?: LayerProgress | null; done?: PullDone | null; event?: 'layer' | 'done' }
export interface LoadImageResponse { images: { id: string; repoTags: string[] }[] }
export interface HandlerInfo {
  name: string;
  backend: string;
  isolation: string;
  available: boolean;
  reason: string;
  details: StringMap;
  isDefault: boolean;
}
export interface InfoResponse {
  version: string;
  pid: number;
  root: string;
  runDir: string;
  socket: string;
  config: string;
  defaultHandler: string;
  handlers: HandlerInfo[];
  versions: StringMap;
  streamAddress: string;
  /** Warm pools (empty: none configured). */
  warmPools?: WarmPoolInfo[];
}
/** A warm pool's figures (bulkhead info, metrics, the log). */
export interface WarmPoolInfo {
  handler: string;
  level: string;
  target: number;
  ready: number;
  /** Members being made now. */
  filling: number;
  /** Pods that adopted a member / pods of this key that started cold, since the daemon started. */
  hits: number;
  misses: number;
  /** Members that failed to be made (the pool backs off) or died while waiting. */
  failures: number;
  lastMiss: string;
  lastError: string;
}

export type {
  Container, ContainerConfig, ContainerFilter, ContainerStats, ContainerStatsFilter, ImageSpec,
  LinuxContainerResources, PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxStats, PodSandboxStatsFilter,
};
