// Where a process's proportional memory (PSS) goes, by mapping (/proc/PID/smaps), for the density
// benches: a QEMU pod VM's guest RAM (the template file's shared page-cache pages apart from the
// clone's own copy-on-write copies), the TCG translation buffer, heap, libraries; a Node.js
// supervisor's V8 heap and code. Figures in KiB as the kernel gives them.
import { readFileSync } from 'node:fs';

export interface Part { pss: number; rss: number; anon: number; privateDirty: number }
export type Breakdown = Record<string, Part>;

interface Mapping { start: bigint; end: bigint; perms: string; path: string; f: Record<string, number> }

function mappings(pid: number): Mapping[] {
  let text: string;
  try { text = readFileSync(`/proc/${pid}/smaps`, 'utf8'); } catch { return []; }
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      cur = { start: BigInt(`0x${head[1]}`), end: BigInt(`0x${head[2]}`), perms: head[3]!, path: head[4]!.trim(), f: {} };
      out.push(cur);
      continue;
    }
    const kv = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (kv && cur) cur.f[kv[1]!] = Number(kv[2]);
  }
  return out;
}

/**
 * Names a mapping's part: `guestMiB` sizes the guest RAM (a booted VM's anonymous or memfd RAM
 * is the one mapping of that size); a template file (`.../templates/<key>/memory`) is split into
 * its shared file pages and the clone's own copies (Anonymous).
 */
function partOf(m: Mapping, guestBytes: bigint | undefined): string[] {
  const size = m.end - m.start;
  const p = m.path;
  if (/\/templates\/[^/]+\/memory( \(deleted\))?$/.test(p)) return ['guest RAM: template file pages', 'guest RAM: own copies (CoW)'];
  if (guestBytes !== undefined && size === guestBytes) return ['guest RAM (anon/memfd)'];
  if (p.startsWith('memfd:')) return [`memfd ${p.slice(6, 30)}`];
  if (p === '[heap]') return ['heap'];
  if (p === '[stack]') return ['stack'];
  if (p.startsWith('[')) return [p];
  if (/\.so(\.|$)/.test(p)) return ['libraries'];
  if (p.startsWith('/')) return [`file ${p.split('/').at(-1)}`];
  // anonymous: executable (TCG's code_gen_buffer; V8's code space) or data
  if (m.perms.includes('x')) return ['anon rwx (TCG translation buffer / JIT code)'];
  if (size >= 64n << 20n) return ['anon >= 64 MiB'];
  return ['anon other (malloc arenas, V8 heap)'];
}

export function breakdown(pid: number, guestMiB?: number): Breakdown {
  const guest = guestMiB !== undefined ? BigInt(guestMiB) << 20n : undefined;
  const out: Breakdown = {};
  const add = (k: string, pss: number, rss: number, anon: number, pd: number): void => {
    const p = (out[k] ??= { pss: 0, rss: 0, anon: 0, privateDirty: 0 });
    p.pss += pss; p.rss += rss; p.anon += anon; p.privateDirty += pd;
  };
  for (const m of mappings(pid)) {
    const parts = partOf(m, guest);
    const pss = m.f.Pss ?? 0, rss = m.f.Rss ?? 0, anon = m.f.Anonymous ?? 0, pd = m.f.Private_Dirty ?? 0;
    if (parts.length === 2) {
      // Pss_Anon (5.x+) is the copies' share; the rest is the file's pages divided among their mappers.
      // Pages the host's KSM merged are anonymous but shared: then only the private ones are the
      // clone's own, and the merged ones' share goes with the file's pages
      const ksm = m.f.KSM ?? 0;
      const pssAnon = m.f.Pss_Anon ?? (ksm > 0 ? pd : anon);
      add(ksm > 0 ? `${parts[0]!} + KSM-merged copies` : parts[0]!, pss - pssAnon, rss - (ksm > 0 ? pd : anon), ksm > 0 ? anon - pd : 0, 0);
      add(parts[1]!, pssAnon, ksm > 0 ? pd : anon, ksm > 0 ? pd : anon, pd);
    } else {
      add(parts[0]!, pss, rss, anon, pd);
    }
  }
  return out;
}

/** Adds `b` into `into` (for totals over pods). */
export function addInto(into: Breakdown, b: Breakdown): void {
  for (const [k, v] of Object.entries(b)) {
    const p = (into[k] ??= { pss: 0, rss: 0, anon: 0, privateDirty: 0 });
    p.pss += v.pss; p.rss += v.rss; p.anon += v.anon; p.privateDirty += v.privateDirty;
  }
}

/** Lines of a breakdown, largest PSS first, averaged over `n` (pods): "  part  PSS MiB  (RSS, anon)". */
export function formatBreakdown(b: Breakdown, n = 1, indent = '    '): string[] {
  const mib = (kb: number): string => (kb / 1024 / n).toFixed(1);
  return Object.entries(b).sort((x, y) => y[1].pss - x[1].pss).filter(([, v]) => v.pss / n >= 51.2)
    .map(([k, v]) => `${indent}${k.padEnd(48)}${mib(v.pss).padStart(8)} PSS  (RSS ${mib(v.rss)}, anon ${mib(v.anon)})`);
}
