/**
 * Loading and validating a trust policy: a TOML, YAML or JSON file (`policy_file` in the daemon
 * config) or the raw `[policy]` section of the config. Every key is checked; an unknown key, a
 * bad value or a rule that would let a pod raise its own trust is an InvalidArgumentError naming
 * the key, and the daemon does not start.
 *
 * File shape (TOML):
 *   default_trust = "untrusted"            # level for pods no rule matches
 *   protected_paths = ["/srv/secrets"]     # added to the built-in dangerous host paths
 *   kubelet_root = "/var/lib/kubelet"
 *   [levels.trusted]
 *   min_isolation = "process"              # process | strict | user-kernel | vm (required)
 *   handlers = ["runc", "gvisor"]          # optional allow-list
 *   default_handler = "runc"
 *   on_weak_handler = "upgrade"            # upgrade | deny
 *   allow_privileged = false               # also allow_host_network, allow_host_pid, allow_host_ipc,
 *                                          # allow_unconfined_seccomp, allow_unconfined_apparmor, allow_unmasked_proc
 *   require_run_as_non_root = false        # Restricted: no container as uid 0 (image user included)
 *   host_paths = "safe"                    # none | listed | safe | any
 *   allowed_host_paths = ["/data"]
 *   allowed_capabilities = ["NET_ADMIN"]   # "ALL" = any; absent = the 9 default ones
 *   allowed_sysctls = ["net.core.somaxconn"]
 *   allowed_host_ports = ["8000-9000"]     # hostPort ranges; absent = none (a port in use on the host is always refused)
 *   egress_guard = true                    # the pod egress guard (default true, whatever allow_host_network says)
 *   registries = ["registry.example.com"]  # empty = any source
 *   [[rules]]
 *   name = "system pods"
 *   trust = "trusted"
 *   namespaces = ["kube-system"]           # also labels, annotations (tables), images, handlers
 * A level named "untrusted" is built in (user-kernel at least, nothing dangerous); a file may redefine it.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { InvalidArgumentError } from '../errors.ts';
import {
  DANGEROUS_HOST_PATHS, HOST_PATH_MODES, ISOLATIONS, ISOLATION_RANK, normalizeCapability, normalizeHostPath,
  type HostPathMode, type Isolation, type Policy, type TrustLevel, type TrustRule,
} from './policy.ts';
import { parsePortRange } from './decision.ts';
import { SYSCTL_NAME } from './sysctl.ts';
import { isObject } from '../util/guards.ts';

/** The capabilities a container gets by default anyway: adding them changes nothing. */
export const DEFAULT_CAPABILITIES: readonly string[] = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'SETGID', 'SETUID', 'SETPCAP', 'NET_BIND_SERVICE', 'KILL'];

export function untrustedLevel(): TrustLevel {
  return {
    name: 'untrusted',
    minIsolation: 'user-kernel',
    onWeakHandler: 'upgrade',
    allowPrivileged: false,
    allowHostNetwork: false,
    allowHostPID: false,
    allowHostIPC: false,
    egressGuard: true,
    allowedHostPorts: [],
    hostPaths: 'none',
    allowedHostPaths: [],
    allowedCapabilities: [...DEFAULT_CAPABILITIES],
    allowUnconfinedSeccomp: false,
    allowUnconfinedApparmor: false,
    allowUnmaskedProc: false,
    requireRunAsNonRoot: false,
    allowedSysctls: [],
    registries: [],
  };
}

/** The built-in policy: every pod untrusted. */
export function defaultPolicy(): Policy {
  return {
    defaultTrust: 'untrusted',
    levels: { untrusted: untrustedLevel() },
    rules: [],
    protectedPaths: [...DANGEROUS_HOST_PATHS],
    kubeletRoot: '/var/lib/kubelet',
    source: 'built-in default',
  };
}

type Table = Record<string, unknown>;

