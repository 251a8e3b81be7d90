// Over 500 lines on purpose: the policy file's whole vocabulary (levels, rules, matchers, decisions) is one pure module the node, the webhook and the CLI share.
/**
 * The PolicyEngine seam: pure functions from pod metadata (and container requests) to a decision
 * — which trust level a pod gets, which runtime handler runs it, and what it is not allowed to do.
 * The node (cri/ through enforce.ts), the admission webhook and `bulkhead policy check` all call
 * these same functions, so a pod is judged the same way everywhere.
 *
 * Glossary and lifecycle:
 * - A `Policy` is loaded and validated once (load.ts) and is immutable afterwards.
 * - A trust level (`TrustLevel`) says the weakest isolation class a pod may run in, which
 *   handlers it may use, and which dangerous settings it may ask for.
 * - Trust rules (`TrustRule`) assign a level from the namespace, labels, annotations, images and
 *   requested handler; the first rule that matches wins, no match means `defaultTrust` (by
 *   default "untrusted", which needs at least the user-kernel class). Labels, annotations and
 *   the requested handler are chosen by whoever writes the pod, so a rule using them must also
 *   name the namespaces it applies to (checked at load): a pod cannot make itself trusted.
 * - Fail closed: unknown trust means the default level; a requested handler that is too weak is
 *   replaced by the strongest allowed one (or refused, per level), an unavailable one is refused,
 *   never swapped for a weaker one.
 */
import { posix } from 'node:path';
import { portAllowed } from './decision.ts';
import { checkSysctls } from './sysctl.ts';
import { unifiedProblems } from './cgroup-unified.ts';

/**
 * Isolation classes, weakest first: 'strict' is runc with a per-image system call allow-list
 * (the strict handler), so a level can require it without requiring a user-space kernel.
 */
export type Isolation = 'process' | 'strict' | 'user-kernel' | 'vm';
export const ISOLATION_RANK: Readonly<Record<Isolation, number>> = { process: 0, strict: 1, 'user-kernel': 2, vm: 3 };
export const ISOLATIONS: readonly Isolation[] = ['process', 'strict', 'user-kernel', 'vm'];

/** none: no host paths; listed: only under allowedHostPaths; safe: any but the dangerous ones; any: everything. */
export type HostPathMode = 'none' | 'listed' | 'safe' | 'any';
export const HOST_PATH_MODES: readonly HostPathMode[] = ['none', 'listed', 'safe', 'any'];

export interface TrustLevel {
  name: string;
  minIsolation: Isolation;
  /** Handlers this level may use; undefined = any handler of at least minIsolation. */
  handlers?: string[];
  /** Handler for a pod that names none (must be allowed); otherwise the strongest available. */
  defaultHandler?: string;
  /** A requested handler that is too weak: replace it with the strongest allowed one, or refuse the pod. */
  onWeakHandler: 'upgrade' | 'deny';
  allowPrivileged: boolean;
  allowHostNetwork: boolean;
  allowHostPID: boolean;
  allowHostIPC: boolean;
  /**
   * The nftables egress guard (no traffic to the node, link-local/metadata and blocked ranges,
   * no spoofing) applies to the level's pods; on by default for every level, and independent of
   * allowHostNetwork (a host-network pod has no pod interface to guard).
   */
  egressGuard: boolean;
  /** Host port ranges ("8000-9000", "443") a pod's port mappings may publish; [] = none. */
  allowedHostPorts: string[];
  hostPaths: HostPathMode;
  /** Prefixes allowed in 'listed' mode (normalized absolute paths). */
  allowedHostPaths: string[];
  /** Capabilities that may be added (upper case, no CAP_ prefix); "ALL" allows any. */
  allowedCapabilities: string[];
  allowUnconfinedSeccomp: boolean;
  allowUnconfinedApparmor: boolean;
  allowUnmaskedProc: boolean;
  /**
   * The Pod Security Standards' Restricted rule "must run as non-root": a container may not run
   * as uid 0 (run_as_user, run_as_username, or the image's user, checked on the node once the
   * user is resolved; the webhook wants runAsNonRoot: true or a non-zero runAsUser). Default false.
   */
  requireRunAsNonRoot: boolean;
  /** Sysctls allowed beyond the safe set (plain dotted names). */
  allowedSysctls: string[];
  /** Image sources allowed ("registry.example.com", "docker.io/library"); empty = any. */
  registries: string[];
  /**
   * `strict_fallback = "runc"`: a container of a `strict` pod whose image has no profile runs as the
   * runc handler would (its default profile) instead of being refused. Only for levels whose
   * min_isolation is "process" (the fallback is the process class); absent = refused (fail closed).
   */
  strictFallback?: 'runc';
}

