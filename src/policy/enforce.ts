/**
 * Node enforcement: turns CRI requests (PodSandboxConfig / ContainerConfig, as src/api/cri.ts
 * shapes them) into policy inputs, decides, logs and counts every decision, and throws
 * PermissionDeniedError naming the rule when the answer is no. The CRI server calls these in
 * RunPodSandbox (before the handler is resolved) and CreateContainer.
 *
 * `NodePolicy` is the long-lived form (matches cri/deps.ts `CriPolicy`): built once by the daemon
 * with the loaded Policy, a Logger and a way to list handlers with their availability.
 */
import { realpathSync } from 'node:fs';
import { FailedPreconditionError, PermissionDeniedError } from '../errors.ts';
import type { ContainerConfig, LinuxContainerSecurityContext, LinuxSandboxSecurityContext, PodSandboxConfig, SecurityProfile } from '../api/cri.ts';
import type { Logger } from '../util/log.ts';
import type { PodDecisionRecord } from './decision.ts';
import { hostIpProblem, hostPortProbe, listeningPorts, nodeAddresses } from './host-ports.ts';
import {
  decideContainer, decidePod, normalizeHostPath,
  type ContainerInput, type Decision, type HandlerInfo, type PodInput, type Policy, type SecuritySummary, type Violation,
} from './policy.ts';

export interface PolicyCounters {
  pods: { allowed: number; denied: number; moved: number };
  containers: { allowed: number; denied: number };
  /** Refusals by deciding rule ("untrusted/privileged": 3). */
  deniedByRule: Record<string, number>;
  /**
   * Every decision by kind, outcome and deciding rule, kept only when present (the daemon's
   * metrics read it at scrape time). Keys are `${kind} ${outcome} ${rule}`.
   */
  decisions?: Map<string, { kind: 'pod' | 'container'; outcome: 'allowed' | 'moved' | 'denied'; rule: string; count: number }>;
}

export function createCounters(): PolicyCounters {
  return { pods: { allowed: 0, denied: 0, moved: 0 }, containers: { allowed: 0, denied: 0 }, deniedByRule: {} };
}

export interface EnforceOptions {
  logger?: Logger;
  counters?: PolicyCounters;
  /**
   * Resolves a host path through symlinks (default: fs.realpathSync; a path that does not exist
   * stays as given). Both the given and the resolved path are checked.
   */
  resolvePath?: (p: string) => string;
}

const unconfined = (p: SecurityProfile | null | undefined, legacy: string | undefined): boolean =>
  p?.profileType === 'Unconfined' || legacy === 'unconfined';

function podSecurity(sc: LinuxSandboxSecurityContext | null | undefined, sysctls: Record<string, string> | undefined): SecuritySummary {
  const ns = sc?.namespaceOptions;
  const s: SecuritySummary = {
    privileged: Boolean(sc?.privileged),
    hostNetwork: ns?.network === 'NODE',
    hostPID: ns?.pid === 'NODE',
    hostIPC: ns?.ipc === 'NODE',
    seccompUnconfined: unconfined(sc?.seccomp, sc?.seccompProfilePath),
    apparmorUnconfined: unconfined(sc?.apparmor, undefined),
  };
  if (sysctls && Object.keys(sysctls).length > 0) s.sysctls = { ...sysctls };
  if (sc?.runAsUser) s.runAsUser = sc.runAsUser.value ?? 0;
  return s;
}

/** Host ports a pod's port mappings publish (0 = none). */
function hostPortsOf(config: PodSandboxConfig): number[] {
  return (config.portMappings ?? []).flatMap((m) => (m.hostPort ? [m.hostPort] : []));
}

/** The non-empty unified maps of a request, by field, as SecuritySummary.unified. */
function unifiedOf(maps: [string, Record<string, string> | null | undefined][]): Pick<SecuritySummary, 'unified'> {
  const u = maps.flatMap(([field, values]) => (values && Object.keys(values).length > 0 ? [{ field, values: { ...values } }] : []));
  return u.length > 0 ? { unified: u } : {};
}

