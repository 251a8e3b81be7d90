// Request checks shared by the RPC handlers: what is malformed is INVALID_ARGUMENT before any work.
import { InvalidArgumentError } from '../errors.ts';
import type { ContainerConfig, PodSandboxConfig } from '../api/cri.ts';

export function requireId(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new InvalidArgumentError(`${what} must not be empty`);
  if (value.length > 256 || /[\0/\s]/.test(value)) throw new InvalidArgumentError(`${what} "${value.slice(0, 80)}" is not a valid id`);
  return value;
}

export function requireString(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new InvalidArgumentError(`${what} must not be empty`);
  return value;
}

/** Longest pod/container name or namespace accepted (a DNS subdomain's limit, as Kubernetes). */
export const MAX_METADATA_NAME = 253;

/** A metadata name or namespace: at most 253 characters, no '/' or NUL (it becomes part of paths). */
export function checkMetadataName(value: string, what: string): void {
  if (value.length > MAX_METADATA_NAME) throw new InvalidArgumentError(`${what} is too long (${value.length} > ${MAX_METADATA_NAME} characters): use a shorter name`);
  if (/[\0/]/.test(value)) throw new InvalidArgumentError(`${what} "${value.slice(0, 80).replace(/\0/g, '\\0')}" contains '/' or a NUL byte, which names may not hold`);
}