export interface TrustRule {
  name: string;
  trust: string;
  namespaces?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Every image of the pod must come from one of these sources. */
  images?: string[];
  /** The runtime handler the pod asked for. */
  handlers?: string[];
}

export interface Policy {
  defaultTrust: string;
  levels: Record<string, TrustLevel>;
  rules: TrustRule[];
  /** Host paths no trust level below hostPaths = 'any' may mount (normalized). */
  protectedPaths: string[];
  /** The kubelet's root: a pod may always mount its own <kubeletRoot>/pods/<uid>/ volumes. */
  kubeletRoot: string;
  /** Where the policy came from, for messages ("built-in default", a file path, "[policy]"). */
  source: string;
}

/** Host paths that give a container the node: mounting one, a parent of one or anything under one is dangerous. */
export const DANGEROUS_HOST_PATHS: readonly string[] = [
  '/', '/proc', '/sys', '/dev', '/etc', '/boot', '/root', '/usr', '/bin', '/sbin', '/lib', '/lib64',
  '/var/run/docker.sock', '/run/docker.sock', '/var/lib/docker',
  '/run/containerd', '/var/run/containerd', '/var/lib/containerd', '/run/crio', '/var/run/crio',
  '/var/lib/kubelet', '/etc/kubernetes',
  '/var/lib/bulkhead', '/run/bulkhead', '/var/run/bulkhead',
];

/** What a pod or container asks for that matters to isolation. Every field optional: absent = not asked. */
export interface SecuritySummary {
  privileged?: boolean;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  /** Host paths bind-mounted (as given; they are normalized here). */
  hostPaths?: string[];
  addedCapabilities?: string[];
  seccompUnconfined?: boolean;
  apparmorUnconfined?: boolean;
  /** /proc without the default masked/read-only paths (procMount: Unmasked). */
  unmaskedProc?: boolean;
  /** Container paths of mounts with Bidirectional (rshared) propagation: they reach the host's mount table. */
  bidirectionalMounts?: string[];
  /** Host ports published (port mappings / hostPort); not judged for a host-network pod. */
  hostPorts?: number[];
  sysctls?: Record<string, string>;
  /** Raw cgroup v2 files asked for (`linux.resources.unified`, a pod's overhead), by the CRI field that carries them. */
  unified?: { field: string; values: Record<string, string> }[];
  /** Device cgroup permissions of each device asked for, as given ("" = the default "rwm"). */
  devicePermissions?: string[];
  /** CDI device names asked for (CDI_devices). */
  cdiDevices?: string[];
  /** The uid asked for (run_as_user / runAsUser), when given. */
  runAsUser?: number;
  /** The user name asked for (run_as_username), when given. */
  runAsUsername?: string;
  /** The Pod object does not show the container runs as non-root (no runAsNonRoot: true, no runAsUser); webhook only. */
  userUnproven?: boolean;
}

export interface ContainerInput {
  name: string;
  image?: string;
  security?: SecuritySummary;
}

export interface PodInput {
  namespace: string;
  name: string;
  /** The pod's UID: its own kubelet volume directory may be mounted. */
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Requested runtime handler; "" or undefined = none named. */
  runtimeHandler?: string;
  /** Images of the pod's containers, when known (not at RunPodSandbox time). */
  images?: string[];
  security?: SecuritySummary;
  /** The containers, when the whole pod is known (webhook, `policy check`). */
  containers?: ContainerInput[];
}

export interface HandlerInfo {
  handler: string;
  isolation: Isolation;
  available: boolean;
  /** Why not available. */
  reason?: string;
}