/** The policy input for a RunPodSandbox request. */
export function podInputFromCri(config: PodSandboxConfig, requestedHandler: string): PodInput {
  const md = config.metadata;
  const input: PodInput = {
    namespace: md?.namespace ?? '',
    name: md?.name ?? '',
    labels: { ...(config.labels ?? {}) },
    annotations: { ...(config.annotations ?? {}) },
    runtimeHandler: requestedHandler,
    security: { ...podSecurity(config.linux?.securityContext, config.linux?.sysctls), hostPorts: hostPortsOf(config), ...unifiedOf([['linux.resources.unified', config.linux?.resources?.unified], ['linux.overhead.unified', config.linux?.overhead?.unified]]) },
  };
  if (md?.uid) input.uid = md.uid;
  return input;
}

/**
 * Each host path as given and, when it differs, as it resolves now. Paths under the pod's own
 * kubelet directory are resolved too: a symlink there to / resolves out of the directory and is
 * judged as what it points at; one that stays inside the directory (also where the kubelet root
 * itself is a symlink, e.g. /var/lib/kubelet -> /data/kubelet) is the pod's own volume. (The
 * mount itself is checked again on the opened object, see runtime/helpers/hostmount.c; this is the
 * early, by-name answer.)
 */
function withResolved(paths: string[], ownDir: string | undefined, resolve: (p: string) => string): string[] {
  const out: string[] = [];
  let ownReal: string | undefined;
  if (ownDir) { try { ownReal = resolve(ownDir); } catch { ownReal = ownDir; } }
  const inside = (p: string, dir: string): boolean => p.startsWith(dir + '/');
  for (const p of paths) {
    out.push(p);
    const n = normalizeHostPath(p);
    if (n === undefined) continue;
    let r: string;
    try { r = resolve(n); } catch { continue; }
    if (r === n) continue;
    if (ownDir && ownReal && inside(n, ownDir) && inside(r, ownReal)) continue;
    out.push(r);
  }
  return out;
}

/** The policy input for a CreateContainer request's container. */
export function containerInputFromCri(config: ContainerConfig, resolve?: (p: string) => string, ownPodDir?: string): ContainerInput {
  const sc: LinuxContainerSecurityContext | null | undefined = config.linux?.securityContext;
  const ns = sc?.namespaceOptions;
  const hostPaths = [
    ...(config.mounts ?? []).flatMap((m) => (m.hostPath ? [m.hostPath] : [])),
    ...(config.devices ?? []).flatMap((d) => (d.hostPath ? [d.hostPath] : [])),
  ];
  const security: SecuritySummary = {
    privileged: Boolean(sc?.privileged),
    hostNetwork: ns?.network === 'NODE',
    hostPID: ns?.pid === 'NODE',
    hostIPC: ns?.ipc === 'NODE',
    hostPaths: resolve ? withResolved(hostPaths, ownPodDir, resolve) : hostPaths,
    addedCapabilities: [...(sc?.capabilities?.addCapabilities ?? []), ...(sc?.capabilities?.addAmbientCapabilities ?? [])],
    seccompUnconfined: unconfined(sc?.seccomp, sc?.seccompProfilePath),
    apparmorUnconfined: unconfined(sc?.apparmor, sc?.apparmorProfile),
    ...unifiedOf([['linux.resources.unified', config.linux?.resources?.unified]]),
  };
  if (sc?.runAsUser) security.runAsUser = sc.runAsUser.value ?? 0;
  if (sc?.runAsUsername) security.runAsUsername = sc.runAsUsername;
  if ((config.devices ?? []).length > 0) security.devicePermissions = (config.devices ?? []).map((d) => d.permissions ?? '');
  const cdi = (config.CDIDevices ?? []).map((d) => d.name ?? '');
  if (cdi.length > 0) security.cdiDevices = cdi;
  const input: ContainerInput = { name: config.metadata?.name ?? '', security };
  // The kubelet passes the resolved image (often an ID) in image, the name the user wrote in userSpecifiedImage.
  const image = config.image?.userSpecifiedImage || config.image?.image;
  if (image) input.image = image;
  return input;
}

function defaultResolve(p: string): string {
  try { return realpathSync(p); } catch { return p; }
}

