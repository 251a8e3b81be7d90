/**
 * OCI spec builder: image config + a CRI-like container request → config.json, with hardened
 * defaults at least as strict as CRI-O's (9 default capabilities, the default seccomp profile,
 * masked and read-only /proc and /sys paths, no new privileges, cgroupfs path under a parent).
 * Privileged mode (all capabilities of the bounding set, no seccomp, no masks) only when asked.
 *
 * Nothing from the image or the request is trusted: users are resolved inside the rootfs without
 * following links out of it, rlimits are clamped to this process's hard limits and
 * oom_score_adj to at least this process's value (no CAP_SYS_RESOURCE needed).
 */
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import { InvalidArgumentError, PermissionDeniedError } from '../errors.ts';
import { resolveCapabilities, hostBoundingSet } from './capabilities.ts';
import type { OciDeviceCgroup, OciLinuxResources, OciMount, OciNamespace, OciRlimit, OciSeccomp, OciSpec } from '../oci/spec.ts';
import { resolveUser } from './rootfs-user.ts';
import { defaultSeccompProfile } from './seccomp.ts';

/** The parts of an OCI image config that shape the process (field names as in the image config). */
export interface ImageProcessConfig {
  User?: string;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
}

export interface SpecMount {
  containerPath: string;
  hostPath: string;
  readonly?: boolean;
  /** CRI propagation: private (default), rslave (host → container), rshared (both ways). */
  propagation?: 'private' | 'rslave' | 'rshared';
}

export interface SpecDevice {
  containerPath: string;
  hostPath: string;
  /** "r", "w", "m" combination; default "rwm". */
  permissions?: string;
}

/**
 * A namespace choice: a path to join, a new one ('private'), the host's ('host'), or the one of
 * the sandbox the container runs in ('sandbox': no entry in the spec; sandbox-hosted pods).
 */
export type NamespaceChoice = { path: string } | 'private' | 'host' | 'sandbox';

export interface SpecResources {
  memoryLimitBytes?: number;
  /** CPU shares (cgroup v1 semantics; 2..262144). */
  cpuShares?: number;
  cpuQuota?: number;
  cpuPeriod?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: number;
  /** Raw cgroup v2 keys (applied only on v2 hosts by the runtime). */
  unified?: Record<string, string>;
}

export interface SpecRequest {
  /** Absolute host path of the prepared root filesystem. */
  rootfs: string;
  image?: ImageProcessConfig;
  /** CRI `command` (replaces Entrypoint) and `args` (replaces Cmd). */
  command?: string[];
  args?: string[];
  env?: { key: string; value: string }[];
  workingDir?: string;
  /** CRI runAsUser / runAsUsername / runAsGroup; default the image's User. */
  runAsUser?: number;
  runAsUsername?: string;
  runAsGroup?: number;
  /** The pod's level requires a non-root user (require_run_as_non_root): uid 0 after resolution is refused. */
  requireNonRoot?: boolean;
  supplementalGroups?: number[];
  mounts?: SpecMount[];
  devices?: SpecDevice[];
  hostname?: string;
  tty?: boolean;
  stdin?: boolean;
  resources?: SpecResources;
  /** Requested oom_score_adj; raised to this process's own value if lower. */
  oomScoreAdj?: number;
  /** Requested rlimits (type like RLIMIT_NOFILE); clamped to this process's hard limits. */
  rlimits?: OciRlimit[];
  sysctls?: Record<string, string>;
  namespaces?: { network?: NamespaceChoice; ipc?: NamespaceChoice; uts?: NamespaceChoice; pid?: NamespaceChoice };
  capabilities?: { add?: string[]; drop?: string[] };
  privileged?: boolean;
  readonlyRootfs?: boolean;
  /** Default true. */
  noNewPrivileges?: boolean;
  /** Default RuntimeDefault (Bulkhead's profile). Localhost: a profile given as JSON. */
  seccomp?: { type: 'RuntimeDefault' } | { type: 'Unconfined' } | { type: 'Localhost'; profile: OciSeccomp };
  /** Override the default masked / read-only path lists (CRI maskedPaths/readonlyPaths). */
  maskedPaths?: string[];
  readonlyPaths?: string[];
  /** cgroupfs parent (e.g. /bulkhead/pod-<id>) and leaf name; cgroupsPath = parent/leaf. */
  cgroupParent: string;
  cgroupName: string;
  /** Host files bind-mounted read-only (read-write for hosts/resolv.conf per Kubernetes) at /etc. */
  etcFiles?: { hostname?: string; hosts?: string; resolvConf?: string };
  annotations?: Record<string, string>;
}

