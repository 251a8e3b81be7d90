/**
 * The CRI v1 (`runtime.v1`) messages the engine takes and returns, written from the public API
 * definition (k8s.io/cri-api, pkg/apis/runtime/v1/api.proto).
 *
 * Shape rule: exactly what @grpc/proto-loader produces with `keepCase: false`, `enums: String`,
 * `longs: Number`, `bytes: Buffer`: field names are the proto names in lowerCamelCase
 * (`log_directory` → `logDirectory`), int64/uint64 are numbers, enums are their string names
 * ('SANDBOX_READY'), bytes are Buffers, maps are plain string records, Int64Value/UInt64Value
 * wrappers are `{ value: number }`.
 *
 * Requests (what the engine takes) mark every field optional and sub-messages nullable: a
 * decoder may leave them out, and the CLI builds them by hand. Responses (what the engine
 * returns) fill every scalar field so the encoder sees the proto3 defaults explicitly.
 */

/** Maps in proto3: always string → string here. */
export type StringMap = Record<string, string>;
/** Optional sub-message as a decoder hands it over. */
export type Opt<T> = T | null | undefined;

export interface Int64Value { value: number }
export interface UInt64Value { value: number }

// ---------------------------------------------------------------------------------------------
// Enums (string names)

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export type ContainerEventType =
  | 'CONTAINER_CREATED_EVENT'
  | 'CONTAINER_STARTED_EVENT'
  | 'CONTAINER_STOPPED_EVENT'
  | 'CONTAINER_DELETED_EVENT';
export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type MountPropagation = 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
export type ProfileType = 'RuntimeDefault' | 'Unconfined' | 'Localhost';
export type SupplementalGroupsPolicy = 'Merge' | 'Strict';
/** Values the engine sets in ContainerStatus.reason. */
export type ContainerReason = 'Completed' | 'Error' | 'OOMKilled' | 'ContainerCannotRun' | '';

// ---------------------------------------------------------------------------------------------
// Shared pieces

export interface IDMapping { hostId?: number; containerId?: number; length?: number }

export interface UserNamespace {
  mode?: NamespaceMode;
  uids?: IDMapping[];
  gids?: IDMapping[];
}

export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
  targetId?: string;
  usernsOptions?: Opt<UserNamespace>;
}

export interface SELinuxOption { user?: string; role?: string; type?: string; level?: string }

export interface SecurityProfile {
  profileType?: ProfileType;
  localhostRef?: string;
}

