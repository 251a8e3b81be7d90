// microVM templates (src/vm/template.ts): `bulkhead run --rm --network none IMAGE true` on a microvm
// handler whose pod VMs are clones of a template, against one whose VMs boot (`--template-sharing
// none`), interleaved per round on one daemon; then the proportional memory (PSS) of N idle pods of
// each (bench/density.ts's measuring, src/cli/report-density.ts). The first templated run builds
// the template and is reported on its own. Prints figures, asserts nothing.
//
//   node bench/vm-template.ts [--reps 10] [--pods 10] [--skip density-cold,cold,nosandbox] [--trace] [--phases]
//                             [--baseline TREE [--baseline-assets ROOT]] [--keep-phases FILE] [--gap MS]
//
// Three handlers per round: `template` (clones; the template holds the sandbox container already
// started, template-sandbox.ts), `nosandbox` (clones of a template without it: --template-sandbox
// off) and `cold` (booted; --skip cold leaves it out).
//
// --trace: the templated handler runs bulkhead-vm through a wrapper that logs each call (subcommand,
// wall ms); prints the calls of the last templated run and the per-subcommand counts over all rounds.
//
// --phases: where a templated run's time goes: each process of the pod VM writes its steps with
// timestamps ($BULKHEAD_VM_TRACE, src/vm/trace.ts), merged with the daemon's RPC spans (debug log)
// and the CLI's exec and exit; prints the steps of the last templated run and each step's median
// offset from the CLI's exec over all templated rounds.
//
// --baseline TREE: a second daemon from another checkout (e.g. `git archive main | tar -x -C DIR`,
// node_modules linked), whose templated handler runs interleaved with this tree's in every round
// (`baseline`): before/after in one run. Its guest assets: --baseline-assets (default the node's,
// /var/lib/bulkhead). --keep-phases FILE keeps the merged step log (the agent's lines included).
//
// Needs root, QEMU and guest assets built from this tree (BULKHEAD_VM_ASSETS, else the tests' own
// copy, harness/vm-assets.ts). Under TCG a boot is ~4-6 s: 10 reps take a few minutes.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { startTestDaemon } from '../harness/daemon.ts';
import { ASSETS } from '../harness/vm-assets.ts';
import { writeBusyboxArchive } from '../src/cli/demo-image.ts';
import { measureDensity, type DensityReport } from '../src/cli/report-density.ts';
import type { CommandContext, GlobalOptions } from '../src/cli/command.ts';
import type { RunRequest } from '../src/cli/run.ts';
import { run } from '../src/util/exec.ts';
import { waitingStandby } from '../src/vm/standby-vmm.ts';
import { trimIdleMs } from '../src/vm/tb-trim.ts';

const { values } = parseArgs({ options: { reps: { type: 'string', default: '10' }, pods: { type: 'string', default: '10' }, skip: { type: 'string', default: '' }, trace: { type: 'boolean', default: false }, phases: { type: 'boolean', default: false }, baseline: { type: 'string' }, 'baseline-assets': { type: 'string', default: '/var/lib/bulkhead' }, 'keep-phases': { type: 'string' }, gap: { type: 'string', default: '0' } } });
const reps = Math.max(1, Math.min(50, Number(values.reps) || 10));
const pods = Math.max(1, Math.min(30, Number(values.pods) || 10));
const skip = new Set(values.skip.split(',').map((s) => s.trim()).filter(Boolean));
const IMAGE = 'bulkhead.local/demo:latest';
const BULKHEAD = new URL('../bin/bulkhead', import.meta.url).pathname;
// nosandbox: clones of a template without the sandbox container (--template-sandbox off): the A/B of template-sandbox.ts
const HANDLERS = { template: 'microvm', nosandbox: 'microvm-nosb', cold: 'microvm-cold' } as const;