export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/dev/block', '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS: readonly string[] = [
  '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger',
];

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Device cgroup rules: deny everything, then the devices every container gets. */
function defaultDeviceRules(): OciDeviceCgroup[] {
  const c = (major: number, minor: number | undefined, access: string): OciDeviceCgroup =>
    minor === undefined ? { allow: true, type: 'c', major, access } : { allow: true, type: 'c', major, minor, access };
  return [
    { allow: false, access: 'rwm' },
    c(1, 3, 'rwm'), c(1, 5, 'rwm'), c(1, 7, 'rwm'), c(1, 8, 'rwm'), c(1, 9, 'rwm'), // null zero full random urandom
    c(5, 0, 'rwm'), c(5, 1, 'rwm'), c(5, 2, 'rwm'), c(136, undefined, 'rwm'), // tty console ptmx pts/*
  ];
}

/** Process argv by the Kubernetes rules for command/args vs. Entrypoint/Cmd. */
export function processArgs(image: ImageProcessConfig | undefined, command?: readonly string[], args?: readonly string[]): string[] {
  const entry = image?.Entrypoint ?? [];
  const cmd = image?.Cmd ?? [];
  let argv: string[];
  if (command !== undefined && command.length > 0) argv = [...command, ...(args ?? [])];
  else if (args !== undefined && args.length > 0) argv = [...entry, ...args];
  else argv = [...entry, ...cmd];
  if (argv.length === 0) throw new InvalidArgumentError('no command: neither the request nor the image gives one');
  return argv;
}

/** Image Env, then the request's (request wins), PATH filled in when missing. */
export function mergeEnv(imageEnv: readonly string[] | null | undefined, requested: readonly { key: string; value: string }[] = [], extra: Record<string, string> = {}): string[] {
  const map = new Map<string, string>();
  for (const e of imageEnv ?? []) {
    const i = e.indexOf('=');
    if (i > 0) map.set(e.slice(0, i), e.slice(i + 1));
  }
  for (const [k, v] of Object.entries(extra)) if (!map.has(k)) map.set(k, v);
  for (const { key, value } of requested) {
    if (key === '' || key.includes('=')) throw new InvalidArgumentError(`invalid environment variable name ${JSON.stringify(key)}`);
    map.set(key, value);
  }
  if (!map.has('PATH')) map.set('PATH', DEFAULT_PATH);
  return [...map].map(([k, v]) => `${k}=${v}`);
}

async function currentOomScoreAdj(): Promise<number> {
  try {
    return Number((await readFile('/proc/self/oom_score_adj', 'utf8')).trim()) || 0;
  } catch {
    return 0;
  }
}

const LIMIT_NAMES: Record<string, string> = {
  'Max cpu time': 'RLIMIT_CPU', 'Max file size': 'RLIMIT_FSIZE', 'Max data size': 'RLIMIT_DATA',
  'Max stack size': 'RLIMIT_STACK', 'Max core file size': 'RLIMIT_CORE', 'Max resident set': 'RLIMIT_RSS',
  'Max processes': 'RLIMIT_NPROC', 'Max open files': 'RLIMIT_NOFILE', 'Max locked memory': 'RLIMIT_MEMLOCK',
  'Max address space': 'RLIMIT_AS', 'Max file locks': 'RLIMIT_LOCKS', 'Max pending signals': 'RLIMIT_SIGPENDING',
  'Max msgqueue size': 'RLIMIT_MSGQUEUE', 'Max nice priority': 'RLIMIT_NICE', 'Max realtime priority': 'RLIMIT_RTPRIO',
  'Max realtime timeout': 'RLIMIT_RTTIME',
};