export interface Violation {
  /** Short id of the check: privileged, host-network, host-path, capabilities, sysctl, ... */
  rule: string;
  message: string;
}

export interface Decision {
  allowed: boolean;
  trust: string;
  /** The trust rule that set the level ("default" when none matched). */
  trustRule: string;
  /** The handler to run the pod with (absent when refused for want of one). */
  handler?: string;
  /** The handler asked for ("" = none). */
  requestedHandler: string;
  /** True when the requested handler was replaced by a stronger one. */
  moved: boolean;
  reasons: string[];
  /** What decided: "<level>/<check>" for a refusal, "<level>/handler" or the trust rule otherwise. */
  rule: string;
  violations: Violation[];
}

export interface PodMeta {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  runtimeHandler?: string;
  images?: string[];
}

// ---------------------------------------------------------------------------------------------
// Trust

export interface TrustAssignment {
  trust: string;
  rule: string;
  reasons: string[];
}

function mapMatches(want: Record<string, string> | undefined, have: Record<string, string> | undefined): boolean {
  if (!want) return true;
  return Object.entries(want).every(([k, v]) => have !== undefined && Object.hasOwn(have, k) && have[k] === v);
}

/** The first matching rule's level, or the default. Pure. */
export function assignTrust(policy: Policy, meta: PodMeta): TrustAssignment {
  const reasons: string[] = [];
  for (const r of policy.rules) {
    if (r.namespaces && !r.namespaces.includes(meta.namespace)) continue;
    if (!mapMatches(r.labels, meta.labels)) continue;
    if (!mapMatches(r.annotations, meta.annotations)) continue;
    if (r.handlers && !r.handlers.includes(meta.runtimeHandler ?? '')) continue;
    if (r.images) {
      const imgs = meta.images ?? [];
      if (imgs.length === 0 || !imgs.every((i) => r.images!.some((p) => imageMatches(i, p)))) continue;
    }
    reasons.push(`trust "${r.trust}" from rule "${r.name}"`);
    return { trust: r.trust, rule: r.name, reasons };
  }
  reasons.push(`trust "${policy.defaultTrust}" by default: no trust rule matched namespace "${meta.namespace}"`);
  const claimed = Object.keys(meta.annotations ?? {}).filter((k) => /(^|\/)trust(ed)?$/i.test(k) || k.startsWith('bulkhead.io/'));
  for (const k of claimed) reasons.push(`annotation ${k} ignored: no rule trusts it in namespace "${meta.namespace}"`);
  return { trust: policy.defaultTrust, rule: 'default', reasons };
}

// ---------------------------------------------------------------------------------------------
// Images

/** "busybox" → "docker.io/library/busybox"; tag and digest dropped. undefined for a bare image ID. */
export function imageSource(ref: string): string | undefined {
  let s = ref.trim();
  if (/^(sha256:)?[0-9a-f]{64}$/.test(s)) return undefined;
  const at = s.indexOf('@');
  if (at >= 0) s = s.slice(0, at);
  const lastSlash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  if (colon > lastSlash) s = s.slice(0, colon);
  if (s === '') return undefined;
  const parts = s.split('/');
  const first = parts[0]!;
  const hasHost = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasHost) return parts.length === 1 ? `docker.io/library/${s}` : `docker.io/${s}`;
  return s;
}

/** Whether an image comes from a source: the same name, or a path under it ("reg.local" matches "reg.local/x/y"). */
export function imageMatches(ref: string, pattern: string): boolean {
  const src = imageSource(ref);
  if (src === undefined) return false;
  const p = pattern.replace(/\/+$/, '');
  return src === p || src.startsWith(p + '/');
}

// ---------------------------------------------------------------------------------------------
// Host paths

