/**
 * The [network] section of the daemon config (kept raw by daemon/config.ts, validated here):
 *
 *   [network]
 *   default_mode = "bridge"             # bridge | none — for pods that do not ask for the host network
 *   subnet = "10.123.4.0/24"            # subnet of the default bridge network ("" = choose a free one)
 *   bridge = "bh0"                      # bridge of the default network ("" = bh-<hash>)
 *   blocked = ["10.0.0.0/8"]            # extra ranges untrusted pods may not reach (169.254.0.0/16 always)
 *   routed = []                         # ranges outside the pod subnet that pods may be routed to
 *   plugin_timeout_ms = 30000
 *   instance = ""                       # nftables table suffix ("" = derived from the cache dir)
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors.ts';
import { formatCidr4, parseCidr4, type Cidr4 } from './cidr.ts';
import type { NetworkMode } from './pod-network.ts';

export interface NetworkConfig {
  defaultMode: NetworkMode;
  subnet: Cidr4 | null;
  bridge: string;
  blocked: Cidr4[];
  routed: Cidr4[];
  pluginTimeoutMs: number;
  instance: string;
}

/** Ranges no untrusted pod may reach, whatever the config says. */
export const ALWAYS_BLOCKED = ['169.254.0.0/16'];

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

export function parseNetworkConfig(raw: unknown): NetworkConfig {
  const cfg: NetworkConfig = {
    defaultMode: 'bridge',
    subnet: null,
    bridge: '',
    blocked: ALWAYS_BLOCKED.map((c) => parseCidr4(c)),
    routed: [],
    pluginTimeoutMs: 30_000,
    instance: '',
  };
  if (raw === undefined) return cfg;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError('config: network must be a table');
  const t = raw as Record<string, unknown>;
  const allowed = ['default_mode', 'subnet', 'bridge', 'blocked', 'routed', 'plugin_timeout_ms', 'instance'];
  for (const k of Object.keys(t)) {
    if (!allowed.includes(k)) throw new InvalidArgumentError(`config: unknown key network.${k} (allowed: ${allowed.join(', ')})`);
  }
  const str = (k: string): string | undefined => {
    const v = t[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new InvalidArgumentError(`config: network.${k} must be a string`);
    return v;
  };
  const cidrs = (k: string): Cidr4[] => {
    const v = t[k];
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new InvalidArgumentError(`config: network.${k} must be a list of CIDR strings`);
    return (v as string[]).map((s) => {
      try { return parseCidr4(s); } catch (err) { throw new InvalidArgumentError(`config: network.${k}: ${(err as Error).message}`); }
    });
  };
  const mode = str('default_mode');
  if (mode !== undefined) {
    if (mode === 'host') throw new InvalidArgumentError('config: network.default_mode = "host" is refused: a pod gets the host network only by asking for it (namespace_options.network = NODE), which the trust policy judges; use bridge or none');
    if (mode !== 'bridge' && mode !== 'none') throw new InvalidArgumentError('config: network.default_mode must be bridge or none');
    cfg.defaultMode = mode;
  }
  const subnet = str('subnet');
  if (subnet) {
    try { cfg.subnet = parseCidr4(subnet); } catch (err) { throw new InvalidArgumentError(`config: network.subnet: ${(err as Error).message}`); }
    if (cfg.subnet.prefix > 29 || cfg.subnet.prefix < 8) throw new InvalidArgumentError('config: network.subnet must be between /8 and /29');
  }
  const bridge = str('bridge');
  if (bridge) {
    if (!IFNAME.test(bridge)) throw new InvalidArgumentError('config: network.bridge must be an interface name (1-15 of A-Z a-z 0-9 _ . -)');
    cfg.bridge = bridge;
  }
  const seen = new Set(cfg.blocked.map(formatCidr4));
  for (const c of cidrs('blocked')) if (!seen.has(formatCidr4(c))) { seen.add(formatCidr4(c)); cfg.blocked.push(c); }
  cfg.routed = cidrs('routed');
  if (t.plugin_timeout_ms !== undefined) {
    const v = t.plugin_timeout_ms;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 100 || v > 600_000) throw new InvalidArgumentError('config: network.plugin_timeout_ms must be an integer 100..600000');
    cfg.pluginTimeoutMs = v;
  }
  const inst = str('instance');
  if (inst) {
    if (!/^[a-z0-9_]{1,24}$/.test(inst)) throw new InvalidArgumentError('config: network.instance must be 1-24 of a-z 0-9 _');
    cfg.instance = inst;
  }
  return cfg;
}

/** A short stable hex name part derived from a path (e.g. the cache dir), so instances differ. */
export function shortHash(s: string, len = 8): string {
  return createHash('sha256').update(s).digest('hex').slice(0, len);
}
