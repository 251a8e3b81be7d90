/**
 * The `[metrics]` table of the daemon config (the daemon keeps the raw table and hands it here):
 *
 *   [metrics]
 *   address = "127.0.0.1:9464"     # "" (the default) = no metrics server
 *   allow_non_loopback = false      # true = the operator lets /metrics listen beyond loopback
 *
 * The address is an IP literal (or "localhost") and a port; a non-loopback address (a pod IP, a
 * node address, 0.0.0.0) is refused unless `allow_non_loopback = true` says the operator chose it.
 */
import { BlockList, isIP } from 'node:net';
import { InvalidArgumentError } from '../errors.ts';

export interface MetricsConfig {
  /** Host to bind (an IP literal); "" = metrics are off. */
  host: string;
  /** TCP port; 0 = any free port (tests). */
  port: number;
  /** The operator allowed a non-loopback address. */
  allowNonLoopback: boolean;
}

export const METRICS_OFF: MetricsConfig = { host: '', port: 0, allowNonLoopback: false };

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** 127.0.0.0/8, ::1 (any spelling) and IPv4-mapped 127.x. */
export function isLoopback(ip: string): boolean {
  const v = isIP(ip);
  return v !== 0 && LOOPBACK.check(ip, v === 4 ? 'ipv4' : 'ipv6');
}

/** "127.0.0.1:9464", "[::1]:9464" or "localhost:9464" → host and port; InvalidArgument naming the key otherwise. */
export function parseMetricsAddress(address: string): { host: string; port: number } {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(`config: metrics.address ${JSON.stringify(address.slice(0, 80))} ${why} (write it as "127.0.0.1:9464" or "[::1]:9464")`);
  };
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  if (!m) return bad('is not HOST:PORT');
  let host = m[1] ?? m[2]!;
  if (host === 'localhost') host = '127.0.0.1';
  if (isIP(host) === 0) return bad('must name an IP address (or localhost), not a host name');
  if (m[1] !== undefined && isIP(host) !== 6) return bad('puts a non-IPv6 address in brackets');
  const port = Number(m[3]);
  if (port > 65535) return bad('has a port above 65535');
  return { host, port };
}

/** The `[metrics]` table (undefined = metrics off). Unknown keys and bad values are errors. */
export function parseMetricsConfig(raw: unknown): MetricsConfig {
  if (raw === undefined) return { ...METRICS_OFF };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError('config: metrics must be a table');
  const t = raw as Record<string, unknown>;
  for (const k of Object.keys(t)) {
    if (k !== 'address' && k !== 'allow_non_loopback') throw new InvalidArgumentError(`config: unknown key metrics.${k} (allowed: address, allow_non_loopback)`);
  }
  if (t.address !== undefined && typeof t.address !== 'string') throw new InvalidArgumentError('config: metrics.address must be a string such as "127.0.0.1:9464"');
  if (t.allow_non_loopback !== undefined && typeof t.allow_non_loopback !== 'boolean') throw new InvalidArgumentError('config: metrics.allow_non_loopback must be true or false');
  const allowNonLoopback = t.allow_non_loopback === true;
  const address = (t.address as string | undefined) ?? '';
  if (address === '') return { ...METRICS_OFF, allowNonLoopback };
  const { host, port } = parseMetricsAddress(address);
  if (!isLoopback(host) && !allowNonLoopback) {
    throw new InvalidArgumentError(`config: metrics.address ${host} is not a loopback address; /metrics listens on loopback unless the operator sets metrics.allow_non_loopback = true`);
  }
  return { host, port, allowNonLoopback };
}
