// Benchmark: file I/O through a microVM pod's volume share (virtio-fs, src/vm/share.ts) beside runc's
// bind mount of the same host directory, and beside the guest's own writable layer (tmpfs + overlay
// in the VM), so the share's cost is told apart from the VM's (TCG here: every guest instruction is
// emulated). Each figure = median wall time of `exec sh -c WORKLOAD` minus the median `exec true`.
// Prints figures and the ratios share/runc and share/guest-tmpfs; asserts nothing.
// Usage: node bench/vm-volumes.ts [rounds=3]   (needs root, runc, virtiofsd and `bulkhead-vm setup`)
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BULKHEAD_VM, ASSETS, makeBundle, makeRootfs } from '../harness/vm-assets.ts';

const rounds = Number(process.argv[2] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'bulkhead-bench-vmvol-'));
const rootfs = makeRootfs(dir);
for (const c of ['rm', 'mkdir']) symlinkSync('busybox', join(rootfs, 'bin', c));
const vol = { runc: join(dir, 'vol-runc'), vm: join(dir, 'vol-vm') };
mkdirSync(vol.runc);
mkdirSync(vol.vm);

function time(cmd: string, args: string[]): { ms: number; ok: boolean; out: string } {
  const log = join(dir, 'cmd.log');
  const fd = openSync(log, 'w');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', fd, fd], timeout: 600_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  closeSync(fd);
  return { ms, ok: r.status === 0, out: readFileSync(log, 'utf8') };
}

const WORKLOADS: [string, (d: string) => string][] = [
  ['write 32 MiB (dd, fsync)', (d) => `dd if=/dev/zero of=${d}/big bs=1M count=32 conv=fsync 2>/dev/null`],
  ['read 32 MiB (cat)', (d) => `cat ${d}/big > /dev/null`],
  ['create 300 small files', (d) => `mkdir -p ${d}/s && i=0; while [ $i -lt 300 ]; do echo x > ${d}/s/$i; i=$((i+1)); done`],
  ['ls -l 300 files', (d) => `ls -l ${d}/s > /dev/null`],
  ['remove them', (d) => `rm -rf ${d}/s ${d}/big`],
];

const runcState = join(dir, 'runc-state');
const vmState = join(dir, 'vm-state');
const vmArgs = (...a: string[]): [string, string[]] => [BULKHEAD_VM, ['--root', vmState, '--assets', ASSETS, ...a]];
const runcArgs = (...a: string[]): [string, string[]] => ['runc', ['--root', runcState, ...a]];
const bindMount = (source: string): Record<string, unknown> => ({ destination: '/vol', type: 'bind', source, options: ['rbind', 'rprivate', 'rw'] });

function bundle(name: string, annotations: Record<string, string>, mounts: Record<string, unknown>[], runc: boolean): string {
  const b = makeBundle(dir, name, { rootfs, annotations, args: ['sleep', '100000'] });
  const cfg = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as { mounts?: unknown[]; linux: Record<string, unknown> };
  if (runc) {
    cfg.linux.namespaces = ['pid', 'mount', 'ipc', 'uts', 'network'].map((type) => ({ type }));
    mounts = [{ destination: '/proc', type: 'proc', source: 'proc' }, { destination: '/tmp', type: 'tmpfs', source: 'tmpfs' }, ...mounts];
  }
  cfg.mounts = mounts;
  writeFileSync(join(b, 'config.json'), JSON.stringify(cfg));
  return b;
}

const med = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;

function measure(exec: (script: string) => [string, string[]], d: string): number[] {
  const base = med(Array.from({ length: rounds }, () => time(...exec('true')).ms));
  const v: number[][] = WORKLOADS.map(() => []);
  for (let i = 0; i < rounds; i++) {
    // each round runs the workloads in order (read needs the written file, ls the small files)
    for (const [k, [name, w]] of WORKLOADS.entries()) {
      const r = time(...exec(w(d)));
      if (!r.ok) throw new Error(`${name} in ${d} failed: ${r.out}`);
      v[k]!.push(Math.max(0, r.ms - base));
    }
  }
  return v.map(med);
}

const results: Record<string, number[]> = {};
try {
  const rid = `bvr-${process.pid}`;
  const b1 = bundle('runc', {}, [bindMount(vol.runc)], true);
  if (!time(...runcArgs('run', '-d', '--bundle', b1, rid)).ok) throw new Error('runc run failed');
  results['runc bind mount'] = measure((s) => runcArgs('exec', rid, 'sh', '-c', s), '/vol');
  time(...runcArgs('delete', '--force', rid));

  const sb = `bvs-${process.pid}`;
  const cid = `bvc-${process.pid}`;
  const bs = bundle('sb', { 'io.kubernetes.cri.container-type': 'sandbox' }, [], false);
  const bc = bundle('c', { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sb }, [bindMount(vol.vm)], false);
  for (const [id, b] of [[sb, bs], [cid, bc]] as const) {
    const c = time(...vmArgs('create', '--bundle', b, id));
    if (!c.ok || !time(...vmArgs('start', id)).ok) throw new Error(`bulkhead-vm create/start ${id} failed: ${c.out}`);
  }
  results['microVM virtio-fs share'] = measure((s) => vmArgs('exec', cid, 'sh', '-c', s), '/vol');
  results['microVM guest tmpfs'] = measure((s) => vmArgs('exec', cid, 'sh', '-c', s), '/tmp');
  for (const id of [cid, sb]) time(...vmArgs('delete', '--force', id));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(['workload', ...Object.keys(results).map((k) => `${k} ms`), 'share/runc', 'share/guest-tmpfs'].join('\t'));
console.log(`# guest assets: ${ASSETS}; rounds ${rounds}; each = median exec time minus median 'exec true'`);
const [runc, share, tmp] = [results['runc bind mount'] ?? [], results['microVM virtio-fs share'] ?? [], results['microVM guest tmpfs'] ?? []];
for (const [i, [name]] of WORKLOADS.entries()) {
  const ratio = (a: number | undefined, b: number | undefined): string => (a !== undefined && b ? (a / b).toFixed(1) : '-');
  console.log([name, ...[runc[i], share[i], tmp[i]].map((v) => (v === undefined ? '-' : v.toFixed(0))), ratio(share[i], runc[i]), ratio(share[i], tmp[i])].join('\t'));
}
