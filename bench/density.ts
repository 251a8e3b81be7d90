// Density: N idle pods at once per handler (`bulkhead run -d IMAGE sleep`, as `bulkhead report`
// does), the proportional memory (PSS) of everything each pod adds to the node, and how long pods
// take to start as the node fills: p50/p99 over the N starts and the Nth pod's. Then every pod is
// removed and the node checked for what is left (processes, mounts, cgroups naming a pod).
// The measuring is src/cli/report-density.ts's (the same numbers `bulkhead report` records).
//
//   node bench/density.ts [--handlers runc,gvisor] [--pods N] [--settle-ms MS] [--vm-supervisor pod|node]
//                         [--network none|bridge] [--breakdown] [--dump-smaps DIR] [--hold-ms MS]
//
// A warm-up pod is started and removed first (a microVM template is built then); the paths under the
// daemon's root and run dir, /dev/shm and /run/netns after it are the baseline: what is new after the
// measured pods' removal was left behind. Host MemAvailable is printed before and after.
// --breakdown: each pod's PSS by process kind and, within each, by mapping (bench/smaps.ts: guest RAM
// shared vs copied, TCG translation buffer, heap, libraries); --dump-smaps copies pod 1's smaps;
// --hold-ms keeps the pods running that long after measuring (to look at them).
//
// N defaults to 20 for runc and gVisor and 10 for microvm (issue #13); on a loaded host pass a
// smaller --pods and say so with the figures.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Writable } from 'node:stream';
import { startTestDaemon } from '../harness/daemon.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';
import { measureDensity, netnsPrefix, processName, type DensityReport, type ProcInfo } from '../src/cli/report-density.ts';
import type { CommandContext, GlobalOptions } from '../src/cli/command.ts';
import { runWith, type RunRequest } from '../src/cli/run.ts';
import { run } from '../src/util/exec.ts';
import { trimIdleMs } from '../src/vm/tb-trim.ts';
import { addInto, breakdown, formatBreakdown, type Breakdown } from './smaps.ts';

const { values } = parseArgs({
  options: {
    handlers: { type: 'string', default: 'runc,gvisor' },
    pods: { type: 'string' },
    // how long the pods idle before they are measured: 3 s; microvm: the idle translation trim's quiet
    // time (src/vm/tb-trim.ts, $BULKHEAD_VM_TB_TRIM_IDLE_MS, which the daemon inherits) + 3 s, so an
    // idle pod is measured as it stays; --settle-ms 3000 measures microVM pods just started
    'settle-ms': { type: 'string', default: '' },
    // microvm: one supervisor for the node (node, bulkhead-vm's default) or one per pod (pod: bulkhead-vm --supervisor pod)
    'vm-supervisor': { type: 'string', default: 'node' },
    // where each pod's PSS goes: per process kind, and within QEMU and Node.js by mapping (bench/smaps.ts)
    breakdown: { type: 'boolean', default: false },
    // copies the first pod's processes' /proc/PID/smaps (and cmdline) into DIR
    'dump-smaps': { type: 'string' },
    'hold-ms': { type: 'string', default: '0' },
    // bridge: each pod gets an address from the node's pool (the IP pool, taps and routes at scale)
    network: { type: 'string', default: 'none' },
  },
});
if (!['pod', 'node'].includes(values['vm-supervisor'])) throw new Error('--vm-supervisor must be pod or node');
if (!['none', 'bridge'].includes(values.network)) throw new Error('--network must be none or bridge');
// the daemon's runtime calls inherit it (conmon passes its environment to bulkhead-vm)
process.env.BULKHEAD_VM_SUPERVISOR = values['vm-supervisor'];
// as bin/bulkhead starts a daemon: the Node.js processes it starts (a microVM pod's supervisor) load
// their modules from the compile cache; without it each strips types with WebAssembly (~+20 MiB each)
process.env.NODE_COMPILE_CACHE ??= '/var/cache/bulkhead/node';
const handlers = values.handlers.split(',').map((s) => s.trim()).filter(Boolean);
const podsFor = (h: string): number => {
  const n = values.pods !== undefined ? Number(values.pods) : h === 'microvm' ? 10 : 20;
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error(`--pods must be an integer 1..200, not ${values.pods}`);
  return n;
};
const settleMs = (h: string): number => {
  if (values['settle-ms']) return Math.max(0, Math.min(600_000, Number(values['settle-ms']) || 3000));
  const trim = trimIdleMs();
  return h === 'microvm' && trim > 0 ? trim + 3000 : 3000;
};
const IMAGE = 'bulkhead.local/demo:latest';
const BULKHEAD = new URL('../bin/bulkhead', import.meta.url).pathname;

