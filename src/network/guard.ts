/**
 * Egress guard for untrusted pods, in nftables: one `inet` and one `bridge` table per daemon
 * instance (named bulkhead_<instance>), so instances side by side never touch each other's rules.
 *
 * inet table (routing level, pods identified by source IP; the bridge table makes that safe):
 *   pre (prerouting, after conntrack, before DNAT): packets from an untrusted pod IP that are not
 *       replies to connections the node opened are dropped when addressed to any local address
 *       of the node (fib type local/broadcast/multicast — includes the bridge gateway) or to a
 *       blocked range (169.254.0.0/16 and configured ones).
 *   fwd (forward): traffic entering from a guarded bridge may leave only to a guarded bridge or
 *       to a routed range; nothing is forwarded to external interfaces.
 * bridge table (link level, per pod port, jump via verdict maps keyed by the host-side veth):
 *   in_<k>:  frames from the pod must carry its MAC, ARP must carry its MAC/IP, IPv4 its IP;
 *            anything else (IPv6, other ethertypes) is dropped — no spoofing, no ARP poisoning.
 *   out_<k>: frames to the pod must be ARP or IPv4 addressed to its IP — flooded unicast for
 *            other pods never reaches it, so it cannot see their traffic.
 */
import { InternalError } from '../errors.ts';
import { run } from '../util/exec.ts';
import { formatCidr4, type Cidr4 } from './cidr.ts';

export interface GuardedPod {
  /** Short unique key (hex) used in chain names. */
  key: string;
  ip: string;
  mac: string;
  /** Host-side veth of the pod (a port of a bridge). */
  hostVeth: string;
  bridge: string;
}

const NAME = /^[A-Za-z0-9_.-]{1,15}$/;

export class EgressGuard {
  readonly table: string;
  readonly #blocked: Cidr4[];
  readonly #routed: Cidr4[];
  readonly #timeoutMs: number;

  constructor(opts: { instance: string; blocked: Cidr4[]; routed: Cidr4[]; timeoutMs?: number }) {
    if (!/^[a-z0-9_]{1,24}$/.test(opts.instance)) throw new InternalError(`bad guard instance ${opts.instance}`);
    this.table = `bulkhead_${opts.instance}`;
    this.#blocked = opts.blocked;
    this.#routed = opts.routed;
    this.#timeoutMs = opts.timeoutMs ?? 20_000;
  }

