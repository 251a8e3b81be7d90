// The TCG translation buffer of a template clone (`-accel tcg,tb-size=MiB`, $BULKHEAD_VM_CLONE_TB_MIB):
// what each size costs in latency and saves in memory, in one run. One microvm handler per size (a
// wrapper binary exports the size and runs every create, BULKHEAD_VM_PREPARE=0; start/state/kill/delete run in the daemon), one
// template for all (the size is not part of it). Per round and size, interleaved: `bulkhead run --rm
// --network none IMAGE true` (wall ms) and `run -d IMAGE sleep` (wall ms); then the idle pods' QEMU
// translation buffer (resident) and PSS. Prints figures, asserts nothing.
// With --thp it compares QEMU with and without transparent huge pages under TCG instead (src/vm/qemu.ts
// noThpPrefix; $BULKHEAD_VM_QEMU_THP=1 keeps them), the buffer at its default size.
//
//   node bench/vm-tb.ts [--sizes 0,32,16,8] [--reps 8]      (0 = QEMU's own default: 1 GiB here)
//   node bench/vm-tb.ts --thp [--reps 8]
//
// Needs root, QEMU and the node's guest assets (or BULKHEAD_VM_ASSETS, else the tests' copy).
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { startTestDaemon } from '../harness/daemon.ts';
import { ASSETS } from '../harness/vm-assets.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';
import { readProcs } from '../src/cli/report-density.ts';
import { run } from '../src/util/exec.ts';
import { breakdown } from './smaps.ts';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '0,32,16,8' }, reps: { type: 'string', default: '8' }, thp: { type: 'boolean', default: false } } });

/** One QEMU setting compared: its label, the environment its wrapper exports, and how its QEMU is told apart. */
interface Variant { label: string; env: string; isMine: (pid: number, cmdline: string) => boolean }
const thpOf = (pid: number): number => { try { return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('BULKHEAD_VM_QEMU_THP=1') ? 1 : 0; } catch { return -1; } };
const variants: Variant[] = values.thp
  ? [0, 1].map((t) => ({ label: t ? 'THP' : 'no THP', env: `BULKHEAD_VM_QEMU_THP=${t}`, isMine: (pid: number) => thpOf(pid) === t }))
  : values.sizes.split(',').map((v) => Number(v.trim())).filter((n) => Number.isInteger(n) && n >= 0 && n <= 2048)
    .map((n) => ({ label: n ? String(n) : 'default', env: `BULKHEAD_VM_CLONE_TB_MIB=${n}`, isMine: (_pid: number, cmdline: string) => cmdline.includes(n ? `tcg,tb-size=${n} ` : '-accel tcg ') }));
