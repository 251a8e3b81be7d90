/**
 * The small files every container of a pod sees: /etc/hostname, /etc/hosts, /etc/resolv.conf.
 * Written once per pod into its pod directory and bind-mounted read-only into each container.
 * Pure text builders plus one writer; nothing from the request reaches a path.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import type { DNSConfig } from '../api/cri.ts';

const HOSTNAME_RE = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i;

export function validateHostname(h: string): void {
  if (!HOSTNAME_RE.test(h) || h.length > 253) throw new InvalidArgumentError(`invalid hostname ${JSON.stringify(h)}`);
}

export function hostsFile(hostname: string, ips: string[]): string {
  const lines = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  if (hostname) lines.push(`${ips[0] ?? '127.0.1.1'}\t${hostname}`);
  return lines.join('\n') + '\n';
}

const LOOPBACK_NS = /^(127\.|::1$|0\.0\.0\.0$)/;
const SAFE_TOKEN = /^[^\s#;]+$/;

function checkTokens(kind: string, list: string[]): string[] {
  for (const t of list) if (!SAFE_TOKEN.test(t)) throw new InvalidArgumentError(`dnsConfig: invalid ${kind} ${JSON.stringify(t)}`);
  return list;
}

/**
 * resolv.conf from the pod's dnsConfig; with no servers given, the host's file with loopback
 * nameservers dropped (they mean nothing inside a pod's own network namespace).
 */
export function resolvConf(dns: DNSConfig | null | undefined, hostResolv: string): string {
  const servers = checkTokens('server', dns?.servers ?? []);
  const searches = checkTokens('search', dns?.searches ?? []);
  const options = checkTokens('option', dns?.options ?? []);
  if (servers.length > 0 || searches.length > 0 || options.length > 0) {
    const out: string[] = [];
    if (searches.length > 0) out.push(`search ${searches.join(' ')}`);
    for (const s of servers) out.push(`nameserver ${s}`);
    if (options.length > 0) out.push(`options ${options.join(' ')}`);
    if (servers.length === 0) {
      for (const line of hostResolv.split('\n')) {
        const m = /^\s*nameserver\s+(\S+)/.exec(line);
        if (m && !LOOPBACK_NS.test(m[1]!)) out.push(`nameserver ${m[1]}`);
      }
    }
    return out.join('\n') + '\n';
  }
  const kept = hostResolv.split('\n').filter((line) => {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    return !(m && LOOPBACK_NS.test(m[1]!));
  });
  return kept.join('\n').replace(/\n*$/, '\n');
}

export interface PodFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
}

/** Writes the three files into `dir` (created 0755) and returns their paths. */
export async function writePodFiles(dir: string, hostname: string, ips: string[], dns: DNSConfig | null | undefined, hostResolvPath = '/etc/resolv.conf'): Promise<PodFiles> {
  // side by side (each a thread-pool round trip; a pooled pod's start waits for them): the dir and the
  // host's resolv.conf, then the three files; every one settled before an error is thrown
  const [made, resolv] = await Promise.allSettled([mkdir(dir, { recursive: true, mode: 0o755 }), readFile(hostResolvPath, 'utf8')]);
  if (made.status === 'rejected') throw made.reason;
  const hostResolv = resolv.status === 'fulfilled' ? resolv.value : ''; // no host resolv.conf: empty
  const files = { hostname: join(dir, 'hostname'), hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf') };
  const written = await Promise.allSettled([
    writeFile(files.hostname, hostname ? hostname + '\n' : '', { mode: 0o644 }),
    writeFile(files.hosts, hostsFile(hostname, ips), { mode: 0o644 }),
    writeFile(files.resolvConf, resolvConf(dns, hostResolv), { mode: 0o644 }),
  ]);
  for (const r of written) if (r.status === 'rejected') throw r.reason;
  return files;
}
