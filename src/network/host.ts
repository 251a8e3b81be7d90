/**
 * Host-side helpers around iproute2: network namespaces under /run/netns, links, routes,
 * sysctls of one interface. Every call goes through util/exec.run with a timeout and a signal.
 */
import { access, rm, writeFile } from 'node:fs/promises';
import { FailedPreconditionError, InternalError } from '../errors.ts';
import { run } from '../util/exec.ts';

export const NETNS_DIR = '/run/netns';
const TIMEOUT = 20_000;

export async function ip(args: string[], signal: AbortSignal): Promise<string> {
  const r = await run('ip', args, { timeoutMs: TIMEOUT, signal });
  if (r.code !== 0) throw new InternalError(`ip ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code ?? r.signal}`}`);
  return r.stdout;
}

export async function ipJson<T>(args: string[], signal: AbortSignal): Promise<T> {
  const out = await ip(['-j', ...args], signal);
  return (out.trim() ? JSON.parse(out) : []) as T;
}

export async function exists(path: string): Promise<boolean> {
  try { await access(path); return true; } catch { return false; }
}

export function netnsPathOf(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

/**
 * Creates a named netns (a bind mount under /run/netns that outlives this process); with
 * `loopbackUp` its lo is brought up, and a netns whose lo cannot be is removed again.
 */
export async function createNetns(name: string, signal: AbortSignal, opts: { loopbackUp?: boolean } = {}): Promise<string> {
  if (await exists(netnsPathOf(name))) throw new FailedPreconditionError(`network namespace ${name} already exists`);
  await ip(['netns', 'add', name], signal);
  if (opts.loopbackUp) {
    try {
      await ip(['-n', name, 'link', 'set', 'lo', 'up'], signal);
    } catch (err) {
      await deleteNetns(name, AbortSignal.timeout(TIMEOUT)).catch(() => undefined);
      throw err;
    }
  }
  return netnsPathOf(name);
}

/**
 * Removes a named netns; a missing one is fine. A half-made one (`ip netns delete` refuses: the
 * file without its mount, or a mount `ip` does not know) is unmounted and removed by hand.
 */
export async function deleteNetns(name: string, signal: AbortSignal): Promise<void> {
  const path = netnsPathOf(name);
  if (!(await exists(path))) return;
  const r = await run('ip', ['netns', 'delete', name], { timeoutMs: TIMEOUT, signal });
  if (r.code === 0 || !(await exists(path))) return;
  await run('umount', ['-l', path], { timeoutMs: TIMEOUT, signal });
  await rm(path, { force: true });
  if (await exists(path)) throw new InternalError(`ip netns delete ${name}: ${r.stderr.trim()}`);
}

export interface LinkInfo {
  ifindex: number;
  ifname: string;
  address?: string;
  master?: string;
  link_index?: number;
  operstate?: string;
}

export async function listLinks(signal: AbortSignal, netns?: string): Promise<LinkInfo[]> {
  return await ipJson<LinkInfo[]>([...(netns ? ['-n', netns] : []), 'link', 'show'], signal);
}

export async function linkExists(name: string, signal: AbortSignal): Promise<boolean> {
  return (await listLinks(signal)).some((l) => l.ifname === name);
}

/** Writes a per-interface sysctl, e.g. setIfSysctl('ipv4', 'br0', 'forwarding', '1'). */
export async function setIfSysctl(family: 'ipv4' | 'ipv6', ifName: string, key: string, value: string): Promise<void> {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(ifName) || !/^[a-z0-9_]+$/.test(key)) throw new InternalError(`bad sysctl ${family}.${ifName}.${key}`);
  const path = `/proc/sys/net/${family}/conf/${ifName}/${key}`;
  if (family === 'ipv6' && !(await exists(path))) return; // IPv6 off in this kernel: nothing to do
  await writeFile(path, value);
}

/** Destination prefixes of every IPv4 route and address on the host (for choosing a free subnet). */
export async function usedPrefixes4(signal: AbortSignal): Promise<string[]> {
  const routes = await ipJson<{ dst?: string }[]>(['-4', 'route', 'show', 'table', 'all'], signal);
  const addrs = await ipJson<{ addr_info?: { local?: string; prefixlen?: number }[] }[]>(['-4', 'addr', 'show'], signal);
  const out: string[] = [];
  for (const r of routes) if (r.dst && r.dst !== 'default') out.push(r.dst.includes('/') ? r.dst : `${r.dst}/32`);
  for (const a of addrs) for (const i of a.addr_info ?? []) if (i.local && i.prefixlen !== undefined) out.push(`${i.local}/${i.prefixlen}`);
  return out;
}