/** Normalized absolute path, or undefined when not absolute or not a clean string. */
export function normalizeHostPath(p: string): string | undefined {
  if (typeof p !== 'string' || !p.startsWith('/') || p.includes('\0')) return undefined;
  const n = posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

function under(path: string, dir: string): boolean {
  return dir === '/' ? true : path === dir || path.startsWith(dir + '/');
}

/** The protected path a host path overlaps (is, contains, or lies under), or undefined. */
export function dangerousOverlap(path: string, protectedPaths: readonly string[]): string | undefined {
  for (const d of protectedPaths) {
    if (path === d) return d;
    if (under(d, path)) return d; // mounting a parent exposes d
    if (d !== '/' && under(path, d)) return d;
  }
  return undefined;
}

const POD_UID = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

function ownPodDir(policy: Policy, uid: string | undefined): string | undefined {
  if (!uid || !POD_UID.test(uid)) return undefined;
  return posix.join(policy.kubeletRoot, 'pods', uid);
}

// ---------------------------------------------------------------------------------------------
// Checks

export function normalizeCapability(c: string): string {
  return c.trim().toUpperCase().replace(/^CAP_/, '');
}

/** Violations of a level by what a pod or container asks for. `who` names it in messages. */
export function checkSecurity(policy: Policy, level: TrustLevel, sec: SecuritySummary | undefined, who: string, podUid?: string): Violation[] {
  const v: Violation[] = [];
  if (!sec) return v;
  const lv = `trust level "${level.name}"`;
  if (sec.privileged && !level.allowPrivileged) v.push({ rule: 'privileged', message: `${who}: privileged mode is not allowed for ${lv}` });
  if (sec.hostNetwork && !level.allowHostNetwork) v.push({ rule: 'host-network', message: `${who}: the host network namespace is not allowed for ${lv}` });
  if (sec.hostPID && !level.allowHostPID) v.push({ rule: 'host-pid', message: `${who}: the host PID namespace is not allowed for ${lv}` });
  if (sec.hostIPC && !level.allowHostIPC) v.push({ rule: 'host-ipc', message: `${who}: the host IPC namespace is not allowed for ${lv}` });
  const podDir = ownPodDir(policy, podUid);
  for (const raw of sec.hostPaths ?? []) {
    const p = normalizeHostPath(raw);
    if (p === undefined) { v.push({ rule: 'host-path', message: `${who}: host path ${JSON.stringify(raw)} is not a clean absolute path` }); continue; }
    if (podDir && under(p, podDir) && p !== podDir) continue; // the pod's own volumes, made by the kubelet
    if (level.hostPaths === 'any') continue;
    if (level.hostPaths === 'none') { v.push({ rule: 'host-path', message: `${who}: host path ${p} is not allowed: ${lv} allows no host paths` }); continue; }
    const d = dangerousOverlap(p, policy.protectedPaths);
    if (d !== undefined) { v.push({ rule: 'host-path', message: `${who}: host path ${p} is not allowed: it ${p === d ? 'is' : under(d, p) ? 'contains' : 'is under'} the protected path ${d}` }); continue; }
    if (level.hostPaths === 'listed' && !level.allowedHostPaths.some((a) => under(p, a))) {
      v.push({ rule: 'host-path', message: `${who}: host path ${p} is not under a path allowed for ${lv} (${level.allowedHostPaths.join(', ') || 'none listed'})` });
    }
  }
  const allCaps = level.allowedCapabilities.includes('ALL');
  for (const raw of sec.addedCapabilities ?? []) {
    const c = normalizeCapability(raw);
    if (allCaps) continue;
    if (!/^[A-Z_]+$/.test(c) || !level.allowedCapabilities.includes(c)) {
      v.push({ rule: 'capabilities', message: `${who}: adding capability ${c === 'ALL' ? 'ALL' : 'CAP_' + c} is not allowed for ${lv}` });
    }
  }
  if (sec.seccompUnconfined && !level.allowUnconfinedSeccomp) v.push({ rule: 'seccomp', message: `${who}: an unconfined seccomp profile is not allowed for ${lv}` });
  if (sec.apparmorUnconfined && !level.allowUnconfinedApparmor) v.push({ rule: 'apparmor', message: `${who}: an unconfined AppArmor profile is not allowed for ${lv}` });
  if (sec.unmaskedProc && !level.allowUnmaskedProc) v.push({ rule: 'proc-mount', message: `${who}: an unmasked /proc (procMount Unmasked, or masked/readonly paths without the defaults) is not allowed for ${lv}` });
  // As in Kubernetes, Bidirectional propagation (mounts made in the container appear on the host)
  // is for privileged containers only (and privileged is judged by its own rule above).
  for (const p of sec.bidirectionalMounts ?? []) {
    if (!sec.privileged) v.push({ rule: 'mount-propagation', message: `${who}: Bidirectional mount propagation (${p.slice(0, 256)}) needs a privileged container` });
  }
  // A host-network pod binds host ports itself (its level allows the host network); anything
  // else publishes them through the CNI portmap plugin's DNAT, which would take over a host service.
  if (!sec.hostNetwork) {
    for (const p of sec.hostPorts ?? []) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) { v.push({ rule: 'host-port', message: `${who}: host port ${String(p)} is not a port number` }); continue; }
      if (!portAllowed(p, level.allowedHostPorts)) {
        v.push({ rule: 'host-port', message: `${who}: host port ${p} is not allowed for ${lv} (allowed_host_ports: ${level.allowedHostPorts.join(', ') || 'none'})` });
      }
    }
  }
  if (sec.sysctls) {
    for (const p of checkSysctls(sec.sysctls, level.allowedSysctls)) v.push({ rule: 'sysctl', message: `${who}: ${p.message}` });
  }
  // Restricted: never uid 0 (the node checks the resolved user again when it builds the spec).
  if (level.requireRunAsNonRoot) {
    if (sec.runAsUser === 0) v.push({ rule: 'run-as-non-root', message: `${who}: run as uid 0 is not allowed for ${lv} (require_run_as_non_root); set a non-zero runAsUser` });
    else if (sec.runAsUser === undefined && (sec.runAsUsername === 'root' || sec.runAsUsername === '0')) v.push({ rule: 'run-as-non-root', message: `${who}: run as user "${sec.runAsUsername}" is not allowed for ${lv} (require_run_as_non_root); set a non-zero runAsUser` });
    else if (sec.runAsUser === undefined && sec.userUnproven) v.push({ rule: 'run-as-non-root', message: `${who}: ${lv} requires running as non-root (require_run_as_non_root): set runAsNonRoot: true or a non-zero runAsUser` });
  }
  // Device permissions: a combination of r, w, m; m (mknod) only for a privileged level.
  for (const raw of sec.devicePermissions ?? []) {
    const p = raw === '' ? 'rwm' : raw;
    if (!/^[rwm]{1,3}$/.test(p) || new Set(p).size !== p.length) {
      v.push({ rule: 'device-permissions', message: `${who}: device permissions ${JSON.stringify(raw.slice(0, 16))} are not a combination of r, w and m` });
    } else if (p.includes('m') && !level.allowPrivileged) {
      v.push({ rule: 'device-permissions', message: `${who}: device permissions "${p}"${raw === '' ? ' (the default of empty permissions)' : ''} include m (mknod), which needs a level that allows privileged containers; ${lv} allows r and w (ask for "rw")` });
    }
  }
  // CDI devices are host devices chosen by name; only a level that may mount any host path may ask.
  if ((sec.cdiDevices ?? []).length > 0 && level.hostPaths !== 'any') {
    v.push({ rule: 'cdi-devices', message: `${who}: CDI devices (${sec.cdiDevices!.slice(0, 4).map((n) => JSON.stringify(n.slice(0, 128))).join(', ')}) are host devices, not allowed for ${lv} (host_paths = "${level.hostPaths}")` });
  }
  // Raw cgroup files: only a privileged level may write any; the others only limit themselves.
  if (!level.allowPrivileged) {
    for (const u of sec.unified ?? []) {
      for (const p of unifiedProblems(u.values)) v.push({ rule: 'cgroup-unified', message: `${who}: ${u.field}: ${p} for ${lv}` });
    }
  }
  return v;
}