const sizes = variants.map((_, k) => k);
const reps = Math.max(1, Math.min(50, Number(values.reps) || 8));
const IMAGE = 'bulkhead.local/demo:latest';
const BULKHEAD = new URL('../bin/bulkhead', import.meta.url).pathname;
const VM_BIN = new URL('../bin/bulkhead-vm', import.meta.url).pathname;
process.env.BULKHEAD_VM_IN_PROCESS = '1';
// creates through the wrapper (its environment reaches the pod's supervisor), not in the daemon's process with its standby supervisor
process.env.BULKHEAD_VM_PREPARE = '0';
const wrappers = mkdtempSync('/tmp/bh-vmtb-');
const handler = (s: number): string => `microvm-tb${s}`;
const handlers: Record<string, { backend: string; binary: string; runtime_args: string[] }> = {};
for (const s of sizes) {
  const w = join(wrappers, `bulkhead-vm-tb${s}`);
  writeFileSync(w, `#!/bin/sh\nexport ${variants[s]!.env}\nexec ${VM_BIN} "$@"\n`);
  chmodSync(w, 0o755);
  handlers[handler(s)] = { backend: 'microvm', binary: w, runtime_args: ['--assets', ASSETS] };
}
const d = await startTestDaemon({ name: 'bulkhead-bench-vmtb-', logLevel: 'info', defaultHandler: handler(sizes[0]!), handlers });
const cli = (args: string[]): string[] => ['--root', d.root, '--run-dir', d.runDir, '--socket', d.socket, ...args];
const rm: Record<number, number[]> = {};
const det: Record<number, number[]> = {};
const tb: Record<number, number[]> = {};
const pss: Record<number, number[]> = {};
try {
  const archive = join(d.base, 'demo.tar');
  await writeBusyboxArchive(archive, IMAGE);
  const load = await run(BULKHEAD, cli(['load', '-i', archive]), { timeoutMs: 120_000 });
  if (load.code !== 0) throw new Error(`bulkhead load failed: ${load.stderr.trim()}`);
  const timed = async (args: string[]): Promise<[number, string]> => {
    const t0 = performance.now();
    const r = await run(BULKHEAD, cli(args), { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`bulkhead ${args.join(' ')} failed: ${r.stderr.trim().slice(-500)}`);
    return [performance.now() - t0, r.stdout.trim()];
  };
  // the template is built by the first run
  await timed(['run', '--rm', '--network', 'none', '--isolation', handler(sizes[0]!), IMAGE, 'true']);
  for (let i = 0; i < reps; i++) {
    // a different size goes first each round
    const order = sizes.map((_, k) => sizes[(k + i) % sizes.length]!);
    const ids: [number, string][] = [];
    for (const s of order) {
      (rm[s] ??= []).push((await timed(['run', '--rm', '--network', 'none', '--isolation', handler(s), IMAGE, 'true']))[0]);
      const [ms, id] = await timed(['run', '-d', '--network', 'none', '--isolation', handler(s), IMAGE, 'sleep', '3600']);
      (det[s] ??= []).push(ms);
      ids.push([s, id]);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const procs = await readProcs();
    for (const [s, id] of ids) {
      // the pod's QEMU: the one of this daemon with this variant (one idle pod per variant at a time)
      const q = procs.filter((p) => /^\S*qemu-system/.test(p.cmdline) && p.cmdline.includes(d.runDir) && variants[s]!.isMine(p.pid, p.cmdline)).sort((a, b) => b.pid - a.pid)[0];
      if (!q) continue;
      const b = breakdown(q.pid);
      (tb[s] ??= []).push((b['anon rwx (TCG translation buffer / JIT code)']?.rss ?? 0) / 1024);
      (pss[s] ??= []).push(Object.values(b).reduce((a, v) => a + v.pss, 0) / 1024);
      await run(BULKHEAD, cli(['rm', '-f', id]), { timeoutMs: 120_000 });
    }
    process.stderr.write(`round ${i + 1}/${reps}: ${order.map((s) => `${variants[s]!.label}: rm ${rm[s]!.at(-1)!.toFixed(0)} ms, -d ${det[s]!.at(-1)!.toFixed(0)} ms, TB ${tb[s]?.at(-1)?.toFixed(0) ?? '?'} MiB`).join('; ')}\n`);
  }
} finally {
  await d.close();
  rmSync(wrappers, { recursive: true, force: true });
}
const med = (v: number[] | undefined): string => (v?.length ? [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!.toFixed(0) : '-');
console.log(values.thp
  ? `\nQEMU with and without transparent huge pages (TCG clones, ${reps} interleaved rounds; medians)`
  : `\nclone TCG translation buffer size vs latency and memory (TCG, ${reps} interleaved rounds; medians)`);
console.log(`${(values.thp ? 'QEMU' : 'tb-size').padEnd(10)}${'run --rm ms'.padStart(12)}${'run -d ms'.padStart(11)}${'TB resident MiB'.padStart(17)}${'QEMU PSS MiB'.padStart(14)}`);
for (const s of sizes) console.log(`${variants[s]!.label.padEnd(10)}${med(rm[s]).padStart(12)}${med(det[s]).padStart(11)}${med(tb[s]).padStart(17)}${med(pss[s]).padStart(14)}`);
