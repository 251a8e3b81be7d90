/**
 * Turns a CRI container request (plus its pod and image) into the runtime layer's SpecRequest and
 * lets runtime/spec.ts build the hardened OCI spec. Which namespaces a container names is the
 * backend's pod strategy's (runtime/sandbox/pod-sandbox.ts), passed in as `namespaces`.
 */
import { mkdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { InvalidArgumentError, PermissionDeniedError } from '../errors.ts';
import { mountHostPath } from '../runtime/helpers/hostmount.ts';
import { profileLooserThanDefault, readLocalhostProfile } from '../runtime/seccomp.ts';
import { strictSpecAnnotations } from '../runtime/strict/annotations.ts';
import { MOUNT_ORIGINS_ANNOTATION } from '../vm/annotations.ts';
import { isUnder } from '../util/beneath.ts';
import { buildSpec, buildPauseSpec as runtimeBuildPauseSpec, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, type ImageProcessConfig, type SpecMount, type SpecRequest, type SpecResources } from '../runtime/spec.ts';
import type { OciSeccomp, OciSpec } from '../oci/spec.ts';
import type { PodRecord } from './store.ts';
import type * as cri from '../api/cri.ts';

export { ensurePauseRootfs } from '../runtime/pause.ts';

/** OCI image config fields the engine reads (either the whole config blob or its `config`). */
export interface ImageConfigFields extends ImageProcessConfig {
  StopSignal?: string;
  Labels?: Record<string, string> | null;
}

/** An image as the image service returns it (only what the engine needs). */
export interface EngineImage {
  id: string;
  /** The manifest's digest (the strict handler's profiles are keyed by it). */
  manifestDigest?: string;
  repoDigests?: string[];
  repoTags?: string[];
  /** The OCI image config: either the full blob ({config: {...}}) or its inner `config` object. */
  config?: (ImageConfigFields & { config?: ImageConfigFields | null }) | null;
}

/** The process part of an image's config, whichever shape the image service hands over. */
export function imageProcessConfig(image: EngineImage): ImageConfigFields {
  const c = image.config;
  if (!c) return {};
  if (c.config && typeof c.config === 'object') return c.config;
  return c;
}

/** Pod-level files (paths on the host) bind-mounted into every container. */
export interface PodEtcFiles { hostname: string; hosts: string; resolvConf: string }

function propagation(p: cri.MountPropagation | undefined): 'private' | 'rslave' | 'rshared' {
  if (p === 'PROPAGATION_BIDIRECTIONAL') return 'rshared';
  if (p === 'PROPAGATION_HOST_TO_CONTAINER') return 'rslave';
  return 'private';
}

/**
 * Security settings for what a container request leaves unset. Bulkhead's own defaults are
 * hardened (fail closed); Kubernetes' are looser: a container that names no seccomp profile runs
 * Unconfined (unless the kubelet's SeccompDefault feature sends RuntimeDefault explicitly), and
 * no_new_privs=false (allowPrivilegeEscalation unset) means setuid binaries work. The policy
 * gives the Kubernetes defaults only to pods whose trust level could ask for them anyway.
 */
export interface ContainerDefaults {
  /** Profile for a container that names none. */
  seccomp: 'RuntimeDefault' | 'Unconfined';
  /** true: no_new_privs as the request says; false: always on (except privileged containers). */
  honorNoNewPrivs: boolean;

  /** true: a request's masked/readonly paths replace the defaults; false: they are added to them. */
  unmaskedProc: boolean;
  /** The level allows every host path (host_paths = "any"): the protected paths are not checked at mount. */
  hostPathsAny?: boolean;
  /** The level allows no host path (host_paths = "none"): only the pod's own kubelet volumes are mounted. */
  hostPathsNone?: boolean;
  /** host_paths = "listed": the real path of what is mounted must lie under one of these. */
  allowedHostPaths?: string[];
  /** require_run_as_non_root: the resolved user must not be uid 0. */
  runAsNonRoot?: boolean;
}

export const HARDENED_DEFAULTS: ContainerDefaults = { seccomp: 'RuntimeDefault', honorNoNewPrivs: false, unmaskedProc: false };

/** The pod's defaults for unset settings, from its stored decision (hardened when none was stored). */
function podDefaults(pod: PodRecord): ContainerDefaults {
  const d = pod.runtime.engine.decision;
  if (!d) return HARDENED_DEFAULTS;
  return {
    seccomp: d.seccompDefault, honorNoNewPrivs: d.honorNoNewPrivs, unmaskedProc: d.unmaskedProc, hostPathsAny: d.hostPathsAny === true,
    ...(d.hostPathsNone ? { hostPathsNone: true } : {}), ...(d.runAsNonRoot ? { runAsNonRoot: true } : {}), ...(d.allowedHostPaths ? { allowedHostPaths: d.allowedHostPaths } : {}),
  };
}

/** The request's paths added to the defaults (never fewer than the defaults). */
function union(dflt: readonly string[], asked: readonly string[] | undefined): string[] {
  return [...new Set([...dflt, ...(asked ?? [])])];
}

async function seccompOf(sc: cri.LinuxContainerSecurityContext | null | undefined, dflt: ContainerDefaults['seccomp'], profileRoot: string): Promise<NonNullable<SpecRequest['seccomp']>> {
  // Nothing said (no profile message, no legacy path): the pod's default.
  if (!sc?.seccomp && !sc?.seccompProfilePath) return { type: dflt };
  let type: cri.ProfileType | undefined = sc?.seccomp?.profileType;
  let ref = sc?.seccomp?.localhostRef ?? '';
  if (!sc?.seccomp && sc?.seccompProfilePath) {
    const p = sc.seccompProfilePath;
    if (p === 'unconfined') type = 'Unconfined';
    else if (p.startsWith('localhost/')) { type = 'Localhost'; ref = p.slice('localhost/'.length); }
    else type = 'RuntimeDefault';
  }
  if (type === 'Unconfined') return { type: 'Unconfined' };
  if (type === 'Localhost') {
    const profile = await readLocalhostProfile(ref, profileRoot);
    // a pod that may not run unconfined may not get the same through a permissive profile
    if (dflt !== 'Unconfined') {
      const why = profileLooserThanDefault(profile);
      if (why) throw new PermissionDeniedError(`seccomp rule: localhost profile ${ref} is looser than the built-in profile (${why}); the pod's trust level does not allow unconfined seccomp`);
    }
    return { type: 'Localhost', profile };
  }
  return { type: 'RuntimeDefault' };
}

/**
 * The seccomp profile a container gets, judged against its pod's stored decision: a localhost
 * profile is read (under `profileRoot`, bounded, see runtime/seccomp.ts) and, for a pod that may
 * not run unconfined, refused when looser than the built-in one. The engine calls this before it
 * prepares anything for the container.
 */
export async function containerSeccomp(config: cri.ContainerConfig, pod: PodRecord, profileRoot: string): Promise<NonNullable<SpecRequest['seccomp']>> {
  return await seccompOf(config.linux?.securityContext, podDefaults(pod).seccomp, profileRoot);
}

export function criResources(r: cri.LinuxContainerResources | null | undefined, pidsLimit: number): SpecResources {
  const out: SpecResources = {};
  if (r?.memoryLimitInBytes) out.memoryLimitBytes = r.memoryLimitInBytes;
  if (r?.cpuShares) out.cpuShares = r.cpuShares;
  if (r?.cpuQuota) out.cpuQuota = r.cpuQuota;
  if (r?.cpuPeriod) out.cpuPeriod = r.cpuPeriod;
  if (r?.cpusetCpus) out.cpusetCpus = r.cpusetCpus;
  if (r?.cpusetMems) out.cpusetMems = r.cpusetMems;
  if (r?.unified && Object.keys(r.unified).length > 0) out.unified = r.unified;
  if (pidsLimit > 0) out.pidsLimit = pidsLimit;
  return out;
}

export interface ContainerSpecInput {
  id: string;
  rootfs: string;
  image: EngineImage;
  config: cri.ContainerConfig;
  pod: PodRecord;
  /** The namespaces the spec names (the backend's pod strategy: PodSandbox.containerNamespaces). */
  namespaces: NonNullable<SpecRequest['namespaces']>;
  cgroupParent: string;
  /** pids.max for every container (0 = none). */
  pidsLimit: number;
  /** Where localhost seccomp profiles may be (engine option seccompProfileRoot). */
  seccompProfileRoot: string;
  /** The container's seccomp choice when already made (containerSeccomp); otherwise made here. */
  seccomp?: NonNullable<SpecRequest['seccomp']>;
  /** How host paths are mounted: through bulkhead-hostmount onto staging points under `stagingDir`. */
  hostPaths: HostPathGuard & { helper: () => Promise<string>; stagingDir: string; signal?: AbortSignal };
}

/** What a container's host path is checked against at mount time (besides the policy's check of its name). */
export interface HostPathGuard {
  /** The kubelet's root: paths under <kubeletRoot>/pods/ must be under the pod's own <uid> (from the stored record). */
  kubeletRoot: string;
  /** Real paths no host path may be, lie under or contain (unless the pod's level allows any host path). */
  protect: readonly string[];
}

const CLEAN_UID = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

/**
 * Mounts every host path of the request onto its staging point (bulkhead-hostmount) and returns
 * the spec mounts naming the staging points. Kubelet pod paths only under the pod's own uid, taken
 * from the stored pod record, resolved beneath that directory; other paths clear of the protected
 * ones by their real path (unless the level allows any host path).
 */
async function stageHostMounts(config: cri.ContainerConfig, pod: PodRecord, defaults: ContainerDefaults, g: ContainerSpecInput['hostPaths'], origins: Record<string, string>): Promise<SpecMount[]> {
  const out: SpecMount[] = [];
  const list = config.mounts ?? [];
  if (list.length === 0) return out;
  const bin = await g.helper();
  await mkdir(g.stagingDir, { recursive: true, mode: 0o700 });
  const podsDir = posix.join(g.kubeletRoot, 'pods');
  for (const [i, m] of list.entries()) {
    if (!m.containerPath || !m.hostPath) throw new InvalidArgumentError('a mount needs containerPath and hostPath');
    if (!m.hostPath.startsWith('/') || m.hostPath.includes('\0')) throw new InvalidArgumentError(`mount host path ${JSON.stringify(m.hostPath.slice(0, 200))} must be an absolute path`);
    const n = posix.normalize(m.hostPath).replace(/(.)\/+$/, '$1');
    let beneath: string | undefined;
    if (isUnder(n, podsDir) && n !== podsDir) {
      const own = CLEAN_UID.test(pod.uid) ? posix.join(podsDir, pod.uid) : undefined;
      if (!own || !isUnder(n, own) || n === own) {
        throw new PermissionDeniedError(`host-path rule: mount host path ${n} is under the kubelet's pod directories but not under this pod's own (${own ?? 'none: the pod has no valid uid'}/...)`);
      }
      beneath = own;
    }
    if (!beneath && defaults.hostPathsNone) throw new PermissionDeniedError(`host-path rule: mount host path ${n} is not allowed: the pod's trust level allows no host paths but its own kubelet volumes`);
    const target = join(g.stagingDir, String(i));
    origins[target] = await mountHostPath(bin, {
      source: n, target, readonly: !!m.readonly, protect: defaults.hostPathsAny ? [] : g.protect,
      ...(!defaults.hostPathsAny && defaults.allowedHostPaths ? { allow: defaults.allowedHostPaths } : {}),
      ...(beneath ? { beneath } : {}), ...(g.signal ? { signal: g.signal } : {}),
    });
    out.push({ containerPath: m.containerPath, hostPath: target, readonly: !!m.readonly, propagation: propagation(m.propagation) });
  }
  return out;
}

/** The OCI spec of an app container. */
export async function buildContainerSpec(inp: ContainerSpecInput): Promise<OciSpec> {
  const { config, pod } = inp;
  const defaults = podDefaults(pod);
  const sc = config.linux?.securityContext;
  const podSc = pod.config.linux?.securityContext;
  if (sc?.privileged && !podSc?.privileged) throw new InvalidArgumentError('a privileged container needs a privileged pod sandbox');
  if (sc?.runAsUser && sc.runAsUsername) throw new InvalidArgumentError('runAsUser and runAsUsername are mutually exclusive');
  if (sc?.runAsGroup && !sc.runAsUser && !sc.runAsUsername) throw new InvalidArgumentError('runAsGroup needs runAsUser or runAsUsername');
  const namespaces = inp.namespaces;
  const files = pod.runtime.engine.files;
  // the seccomp profile is judged before anything is mounted (the engine does it even earlier)
  const seccomp = inp.seccomp ?? await seccompOf(sc, defaults.seccomp, inp.seccompProfileRoot);
  // each staging point's real host path, for a runtime that needs to know what it is (microvm's copied volumes)
  const origins: Record<string, string> = {};
  const mounts = await stageHostMounts(config, pod, defaults, inp.hostPaths, origins);
  const ownUts = namespaces.uts === 'private';
  const hostname = pod.config.hostname ?? '';
  const env = (config.envs ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' }));
  if (hostname && !ownUts && !env.some((e) => e.key === 'HOSTNAME')) env.unshift({ key: 'HOSTNAME', value: hostname });
  const img = imageProcessConfig(inp.image);
  const image: ImageProcessConfig = {};
  if (img.User !== undefined) image.User = img.User;
  if (img.Env !== undefined) image.Env = img.Env;
  if (img.Entrypoint !== undefined) image.Entrypoint = img.Entrypoint;
  if (img.Cmd !== undefined) image.Cmd = img.Cmd;
  if (img.WorkingDir !== undefined) image.WorkingDir = img.WorkingDir;
  const req: SpecRequest = {
    rootfs: inp.rootfs,
    image,
    env,
    mounts,
    devices: (config.devices ?? []).map((d) => ({ containerPath: d.containerPath ?? '', hostPath: d.hostPath ?? '', permissions: d.permissions ?? 'rwm' })),
    tty: !!config.tty,
    stdin: !!config.stdin,
    resources: criResources(config.linux?.resources, inp.pidsLimit),
    namespaces,
    capabilities: { add: sc?.capabilities?.addCapabilities ?? [], drop: sc?.capabilities?.dropCapabilities ?? [] },
    privileged: !!sc?.privileged,
    readonlyRootfs: !!sc?.readonlyRootfs,
    seccomp,
    cgroupParent: inp.cgroupParent,
    cgroupName: inp.id,
    annotations: {
      'io.kubernetes.cri.sandbox-id': pod.id, ...strictSpecAnnotations(inp.image, config.annotations, pod.runtime.engine.decision?.strictFallback),
      ...(Object.keys(origins).length ? { [MOUNT_ORIGINS_ANNOTATION]: JSON.stringify(origins) } : {}),
    },
    ...(files ? { etcFiles: files } : {}),
  };
  if (config.command && config.command.length > 0) req.command = config.command;
  if (config.args && config.args.length > 0) req.args = config.args;
  if (config.workingDir) req.workingDir = config.workingDir;
  if (sc?.runAsUser) req.runAsUser = sc.runAsUser.value;
  if (sc?.runAsUsername) req.runAsUsername = sc.runAsUsername;
  if (sc?.runAsGroup) req.runAsGroup = sc.runAsGroup.value;
  if (defaults.runAsNonRoot) req.requireNonRoot = true;
  if (sc?.supplementalGroups && sc.supplementalGroups.length > 0) req.supplementalGroups = sc.supplementalGroups;
  if (ownUts && hostname) req.hostname = hostname;
  if (config.linux?.resources?.oomScoreAdj) req.oomScoreAdj = config.linux.resources.oomScoreAdj;
  if (defaults.unmaskedProc) {
    // The level allows procMount Unmasked: the request's lists stand as given.
    if (sc?.maskedPaths && sc.maskedPaths.length > 0) req.maskedPaths = sc.maskedPaths;
    if (sc?.readonlyPaths && sc.readonlyPaths.length > 0) req.readonlyPaths = sc.readonlyPaths;
  } else {
    req.maskedPaths = union(DEFAULT_MASKED_PATHS, sc?.maskedPaths);
    req.readonlyPaths = union(DEFAULT_READONLY_PATHS, sc?.readonlyPaths);
  }
  if (sc?.noNewPrivs) req.noNewPrivileges = true;
  else if (defaults.honorNoNewPrivs) req.noNewPrivileges = false;
  return await buildSpec(req);
}

/** The OCI spec of a pod's pause container (it owns the pod's IPC/UTS/PID namespaces). */
export async function buildPodPauseSpec(opts: { id: string; pod: PodRecord; rootfs: string; files: PodEtcFiles }): Promise<OciSpec> {
  const { pod } = opts;
  const nsOpt = pod.config.linux?.securityContext?.namespaceOptions;
  const hostNet = pod.runtime.networkMode === 'host';
  const hostname = pod.config.hostname ?? '';
  const sysctls = pod.config.linux?.sysctls ?? {};
  return await runtimeBuildPauseSpec({
    rootfs: opts.rootfs,
    ...(hostname ? { hostname } : {}),
    namespaces: {
      network: hostNet ? 'host' : pod.runtime.netnsPath ? { path: pod.runtime.netnsPath } : 'private',
      ipc: nsOpt?.ipc === 'NODE' ? 'host' : 'private',
      uts: hostNet && !hostname ? 'host' : 'private',
      pid: nsOpt?.pid === 'NODE' ? 'host' : 'private',
    },
    cgroupParent: pod.runtime.cgroupParent,
    cgroupName: opts.id,
    ...(Object.keys(sysctls).length > 0 ? { sysctls } : {}),
    annotations: { 'io.kubernetes.cri.sandbox-id': pod.id },
  });
}