const table: Record<string, { backend: string }> = {};
for (const h of handlers) table[h] = { backend: h };
const d = await startTestDaemon({ name: 'bulkhead-bench-density-', handlers: table, defaultHandler: handlers[0]!, logLevel: 'info' });
class Discard extends Writable { override _write(_c: Buffer, _e: string, cb: () => void): void { cb(); } }
/** Standby VMM directories (`…/state/standby/<key>-XXXXXX`) a running process names on its command line. */
function liveStandbyDirs(): string[] {
  const dirs = new Set<string>();
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    let cmd = '';
    try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
    for (const m of cmd.matchAll(/(\/[^\0,= ]*\/state\/standby\/[0-9a-f]{12}-[A-Za-z0-9]{6})\//g)) dirs.add(m[1]!);
  }
  return [...dirs];
}

const results: { handler: string; r: DensityReport; parts?: string[]; warmupMs?: number; memAvail: [number, number, number]; left: string[] }[] = [];

/** MemAvailable of the host, bytes. */
const memAvailable = (): number => Number(/^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024;
/**
 * What a pod could leave behind that the by-id check (processes, mounts, cgroups naming a pod) does
 * not see: every path under the daemon's root and run dir, the entries of /dev/shm and /run/netns.
 */
function paths(mine: (name: string) => boolean = () => true): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string, depth: number): void => {
    let ents;
    try { ents = readdirSync(dir, { withFileTypes: true }); } catch { return; }
    for (const e of ents) {
      const p = join(dir, e.name);
      out.add(p);
      // never into a mount another filesystem holds (a pod's netns file, a share)
      if (e.isDirectory() && depth < 12) walk(p, depth + 1);
    }
  };
  walk(d.root, 0);
  if (d.runDir !== d.root) walk(d.runDir, 0);
  try { for (const n of readdirSync('/dev/shm')) out.add(join('/dev/shm', n)); } catch { /* none */ }
  // other tenants share /run/netns: only names made for this run's pods
  try { for (const n of readdirSync('/run/netns')) if (mine(n)) out.add(join('/run/netns', n)); } catch { /* none */ }
  return out;
}
/** Per pod: PSS by process kind, and by mapping within each kind, averaged over the pods. */
function podBreakdown(pods: { pids: number[] }[], procs: readonly ProcInfo[]): string[] {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const kinds = new Map<string, { pss: number; count: number; parts: Breakdown }>();
  for (const pod of pods) {
    for (const pid of pod.pids) {
      const p = byPid.get(pid);
      const name = processName(p) ?? String(pid);
      const guest = /(?:^| )-m (\d+)M/.exec(p?.cmdline ?? '')?.[1];
      const b = breakdown(pid, guest ? Number(guest) : undefined);
      const k = kinds.get(name) ?? { pss: 0, count: 0, parts: {} };
      k.count++;
      k.pss += Object.values(b).reduce((a, v) => a + v.pss, 0);
      addInto(k.parts, b);
      kinds.set(name, k);
    }
  }
  const n = Math.max(1, pods.length);
  const dump = values['dump-smaps'];
  if (dump) {
    mkdirSync(dump, { recursive: true });
    for (const pid of pods[0]?.pids ?? []) {
      try { writeFileSync(join(dump, `${pid}-${processName(byPid.get(pid))}.smaps`), `${byPid.get(pid)?.cmdline}\n${readFileSync(`/proc/${pid}/smaps`, 'utf8')}`); } catch { /* gone */ }
    }
  }
  const out: string[] = [];
  for (const [name, k] of [...kinds].sort((a, b) => b[1].pss - a[1].pss)) {
    out.push(`  ${name} (${(k.count / n).toFixed(1)} per pod): ${(k.pss / 1024 / n).toFixed(1)} MiB PSS per pod`);
    if (k.pss / n >= 1024) out.push(...formatBreakdown(k.parts, n));
  }
  return out;
}
try {
  const global: GlobalOptions = { root: d.root, runDir: d.runDir, socket: d.socket, config: d.configPath, json: false, debug: false };
  const archive = join(d.base, 'demo.tar');
  await writeBusyboxArchive(archive, IMAGE);
  const load = await run(BULKHEAD, ['--root', d.root, '--run-dir', d.runDir, '--socket', d.socket, 'load', '-i', archive], { timeoutMs: 120_000 });
  if (load.code !== 0) throw new Error(`bulkhead load failed: ${load.stderr.trim()}`);
  const ctx: CommandContext = { global, flags: { quiet: true }, args: [], stdout: new Discard(), stderr: new Discard(), signal: new AbortController().signal };
  const request = (handler: string, i: number): RunRequest => ({
    image: IMAGE, args: ['sleep', '3600'], name: `density-${handler}-${i}`, isolation: handler,
    detach: true, remove: false, interactive: false, tty: false, env: [], volumes: [], publish: [],
    network: values.network, readOnly: false, privileged: false, capAdd: [], capDrop: [], labels: [],
  });
  let warmId: string | undefined;
  for (const handler of handlers) {
    const pods = podsFor(handler);
    warmId = undefined;
    let parts: string[] | undefined;
    // one pod started and removed first: a microVM template is built, images unpacked, caches made;
    // what exists after it is the node's, what appears after the measured pods is left behind
    process.stderr.write(`${handler}: warm-up pod\n`);
    const w0 = performance.now();
    const warm = await runWith(d.client, { ...request(handler, 0), name: `density-${handler}-warmup` }, ctx, { onPod: async (id) => { warmId = id; } });
    if (warm !== 0) throw new Error(`the warm-up pod did not start (exit ${warm})`);
    const warmupMs = performance.now() - w0;
    if (warmId) await d.client.removePodSandbox(warmId);
    await new Promise((res) => setTimeout(res, 2000));
    const before = paths();
    const memBefore = memAvailable();
    let memRunning = 0;
    const r = await measureDensity({
      inspect: async (p: { pids: number[] }[], procs: readonly ProcInfo[]) => {
        memRunning = memAvailable();
        if (values.breakdown) parts = podBreakdown(p, procs);
        await new Promise((res) => setTimeout(res, Number(values['hold-ms'])));
      },
      client: d.client, ctx, global, pods, daemonPid: d.pid, label: handler, settleMs: settleMs(handler),
      progress: (s) => process.stderr.write(s + '\n'), request: (i) => request(handler, i),
    });
    const memAfter = memAvailable();
    // files: a few seconds for asynchronous cleanup (log rotation, a supervisor's last rm)
    let left: string[] = [];
    for (let i = 0; i < 10; i++) {
      const prefixes = r.podIds.map(netnsPrefix);
      const now = paths((n) => prefixes.some((p) => n.startsWith(p)));
      // a standby VMM the node-wide host keeps for the template's next pod (src/vm/standby-vmm.ts) is the
      // node's, as the template is: its directory counts as left only once no live QEMU names it
      const live = liveStandbyDirs();
      left = [...now].filter((p) => !before.has(p) && !live.some((d) => p === d || p.startsWith(`${d}/`)));
      if (!left.length) break;
      await new Promise((res) => setTimeout(res, 1000));
    }
    results.push({ handler, r, warmupMs, memAvail: [memBefore, memRunning, memAfter], left, ...(parts ? { parts } : {}) });
  }
} finally {
  await d.close();
}