function checkImages(level: TrustLevel, images: readonly string[], who: (img: string) => string): Violation[] {
  if (level.registries.length === 0) return [];
  const v: Violation[] = [];
  for (const img of images) {
    if (imageSource(img) === undefined) {
      v.push({ rule: 'image-registry', message: `${who(img)}: image ${img} names no registry, so its source cannot be checked for trust level "${level.name}"` });
    } else if (!level.registries.some((p) => imageMatches(img, p))) {
      v.push({ rule: 'image-registry', message: `${who(img)}: image ${img} is not from a registry allowed for trust level "${level.name}" (${level.registries.join(', ')})` });
    }
  }
  return v;
}

function handlerAllowed(level: TrustLevel, h: HandlerInfo): boolean {
  return ISOLATION_RANK[h.isolation] >= ISOLATION_RANK[level.minIsolation] && (!level.handlers || level.handlers.includes(h.handler));
}

/** The strongest available handler the level allows; ties go to the level's handler order, then `available` order. */
function strongest(level: TrustLevel, available: readonly HandlerInfo[]): HandlerInfo | undefined {
  const order = (h: HandlerInfo): number => (level.handlers ? level.handlers.indexOf(h.handler) : 0);
  const ok = available.map((h, i) => ({ h, i })).filter(({ h }) => h.available && handlerAllowed(level, h));
  ok.sort((a, b) => ISOLATION_RANK[b.h.isolation] - ISOLATION_RANK[a.h.isolation] || order(a.h) - order(b.h) || a.i - b.i);
  return ok[0]?.h;
}