class Reader {
  readonly source: string;
  constructor(source: string) { this.source = source; }
  fail(key: string, msg: string): never {
    throw new InvalidArgumentError(`policy (${this.source}): ${key} ${msg}`);
  }
  isTable(v: unknown): v is Table {
    return isObject(v) && !(v instanceof Date);
  }
  table(v: unknown, key: string): Table {
    if (!this.isTable(v)) this.fail(key, 'must be a table');
    return v;
  }
  only(t: Table, allowed: readonly string[], where: string): void {
    for (const k of Object.keys(t)) {
      if (!allowed.includes(k)) this.fail(where ? `${where}.${k}` : k, `is not a known key (allowed: ${allowed.join(', ')})`);
    }
  }
  str(t: Table, k: string, where: string): string | undefined {
    const v = t[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') this.fail(`${where}${k}`, 'must be a non-empty string');
    return v;
  }
  bool(t: Table, k: string, where: string): boolean {
    const v = t[k];
    if (v === undefined) return false;
    if (typeof v !== 'boolean') this.fail(`${where}${k}`, 'must be true or false');
    return v;
  }
  list(t: Table, k: string, where: string, check?: (s: string) => string | undefined): string[] | undefined {
    const v = t[k];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) this.fail(`${where}${k}`, 'must be a list of strings');
    return v.map((x, i) => {
      if (typeof x !== 'string' || x === '') this.fail(`${where}${k}[${i}]`, 'must be a non-empty string');
      const problem = check?.(x);
      if (problem) this.fail(`${where}${k}[${i}]`, `(${JSON.stringify(x)}) ${problem}`);
      return x;
    });
  }
  strMap(t: Table, k: string, where: string): Record<string, string> | undefined {
    const v = t[k];
    if (v === undefined) return undefined;
    const m = this.table(v, `${where}${k}`);
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [mk, mv] of Object.entries(m)) {
      if (typeof mv !== 'string') this.fail(`${where}${k}.${mk}`, 'must be a string');
      out[mk] = mv;
    }
    if (Object.keys(out).length === 0) this.fail(`${where}${k}`, 'must not be empty');
    return out;
  }
}