function deniedMessage(kind: string, who: string, d: Decision): string {
  const hint = d.violations.some((v) => v.rule === 'seccomp') ? ' (a kubelet without --seccomp-default asks for Unconfined when a pod names no profile)' : '';
  return `policy: ${kind} ${who} denied by rule ${d.rule} (trust "${d.trust}" from ${d.trustRule === 'default' ? 'the default' : `rule "${d.trustRule}"`}): ${d.violations.map((v) => v.message).join('; ')}${hint}`;
}

function record(opts: EnforceOptions, kind: 'pod' | 'container', who: string, d: Decision): void {
  const c = opts.counters;
  if (c) {
    const bucket = kind === 'pod' ? c.pods : c.containers;
    if (d.allowed) bucket.allowed++; else { bucket.denied++; c.deniedByRule[d.rule] = (c.deniedByRule[d.rule] ?? 0) + 1; }
    if (kind === 'pod' && d.allowed && d.moved) c.pods.moved++;
    if (c.decisions) {
      const outcome = !d.allowed ? 'denied' : kind === 'pod' && d.moved ? 'moved' : 'allowed';
      const key = `${kind} ${outcome} ${d.rule}`;
      const e = c.decisions.get(key);
      if (e) e.count++; else c.decisions.set(key, { kind, outcome, rule: d.rule, count: 1 });
    }
  }
  const fields = { kind, object: who, allowed: d.allowed, trust: d.trust, trustRule: d.trustRule, rule: d.rule, handler: d.handler ?? '', requested: d.requestedHandler };
  if (d.allowed) opts.logger?.info('policy decision', d.moved ? { ...fields, moved: true } : fields);
  else opts.logger?.warn('policy decision', { ...fields, violations: d.violations.map((v) => v.message).join('; ') });
}

function thrown(kind: string, who: string, d: Decision): Error {
  // A handler that would be allowed but cannot run here is a node problem, not a refusal.
  if (d.violations.every((v) => v.rule === 'handler-unavailable' || v.rule === 'no-handler')) {
    return new FailedPreconditionError(deniedMessage(kind, who, d), { reason: 'BH_HANDLER_UNAVAILABLE' });
  }
  return new PermissionDeniedError(deniedMessage(kind, who, d), { reason: 'BH_POLICY_REFUSED' });
}

/** The pod as the daemon stored it at RunPodSandbox: what CreateContainer is judged by. */
export interface StoredPod {
  config: PodSandboxConfig;
  /** Handler the pod runs on. */
  handler: string;
  /** The stored decision; undefined (older record) = judged as the default level. */
  decision?: PodDecisionRecord | undefined;
}

/** Which protocols have a socket bound to a host port ("tcp" LISTEN, "udp" bound); see host-ports.ts. */
export type HostPortProbe = (port: number, protocol: 'tcp' | 'udp' | 'sctp') => boolean;

function withViolations(d: Decision, level: string, extra: Violation[]): Decision {
  if (extra.length === 0) return d;
  const violations = [...d.violations, ...extra];
  return { ...d, allowed: false, violations, rule: `${level}/${violations[0]!.rule}` };
}

/** The record the daemon stores with an allowed pod (see decision.ts). */
export function decisionRecord(policy: Policy, d: Decision, handler: string): PodDecisionRecord {
  const level = Object.hasOwn(policy.levels, d.trust) ? policy.levels[d.trust]! : policy.levels[policy.defaultTrust]!;
  return {
    version: 1, level: level.name, trustRule: d.trustRule, handler, requestedHandler: d.requestedHandler,
    egressGuard: level.egressGuard, hostNetwork: level.allowHostNetwork, allowedHostPorts: [...level.allowedHostPorts],
    // Kubernetes' defaults for unset seccomp / no_new_privs=false only where the level would
    // allow the pod to ask for them explicitly (unconfined seccomp; privileged, which implies
    // no_new_privs off); every other pod keeps the hardened defaults.
    seccompDefault: level.allowUnconfinedSeccomp ? 'Unconfined' : 'RuntimeDefault',
    honorNoNewPrivs: level.allowPrivileged,
    unmaskedProc: level.allowUnmaskedProc,
    ...(level.allowPrivileged ? { unifiedAny: true } : {}),
    ...(level.requireRunAsNonRoot ? { runAsNonRoot: true } : {}),
    ...(level.hostPaths === 'any' ? { hostPathsAny: true } : {}),
    ...(level.hostPaths === 'none' ? { hostPathsNone: true } : {}),
    ...(level.hostPaths === 'listed' ? { allowedHostPaths: [...level.allowedHostPaths] } : {}),
    ...(level.strictFallback ? { strictFallback: level.strictFallback } : {}),
  };
}