const VM_BIN = new URL('../bin/bulkhead-vm', import.meta.url).pathname;
// the wrapper the daemon and conmon run as the templated handler's runtime (--trace); its log
const traceDir = values.trace ? (await import('node:fs')).mkdtempSync('/tmp/bh-vmtrace-') : '';
const traceLog = join(traceDir, 'calls.log');
if (values.trace) {
  // the wrapper is the handler's binary: keep start/state/kill/delete in the daemon as without it (=0 to compare)
  process.env.BULKHEAD_VM_IN_PROCESS ??= '1';
  const wrapper = join(traceDir, 'bulkhead-vm');
  writeFileSync(wrapper, `#!/bin/bash\nt0=$(date +%s%N)\n${VM_BIN} "$@"\nrc=$?\nt1=$(date +%s%N)\nsub=; for a in "$@"; do case "$a" in create|start|state|kill|delete|exec|stats|update) sub=$a; break;; esac; done\necho "$(( t0/1000000 )) $(( (t1-t0)/1000000 )) $rc $sub" >> ${traceLog}\nexit $rc\n`);
  chmodSync(wrapper, 0o755);
}
const traced = (): { at: number; ms: number; rc: number; sub: string }[] => {
  if (!values.trace) return [];
  try {
    return readFileSync(traceLog, 'utf8').trim().split('\n').filter(Boolean).map((l) => { const [at, ms, rc, sub] = l.split(' '); return { at: Number(at), ms: Number(ms), rc: Number(rc), sub: sub ?? '?' }; });
  } catch { return []; }
};
// --phases: every process of the daemons' pod VMs appends its steps here (inherited through the environment);
// the baseline's runs too (runs never overlap: each run's steps are told apart by their time)
const phaseFile = values.phases ? join((await import('node:fs')).mkdtempSync('/tmp/bh-vmphases-'), 'steps.log') : '';
if (phaseFile) process.env.BULKHEAD_VM_TRACE = phaseFile;
const base = values.baseline ? await (await import(join(values.baseline, 'harness/daemon.ts')) as typeof import('../harness/daemon.ts')).startTestDaemon({
  name: 'bulkhead-bench-vmtpl-base-', defaultHandler: HANDLERS.template,
  handlers: { [HANDLERS.template]: { backend: 'microvm', runtime_args: ['--assets', values['baseline-assets']] } },
}) : undefined;
const d = await startTestDaemon({
  name: 'bulkhead-bench-vmtpl-', logLevel: values.phases ? 'debug' : 'info', defaultHandler: HANDLERS.template,
  handlers: {
    [HANDLERS.template]: { backend: 'microvm', runtime_args: ['--assets', ASSETS], ...(values.trace ? { binary: join(traceDir, 'bulkhead-vm') } : {}) },
    [HANDLERS.nosandbox]: { backend: 'microvm', runtime_args: ['--assets', ASSETS, '--template-sandbox', 'off'] },
    [HANDLERS.cold]: { backend: 'microvm', runtime_args: ['--assets', ASSETS, '--template-sharing', 'none'] },
  },
});
const cli = (args: string[]): string[] => ['--root', d.root, '--run-dir', d.runDir, '--socket', d.socket, ...args];
let lastCpu = 0;
const cpu: Record<'template' | 'baseline', number[]> = { template: [], baseline: [] };
/**
 * CPU time (ms) of the clone QEMU a run starts under `dir` (its command line names the daemon's
 * base dir and `-incoming`), sampled from /proc every 20 ms until stop(): the guest's own cost,
 * which a loaded host's wall times hide. The last ≤ 20 ms before QEMU exits are not seen.
 */
