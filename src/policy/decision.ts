/**
 * The record of a pod's policy decision, stored with the pod when it is created (RunPodSandbox)
 * and the only thing later requests are judged by: CreateContainer, the network setup and the
 * container spec read it from the daemon's own pod record, never from a request's copy of the pod.
 *
 * A pod record without one (an older state.db, a pod made without a policy) is judged as the
 * hardened default (`FAIL_CLOSED`): egress guard on, no host network or ports, RuntimeDefault
 * seccomp, no_new_privs, masked /proc. Pure data (the one import a type guard): the engine stores it as is.
 */
import { isObject } from '../util/guards.ts';

export interface PodDecisionRecord {
  version: 1;
  /** Trust level the pod was given, and the trust rule that gave it ("default" when none). */
  level: string;
  trustRule: string;
  /** Handler the pod runs on, and the one it asked for ("" = none; trust rules may match it). */
  handler: string;
  requestedHandler: string;
  /** The nftables egress guard applies to the pod's traffic (independent of host network). */
  egressGuard: boolean;
  /** The level allows the host network namespace. */
  hostNetwork: boolean;
  /** Host port ranges the level allows ("8000-9000"); [] = none. */
  allowedHostPorts: string[];
  /** Seccomp profile for a container that names none. */
  seccompDefault: 'RuntimeDefault' | 'Unconfined';
  /** no_new_privs=false in a request is honoured (only where the level allows privileged). */
  honorNoNewPrivs: boolean;
  /** A request's masked/readonly paths may replace the defaults (procMount Unmasked). */
  unmaskedProc: boolean;
  /** Any `linux.resources.unified` cgroup file may be set (a level that allows privileged); absent = only the self-limits of cgroup-unified.ts (UpdateContainerResources is judged by it). */
  unifiedAny?: boolean;
  /** require_run_as_non_root: a container whose resolved user is uid 0 is refused when its spec is built. Absent = false. */
  runAsNonRoot?: boolean;
  /** The level allows every host path (host_paths = "any"): mounts skip the protected-path check on the opened object. Absent = false. */
  hostPathsAny?: boolean;
  /** host_paths = "none": no host path but the pod's own kubelet volumes, checked again at mount. Absent = false. */
  hostPathsNone?: boolean;
  /** host_paths = "listed": the allowed prefixes, checked again on the opened object at mount. */
  allowedHostPaths?: string[];
  /** strict_fallback: a strict container whose image has no profile runs under runc's default profile. Absent = refused. */
  strictFallback?: 'runc';
}

/** The decision a pod gets when none was stored: the most restrictive one. */
export const FAIL_CLOSED: Omit<PodDecisionRecord, 'level' | 'trustRule' | 'handler' | 'requestedHandler'> = {
  version: 1, egressGuard: true, hostNetwork: false, allowedHostPorts: [],
  seccompDefault: 'RuntimeDefault', honorNoNewPrivs: false, unmaskedProc: false,
};

/**
 * A stored value → a decision record, or undefined when it is missing or malformed (the caller
 * then judges the pod as the default level). Every field is checked: state.db is ours, but a
 * half-written or older record must not widen anything.
 */
export function readDecision(v: unknown): PodDecisionRecord | undefined {
  if (!isObject(v) || v.version !== 1) return undefined;
  const { level, trustRule, handler, requestedHandler, egressGuard, hostNetwork, allowedHostPorts, seccompDefault, honorNoNewPrivs, unmaskedProc } = v;
  if (typeof level !== 'string' || typeof trustRule !== 'string' || typeof handler !== 'string' || typeof requestedHandler !== 'string') return undefined;
  if (typeof egressGuard !== 'boolean' || typeof hostNetwork !== 'boolean' || typeof honorNoNewPrivs !== 'boolean' || typeof unmaskedProc !== 'boolean') return undefined;
  if (seccompDefault !== 'RuntimeDefault' && seccompDefault !== 'Unconfined') return undefined;
  if (!Array.isArray(allowedHostPorts) || !allowedHostPorts.every((p) => typeof p === 'string')) return undefined;
  const rec: PodDecisionRecord = { version: 1, level, trustRule, handler, requestedHandler, egressGuard, hostNetwork, allowedHostPorts: [...allowedHostPorts as string[]], seccompDefault, honorNoNewPrivs, unmaskedProc };
  if (v.unifiedAny === true) rec.unifiedAny = true;
  if (v.runAsNonRoot === true) rec.runAsNonRoot = true;
  if (v.hostPathsAny === true) rec.hostPathsAny = true;
  if (v.hostPathsNone === true) rec.hostPathsNone = true;
  if (Array.isArray(v.allowedHostPaths) && v.allowedHostPaths.every((x) => typeof x === 'string' && x.startsWith('/'))) rec.allowedHostPaths = [...v.allowedHostPaths as string[]];
  // a malformed list must not widen anything: "listed" with nothing readable allows nothing
  else if (v.allowedHostPaths !== undefined) rec.hostPathsNone = true;
  if (v.strictFallback === 'runc') rec.strictFallback = 'runc';
  return rec;
}

// ---------------------------------------------------------------------------------------------
// Host port ranges

export interface PortRange { from: number; to: number }

/** "8000-9000" or "443" → range; undefined when malformed. */
export function parsePortRange(s: string): PortRange | undefined {
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(s.trim());
  if (!m) return undefined;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || to > 65535 || from > to) return undefined;
  return { from, to };
}

/** Whether `port` lies in one of the ranges (malformed ones allow nothing). */
export function portAllowed(port: number, ranges: readonly string[]): boolean {
  return ranges.some((r) => {
    const p = parsePortRange(r);
    return p !== undefined && port >= p.from && port <= p.to;
  });
}

/** A full record from the fail-closed one and a few fields (tests, and callers without a policy). */
export function decisionWith(over: Partial<PodDecisionRecord> = {}): PodDecisionRecord {
  return { ...FAIL_CLOSED, allowedHostPorts: [], level: 'untrusted', trustRule: 'default', handler: '', requestedHandler: '', ...over };
}