/**
 * RunPodSandbox: decides the pod and returns the handler to run it with (possibly stronger than
 * requested) and the decision record to store with it. Throws PermissionDeniedError naming the
 * rule, or FailedPreconditionError when the only problem is that no allowed handler is available
 * on this node. With `hostPortInUse`, a host port a host process already uses is refused for
 * every level (rule <level>/host-port-in-use).
 */
export function enforcePod(
  policy: Policy,
  request: { config: PodSandboxConfig; runtimeHandler?: string },
  available: readonly HandlerInfo[],
  opts: EnforceOptions & { hostPortInUse?: HostPortProbe; nodeAddresses?: ReadonlySet<string> } = {},
): { handler: string; decision: Decision; record: PodDecisionRecord } {
  const input = podInputFromCri(request.config, request.runtimeHandler ?? '');
  let d = decidePod(policy, input, available);
  const who = `${input.namespace}/${input.name}`;
  // host_ip, for every level and mapping: empty/wildcard or one of the node's own addresses.
  let addrs = opts.nodeAddresses;
  const badIp: Violation[] = [];
  for (const m of request.config.portMappings ?? []) {
    if (!m.hostIp) continue;
    addrs ??= nodeAddresses();
    const why = hostIpProblem(m.hostIp, addrs);
    if (why) badIp.push({ rule: 'host-ip', message: `pod ${who}: port mapping ${m.hostPort ?? 0}/${(m.protocol ?? 'TCP').toLowerCase()}: ${why}` });
  }
  d = withViolations(d, d.trust, badIp);
  if (opts.hostPortInUse && !input.security?.hostNetwork) {
    const busy: Violation[] = [];
    for (const m of request.config.portMappings ?? []) {
      const port = m.hostPort ?? 0;
      const proto = (m.protocol ?? 'TCP').toLowerCase() as 'tcp' | 'udp' | 'sctp';
      if (port > 0 && port <= 65535 && opts.hostPortInUse(port, proto)) {
        busy.push({ rule: 'host-port-in-use', message: `pod ${who}: host port ${port}/${proto} is already in use by a process on the node; publishing it would take over that service (choose another hostPort)` });
      }
    }
    d = withViolations(d, d.trust, busy);
  }
  record(opts, 'pod', who, d);
  if (!d.allowed || d.handler === undefined) throw thrown('pod', who, d);
  return { handler: d.handler, decision: d, record: decisionRecord(policy, d, d.handler) };
}

/** Paths every kubelet sends for procMount Default; a list without one of them unmasks /proc. */
export const KUBELET_MASKED_PATHS: readonly string[] = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware',
];
export const KUBELET_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * Whether a container's masked/readonly paths ask for an unmasked /proc: CRI has no procMount
 * field; the kubelet sends the default lists for Default and empty ones for Unmasked (which
 * decode as "not sent" and get the defaults). A list that is sent but lacks a default path is
 * what a raw client would use to unmask /proc.
 */
export function asksUnmaskedProc(sc: LinuxContainerSecurityContext | null | undefined): boolean {
  const drops = (given: readonly string[] | undefined, dflt: readonly string[]): boolean =>
    given !== undefined && given.length > 0 && dflt.some((p) => !given.includes(p));
  return drops(sc?.maskedPaths, KUBELET_MASKED_PATHS) || drops(sc?.readonlyPaths, KUBELET_READONLY_PATHS);
}

/**
 * CreateContainer: decides one container of a pod, judged by the daemon's stored record of the
 * pod (config, handler, decision), never by the request's copy. Throws PermissionDeniedError
 * naming the rule. A pod with no stored decision is judged as the default level (fail closed).
 */