interface HandlerChoice { handler?: string; moved: boolean; reasons: string[]; violation?: Violation }

function chooseHandler(level: TrustLevel, requested: string, available: readonly HandlerInfo[]): HandlerChoice {
  const need = `trust level "${level.name}" needs at least the ${level.minIsolation} isolation class${level.handlers ? ` and one of the handlers ${level.handlers.join(', ')}` : ''}`;
  const none = (): Violation => {
    const why = available.filter((h) => handlerAllowed(level, h)).map((h) => `${h.handler}: ${h.available ? 'available' : h.reason ?? 'unavailable'}`);
    return { rule: 'no-handler', message: `no available handler satisfies ${need}${why.length ? ` (${why.join('; ')})` : ' (none is configured)'}` };
  };
  if (requested !== '') {
    const info = available.find((h) => h.handler === requested);
    if (!info) return { moved: false, reasons: [], violation: { rule: 'handler-unknown', message: `runtime handler "${requested}" is not configured on this node (known: ${available.map((h) => h.handler).join(', ') || 'none'})` } };
    if (handlerAllowed(level, info)) {
      if (!info.available) return { moved: false, reasons: [], violation: { rule: 'handler-unavailable', message: `runtime handler "${requested}" is not available on this node: ${info.reason ?? 'probe failed'}` } };
      return { handler: requested, moved: false, reasons: [`handler "${requested}" (${info.isolation}) as requested`] };
    }
    if (level.onWeakHandler === 'deny') return { moved: false, reasons: [], violation: { rule: 'handler-not-allowed', message: `runtime handler "${requested}" (${info.isolation}) is not allowed: ${need}` } };
    const best = strongest(level, available);
    if (!best) return { moved: false, reasons: [], violation: none() };
    return { handler: best.handler, moved: true, reasons: [`moved from handler "${requested}" (${info.isolation}) to "${best.handler}" (${best.isolation}): ${need}`] };
  }
  if (level.defaultHandler) {
    const d = available.find((h) => h.handler === level.defaultHandler);
    if (d && d.available && handlerAllowed(level, d)) return { handler: d.handler, moved: false, reasons: [`handler "${d.handler}" is the default of trust level "${level.name}"`] };
  }
  const best = strongest(level, available);
  if (!best) return { moved: false, reasons: [], violation: none() };
  return { handler: best.handler, moved: false, reasons: [`handler "${best.handler}" (${best.isolation}): the strongest available one allowed for trust level "${level.name}"`] };
}

function levelOf(policy: Policy, trust: string): TrustLevel {
  const l = Object.hasOwn(policy.levels, trust) ? policy.levels[trust] : undefined;
  if (l) return l;
  // load.ts guarantees every rule names a level; an unknown one falls back to the default, never to nothing.
  return policy.levels[policy.defaultTrust]!;
}