  async #nft(script: string, signal: AbortSignal): Promise<void> {
    const r = await run('nft', ['-f', '-'], { input: script, timeoutMs: this.#timeoutMs, signal });
    if (r.code !== 0) throw new InternalError(`nft (table ${this.table}) failed: ${r.stderr.trim()}`);
  }

  /** Creates (or refreshes) the tables, sets and base chains. Idempotent. */
  async ensure(bridge: string, signal: AbortSignal): Promise<void> {
    if (!NAME.test(bridge)) throw new InternalError(`bad bridge name ${bridge}`);
    const t = this.table;
    const elems = (cs: Cidr4[]): string => cs.length ? `add element inet ${t} %s { ${cs.map(formatCidr4).join(', ')} }` : '';
    const lines = [
      `add table inet ${t}`,
      `add set inet ${t} untrusted4 { type ipv4_addr; }`,
      `add set inet ${t} blocked4 { type ipv4_addr; flags interval; auto-merge; }`,
      `add set inet ${t} routed4 { type ipv4_addr; flags interval; auto-merge; }`,
      `add set inet ${t} bridges { type ifname; }`,
      `add element inet ${t} bridges { "${bridge}" }`,
      `flush set inet ${t} blocked4`,
      elems(this.#blocked).replace('%s', 'blocked4'),
      `flush set inet ${t} routed4`,
      elems(this.#routed).replace('%s', 'routed4'),
      `add chain inet ${t} guard_pre { type filter hook prerouting priority -190; policy accept; }`,
      `flush chain inet ${t} guard_pre`,
      `add rule inet ${t} guard_pre ip saddr != @untrusted4 return`,
      `add rule inet ${t} guard_pre ct state established,related accept`,
      `add rule inet ${t} guard_pre fib daddr type { local, broadcast, multicast, anycast } counter drop`,
      `add rule inet ${t} guard_pre ip daddr @blocked4 counter drop`,
      `add chain inet ${t} guard_fwd { type filter hook forward priority -190; policy accept; }`,
      `flush chain inet ${t} guard_fwd`,
      `add rule inet ${t} guard_fwd iifname != @bridges return`,
      `add rule inet ${t} guard_fwd oifname @bridges accept`,
      `add rule inet ${t} guard_fwd ip daddr @routed4 accept`,
      `add rule inet ${t} guard_fwd counter drop`,
      `add table bridge ${t}`,
      `add map bridge ${t} inports { type ifname : verdict; }`,
      `add map bridge ${t} outports { type ifname : verdict; }`,
      `add chain bridge ${t} guard_pre { type filter hook prerouting priority -300; policy accept; }`,
      `flush chain bridge ${t} guard_pre`,
      `add rule bridge ${t} guard_pre iifname vmap @inports`,
      `add chain bridge ${t} guard_fwd { type filter hook forward priority -300; policy accept; }`,
      `flush chain bridge ${t} guard_fwd`,
      `add rule bridge ${t} guard_fwd oifname vmap @outports`,
      `add chain bridge ${t} guard_out { type filter hook output priority -300; policy accept; }`,
      `flush chain bridge ${t} guard_out`,
      `add rule bridge ${t} guard_out oifname vmap @outports`,
    ];
    await this.#nft(lines.filter(Boolean).join('\n') + '\n', signal);
  }

  /** Installs the rules of one untrusted pod (atomically). */
  async addPod(p: GuardedPod, signal: AbortSignal): Promise<void> {
    check(p);
    await this.ensure(p.bridge, signal);
    const t = this.table;
    const i = `in_${p.key}`;
    const o = `out_${p.key}`;
    const lines = [
      `add chain bridge ${t} ${i}`,
      `flush chain bridge ${t} ${i}`,
      `add rule bridge ${t} ${i} ether saddr != ${p.mac} counter drop`,
      `add rule bridge ${t} ${i} ether type arp arp saddr ether != ${p.mac} counter drop`,
      `add rule bridge ${t} ${i} ether type arp arp saddr ip != ${p.ip} counter drop`,
      `add rule bridge ${t} ${i} ether type arp accept`,
      `add rule bridge ${t} ${i} ether type ip ip saddr != ${p.ip} counter drop`,
      `add rule bridge ${t} ${i} ether type ip accept`,
      `add rule bridge ${t} ${i} counter drop`,
      `add chain bridge ${t} ${o}`,
      `flush chain bridge ${t} ${o}`,
      `add rule bridge ${t} ${o} ether type arp accept`,
      `add rule bridge ${t} ${o} ether type ip ip daddr ${p.ip} accept`,
      `add rule bridge ${t} ${o} counter drop`,
      `add element bridge ${t} inports { "${p.hostVeth}" : jump ${i} }`,
      `add element bridge ${t} outports { "${p.hostVeth}" : jump ${o} }`,
      `add element inet ${t} untrusted4 { ${p.ip} }`,
    ];
    await this.#nft(lines.join('\n') + '\n', signal);
  }

  /** Removes the rules of one pod; what is already gone is skipped. */
  async removePod(p: GuardedPod, signal: AbortSignal): Promise<void> {
    check(p);
    const t = this.table;
    const have = await this.#list(signal);
    const lines: string[] = [];
    if (have.mapElems.has(`inports/${p.hostVeth}`)) lines.push(`delete element bridge ${t} inports { "${p.hostVeth}" }`);
    if (have.mapElems.has(`outports/${p.hostVeth}`)) lines.push(`delete element bridge ${t} outports { "${p.hostVeth}" }`);
    for (const c of [`in_${p.key}`, `out_${p.key}`]) if (have.bridgeChains.has(c)) lines.push(`flush chain bridge ${t} ${c}`, `delete chain bridge ${t} ${c}`);
    if (have.untrusted.has(p.ip)) lines.push(`delete element inet ${t} untrusted4 { ${p.ip} }`);
    if (lines.length) await this.#nft(lines.join('\n') + '\n', signal);
  }

  /** Whether any pod still has rules (used before dropping the tables). */
  async podCount(signal: AbortSignal): Promise<number> {
    return (await this.#list(signal)).untrusted.size;
  }

  /** Deletes both tables of this instance (missing ones are fine). */
  async removeAll(signal: AbortSignal): Promise<void> {
    const have = await this.#list(signal);
    const lines: string[] = [];
    if (have.inet) lines.push(`delete table inet ${this.table}`);
    if (have.bridge) lines.push(`delete table bridge ${this.table}`);
    if (lines.length) await this.#nft(lines.join('\n') + '\n', signal);
  }

  /** The whole ruleset text of this instance's tables ("" when none), for tests and debugging. */
  async dump(signal: AbortSignal): Promise<string> {
    let out = '';
    for (const fam of ['inet', 'bridge']) {
      const r = await run('nft', ['list', 'table', fam, this.table], { timeoutMs: this.#timeoutMs, signal });
      if (r.code === 0) out += r.stdout;
    }
    return out;
  }

  async #list(signal: AbortSignal): Promise<{ inet: boolean; bridge: boolean; bridgeChains: Set<string>; mapElems: Set<string>; untrusted: Set<string> }> {
    const res = { inet: false, bridge: false, bridgeChains: new Set<string>(), mapElems: new Set<string>(), untrusted: new Set<string>() };
    for (const fam of ['inet', 'bridge'] as const) {
      const r = await run('nft', ['-j', 'list', 'table', fam, this.table], { timeoutMs: this.#timeoutMs, signal });
      if (r.code !== 0) {
        if (/No such file or directory/.test(r.stderr)) continue;
        throw new InternalError(`nft list table ${fam} ${this.table}: ${r.stderr.trim()}`);
      }
      res[fam] = true;
      const doc = JSON.parse(r.stdout) as { nftables: Record<string, { name?: string; elem?: unknown[] }>[] };
      for (const item of doc.nftables) {
        if (fam === 'bridge' && item.chain?.name) res.bridgeChains.add(item.chain.name);
        const m = item.map ?? item.set;
        if (!m?.elem) continue;
        for (const e of m.elem) {
          if (fam === 'bridge' && Array.isArray(e) && typeof e[0] === 'string') res.mapElems.add(`${m.name}/${e[0]}`);
          if (fam === 'inet' && m.name === 'untrusted4' && typeof e === 'string') res.untrusted.add(e);
        }
      }
    }
    return res;
  }
}

function check(p: GuardedPod): void {
  if (!/^[a-f0-9]{4,24}$/.test(p.key) || !/^\d{1,3}(\.\d{1,3}){3}$/.test(p.ip) || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(p.mac) || !NAME.test(p.hostVeth) || !NAME.test(p.bridge)) {
    throw new InternalError(`egress guard: bad pod description ${JSON.stringify(p)}`);
  }
}