export function enforceContainer(
  policy: Policy,
  request: { config: ContainerConfig; pod: StoredPod },
  available: readonly HandlerInfo[],
  opts: EnforceOptions = {},
): Decision {
  const pc = request.pod.config;
  const md = pc.metadata;
  const uid = md?.uid;
  const ownDir = uid && /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/.test(uid) ? `${policy.kubeletRoot}/pods/${uid}` : undefined;
  const container = containerInputFromCri(request.config, opts.resolvePath ?? defaultResolve, ownDir);
  if (asksUnmaskedProc(request.config.linux?.securityContext)) container.security = { ...container.security, unmaskedProc: true };
  const shared = (request.config.mounts ?? []).filter((m) => m.propagation === 'PROPAGATION_BIDIRECTIONAL').map((m) => m.containerPath ?? '');
  if (shared.length > 0) container.security = { ...container.security, bidirectionalMounts: shared };
  const pod: PodInput = { namespace: md?.namespace ?? '', name: md?.name ?? '', labels: { ...(pc.labels ?? {}) }, annotations: { ...(pc.annotations ?? {}) } };
  if (uid) pod.uid = uid;
  const stored = request.pod.decision;
  if (stored) pod.runtimeHandler = stored.requestedHandler;
  const d = decideContainer(policy, { pod, podHandler: request.pod.handler, container, ...(stored ? {} : { defaultLevel: true }) }, available);
  const who = `${container.name} in pod ${pod.namespace}/${pod.name}`;
  record(opts, 'container', who, d);
  if (!d.allowed) throw new PermissionDeniedError(deniedMessage('container', who, d), { reason: 'BH_POLICY_REFUSED' });
  return d;
}

export interface NodePolicyOptions {
  policy: Policy;
  logger: Logger;
  /** Handlers on this node with their isolation class and whether their probe says available. */
  handlers: (signal?: AbortSignal) => Promise<HandlerInfo[]> | HandlerInfo[];
  counters?: PolicyCounters;
  resolvePath?: (p: string) => string;
  /** Whether a host process uses a host port; default: the daemon's /proc/net tables (host-ports.ts). */
  hostPortInUse?: HostPortProbe;
}

/** The policy as the CRI server uses it (cri/deps.ts CriPolicy). Lives as long as the daemon. */
export class NodePolicy {
  readonly policy: Policy;
  readonly counters: PolicyCounters;
  readonly #opts: NodePolicyOptions;

  constructor(opts: NodePolicyOptions) {
    this.policy = opts.policy;
    this.counters = opts.counters ?? createCounters();
    this.#opts = opts;
  }

  #enforceOpts(): EnforceOptions {
    const o: EnforceOptions = { logger: this.#opts.logger, counters: this.counters };
    if (this.#opts.resolvePath) o.resolvePath = this.#opts.resolvePath;
    return o;
  }

  async enforcePod(config: PodSandboxConfig, requestedHandler: string): Promise<{ handler: string; record: PodDecisionRecord }> {
    const available = await this.#opts.handlers();
    // The socket tables are read only for a pod that publishes a host port.
    const publishes = (config.portMappings ?? []).some((m) => (m.hostPort ?? 0) > 0);
    const probe = this.#opts.hostPortInUse ?? (publishes ? hostPortProbe(await listeningPorts()) : () => false);
    const r = enforcePod(this.policy, { config, runtimeHandler: requestedHandler }, available, { ...this.#enforceOpts(), hostPortInUse: probe });
    return { handler: r.handler, record: r.record };
  }

  async enforceContainer(pod: StoredPod, config: ContainerConfig): Promise<void> {
    const available = await this.#opts.handlers();
    enforceContainer(this.policy, { config, pod }, available, this.#enforceOpts());
  }
}

/**
 * Handler statuses as the CRI layer reports them (runtime/handlers.ts HandlerStatus:
 * name, isolation, probe {available, reason}) → policy HandlerInfo. A handler whose isolation
 * class is not one the policy knows is left out (never treated as stronger than it is).
 */
export function handlerInfoFromStatuses(statuses: readonly { name: string; isolation: string; probe: { available: boolean; reason?: string | undefined } }[]): HandlerInfo[] {
  return statuses.flatMap((s) => {
    if (s.isolation !== 'process' && s.isolation !== 'strict' && s.isolation !== 'user-kernel' && s.isolation !== 'vm') return [];
    const h: HandlerInfo = { handler: s.name, isolation: s.isolation, available: s.probe.available };
    if (s.probe.reason) h.reason = s.probe.reason;
    return [h];
  });
}
