// Benchmark: create+start time, per-exec latency and the host memory (PSS) a running container
// costs, for the microVM runtime (bulkhead-vm) side by side with runc on the same busybox rootfs,
// both with what a real pod gets: the default capabilities, no_new_privs and the default seccomp
// profile (in the guest for bulkhead-vm). PSS: runc = the container's process; bulkhead-vm = QEMU,
// its supervisor and the container's shim. Prints figures, asserts nothing.
// Usage: node bench/vm.ts [rounds=3]   (needs root, runc, and `bulkhead-vm setup`; BULKHEAD_VM_ASSETS picks the guest assets)
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BULKHEAD_VM, ASSETS, makeBundle, makeRootfs } from '../harness/vm-assets.ts';
import { DEFAULT_CAPABILITIES } from '../src/runtime/capabilities.ts';
import { defaultSeccompProfile } from '../src/runtime/seccomp.ts';
import { podProcesses } from '../src/vm/procs.ts';

/** PSS of processes in KiB (smaps_rollup). */
function pssKib(pids: number[]): number {
  let kib = 0;
  for (const p of pids) {
    try { kib += Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'))?.[1] ?? 0); } catch { /* gone */ }
  }
  return kib;
}

const rounds = Number(process.argv[2] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'bulkhead-bench-vm-'));
const rootfs = makeRootfs(dir);

/** Runs a command; its stdio go to a file, since a container's process inherits them and outlives `create`. */
function time(cmd: string, args: string[]): { ms: number; ok: boolean; out: string } {
  const log = join(dir, 'cmd.log');
  const fd = openSync(log, 'w');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', fd, fd], timeout: 300_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  closeSync(fd);
  return { ms, ok: r.status === 0, out: readFileSync(log, 'utf8') };
}

interface Runtime { name: string; argv: (id: string, ...rest: string[]) => [string, string[]]; pids: (id: string) => number[] }
const runtimes: Runtime[] = [
  {
    name: 'runc', argv: (id, ...rest) => ['runc', ['--root', join(dir, 'runc-state'), ...rest, id]],
    pids: (id) => [(JSON.parse(spawnSync('runc', ['--root', join(dir, 'runc-state'), 'state', id], { encoding: 'utf8' }).stdout || '{}') as { pid?: number }).pid ?? 0],
  },
  {
    name: 'bulkhead-vm', argv: (id, ...rest) => [BULKHEAD_VM, ['--root', join(dir, 'vm-state'), '--assets', ASSETS, ...rest, id]],
    pids: (id) => {
      const pods = join(dir, 'vm-state', 'pods');
      const shim = (JSON.parse(readFileSync(join(dir, 'vm-state', id, 'state.json'), 'utf8')) as { pid: number }).pid;
      return [shim, ...(existsSync(pods) ? readdirSync(pods).flatMap((p) => podProcesses(join(pods, p))) : [])];
    },
  },
];

const rows: string[][] = [];
try {
  for (const rt of runtimes) {
    const run: number[] = [];
    const exec: number[] = [];
    const pss: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const id = `bench-${rt.name}-${process.pid}-${i}`;
      const b = makeBundle(dir, id, { rootfs, args: ['sleep', '1000'] });
      // runc needs its own namespaces and /proc; bulkhead-vm ignores these (the guest provides them)
      const cfg = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as Record<string, any>;
      cfg.linux.namespaces = ['pid', 'mount', 'ipc', 'uts', 'network'].map((type) => ({ type }));
      cfg.mounts = [{ destination: '/proc', type: 'proc', source: 'proc' }];
      const caps = [...DEFAULT_CAPABILITIES];
      cfg.process.capabilities = { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] };
      cfg.process.noNewPrivileges = true;
      cfg.linux.seccomp = defaultSeccompProfile();
      writeFileSync(join(b, 'config.json'), JSON.stringify(cfg));
      const [c1, a1] = rt.argv(id, 'create', '--bundle', b);
      const [c2, a2] = rt.argv(id, 'start');
      const t1 = time(c1, a1);
      const t2 = time(c2, a2);
      if (!t1.ok || !t2.ok) { console.error(`${rt.name}: create/start failed: ${t1.out}${t2.out}`); break; }
      run.push(t1.ms + t2.ms);
      await new Promise((r) => setTimeout(r, 2000)); // let the guest settle before measuring memory
      pss.push(pssKib(rt.pids(id)) / 1024);
      const [c3, a3] = rt.argv(id, 'exec');
      const e = time(c3, [...a3, 'true']);
      if (e.ok) exec.push(e.ms);
      const [c4, a4] = rt.argv(id, 'delete', '--force');
      time(c4, a4);
    }
    const med = (v: number[], digits = 0): string => (v.length ? [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!.toFixed(digits) : '-');
    rows.push([rt.name, med(run), med(exec), med(pss, 1), String(run.length)]);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(['runtime', 'create+start ms (median)', 'exec true ms (median)', 'host PSS MiB (median)', 'rounds'].join('\t'));
console.log(`# guest assets: ${ASSETS}`);
for (const r of rows) console.log(r.join('\t'));