function cloneCpu(dir: string): { stop(): number } {
  const last = new Map<string, number>();
  const skip = new Set<string>();
  const sample = (): void => {
    for (const n of readdirSync('/proc')) {
      if (!/^\d+$/.test(n) || skip.has(n)) continue;
      try {
        if (!last.has(n)) {
          const cmd = readFileSync(`/proc/${n}/cmdline`, 'utf8');
          // QEMU is exec'd through setpriv and perl (qemu.ts): looked at again until it is QEMU
          // a standby clone VMM not adopted yet is no run's (looked at again: once adopted, its CPU since its spawn is the clone's)
          if (!cmd.startsWith('qemu-system') || !cmd.includes(dir) || !cmd.includes('-incoming') || waitingStandby(cmd)) { if (!cmd.includes('qemu-system')) skip.add(n); continue; }
        }
        const f = readFileSync(`/proc/${n}/stat`, 'utf8').split(') ')[1]!.split(' ');
        last.set(n, (Number(f[11]) + Number(f[12])) * 10);
      } catch { skip.add(n); }
    }
  };
  sample();
  const t = setInterval(sample, 20);
  return { stop: () => { clearInterval(t); sample(); return [...last.values()].reduce((a, b) => a + b, 0); } };
}
const times: Record<'template' | 'baseline' | 'nosandbox' | 'cold', number[]> = { template: [], baseline: [], nosandbox: [], cold: [] };
let firstMs = 0;
const density: { label: string; r: DensityReport }[] = [];
class Discard extends Writable { override _write(_c: Buffer, _e: string, cb: () => void): void { cb(); } }
try {
  const archive = join(d.base, 'demo.tar');
  await writeBusyboxArchive(archive, IMAGE);
  const load = await run(BULKHEAD, cli(['load', '-i', archive]), { timeoutMs: 120_000 });
  if (load.code !== 0) throw new Error(`bulkhead load failed: ${load.stderr.trim()}`);
  const windows: { handler: string; from: number; to: number }[] = [];
  if (base) {
    const l = await run(join(values.baseline!, 'bin/bulkhead'), ['--root', base.root, '--run-dir', base.runDir, '--socket', base.socket, 'load', '-i', archive], { timeoutMs: 120_000 });
    if (l.code !== 0) throw new Error(`bulkhead load (baseline) failed: ${l.stderr.trim()}`);
  }
  const once = async (handler: string, on = d, bin = BULKHEAD): Promise<number> => {
    const t0 = performance.now();
    const sampler = cloneCpu(on.base);
    const r = await run(bin, ['--root', on.root, '--run-dir', on.runDir, '--socket', on.socket, 'run', '--rm', '--network', 'none', '--isolation', handler, IMAGE, 'true'], { timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`bulkhead run --isolation ${handler} failed: ${r.stderr.trim().slice(-500)}`);
    const t1 = performance.now();
    lastCpu = sampler.stop();
    windows.push({ handler: on === d ? handler : 'baseline', from: performance.timeOrigin + t0, to: performance.timeOrigin + t1 });
    // what a run leaves going after the CLI returned (the pod's cleanup) lands before the next one starts
    if (values.phases) await new Promise((r) => setTimeout(r, 300));
    return t1 - t0;
  };
  firstMs = await once(HANDLERS.template);
  process.stderr.write(`first templated run (builds the template): ${firstMs.toFixed(0)} ms\n`);
  const onBase = (): Promise<number> => once(HANDLERS.template, base!, join(values.baseline!, 'bin/bulkhead'));
  if (base) process.stderr.write(`first templated run of the baseline: ${(await onBase()).toFixed(0)} ms\n`);
  // the template without the sandbox container (its first run builds it)
  if (!skip.has('nosandbox')) process.stderr.write(`first run without the sandbox container in the template: ${(await once(HANDLERS.nosandbox)).toFixed(0)} ms\n`);
  let lastCalls: ReturnType<typeof traced> = [];
  const allCalls: ReturnType<typeof traced> = [];
  const gapMs = Math.max(0, Math.min(60_000, Number(values.gap) || 0));
  for (let i = 0; i < reps; i++) {
    // --gap: a pause before each round (runs as a user or a kubelet starts them, not back to back: the
    // node-wide host's warm standby VMM is ready ~1.5 s after the previous clone, standby-vmm.ts)
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
    const before = traced().length;
    // with a baseline, which of the two goes first alternates per round
    if (base && i % 2 === 1) { times.baseline.push(await onBase()); cpu.baseline.push(lastCpu); }
    times.template.push(await once(HANDLERS.template));
    cpu.template.push(lastCpu);
    lastCalls = traced().slice(before);
    allCalls.push(...lastCalls);
    if (base && i % 2 === 0) { times.baseline.push(await onBase()); cpu.baseline.push(lastCpu); }
    if (!skip.has('nosandbox')) times.nosandbox.push(await once(HANDLERS.nosandbox));
    if (!skip.has('cold')) times.cold.push(await once(HANDLERS.cold));
    process.stderr.write(`round ${i + 1}/${reps}: template ${times.template.at(-1)!.toFixed(0)} ms, baseline ${times.baseline.at(-1)?.toFixed(0) ?? '-'} ms, without sandbox ${times.nosandbox.at(-1)?.toFixed(0) ?? '-'} ms, cold ${times.cold.at(-1)?.toFixed(0) ?? '-'} ms (load ${(await import('node:os')).loadavg()[0]!.toFixed(1)})\n`);
  }
  if (values.trace) {
    const t0 = lastCalls[0]?.at ?? 0;
    console.log(`\nbulkhead-vm calls of the last templated run (${lastCalls.length}; start offset ms, wall ms, exit code):`);
    for (const c of lastCalls) console.log(`  +${String(c.at - t0).padStart(5)}  ${String(c.ms).padStart(5)} ms  rc ${c.rc}  ${c.sub}`);
    const all = allCalls;
    const by = new Map<string, number[]>();
    for (const c of all) by.set(c.sub, [...(by.get(c.sub) ?? []), c.ms]);
    console.log(`per templated run (${reps} runs): ${(all.length / reps).toFixed(1)} calls; by subcommand: ${[...by].map(([k, v]) => `${k} ${(v.length / reps).toFixed(1)}x median ${[...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]} ms`).join(', ')}`);
  }
  if (phaseFile) await printPhases(windows.filter((w) => w.handler === HANDLERS.template).slice(1), phaseFile, await d.log());
  if (phaseFile && base) { console.log('\nthe baseline\'s runs:'); await printPhases(windows.filter((w) => w.handler === 'baseline').slice(1), phaseFile, await base.log()); }
  const global: GlobalOptions = { root: d.root, runDir: d.runDir, socket: d.socket, config: d.configPath, json: false, debug: false };
  const ctx: CommandContext = { global, flags: { quiet: true }, args: [], stdout: new Discard(), stderr: new Discard(), signal: new AbortController().signal };
  for (const [label, handler] of Object.entries(HANDLERS)) {
    if (skip.has(`density-${label}`) || label === 'nosandbox') continue;
    const request = (i: number): RunRequest => ({
      image: IMAGE, args: ['sleep', '3600'], name: `density-${label}-${i}`, isolation: handler,
      detach: true, remove: false, interactive: false, tty: false, env: [], volumes: [], publish: [],
      network: 'none', readOnly: false, privileged: false, capAdd: [], capDrop: [], labels: [],
    });
    const r = await measureDensity({ client: d.client, ctx, global, pods, daemonPid: d.pid, label, settleMs: trimIdleMs() > 0 ? trimIdleMs() + 3000 : 3000, progress: (s) => process.stderr.write(s + '\n'), request });
    density.push({ label, r });
  }
} finally {
  await d.close();
  await base?.close();
  if (phaseFile && values['keep-phases']) (await import('node:fs')).copyFileSync(phaseFile, values['keep-phases']);
  if (phaseFile) (await import('node:fs')).rmSync(join(phaseFile, '..'), { recursive: true, force: true });
  if (traceDir) (await import('node:fs')).rmSync(traceDir, { recursive: true, force: true });
}

const med = (v: number[]): string => (v.length ? [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!.toFixed(0) : '-');
const mib = (b: number | undefined): string => (b === undefined ? '-' : (b / 1048576).toFixed(1));
console.log(`\nbulkhead run --rm --network none ${IMAGE} true on microvm (TCG unless KVM runs guests); ms`);
console.log(`variant     median   min   max  n`);
for (const k of ['template', 'baseline', 'nosandbox', 'cold'] as const) {
  const v = times[k];
  console.log(`${k.padEnd(10)}${med(v).padStart(8)}${(v.length ? Math.min(...v).toFixed(0) : '-').padStart(6)}${(v.length ? Math.max(...v).toFixed(0) : '-').padStart(6)}  ${v.length}`);
}
console.log(`first templated run (template built): ${firstMs.toFixed(0)} ms`);
if (cpu.template.length) console.log(`clone QEMU CPU per run (ms, median): template ${med(cpu.template)}${cpu.baseline.length ? `, baseline ${med(cpu.baseline)}` : ''}`);
if (times.template.length && times.baseline.length) console.log(`template / baseline (medians): ${(Number(med(times.template)) / Number(med(times.baseline))).toFixed(2)}x; rounds where template was faster: ${times.template.filter((t, i) => t < (times.baseline[i] ?? Infinity)).length} of ${times.baseline.length}`);
if (times.template.length && times.cold.length) console.log(`cold / template (medians): ${(Number(med(times.cold)) / Number(med(times.template))).toFixed(1)}x`);
if (times.template.length && times.nosandbox.length) console.log(`without / with the sandbox container in the template (medians): ${(Number(med(times.nosandbox)) / Number(med(times.template))).toFixed(2)}x`);
console.log(`\nidle microvm pods (run -d IMAGE sleep, --network none; measured after ${(trimIdleMs() > 0 ? trimIdleMs() + 3000 : 3000) / 1000} s idle: the idle trim's quiet time + 3 s); PSS in MiB, start in ms`);
for (const { label, r } of density) {
  const ms = r.startSeconds.map((s) => s * 1000);
  console.log(`${label.padEnd(10)} pods ${r.perPod.length}  PSS total ${mib(r.pssTotalBytes)}  PSS/pod ${mib(r.pssPerPodBytes)}  start median ${med(ms)}  left after removal: ${r.leftovers.length ? r.leftovers.join(', ') : 'nothing'}${r.error ? `  error: ${r.error}` : ''}`);
}

/**
 * The steps of templated runs (--phases): the pod VM's processes' trace lines, the daemon's RPC
 * spans (start = logged end - duration) and the CLI's exec/exit, as offsets from the CLI's exec.
 */
async function printPhases(runs: { from: number; to: number }[], file: string, daemonLog: string): Promise<void> {
  const steps = readFileSync(file, 'utf8').split('\n').map((l) => /^([\d.]+) (\d+) (.+)$/.exec(l)).filter((m) => m !== null)
    .map((m) => ({ at: Number(m[1]), who: `pid ${m[2]}`, what: m[3]!.replace(/\b[0-9a-f]{8}\b/g, 'ID') }));
  const rpcs = daemonLog.split('\n').map((l) => /^time=(\S+) .*msg=rpc .*method=\/[\w.]+\/(\w+) durationMs=([\d.]+)/.exec(l)).filter((m) => m !== null)
    .flatMap((m) => { const end = Date.parse(m[1]!); const ms = Number(m[3]); return [{ at: end - ms, who: 'daemon', what: `${m[2]} begins` }, { at: end, who: 'daemon', what: `${m[2]} ends (${ms.toFixed(0)} ms)` }]; });
  const all = [...steps, ...rpcs].sort((a, b) => a.at - b.at);
  const offsets = new Map<string, number[]>();
  let last: string[] = [];
  for (const r of runs) {
    const mine = all.filter((s) => s.at >= r.from - 5 && s.at <= r.to + 250);
    const seen = new Map<string, number>();
    const lines: string[] = [`  +${'0'.padStart(5)} ms  cli      exec`];
    for (const s of mine) {
      const label = s.what.replace(/ \(\d+ ms\)$/, '');
      const n = (seen.get(label) ?? 0) + 1;
      seen.set(label, n);
      const key = n > 1 ? `${label} #${n}` : label;
      offsets.set(key, [...(offsets.get(key) ?? []), s.at - r.from]);
      lines.push(`  +${(s.at - r.from).toFixed(0).padStart(5)} ms  ${s.who.padEnd(8)} ${s.what}`);
    }
    lines.push(`  +${(r.to - r.from).toFixed(0).padStart(5)} ms  cli      exit`);
    offsets.set('cli exit', [...(offsets.get('cli exit') ?? []), r.to - r.from]);
    last = lines;
  }
  console.log(`\nsteps of the last templated run (offset from the CLI's exec; pids: daemon's in-process calls, supervisor):`);
  for (const l of last) console.log(l);
  console.log(`\nmedian offset of each step over ${runs.length} templated runs (ms):`);
  const medOf = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  for (const [k, v] of [...offsets].sort((a, b) => medOf(a[1]) - medOf(b[1]))) if (v.length * 2 >= runs.length) console.log(`  ${medOf(v).toFixed(0).padStart(6)}  ${k}`);
}