/** A non-negative timeout in seconds (int64 decoded as number). */
export function timeoutSeconds(value: unknown, what: string): number {
  const n = typeof value === 'number' ? value : Number(value ?? 0);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${what} must be a non-negative number of seconds`);
  return n;
}

/**
 * The deprecated seccomp_profile_path: "", "unconfined", "runtime/default", "docker/default" or
 * "localhost/<absolute path>"; anything else (a bare path) is malformed.
 */
export function checkSeccompProfilePath(value: string | undefined, what: string): void {
  if (!value || ['unconfined', 'runtime/default', 'docker/default'].includes(value)) return;
  if (value.startsWith('localhost/') && value.length > 'localhost/'.length) return;
  throw new InvalidArgumentError(`${what}: seccomp profile "${value.slice(0, 200)}" must be unconfined, runtime/default or localhost/<path>`);
}

// ---------------------------------------------------------------------------------------------
// Size and count bounds. A pod spec is hostile input that the daemon stores and hands back in
// every List*: each request is bounded here (INVALID_ARGUMENT naming the limit) before any work,
// and the store bounds what all pods and containers together add to a List* answer
// (src/engine/store.ts, LIST_BUDGET_BYTES).

/** Labels + annotations of one pod or container, keys and values (the API server's limit). */
export const MAX_METADATA_BYTES = 256 * 1024;
/** command + args + envs of one container (execve refuses ~2 MiB; a container never starts past it). */
export const MAX_ARGV_ENV_BYTES = 1024 * 1024;
/** The whole stored config of a pod / a container (JSON), whatever field grows. */
export const MAX_POD_CONFIG_BYTES = 512 * 1024;
export const MAX_CONTAINER_CONFIG_BYTES = 2 * 1024 * 1024;

/** Entries per list (or map) field; a field not named here is bounded by the config size. */
export const MAX_COUNTS = {
  portMappings: 1024, sysctls: 256, dnsServers: 64, dnsSearches: 64, dnsOptions: 64,
  supplementalGroups: 256, args: 16384, envs: 16384, mounts: 1024, devices: 256, cdiDevices: 256,
  maskedPaths: 1024, readonlyPaths: 1024, capabilities: 128, unified: 256, hugepageLimits: 16,
} as const;

function mapBytes(m: Record<string, string> | undefined | null): number {
  let n = 0;
  for (const [k, v] of Object.entries(m ?? {})) n += Buffer.byteLength(k) + Buffer.byteLength(String(v));
  return n;
}

function kib(n: number): string {
  return n >= 1024 * 1024 ? `${n / (1024 * 1024)} MiB` : `${n / 1024} KiB`;
}

function checkCount(list: unknown[] | Record<string, unknown> | undefined | null, limit: keyof typeof MAX_COUNTS, what: string): void {
  const n = Array.isArray(list) ? list.length : list ? Object.keys(list).length : 0;
  if (n > MAX_COUNTS[limit]) throw new InvalidArgumentError(`${what}: ${n} entries, over the limit of ${MAX_COUNTS[limit]} (bulkhead bound ${limit}); use fewer`);
}

function checkMetadata(labels: Record<string, string> | undefined, annotations: Record<string, string> | undefined, what: string): void {
  const n = mapBytes(labels) + mapBytes(annotations);
  if (n > MAX_METADATA_BYTES) {
    throw new InvalidArgumentError(`${what}: labels and annotations are ${n} bytes, over the limit of ${MAX_METADATA_BYTES} (${kib(MAX_METADATA_BYTES)}, as the Kubernetes API server); store large data in a volume`);
  }
}

function checkStored(config: unknown, limit: number, what: string): void {
  const n = Buffer.byteLength(JSON.stringify(config ?? {}));
  if (n > limit) throw new InvalidArgumentError(`${what} is ${n} bytes, over the limit of ${limit} (${kib(limit)}); shorten its fields`);
}

/** Size and count bounds of a PodSandboxConfig (RunPodSandbox). */
export function checkPodBounds(config: PodSandboxConfig): void {
  const what = 'pod sandbox config';
  checkMetadata(config.labels, config.annotations, what);
  checkCount(config.portMappings, 'portMappings', `${what}: port_mappings`);
  checkCount(config.dnsConfig?.servers, 'dnsServers', `${what}: dns_config.servers`);
  checkCount(config.dnsConfig?.searches, 'dnsSearches', `${what}: dns_config.searches`);
  checkCount(config.dnsConfig?.options, 'dnsOptions', `${what}: dns_config.options`);
  checkCount(config.linux?.sysctls, 'sysctls', `${what}: linux.sysctls`);
  checkCount(config.linux?.securityContext?.supplementalGroups, 'supplementalGroups', `${what}: supplemental_groups`);
  for (const r of [config.linux?.resources, config.linux?.overhead]) {
    checkCount(r?.unified, 'unified', `${what}: linux resources.unified`);
    checkCount(r?.hugepageLimits, 'hugepageLimits', `${what}: linux resources.hugepage_limits`);
  }
  const uid = config.metadata?.uid ?? '';
  if (uid.length > 253) throw new InvalidArgumentError(`${what}: metadata.uid is ${uid.length} characters, over the limit of 253`);
  checkStored(config, MAX_POD_CONFIG_BYTES, what);
}

/** Size and count bounds of a ContainerConfig (CreateContainer). */
export function checkContainerBounds(config: ContainerConfig): void {
  const what = 'container config';
  checkMetadata(config.labels, config.annotations, what);
  checkCount([...(config.command ?? []), ...(config.args ?? [])], 'args', `${what}: command + args`);
  checkCount(config.envs, 'envs', `${what}: envs`);
  let argv = 0;
  for (const s of [...(config.command ?? []), ...(config.args ?? [])]) argv += Buffer.byteLength(s) + 1;
  for (const e of config.envs ?? []) argv += Buffer.byteLength(e.key ?? '') + Buffer.byteLength(e.value ?? '') + 2;
  if (argv > MAX_ARGV_ENV_BYTES) throw new InvalidArgumentError(`${what}: command, args and envs are ${argv} bytes, over the limit of ${MAX_ARGV_ENV_BYTES} (${kib(MAX_ARGV_ENV_BYTES)}); pass large data in a file`);
  checkCount(config.mounts, 'mounts', `${what}: mounts`);
  checkCount(config.devices, 'devices', `${what}: devices`);
  checkCount(config.CDIDevices, 'cdiDevices', `${what}: CDI_devices`);
  const sc = config.linux?.securityContext;
  checkCount(sc?.maskedPaths, 'maskedPaths', `${what}: masked_paths`);
  checkCount(sc?.readonlyPaths, 'readonlyPaths', `${what}: readonly_paths`);
  checkCount(sc?.supplementalGroups, 'supplementalGroups', `${what}: supplemental_groups`);
  checkCount(sc?.capabilities?.addCapabilities, 'capabilities', `${what}: capabilities.add_capabilities`);
  checkCount(sc?.capabilities?.dropCapabilities, 'capabilities', `${what}: capabilities.drop_capabilities`);
  checkCount(sc?.capabilities?.addAmbientCapabilities, 'capabilities', `${what}: capabilities.add_ambient_capabilities`);
  checkCount(config.linux?.resources?.unified, 'unified', `${what}: resources.unified`);
  checkCount(config.linux?.resources?.hugepageLimits, 'hugepageLimits', `${what}: resources.hugepage_limits`);
  checkStored(config, MAX_CONTAINER_CONFIG_BYTES, what);
}