/** This process's hard limits (what an unprivileged-for-resources runtime may set at most). */
export async function hardLimits(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const text = await readFile('/proc/self/limits', 'utf8');
  for (const line of text.split('\n').slice(1)) {
    const name = Object.keys(LIMIT_NAMES).find((n) => line.startsWith(n));
    if (!name) continue;
    const cols = line.slice(name.length).trim().split(/\s+/);
    const hard = cols[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(cols[1]);
    out.set(LIMIT_NAMES[name]!, hard);
  }
  return out;
}

/** Clamps each rlimit to the current hard limit (soft ≤ hard). Unknown types are InvalidArgument. */
export async function clampRlimits(requested: readonly OciRlimit[]): Promise<OciRlimit[]> {
  const hard = await hardLimits();
  return requested.map((r) => {
    const max = hard.get(r.type);
    if (max === undefined) throw new InvalidArgumentError(`unknown rlimit ${JSON.stringify(r.type)}`);
    const h = Math.min(r.hard, max);
    return { type: r.type, hard: h, soft: Math.min(r.soft, h) };
  });
}

function nsEntry(type: OciNamespace['type'], choice: NamespaceChoice | undefined, dflt: 'private' | 'host'): OciNamespace | undefined {
  const c = choice ?? dflt;
  if (c === 'host' || c === 'sandbox') return undefined;
  if (c === 'private') return { type };
  if (!isAbsolute(c.path)) throw new InvalidArgumentError(`namespace path for ${type} must be absolute`);
  return { type, path: c.path };
}

function propagationOption(p: SpecMount['propagation']): string {
  switch (p) {
    case 'rshared': return 'rshared';
    case 'rslave': return 'rslave';
    default: return 'rprivate';
  }
}

function cleanContainerPath(p: string, what: string): string {
  if (!p.startsWith('/')) throw new InvalidArgumentError(`${what} ${JSON.stringify(p)} must be an absolute path`);
  const n = posix.normalize(p);
  if (n.includes('\0')) throw new InvalidArgumentError(`${what} contains a NUL byte`);
  return n;
}

/** Builds the OCI spec for one container. */
export async function buildSpec(req: SpecRequest): Promise<OciSpec> {
  if (!isAbsolute(req.rootfs)) throw new InvalidArgumentError('rootfs must be an absolute path');
  const privileged = req.privileged === true;
  const args = processArgs(req.image, req.command, req.args);

  // user: runAsUser / runAsUsername beat the image's User; runAsGroup beats everything for the gid
  let userSpec = req.image?.User ?? '';
  if (req.runAsUsername !== undefined && req.runAsUsername !== '') userSpec = req.runAsUsername;
  if (req.runAsUser !== undefined) userSpec = String(req.runAsUser) + (userSpec.includes(':') && req.runAsUsername === undefined ? userSpec.slice(userSpec.indexOf(':')) : '');
  if (req.runAsGroup !== undefined) userSpec = `${userSpec.split(':')[0] ?? ''}:${req.runAsGroup}`;
  const user = await resolveUser(req.rootfs, userSpec, req.supplementalGroups ?? []);
  if (req.requireNonRoot && user.uid === 0) {
    throw new PermissionDeniedError(`run-as-non-root rule: the container would run as uid 0 (${userSpec === '' ? 'the image names no user' : `user ${JSON.stringify(userSpec.slice(0, 64))}`}), which the pod's trust level does not allow (require_run_as_non_root); set a non-zero runAsUser`);
  }

  const envExtra: Record<string, string> = { HOME: user.home || '/' };
  if (req.hostname) envExtra.HOSTNAME = req.hostname;
  if (req.tty) envExtra.TERM = 'xterm';
  const env = mergeEnv(req.image?.Env, req.env, envExtra);

  const cwd = cleanContainerPath(req.workingDir || req.image?.WorkingDir || '/', 'working directory');

  const caps = privileged ? hostBoundingSet() : resolveCapabilities(req.capabilities?.add, req.capabilities?.drop);
  // a non-root user keeps no effective/permitted capabilities unless it gains them by exec (file caps, blocked by NNP)
  const root = user.uid === 0;

  const oomFloor = await currentOomScoreAdj();
  const oomScoreAdj = req.oomScoreAdj === undefined ? undefined : Math.min(1000, Math.max(req.oomScoreAdj, oomFloor));
  const rlimits = req.rlimits ? await clampRlimits(req.rlimits) : undefined;

  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', privileged ? 'rw' : 'ro'] },
  ];
  const etc = req.etcFiles ?? {};
  if (etc.hostname) mounts.push({ destination: '/etc/hostname', type: 'bind', source: etc.hostname, options: ['rbind', 'rprivate', 'nosuid', 'nodev', 'noexec', 'ro'] });
  if (etc.hosts) mounts.push({ destination: '/etc/hosts', type: 'bind', source: etc.hosts, options: ['rbind', 'rprivate', 'nosuid', 'nodev', 'noexec', 'ro'] });
  if (etc.resolvConf) mounts.push({ destination: '/etc/resolv.conf', type: 'bind', source: etc.resolvConf, options: ['rbind', 'rprivate', 'nosuid', 'nodev', 'noexec', 'ro'] });
  for (const m of req.mounts ?? []) {
    if (!isAbsolute(m.hostPath)) throw new InvalidArgumentError(`mount host path ${JSON.stringify(m.hostPath)} must be absolute`);
    const dest = cleanContainerPath(m.containerPath, 'mount path');
    if (dest === '/') throw new InvalidArgumentError('cannot mount over the container root');
    const opts = ['rbind', propagationOption(m.propagation), m.readonly ? 'ro' : 'rw'];
    mounts.push({ destination: dest, type: 'bind', source: m.hostPath, options: opts });
  }

  // A bind mount only propagates as far as the container's own mount tree lets it: the runtime
  // makes "/" rslave by default, which turns an rshared bind into a slave-and-shared mount whose
  // new mounts never reach the host. Bidirectional mounts need the root rshared (as containerd
  // and CRI-O do); host-to-container needs rslave (the default, stated explicitly).
  const props = (req.mounts ?? []).map((m) => m.propagation);
  const rootfsPropagation = props.includes('rshared') ? 'rshared' : props.includes('rslave') ? 'rslave' : undefined;

  const namespaces: OciNamespace[] = [];
  for (const ns of [
    nsEntry('pid', req.namespaces?.pid, 'private'),
    nsEntry('network', req.namespaces?.network, 'private'),
    nsEntry('ipc', req.namespaces?.ipc, 'private'),
    nsEntry('uts', req.namespaces?.uts, 'private'),
    { type: 'mount' as const },
  ]) if (ns) namespaces.push(ns);
  if (req.hostname && !namespaces.some((n) => n.type === 'uts')) throw new InvalidArgumentError('hostname needs a UTS namespace (not the host\'s)');

  const resources: OciLinuxResources = { devices: privileged ? [{ allow: true, access: 'rwm' }] : defaultDeviceRules() };
  const r = req.resources ?? {};
  if (r.memoryLimitBytes !== undefined && r.memoryLimitBytes > 0) resources.memory = { limit: r.memoryLimitBytes, swap: r.memoryLimitBytes };
  const cpu: NonNullable<OciLinuxResources['cpu']> = {};
  if (r.cpuShares !== undefined && r.cpuShares > 0) cpu.shares = Math.min(262144, Math.max(2, r.cpuShares));
  if (r.cpuQuota !== undefined && r.cpuQuota > 0) cpu.quota = r.cpuQuota;
  if (r.cpuPeriod !== undefined && r.cpuPeriod > 0) cpu.period = r.cpuPeriod;
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) resources.cpu = cpu;
  if (r.pidsLimit !== undefined && r.pidsLimit > 0) resources.pids = { limit: r.pidsLimit };
  if (r.unified && Object.keys(r.unified).length > 0) resources.unified = { ...r.unified };

  const devices = [];
  for (const d of req.devices ?? []) {
    // the runtime reads type/major/minor from the host node when only a path is given; we state them
    const st = await stat(d.hostPath).catch(() => undefined);
    if (!st || !(st.isCharacterDevice() || st.isBlockDevice())) throw new InvalidArgumentError(`device ${JSON.stringify(d.hostPath)} is not a device node`);
    const major = Math.floor(st.rdev / 256) & 0xfff;
    const minor = (st.rdev & 0xff) | ((Math.floor(st.rdev / 4096) & 0xfff00));
    const type = st.isCharacterDevice() ? 'c' as const : 'b' as const;
    const access = (d.permissions || 'rwm').replace(/[^rwm]/g, '');
    devices.push({ type, path: cleanContainerPath(d.containerPath, 'device path'), major, minor, fileMode: st.mode & 0o777, uid: 0, gid: 0 });
    resources.devices!.push({ allow: true, type, major, minor, access });
  }

  let seccomp: OciSeccomp | undefined;
  const sc = req.seccomp ?? { type: 'RuntimeDefault' };
  if (!privileged && sc.type === 'RuntimeDefault') seccomp = defaultSeccompProfile();
  else if (!privileged && sc.type === 'Localhost') seccomp = sc.profile;

  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: req.tty === true,
      // Sorted, as the kernel's setgroups() keeps them: `id -G` then reads the same under runc and gVisor.
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length > 0 ? { additionalGids: [...user.additionalGids].sort((a, b) => a - b) } : {}) },
      args,
      env,
      cwd,
      capabilities: {
        bounding: caps,
        effective: root ? caps : [],
        permitted: root ? caps : [],
        inheritable: [],
        ambient: [],
      },
      noNewPrivileges: privileged ? false : req.noNewPrivileges ?? true,
      ...(oomScoreAdj !== undefined ? { oomScoreAdj } : {}),
      ...(rlimits ? { rlimits } : {}),
    },
    root: { path: req.rootfs, readonly: req.readonlyRootfs === true },
    ...(req.hostname ? { hostname: req.hostname } : {}),
    mounts,
    annotations: { ...(req.annotations ?? {}) },
    linux: {
      resources,
      cgroupsPath: posix.join(req.cgroupParent.startsWith('/') ? req.cgroupParent : '/' + req.cgroupParent, req.cgroupName),
      namespaces,
      ...(devices.length > 0 ? { devices } : {}),
      ...(req.sysctls && Object.keys(req.sysctls).length > 0 ? { sysctl: { ...req.sysctls } } : {}),
      ...(seccomp ? { seccomp } : {}),
      ...(rootfsPropagation ? { rootfsPropagation } : {}),
      ...(privileged ? {} : {
        maskedPaths: [...(req.maskedPaths ?? DEFAULT_MASKED_PATHS)],
        readonlyPaths: [...(req.readonlyPaths ?? DEFAULT_READONLY_PATHS)],
      }),
    },
  };
  return spec;
}