export interface DNSConfig {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

export interface PortMapping {
  protocol?: Protocol;
  containerPort?: number;
  hostPort?: number;
  hostIp?: string;
}

export interface HugepageLimit { pageSize?: string; limit?: number }

export interface LinuxContainerResources {
  cpuPeriod?: number;
  cpuQuota?: number;
  cpuShares?: number;
  memoryLimitInBytes?: number;
  oomScoreAdj?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  hugepageLimits?: HugepageLimit[];
  unified?: StringMap;
  memorySwapLimitInBytes?: number;
}

export interface WindowsContainerResources {
  cpuShares?: number;
  cpuCount?: number;
  cpuMaximum?: number;
  memoryLimitInBytes?: number;
  rootfsSizeInBytes?: number;
}

export interface ImageSpec {
  image?: string;
  annotations?: StringMap;
  userSpecifiedImage?: string;
  runtimeHandler?: string;
}

export interface KeyValue { key?: string; value?: string }

export interface Mount {
  containerPath?: string;
  hostPath?: string;
  readonly?: boolean;
  selinuxRelabel?: boolean;
  propagation?: MountPropagation;
  uidMappings?: IDMapping[];
  gidMappings?: IDMapping[];
  recursiveReadOnly?: boolean;
  image?: Opt<ImageSpec>;
}

export interface Device {
  containerPath?: string;
  hostPath?: string;
  /** Any of r, w, m. */
  permissions?: string;
}

export interface CDIDevice { name?: string }

// ---------------------------------------------------------------------------------------------
// Pod sandbox config (RunPodSandbox, CreateContainer)

export interface PodSandboxMetadata {
  name?: string;
  uid?: string;
  namespace?: string;
  attempt?: number;
}

export interface LinuxSandboxSecurityContext {
  namespaceOptions?: Opt<NamespaceOption>;
  selinuxOptions?: Opt<SELinuxOption>;
  runAsUser?: Opt<Int64Value>;
  runAsGroup?: Opt<Int64Value>;
  readonlyRootfs?: boolean;
  supplementalGroups?: number[];
  supplementalGroupsPolicy?: SupplementalGroupsPolicy;
  privileged?: boolean;
  seccomp?: Opt<SecurityProfile>;
  apparmor?: Opt<SecurityProfile>;
  /** Deprecated in the API; "runtime/default" | "unconfined" | "localhost/<path>". */
  seccompProfilePath?: string;
}

export interface LinuxPodSandboxConfig {
  cgroupParent?: string;
  securityContext?: Opt<LinuxSandboxSecurityContext>;
  sysctls?: StringMap;
  overhead?: Opt<LinuxContainerResources>;
  resources?: Opt<LinuxContainerResources>;
}

export interface WindowsPodSandboxConfig {
  securityContext?: Opt<{ runAsUsername?: string; credentialSpec?: string; hostProcess?: boolean; namespaceOptions?: Opt<{ network?: NamespaceMode }> }>;
}

export interface PodSandboxConfig {
  metadata?: Opt<PodSandboxMetadata>;
  hostname?: string;
  logDirectory?: string;
  dnsConfig?: Opt<DNSConfig>;
  portMappings?: PortMapping[];
  labels?: StringMap;
  annotations?: StringMap;
  linux?: Opt<LinuxPodSandboxConfig>;
  windows?: Opt<WindowsPodSandboxConfig>;
}

// ---------------------------------------------------------------------------------------------
// Container config (CreateContainer)

export interface ContainerMetadata {
  name?: string;
  attempt?: number;
}

export interface Capability {
  addCapabilities?: string[];
  dropCapabilities?: string[];
  addAmbientCapabilities?: string[];
}

export interface LinuxContainerSecurityContext {
  capabilities?: Opt<Capability>;
  privileged?: boolean;
  namespaceOptions?: Opt<NamespaceOption>;
  selinuxOptions?: Opt<SELinuxOption>;
  runAsUser?: Opt<Int64Value>;
  runAsGroup?: Opt<Int64Value>;
  runAsUsername?: string;
  readonlyRootfs?: boolean;
  supplementalGroups?: number[];
  supplementalGroupsPolicy?: SupplementalGroupsPolicy;
  noNewPrivs?: boolean;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  seccomp?: Opt<SecurityProfile>;
  apparmor?: Opt<SecurityProfile>;
  /** Deprecated in the API. */
  apparmorProfile?: string;
  /** Deprecated in the API. */
  seccompProfilePath?: string;
}

export interface LinuxContainerConfig {
  resources?: Opt<LinuxContainerResources>;
  securityContext?: Opt<LinuxContainerSecurityContext>;
}

export interface ContainerConfig {
  metadata?: Opt<ContainerMetadata>;
  image?: Opt<ImageSpec>;
  command?: string[];
  args?: string[];
  workingDir?: string;
  envs?: KeyValue[];
  mounts?: Mount[];
  devices?: Device[];
  labels?: StringMap;
  annotations?: StringMap;
  /** Relative to PodSandboxConfig.logDirectory. */
  logPath?: string;
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
  linux?: Opt<LinuxContainerConfig>;
  windows?: Opt<{ resources?: Opt<WindowsContainerResources> }>;
  /** proto `CDI_devices`. */
  CDIDevices?: CDIDevice[];
}

// ---------------------------------------------------------------------------------------------
// Filters (requests)

export interface PodSandboxFilter {
  id?: string;
  state?: Opt<{ state?: PodSandboxState }>;
  labelSelector?: StringMap;
}

export interface ContainerFilter {
  id?: string;
  state?: Opt<{ state?: ContainerState }>;
  podSandboxId?: string;
  labelSelector?: StringMap;
}

export interface ContainerStatsFilter {
  id?: string;
  podSandboxId?: string;
  labelSelector?: StringMap;
}

export interface PodSandboxStatsFilter {
  id?: string;
  labelSelector?: StringMap;
}

// ---------------------------------------------------------------------------------------------
// Responses: pods

/** Metadata as returned: every field set. */
export interface PodSandboxMetadataOut {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadataOut;
  state: PodSandboxState;
  /** Nanoseconds since the epoch, > 0. */
  createdAt: number;
  labels: StringMap;
  annotations: StringMap;
  runtimeHandler: string;
}

export interface PodIP { ip: string }

export interface PodSandboxNetworkStatus {
  ip: string;
  additionalIps: PodIP[];
}

export interface PodSandboxStatus {
  id: string;
  metadata: PodSandboxMetadataOut;
  state: PodSandboxState;
  createdAt: number;
  network: PodSandboxNetworkStatus | null;
  linux: { namespaces: { options: NamespaceOption } } | null;
  labels: StringMap;
  annotations: StringMap;
  runtimeHandler: string;
}

export interface PodSandboxStatusResponse {
  status: PodSandboxStatus;
  /** Only filled when verbose; values are JSON. */
  info: StringMap;
  containersStatuses: ContainerStatus[];
  timestamp: number;
}

// ---------------------------------------------------------------------------------------------
// Responses: containers

export interface ContainerMetadataOut {
  name: string;
  attempt: number;
}

export interface ImageSpecOut {
  image: string;
  annotations: StringMap;
  userSpecifiedImage: string;
  runtimeHandler: string;
}

export interface Container {
  id: string;
  podSandboxId: string;
  metadata: ContainerMetadataOut;
  image: ImageSpecOut;
  imageRef: string;
  state: ContainerState;
  createdAt: number;
  labels: StringMap;
  annotations: StringMap;
  imageId: string;
}

export interface ContainerResources {
  linux: LinuxContainerResources | null;
  windows: WindowsContainerResources | null;
}

export interface ContainerUser {
  linux: { uid: number; gid: number; supplementalGroups: number[] } | null;
}

export interface ContainerStatus {
  id: string;
  metadata: ContainerMetadataOut;
  state: ContainerState;
  createdAt: number;
  /** 0 when not started. */
  startedAt: number;
  /** 0 when not finished. */
  finishedAt: number;
  exitCode: number;
  image: ImageSpecOut;
  imageRef: string;
  reason: ContainerReason;
  message: string;
  labels: StringMap;
  annotations: StringMap;
  mounts: Mount[];
  logPath: string;
  resources: ContainerResources | null;
  imageId: string;
  user: ContainerUser | null;
  imageSource: string;
}

export interface ContainerStatusResponse {
  status: ContainerStatus;
  /** Only filled when verbose; values are JSON. */
  info: StringMap;
}

export interface ExecSyncResponse {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

// ---------------------------------------------------------------------------------------------
// Responses: stats

export interface CpuUsage {
  timestamp: number;
  usageCoreNanoSeconds: UInt64Value | null;
  usageNanoCores: UInt64Value | null;
}

export interface MemoryUsage {
  timestamp: number;
  workingSetBytes: UInt64Value | null;
  availableBytes: UInt64Value | null;
  usageBytes: UInt64Value | null;
  rssBytes: UInt64Value | null;
  pageFaults: UInt64Value | null;
  majorPageFaults: UInt64Value | null;
}

export interface SwapUsage {
  timestamp: number;
  swapAvailableBytes: UInt64Value | null;
  swapUsageBytes: UInt64Value | null;
}

export interface FilesystemUsage {
  timestamp: number;
  fsId: { mountpoint: string } | null;
  usedBytes: UInt64Value | null;
  inodesUsed: UInt64Value | null;
}

export interface ProcessUsage {
  timestamp: number;
  processCount: UInt64Value | null;
}

export interface NetworkInterfaceUsage {
  name: string;
  rxBytes: UInt64Value | null;
  rxErrors: UInt64Value | null;
  txBytes: UInt64Value | null;
  txErrors: UInt64Value | null;
}

export interface NetworkUsage {
  timestamp: number;
  defaultInterface: NetworkInterfaceUsage | null;
  interfaces: NetworkInterfaceUsage[];
}

export interface ContainerAttributes {
  id: string;
  metadata: ContainerMetadataOut;
  labels: StringMap;
  annotations: StringMap;
}

export interface ContainerStats {
  attributes: ContainerAttributes;
  cpu: CpuUsage | null;
  memory: MemoryUsage | null;
  writableLayer: FilesystemUsage | null;
  swap: SwapUsage | null;
}

export interface PodSandboxAttributes {
  id: string;
  metadata: PodSandboxMetadataOut;
  labels: StringMap;
  annotations: StringMap;
}

export interface LinuxPodSandboxStats {
  cpu: CpuUsage | null;
  memory: MemoryUsage | null;
  network: NetworkUsage | null;
  process: ProcessUsage | null;
  containers: ContainerStats[];
}

export interface PodSandboxStats {
  attributes: PodSandboxAttributes;
  linux: LinuxPodSandboxStats | null;
  windows: null;
}

// ---------------------------------------------------------------------------------------------
// Events

export interface ContainerEventResponse {
  containerId: string;
  containerEventType: ContainerEventType;
  /** Nanoseconds since the epoch. */
  createdAt: number;
  podSandboxStatus: PodSandboxStatus | null;
  containersStatuses: ContainerStatus[];
}