const LEVEL_KEYS = [
  'min_isolation', 'handlers', 'default_handler', 'on_weak_handler', 'allow_privileged', 'allow_host_network',
  'allow_host_pid', 'allow_host_ipc', 'host_paths', 'allowed_host_paths', 'allowed_capabilities',
  'allow_unconfined_seccomp', 'allow_unconfined_apparmor', 'allow_unmasked_proc', 'require_run_as_non_root', 'allowed_sysctls', 'registries',
  'egress_guard', 'allowed_host_ports', 'strict_fallback',
] as const;
const RULE_KEYS = ['name', 'trust', 'namespaces', 'labels', 'annotations', 'images', 'handlers'] as const;
const TOP_KEYS = ['default_trust', 'protected_paths', 'kubelet_root', 'levels', 'rules'] as const;

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const HANDLER = /^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$/;
const LEVEL_NAME = /^[a-z0-9]([-a-z0-9_]{0,61}[a-z0-9])?$/;
const IMAGE_SOURCE = /^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(\/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*\/?$/;

function parseLevel(r: Reader, name: string, t: Table): TrustLevel {
  const w = `levels.${name}.`;
  r.only(t, LEVEL_KEYS, `levels.${name}`);
  const min = r.str(t, 'min_isolation', w);
  if (min === undefined) r.fail(`${w}min_isolation`, `is required (${ISOLATIONS.join(' | ')})`);
  if (!ISOLATIONS.includes(min as Isolation)) r.fail(`${w}min_isolation`, `must be one of ${ISOLATIONS.join(', ')} (got ${JSON.stringify(min)})`);
  const onWeak = r.str(t, 'on_weak_handler', w) ?? 'upgrade';
  if (onWeak !== 'upgrade' && onWeak !== 'deny') r.fail(`${w}on_weak_handler`, `must be "upgrade" or "deny" (got ${JSON.stringify(onWeak)})`);
  const hp = r.str(t, 'host_paths', w) ?? 'none';
  if (!HOST_PATH_MODES.includes(hp as HostPathMode)) r.fail(`${w}host_paths`, `must be one of ${HOST_PATH_MODES.join(', ')} (got ${JSON.stringify(hp)})`);
  const handlers = r.list(t, 'handlers', w, (s) => (HANDLER.test(s) ? undefined : 'is not a valid handler name'));
  if (handlers && handlers.length === 0) r.fail(`${w}handlers`, 'must not be empty (leave it out to allow any handler of the isolation class)');
  const defaultHandler = r.str(t, 'default_handler', w);
  if (defaultHandler !== undefined && handlers && !handlers.includes(defaultHandler)) r.fail(`${w}default_handler`, `"${defaultHandler}" is not in ${w}handlers`);
  const allowedHostPaths = (r.list(t, 'allowed_host_paths', w, (s) => (normalizeHostPath(s) === undefined ? 'is not an absolute path' : undefined)) ?? []).map((s) => normalizeHostPath(s)!);
  if (hp === 'listed' && allowedHostPaths.length === 0) r.fail(`${w}allowed_host_paths`, 'must list at least one path when host_paths = "listed"');
  if (hp !== 'listed' && allowedHostPaths.length > 0) r.fail(`${w}allowed_host_paths`, 'is only used with host_paths = "listed"');
  // Absent: the capabilities a container has by default anyway (adding them changes nothing).
  const caps = (r.list(t, 'allowed_capabilities', w, (s) => (/^(CAP_)?[A-Z_]+$/i.test(s) ? undefined : 'is not a capability name')) ?? [...DEFAULT_CAPABILITIES]).map(normalizeCapability);
  const sysctls = r.list(t, 'allowed_sysctls', w, (s) => (SYSCTL_NAME.test(s) ? undefined : 'is not a plain dotted sysctl name')) ?? [];
  const registries = r.list(t, 'registries', w, (s) => (IMAGE_SOURCE.test(s) ? undefined : 'is not a registry host or repository path')) ?? [];
  const hostPorts = r.list(t, 'allowed_host_ports', w, (s) => (parsePortRange(s) ? undefined : 'is not a port or a range "FROM-TO" within 1-65535')) ?? [];
  const egress = t.egress_guard;
  if (egress !== undefined && typeof egress !== 'boolean') r.fail(`${w}egress_guard`, 'must be true or false');
  const level: TrustLevel = {
    name,
    minIsolation: min as Isolation,
    onWeakHandler: onWeak,
    allowPrivileged: r.bool(t, 'allow_privileged', w),
    allowHostNetwork: r.bool(t, 'allow_host_network', w),
    allowHostPID: r.bool(t, 'allow_host_pid', w),
    allowHostIPC: r.bool(t, 'allow_host_ipc', w),
    egressGuard: egress !== false,
    allowedHostPorts: hostPorts.map((s) => s.trim()),
    hostPaths: hp as HostPathMode,
    allowedHostPaths,
    allowedCapabilities: caps,
    allowUnconfinedSeccomp: r.bool(t, 'allow_unconfined_seccomp', w),
    allowUnconfinedApparmor: r.bool(t, 'allow_unconfined_apparmor', w),
    allowUnmaskedProc: r.bool(t, 'allow_unmasked_proc', w),
    requireRunAsNonRoot: r.bool(t, 'require_run_as_non_root', w),
    allowedSysctls: sysctls,
    registries: registries.map((s) => s.replace(/\/+$/, '')),
  };
  if (handlers) level.handlers = handlers;
  if (defaultHandler !== undefined) level.defaultHandler = defaultHandler;
  const fallback = r.str(t, 'strict_fallback', w);
  if (fallback !== undefined) {
    if (fallback !== 'runc') r.fail(`${w}strict_fallback`, `must be "runc" (a strict container without a profile runs under runc's default profile; got ${JSON.stringify(fallback)})`);
    if (min !== 'process') r.fail(`${w}strict_fallback`, `needs min_isolation = "process": the fallback runs below the strict class (the level says ${JSON.stringify(min)})`);
    level.strictFallback = 'runc';
  }
  return level;
}

const HP_ORDER: Record<HostPathMode, number> = { none: 0, listed: 1, safe: 2, any: 3 };
const within = (p: string, dirs: readonly string[]): boolean => dirs.some((d) => p === d || p.startsWith(d + '/'));

/** Whether level `l` permits nothing that `d` forbids (so assigning it cannot raise trust). */
export function isNoWeakerThan(l: TrustLevel, d: TrustLevel): boolean {
  if (ISOLATION_RANK[l.minIsolation] < ISOLATION_RANK[d.minIsolation]) return false;
  if (d.handlers && (!l.handlers || !l.handlers.every((h) => d.handlers!.includes(h)))) return false;
  const flags = ['allowPrivileged', 'allowHostNetwork', 'allowHostPID', 'allowHostIPC', 'allowUnconfinedSeccomp', 'allowUnconfinedApparmor', 'allowUnmaskedProc'] as const;
  if (flags.some((f) => l[f] && !d[f])) return false;
  if (!l.egressGuard && d.egressGuard) return false;
  if (d.requireRunAsNonRoot && !l.requireRunAsNonRoot) return false;
  if (l.strictFallback && !d.strictFallback) return false;
  const dr = d.allowedHostPorts.map(parsePortRange);
  if (!l.allowedHostPorts.every((s) => { const r = parsePortRange(s); return r !== undefined && dr.some((x) => x !== undefined && x.from <= r.from && r.to <= x.to); })) return false;
  if (HP_ORDER[l.hostPaths] > HP_ORDER[d.hostPaths]) return false;
  if (l.hostPaths === 'listed' && d.hostPaths === 'listed' && !l.allowedHostPaths.every((p) => within(p, d.allowedHostPaths))) return false;
  if (!d.allowedCapabilities.includes('ALL') && !l.allowedCapabilities.every((c) => c !== 'ALL' && d.allowedCapabilities.includes(c))) return false;
  if (!l.allowedSysctls.every((s) => d.allowedSysctls.includes(s))) return false;
  if (d.registries.length > 0 && (l.registries.length === 0 || !l.registries.every((p) => within(p, d.registries)))) return false;
  return true;
}

function parseRule(r: Reader, i: number, t: Table, policy: Policy, seen: Set<string>): TrustRule {
  const w = `rules[${i}].`;
  r.only(t, RULE_KEYS, `rules[${i}]`);
  const name = r.str(t, 'name', w);
  if (name === undefined) r.fail(`${w}name`, 'is required');
  if (seen.has(name)) r.fail(`${w}name`, `"${name}" is used by an earlier rule`);
  seen.add(name);
  const w2 = `rules[${i}] ("${name}").`;
  const trust = r.str(t, 'trust', w2);
  if (trust === undefined) r.fail(`${w2}trust`, 'is required');
  if (!Object.hasOwn(policy.levels, trust)) r.fail(`${w2}trust`, `names no defined level "${trust}" (levels: ${Object.keys(policy.levels).join(', ')})`);
  const rule: TrustRule = { name, trust };
  const ns = r.list(t, 'namespaces', w2, (s) => (NAMESPACE.test(s) ? undefined : 'is not a namespace name (no wildcards)'));
  const labels = r.strMap(t, 'labels', w2);
  const annotations = r.strMap(t, 'annotations', w2);
  const images = r.list(t, 'images', w2, (s) => (IMAGE_SOURCE.test(s) ? undefined : 'is not a registry host or repository path'));
  const handlers = r.list(t, 'handlers', w2, (s) => (HANDLER.test(s) ? undefined : 'is not a valid handler name'));
  for (const [k, v] of [['namespaces', ns], ['images', images], ['handlers', handlers]] as const) {
    if (v && v.length === 0) r.fail(`${w2}${k}`, 'must not be empty');
  }
  if (ns) rule.namespaces = ns;
  if (labels) rule.labels = labels;
  if (annotations) rule.annotations = annotations;
  if (images) rule.images = images.map((s) => s.replace(/\/+$/, ''));
  if (handlers) rule.handlers = handlers;
  if (!ns && !labels && !annotations && !images && !handlers) r.fail(`rules[${i}] ("${name}")`, 'matches every pod: give it namespaces, labels, annotations, images or handlers (or set default_trust)');
  // Labels, annotations and the requested handler are written by the pod's author: on their own
  // they must never raise trust. Only the namespace (granted by the cluster admin) can vouch for them.
  const podControlled = [labels && 'labels', annotations && 'annotations', handlers && 'handlers'].filter(Boolean);
  if (podControlled.length > 0 && !ns) {
    const lvl = policy.levels[trust]!;
    const dflt = policy.levels[policy.defaultTrust]!;
    if (!isNoWeakerThan(lvl, dflt)) {
      r.fail(`${w2}namespaces`, `is required: the rule matches ${podControlled.join(' and ')}, which any pod author can set, and level "${trust}" is weaker than the default "${policy.defaultTrust}"; name the namespaces whose pods may claim it`);
    }
  }
  return rule;
}

/** Validates a parsed policy document (from any format). Throws InvalidArgumentError naming the bad key. */
export function parsePolicy(doc: unknown, source: string): Policy {
  const r: Reader = new Reader(source);
  if (!r.isTable(doc)) r.fail('the document', 'must be a table/object at the top');
  r.only(doc, TOP_KEYS, '');
  const policy = defaultPolicy();
  policy.source = source;
  if (doc.levels !== undefined) {
    const lv = r.table(doc.levels, 'levels');
    for (const [name, t] of Object.entries(lv)) {
      if (!LEVEL_NAME.test(name)) r.fail(`levels.${name}`, 'is not a valid level name (lower case letters, digits, - and _)');
      policy.levels[name] = parseLevel(r, name, r.table(t, `levels.${name}`));
    }
  }
  const dt = r.str(doc, 'default_trust', '');
  if (dt !== undefined) {
    if (!Object.hasOwn(policy.levels, dt)) r.fail('default_trust', `names no defined level "${dt}" (levels: ${Object.keys(policy.levels).join(', ')})`);
    policy.defaultTrust = dt;
  }
  const pp = r.list(doc, 'protected_paths', '', (s) => (normalizeHostPath(s) === undefined ? 'is not an absolute path' : undefined));
  if (pp) for (const p of pp) { const n = normalizeHostPath(p)!; if (!policy.protectedPaths.includes(n)) policy.protectedPaths.push(n); }
  const kr = r.str(doc, 'kubelet_root', '');
  if (kr !== undefined) {
    const n = normalizeHostPath(kr);
    if (n === undefined || n === '/') r.fail('kubelet_root', 'must be an absolute path other than /');
    policy.kubeletRoot = n;
  }
  if (doc.rules !== undefined) {
    if (!Array.isArray(doc.rules)) r.fail('rules', 'must be a list of tables ([[rules]])');
    const seen = new Set<string>();
    policy.rules = doc.rules.map((t, i) => parseRule(r, i, r.table(t, `rules[${i}]`), policy, seen));
  }
  return policy;
}

export type PolicyFormat = 'toml' | 'yaml' | 'json';

export function parsePolicyText(text: string, format: PolicyFormat, source: string): Policy {
  let doc: unknown;
  try {
    doc = format === 'toml' ? parseToml(text) : format === 'yaml' ? parseYaml(text, { maxAliasCount: 100 }) : JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`policy (${source}): not valid ${format.toUpperCase()}: ${(err as Error).message}`, { cause: err });
  }
  return parsePolicy(doc, source);
}

