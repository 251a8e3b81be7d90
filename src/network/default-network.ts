/**
 * The default network, written on first start when the CNI config dir has no network: a bridge
 * with a name unique to this instance, a private /24 that collides with no route or address on
 * this host, host-local IPAM, portmap for hostPorts, tuning to switch IPv6 off in the pod.
 *
 * The bridge is NOT a CNI gateway (isGateway=false): the bridge plugin would switch on IPv4
 * forwarding for the whole host. Instead the top-level "bulkhead" key records the bridge and
 * gateway, and ensureManagedBridge() creates the bridge with that address itself, with IPv6 off
 * and forwarding off on the bridge unless routed ranges are configured. Pods reach each other
 * and the host; nothing is masqueraded or forwarded to the outside.
 */
import { createHash, randomInt } from 'node:crypto';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, ResourceExhaustedError } from '../errors.ts';
import { cidrHost, cidrsOverlap, formatCidr4, formatIp4, parseCidr4, type Cidr4 } from './cidr.ts';
import type { CniNetworkList } from './cni.ts';
import { ip, ipJson, linkExists, setIfSysctl, usedPrefixes4 } from './host.ts';

export const DEFAULT_NETWORK_NAME = 'bulkhead';
export const DEFAULT_CONF_FILE = '10-bulkhead.conflist';

/** What the "bulkhead" key of a conflist says about a bridge Bulkhead manages itself. */
export interface ManagedBridge {
  bridge: string;
  /** Gateway address with prefix, e.g. "10.77.3.1/24". */
  gateway: string;
}

export function managedBridgeOf(list: CniNetworkList): ManagedBridge | undefined {
  const m = list.raw.bulkhead as { bridge?: unknown; gateway?: unknown } | undefined;
  if (!m || typeof m !== 'object') return undefined;
  if (typeof m.bridge !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(m.bridge) || typeof m.gateway !== 'string') {
    throw new InvalidArgumentError(`CNI config ${list.file}: "bulkhead" needs "bridge" (interface name) and "gateway" (address/prefix)`);
  }
  parseCidr4(m.gateway, { allowHostBits: true });
  return { bridge: m.bridge, gateway: m.gateway };
}

/** Picks a free 10.x.y.0/24 that overlaps nothing in `used` nor `avoid`. */
export function chooseSubnet(used: Cidr4[], avoid: Cidr4[], rand: (n: number) => number = randomInt): Cidr4 {
  for (let i = 0; i < 500; i++) {
    const c: Cidr4 = { base: (10 * 2 ** 24) + (rand(190) + 64) * 2 ** 16 + rand(256) * 2 ** 8, prefix: 24 };
    if (!used.some((u) => cidrsOverlap(u, c)) && !avoid.some((u) => cidrsOverlap(u, c))) return c;
  }
  throw new ResourceExhaustedError('no free private /24 for the pod network; set network.subnet');
}

export function defaultConflist(opts: { bridge: string; subnet: Cidr4; ipamDir: string }): Record<string, unknown> {
  const gw = formatIp4(cidrHost(opts.subnet, 1));
  return {
    cniVersion: '1.0.0',
    name: DEFAULT_NETWORK_NAME,
    bulkhead: { bridge: opts.bridge, gateway: `${gw}/${opts.subnet.prefix}` },
    plugins: [
      {
        type: 'bridge',
        bridge: opts.bridge,
        isGateway: false,
        ipMasq: false,
        hairpinMode: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: formatCidr4(opts.subnet), gateway: gw }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: opts.ipamDir,
        },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
      { type: 'tuning', sysctl: { 'net.ipv6.conf.eth0.disable_ipv6': '1' } },
    ],
  };
}

/**
 * Writes the default conflist into confDir when it holds no network config. Returns the file
 * written, or undefined when a config was already there.
 */
export async function writeDefaultNetwork(opts: { confDir: string; cacheDir: string; bridge: string; subnet: Cidr4 | null; avoid: Cidr4[] }, signal: AbortSignal): Promise<string | undefined> {
  await mkdir(opts.confDir, { recursive: true });
  if ((await readdir(opts.confDir)).some((n) => /\.(conflist|conf|json)$/.test(n))) return undefined;
  let subnet = opts.subnet;
  if (!subnet) {
    const used = (await usedPrefixes4(signal)).flatMap((p) => { try { return [parseCidr4(p, { allowHostBits: true })]; } catch { return []; } });
    subnet = chooseSubnet(used, opts.avoid);
  }
  const doc = defaultConflist({ bridge: opts.bridge, subnet, ipamDir: join(opts.cacheDir, 'ipam') });
  const file = join(opts.confDir, DEFAULT_CONF_FILE);
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(doc, null, 2) + '\n', { mode: 0o644 });
  await rename(tmp, file);
  return file;
}

/** Creates the managed bridge with its gateway address (idempotent); IPv6 off; forwarding as asked. */
export async function ensureManagedBridge(m: ManagedBridge, forwarding: boolean, signal: AbortSignal): Promise<void> {
  if (!(await linkExists(m.bridge, signal))) {
    try {
      // A fixed MAC: otherwise the bridge takes the lowest port MAC and changes as pods come
      // and go (and CNI CHECK of the bridge plugin fails).
      const mac = '02:' + createHash('sha256').update(m.bridge).digest('hex').slice(0, 10).match(/../g)!.join(':');
      await ip(['link', 'add', 'name', m.bridge, 'address', mac, 'type', 'bridge'], signal);
    } catch (err) {
      if (!(await linkExists(m.bridge, signal))) throw err; // else created concurrently
    }
  }
  await setIfSysctl('ipv6', m.bridge, 'disable_ipv6', '1');
  const addrs = await ipJson<{ addr_info?: { local?: string; prefixlen?: number }[] }[]>(['-4', 'addr', 'show', 'dev', m.bridge], signal);
  const have = addrs.flatMap((a) => (a.addr_info ?? []).map((i) => `${i.local}/${i.prefixlen}`));
  if (!have.includes(m.gateway)) {
    try {
      await ip(['addr', 'add', m.gateway, 'dev', m.bridge], signal);
    } catch (err) {
      if (!/File exists/.test((err as Error).message)) throw err; // added concurrently
    }
  }
  await setIfSysctl('ipv4', m.bridge, 'forwarding', forwarding ? '1' : '0');
  await ip(['link', 'set', m.bridge, 'up'], signal);
}

/** Removes the managed bridge (when no pod uses it any more). */
export async function removeManagedBridge(m: ManagedBridge, signal: AbortSignal): Promise<void> {
  if (await linkExists(m.bridge, signal)) await ip(['link', 'delete', m.bridge], signal);
}
