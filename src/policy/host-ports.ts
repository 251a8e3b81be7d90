/**
 * Which host ports a host process already serves, from the kernel's socket tables of the daemon's
 * network namespace (the host's): /proc/net/{tcp,tcp6,udp,udp6}. A pod publishing one of them
 * through the CNI portmap plugin would get that service's connections (its DNAT rules win over
 * the listening socket, for the node's addresses and, with route_localnet, for 127.0.0.1), so the
 * node refuses such a hostPort for every trust level. Only port numbers are read; nothing of the
 * tables is ever echoed.
 */
import { readFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';

export interface ListeningPorts { tcp: Set<number>; udp: Set<number> }

const TCP_LISTEN = '0A';
/** An unconnected (bound, serving) UDP socket shows state 07 (TCP_CLOSE). */
const UDP_UNCONNECTED = '07';

/** Local ports in one /proc/net table whose socket state is `state`. */
export function portsInTable(text: string, state: string): number[] {
  const out: number[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== state) continue;
    const colon = f[1]!.lastIndexOf(':');
    const port = Number.parseInt(f[1]!.slice(colon + 1), 16);
    if (colon > 0 && Number.isInteger(port) && port > 0) out.push(port);
  }
  return out;
}

async function readTable(path: string): Promise<string> {
  try { return await readFile(path, 'utf8'); } catch { return ''; } // no IPv6: no tcp6 table
}

/** The ports host processes listen on (TCP) or serve (UDP), v4 and v6. */
export async function listeningPorts(procNet = '/proc/net'): Promise<ListeningPorts> {
  const [tcp, tcp6, udp, udp6] = await Promise.all(['tcp', 'tcp6', 'udp', 'udp6'].map((t) => readTable(`${procNet}/${t}`)));
  return {
    tcp: new Set([...portsInTable(tcp!, TCP_LISTEN), ...portsInTable(tcp6!, TCP_LISTEN)]),
    udp: new Set([...portsInTable(udp!, UDP_UNCONNECTED), ...portsInTable(udp6!, UDP_UNCONNECTED)]),
  };
}

/** A probe over one snapshot; SCTP is not read (no table without the module) and counts as free. */
export function hostPortProbe(ports: ListeningPorts): (port: number, protocol: 'tcp' | 'udp' | 'sctp') => boolean {
  return (port, protocol) => (protocol === 'tcp' ? ports.tcp.has(port) : protocol === 'udp' ? ports.udp.has(port) : false);
}

// ---------------------------------------------------------------------------------------------
// Port mappings' host_ip

/** An IP in one spelling (IPv6 compressed, lower case); undefined when not an IP address. */
export function canonicalIp(ip: string): string | undefined {
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip) || ip.includes('%')) return undefined;
  try { return new URL(`http://[${ip}]/`).hostname.slice(1, -1); } catch { return undefined; }
}

/** The node's own addresses (every interface of the daemon's network namespace; loopback and link-local left out). */
export function nodeAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      const c = canonicalIp(a.address);
      // link-local addresses are per link (and 169.254.169.254 is the metadata service's)
      if (c !== undefined && !/^(169\.254\.|fe[89ab][0-9a-f]:)/.test(c)) out.add(c);
    }
  }
  return out;
}

/**
 * Why a port mapping's host_ip is refused (undefined = allowed): it must be empty, a wildcard
 * (0.0.0.0, ::, what empty means) or one of the node's own non-loopback addresses. Anything else
 * would have the portmap plugin DNAT traffic for an address that is not the node's (another
 * host's, a service VIP, the metadata service) or for loopback (node-local services).
 */
export function hostIpProblem(hostIp: string, addrs: ReadonlySet<string>): string | undefined {
  if (hostIp === '') return undefined;
  const c = canonicalIp(hostIp);
  if (c === undefined) return `host_ip ${JSON.stringify(hostIp.slice(0, 64))} is not an IP address`;
  if (c === '0.0.0.0' || c === '::') return undefined;
  if (!addrs.has(c)) return `host_ip ${c} is not an address of this node (leave it empty to publish on every node address)`;
  return undefined;
}