/**
 * Spec of a pod infra ("pause") container: busybox sh as pid 1 that sleeps and exits on
 * SIGTERM/SIGINT, holding the pod's namespaces. Rootfs from ensurePauseRootfs (./pause.ts).
 */
export async function buildPauseSpec(opts: {
  rootfs: string;
  hostname?: string;
  namespaces?: SpecRequest['namespaces'];
  cgroupParent: string;
  cgroupName: string;
  sysctls?: Record<string, string>;
  annotations?: Record<string, string>;
  resources?: SpecResources;
}): Promise<OciSpec> {
  return await buildSpec({
    rootfs: opts.rootfs,
    command: ['/bin/busybox', 'sh', '-c', 'trap "exit 0" TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done'],
    capabilities: { drop: ['ALL'] },
    readonlyRootfs: true,
    cgroupParent: opts.cgroupParent,
    cgroupName: opts.cgroupName,
    ...(opts.hostname !== undefined ? { hostname: opts.hostname } : {}),
    ...(opts.namespaces !== undefined ? { namespaces: opts.namespaces } : {}),
    ...(opts.sysctls !== undefined ? { sysctls: opts.sysctls } : {}),
    ...(opts.annotations !== undefined ? { annotations: opts.annotations } : {}),
    ...(opts.resources !== undefined ? { resources: opts.resources } : {}),
  });
}