const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!; };
const mib = (b: number | undefined): string => (b === undefined ? '-' : (b / 1048576).toFixed(1));
console.log(`\nidle pods per handler (run -d IMAGE sleep, --network ${values.network}; microvm supervisor: ${values['vm-supervisor']}); PSS in MiB, start in ms (after a warm-up pod); ` +
  `measured after ${handlers.map((h) => `${h} ${settleMs(h) / 1000} s`).join(', ')} idle${handlers.includes('microvm') && trimIdleMs() > 0 && !values['settle-ms'] ? ` (microvm: the idle trim waits ${trimIdleMs() / 1000} s)` : ''}`);
console.log(`${'handler'.padEnd(10)}${'pods'.padStart(6)}${'PSS total'.padStart(11)}${'PSS/pod'.padStart(9)}${'start p50'.padStart(11)}${'p99'.padStart(8)}${'Nth pod'.padStart(9)}  left after removal`);
for (const { handler, r, parts, warmupMs, memAvail, left } of results) {
  const ms = r.startSeconds.map((s) => s * 1000);
  const line = `${handler.padEnd(10)}${String(r.perPod.length).padStart(6)}${mib(r.pssTotalBytes).padStart(11)}${mib(r.pssPerPodBytes).padStart(9)}` +
    `${(ms.length ? pct(ms, 50).toFixed(0) : '-').padStart(11)}${(ms.length ? pct(ms, 99).toFixed(0) : '-').padStart(8)}${(r.nthStartSeconds !== undefined ? (r.nthStartSeconds * 1000).toFixed(0) : '-').padStart(9)}` +
    `  ${r.leftovers.length ? r.leftovers.join(', ') : 'nothing'}`;
  console.log(line);
  if (r.error) console.log(`  ${handler}: ${r.error}`);
  console.log(`  ${handler}: warm-up pod ${warmupMs?.toFixed(0)} ms; host MemAvailable before ${mib(memAvail[0])} MiB, with the pods ${mib(memAvail[1])}, after removal ${mib(memAvail[2])}; ` +
    `new paths under the daemon's root/run dir, /dev/shm, /run/netns after removal: ${left.length ? `${left.length}: ${left.slice(0, 10).join(', ')}` : 'none'}`);
  if (r.sharedProcesses?.length) console.log(`  ${handler}: kept for all pods (in the total): ${r.sharedProcesses.join(' ')} ${mib(r.sharedPssBytes)} MiB`);
  const first = r.perPod[0];
  if (first) console.log(`  ${handler}: pod 1's processes: ${first.processes.join(' ')}`);
  if (parts) console.log(`  ${handler}: per pod, by process and mapping (MiB):\n${parts.join('\n')}`);
}
if (process.env.BULKHEAD_BENCH_JSON) await writeFile(process.env.BULKHEAD_BENCH_JSON, JSON.stringify(results, null, 2));
if (results.some(({ r, left }) => r.error || r.leftovers.length || left.length)) process.exitCode = 1;
