// Benchmark: a microVM pod with a kubelet pod's usual volumes (a ConfigMap and a projected
// service-account token in kubelet's atomic-writer layout, an emptyDir, the termination log), started
// with its volumes copied in (io.bulkhead.vm.volumes=copy: a template clone, src/vm/copy-volumes.ts)
// beside the same pod booting with its virtio-fs share (no annotation), interleaved in one run.
// Start = the sandbox's create+start and the app container's create+start (bulkhead-vm as conmon
// drives it), until the container's process runs; PSS = the pod's own host processes after a settle
// (QEMU, virtiofsd: recorded in the pod dir or naming it; the node-wide supervisor is shared by every
// pod and left out). Prints medians per mode and the ratios; asserts nothing.
// Usage: node bench/vm-copy-volumes.ts [rounds=3]   (needs root, virtiofsd and `bulkhead-vm setup`)
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BULKHEAD_VM, ASSETS, makeBundle, makeRootfs } from '../harness/vm-assets.ts';
import { pidsNaming, readProc, sameProc } from '../src/vm/procs.ts';
import { podDir } from '../src/vm/state.ts';

const rounds = Number(process.argv[2] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'bulkhead-bench-cpvol-'));
const rootfs = makeRootfs(dir);
const state = join(dir, 'state');
const vm = (...a: string[]): { ok: boolean; out: string } => {
  const log = join(dir, 'cmd.log');
  const fd = openSync(log, 'w');
  const r = spawnSync(BULKHEAD_VM, ['--root', state, '--assets', ASSETS, ...a], { stdio: ['ignore', fd, fd], timeout: 600_000 });
  closeSync(fd);
  return { ok: r.status === 0, out: readFileSync(log, 'utf8') };
};

/** kubelet's atomic writer: files in a timestamped dir, `..data` pointing at it, each key a link through it. */
function atomic(d: string, files: Record<string, string>): void {
  const ts = '..2026_01_01_00_00_00.1';
  mkdirSync(join(d, ts), { recursive: true });
  for (const [k, v] of Object.entries(files)) { writeFileSync(join(d, ts, k), v); symlinkSync(`..data/${k}`, join(d, k)); }
  symlinkSync(ts, join(d, '..data_tmp'));
  renameSync(join(d, '..data_tmp'), join(d, '..data'));
}
const pod = join(dir, 'kubelet/pods/6b1c0c5e-bench');
const cm = join(pod, 'volumes/kubernetes.io~configmap/app-config');
const sa = join(pod, 'volumes/kubernetes.io~projected/kube-api-access-x1y2z');
const empty = join(pod, 'volumes/kubernetes.io~empty-dir/cache');
const term = join(pod, 'containers/app/5e1a9f3c');
atomic(cm, { 'app.yaml': 'log: info\nport: 8080\n'.repeat(40), 'feature-flags': 'a=1\nb=0\n' });
atomic(sa, { token: 'eyJ'.padEnd(1100, 'x'), 'ca.crt': '-----BEGIN CERTIFICATE-----\n'.padEnd(1500, 'y'), namespace: 'default' });
mkdirSync(empty, { recursive: true });
mkdirSync(join(pod, 'containers/app'), { recursive: true });
writeFileSync(term, '');
const bind = (source: string, destination: string, ro: boolean): Record<string, unknown> => ({ destination, type: 'bind', source, options: ['rbind', 'rprivate', ro ? 'ro' : 'rw'] });
const MOUNTS = [bind(cm, '/etc/config', true), bind(sa, '/var/run/secrets/kubernetes.io/serviceaccount', true), bind(empty, '/cache', false), bind(term, '/dev/termination-log', false)];

function bundle(name: string, annotations: Record<string, string>, args: string[], mounts: Record<string, unknown>[] = []): string {
  const b = makeBundle(dir, name, { rootfs, annotations, args });
  const cfg = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as Record<string, unknown>;
  cfg.mounts = mounts;
  writeFileSync(join(b, 'config.json'), JSON.stringify(cfg));
  return b;
}

/**
 * PSS (KiB) of the pod's own host processes: its recorded QEMU and virtiofsd (a clone's QEMU may have
 * been started ahead, its command line naming no pod) and every process naming its pod dir.
 */
function podPss(id: string): number {
  let kib = 0;
  const dir = podDir(state, id);
  const pids = new Set(pidsNaming(dir));
  for (const role of ['vmm', 'fsd'] as const) { const r = readProc(dir, role); if (sameProc(r)) pids.add(r.pid); }
  for (const pid of pids) {
    try { kib += Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0); } catch { /* gone */ }
  }
  return kib;
}

function startPod(mode: 'copy' | 'share', tag: string): { ms: number; id: string; app: string } {
  const id = `cpv-${mode}-${tag}-${process.pid}`;
  const app = `${id}-app`;
  const ann = { 'io.kubernetes.cri.container-type': 'sandbox', 'io.bulkhead.vm.trust-level': 'bench', ...(mode === 'copy' ? { 'io.bulkhead.vm.volumes': 'copy' } : {}) };
  const t0 = performance.now();
  const steps: [string, string[]][] = [
    ['create sandbox', ['create', '--bundle', bundle(id, ann, ['sleep', '100000']), id]],
    ['start sandbox', ['start', id]],
    ['create app', ['create', '--bundle', bundle(app, { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': id }, ['sh', '-c', 'cat /etc/config/app.yaml /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/null; exec sleep 100000'], MOUNTS), app]],
    ['start app', ['start', app]],
  ];
  for (const [what, args] of steps) {
    const r = vm(...args);
    if (!r.ok) throw new Error(`${mode}: ${what} failed: ${r.out}`);
  }
  return { ms: performance.now() - t0, id, app };
}

const end = (p: { id: string; app: string }): void => { vm('delete', '--force', p.app); vm('delete', '--force', p.id); };
const med = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;

const res = { copy: { ms: [] as number[], pss: [] as number[] }, share: { ms: [] as number[], pss: [] as number[] } };
try {
  // the copy pods' template is built by a first pod, not counted
  end(startPod('copy', 'warm'));
  for (let i = 0; i < rounds; i++) {
    for (const mode of (i % 2 ? ['share', 'copy'] : ['copy', 'share']) as ('copy' | 'share')[]) {
      const p = startPod(mode, String(i));
      await new Promise((r) => setTimeout(r, 3000));
      res[mode].ms.push(p.ms);
      res[mode].pss.push(podPss(p.id));
      end(p);
    }
  }
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`microVM pod with kubelet volumes (ConfigMap, SA token, emptyDir, termination log), ${rounds} rounds interleaved, load ${load}`);
  for (const mode of ['copy', 'share'] as const) {
    console.log(`  ${mode === 'copy' ? 'volumes=copy (template clone)' : 'virtio-fs share (boot)    '}: start ${med(res[mode].ms).toFixed(0)} ms median (${res[mode].ms.map((v) => v.toFixed(0)).join(', ')}), PSS ${(med(res[mode].pss) / 1024).toFixed(1)} MiB median`);
  }
  console.log(`  ratio share/copy: start ${(med(res.share.ms) / med(res.copy.ms)).toFixed(2)}x, PSS ${(med(res.share.pss) / med(res.copy.pss)).toFixed(2)}x`);
} finally {
  rmSync(join(dir, 'kubelet'), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}