export function formatOf(path: string): PolicyFormat {
  const e = extname(path).toLowerCase();
  return e === '.json' ? 'json' : e === '.yaml' || e === '.yml' ? 'yaml' : 'toml';
}

/** Loads a policy file (format by extension: .json, .yaml/.yml, else TOML) or validates a raw `[policy]` section. */
export async function loadPolicy(source: string | Record<string, unknown>): Promise<Policy> {
  if (typeof source !== 'string') return parsePolicy(source, '[policy] section of the config');
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`policy file ${source} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  return parsePolicyText(text, formatOf(source), source);
}

/** The daemon's policy: `policy_file`, or the `[policy]` section, or the built-in default. Both set is an error. */
export async function policyFromConfig(config: { policyFile: string; sections: Record<string, unknown> }): Promise<Policy> {
  const section = config.sections.policy;
  if (config.policyFile && section !== undefined) throw new InvalidArgumentError('config: set either policy_file or a [policy] section, not both');
  if (config.policyFile) return await loadPolicy(config.policyFile);
  if (section !== undefined) {
    if (typeof section !== 'object' || section === null || Array.isArray(section)) throw new InvalidArgumentError('config: [policy] must be a table');
    return await loadPolicy(section as Record<string, unknown>);
  }
  return defaultPolicy();
}

/** Problems of a policy against the handlers a node has (handler names in levels that no backend serves). */
export function checkPolicyHandlers(policy: Policy, handlers: readonly string[]): string[] {
  const out: string[] = [];
  for (const l of Object.values(policy.levels)) {
    for (const h of l.handlers ?? []) if (!handlers.includes(h)) out.push(`levels.${l.name}.handlers names "${h}", which is not a configured handler`);
    if (l.defaultHandler && !handlers.includes(l.defaultHandler)) out.push(`levels.${l.name}.default_handler names "${l.defaultHandler}", which is not a configured handler`);
  }
  return out;
}