function finish(level: TrustLevel, t: TrustAssignment, base: Omit<Decision, 'allowed' | 'rule' | 'trust' | 'trustRule'>): Decision {
  const allowed = base.violations.length === 0;
  const rule = allowed ? (base.handler !== undefined ? `${level.name}/handler` : t.rule) : `${level.name}/${base.violations[0]!.rule}`;
  return { allowed, trust: level.name, trustRule: t.rule, rule, ...base };
}

/**
 * Decides a pod: its trust level, its handler, and every violation of that level by the pod's
 * own settings and (when given) its containers'. Pure: same inputs, same decision.
 */
export function decidePod(policy: Policy, input: PodInput, available: readonly HandlerInfo[]): Decision {
  const images = input.images ?? (input.containers?.flatMap((c) => (c.image ? [c.image] : [])) ?? []);
  const requested = input.runtimeHandler ?? '';
  const t = assignTrust(policy, { ...input, images, runtimeHandler: requested });
  const level = levelOf(policy, t.trust);
  const reasons = [...t.reasons];
  const violations: Violation[] = [];
  const choice = chooseHandler(level, requested, available);
  reasons.push(...choice.reasons);
  if (choice.violation) violations.push(choice.violation);
  const podWho = `pod ${input.namespace}/${input.name}`;
  violations.push(...checkSecurity(policy, level, input.security, podWho, input.uid));
  for (const c of input.containers ?? []) {
    violations.push(...checkSecurity(policy, level, c.security, `container ${c.name}`, input.uid));
  }
  violations.push(...checkImages(level, images, (img) => {
    const c = input.containers?.find((x) => x.image === img);
    return c ? `container ${c.name}` : podWho;
  }));
  const base: Omit<Decision, 'allowed' | 'rule' | 'trust' | 'trustRule'> = { requestedHandler: requested, moved: choice.moved, reasons, violations };
  if (choice.handler !== undefined) base.handler = choice.handler;
  return finish(level, t, base);
}

export interface ContainerRequest {
  pod: PodMeta & { uid?: string };
  /** The handler the pod sandbox runs on (decided at RunPodSandbox). */
  podHandler: string;
  container: ContainerInput;
  /** Judge by the default level, matching no rule (the pod has no stored decision: fail closed). */
  defaultLevel?: boolean;
}

/**
 * Decides one container of a running pod (CreateContainer). The container's image can change
 * the trust (image rules), and its level must accept the handler the pod already runs on.
 */
export function decideContainer(policy: Policy, input: ContainerRequest, available: readonly HandlerInfo[]): Decision {
  const images = input.container.image ? [input.container.image] : [];
  const t: TrustAssignment = input.defaultLevel
    ? { trust: policy.defaultTrust, rule: 'default', reasons: [`trust "${policy.defaultTrust}" by default: the pod has no stored policy decision`] }
    : assignTrust(policy, { ...input.pod, images, runtimeHandler: input.pod.runtimeHandler ?? input.podHandler });
  const level = levelOf(policy, t.trust);
  const reasons = [...t.reasons];
  const violations: Violation[] = [];
  const info = available.find((h) => h.handler === input.podHandler);
  if (!info) {
    violations.push({ rule: 'handler-unknown', message: `the pod runs on handler "${input.podHandler}", which is not configured on this node` });
  } else if (!handlerAllowed(level, info)) {
    violations.push({ rule: 'handler-not-allowed', message: `container ${input.container.name}: trust level "${level.name}" needs at least the ${level.minIsolation} isolation class${level.handlers ? ` and one of the handlers ${level.handlers.join(', ')}` : ''}, but the pod runs on "${info.handler}" (${info.isolation})` });
  } else {
    reasons.push(`pod handler "${info.handler}" (${info.isolation}) is allowed for trust level "${level.name}"`);
  }
  const who = `container ${input.container.name} of pod ${input.pod.namespace}/${input.pod.name}`;
  violations.push(...checkSecurity(policy, level, input.container.security, who, input.pod.uid));
  violations.push(...checkImages(level, images, () => who));
  const base: Omit<Decision, 'allowed' | 'rule' | 'trust' | 'trustRule'> = { requestedHandler: input.podHandler, moved: false, reasons, violations, handler: input.podHandler };
  return finish(level, t, base);
}
