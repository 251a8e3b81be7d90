// Pull + rmi + reclaim benchmark: Bulkhead's image service vs podman, as their users run them
// (`bulkhead pull` / `bulkhead rmi` go through the same ImageService calls; `podman pull` /
// `podman rmi` with a private --root), same 5-layer image (~50 MiB compressed: busybox, random
// binaries, many small files) from a local docker-registry on 127.0.0.1. Cold stores for each
// run (fresh roots). Prints per run and the medians: pull time, rmi time (Bulkhead's includes its
// GC: the disk is free when it returns), bytes on disk after the pull, bytes reclaimed by rmi and
// bytes left, with the ratio Bulkhead/podman. Bounded: every child has a timeout.
//   node bench/reclaim.ts [repetitions=3]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRegistry } from '../harness/registry.ts';
import { buildLayer, busyboxLayers, pushImage, type TarEntry } from '../harness/images.ts';
import { createImageService } from '../src/image/image-service.ts';
import { DEFAULT_IMAGE_CONFIG } from '../src/image/config.ts';
import { silentLogger } from '../src/util/log.ts';
import { run, runChecked } from '../src/util/exec.ts';

const reps = Math.min(10, Math.max(1, Number(process.argv[2] ?? 3)));
const TIMEOUT = 300_000;

function layers(): TarEntry[][] {
  const bins: TarEntry[] = [{ type: 'dir', path: 'usr/' }, { type: 'dir', path: 'usr/lib/' }];
  for (let i = 0; i < 24; i++) bins.push({ type: 'file', path: `usr/lib/lib${i}.so`, mode: 0o755, content: randomBytes(1024 * 1024 + i * 4096) });
  const small: TarEntry[] = [{ type: 'dir', path: 'srv/' }];
  for (let a = 0; a < 20; a++) {
    small.push({ type: 'dir', path: `srv/m${a}/` });
    for (let b = 0; b < 150; b++) small.push({ type: 'file', path: `srv/m${a}/f${b}`, content: randomBytes(300 + ((a * 150 + b) % 17) * 400) });
  }
  const more: TarEntry[] = [{ type: 'dir', path: 'opt/' }];
  for (let i = 0; i < 16; i++) more.push({ type: 'file', path: `opt/blob${i}`, content: randomBytes(1024 * 1024) });
  return [bins, small, more];
}

/** Bytes of blocks under `dir` (du, each inode once, one filesystem). */
async function du(dir: string): Promise<number> {
  const r = await runChecked('du', ['-s', '-x', '--block-size=1', dir], { timeoutMs: TIMEOUT });
  return Number(r.stdout.split(/\s/)[0]);
}

interface Figures { pullMs: number; rmiMs: number; stored: number; reclaimed: number; left: number }

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const mib = (n: number): string => (n / 1048576).toFixed(1).replace(/^-0\.0$/, '0.0');

const reg = await startRegistry();
try {
  const ls = [...busyboxLayers('gzip'), ...layers().map((e) => buildLayer(e))];
  const img = await pushImage(reg, 'bench/reclaim', 'latest', { layers: ls });
  console.log(`image ${img.ref}: ${ls.length} layers, ${mib(ls.reduce((a, l) => a + l.size, 0))} MiB compressed`);

  const bulkhead = async (): Promise<Figures> => {
    const root = await mkdtemp(join(tmpdir(), 'bench-reclaim-bulkhead-'));
    const svc = await createImageService({ root, registries: { mirrors: {}, insecure: [] }, logger: silentLogger, config: { ...DEFAULT_IMAGE_CONFIG, reserveBytes: 0, reservePercent: 0 } });
    try {
      const empty = await du(root);
      const t0 = performance.now();
      await svc.pull(img.ref);
      const pullMs = performance.now() - t0;
      const stored = (await du(root)) - empty;
      const t1 = performance.now();
      await svc.remove(img.ref);
      const rmiMs = performance.now() - t1;
      const left = (await du(root)) - empty;
      return { pullMs, rmiMs, stored, reclaimed: stored - left, left };
    } finally {
      await svc.close();
      await rm(root, { recursive: true, force: true });
    }
  };

  let driver = 'overlay';
  const podman = async (): Promise<Figures> => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-reclaim-podman-'));
    const root = join(dir, 'root');
    const args = ['--root', root, '--runroot', join(dir, 'run'), '--storage-driver', driver, '--log-level', 'error'];
    try {
      await runChecked('podman', [...args, 'images'], { timeoutMs: TIMEOUT }); // creates the empty store
      const empty = await du(root);
      const t0 = performance.now();
      await runChecked('podman', [...args, 'pull', '--quiet', '--tls-verify=false', img.ref], { timeoutMs: TIMEOUT });
      const pullMs = performance.now() - t0;
      const stored = (await du(root)) - empty;
      const t1 = performance.now();
      await runChecked('podman', [...args, 'rmi', img.ref], { timeoutMs: TIMEOUT });
      const rmiMs = performance.now() - t1;
      const left = (await du(root)) - empty;
      return { pullMs, rmiMs, stored, reclaimed: stored - left, left };
    } finally {
      await run('podman', [...args, 'system', 'reset', '--force'], { timeoutMs: TIMEOUT });
      await run('umount', ['-R', join(root, driver)], { timeoutMs: 30_000 });
      await rm(dir, { recursive: true, force: true });
    }
  };
  // podman's overlay driver needs a filesystem overlay accepts as upper; fall back to vfs.
  try { await podman(); } catch (err) { driver = 'vfs'; console.log(`podman overlay driver failed (${(err as Error).message.split('\n')[0]}); using vfs`); }

  const b: Figures[] = [];
  const p: Figures[] = [];
  for (let r = 0; r < reps; r++) {
    if (r % 2 === 0) { b.push(await bulkhead()); p.push(await podman()); } else { p.push(await podman()); b.push(await bulkhead()); }
    const x = b[r]!;
    const y = p[r]!;
    console.log(`run ${r + 1}: bulkhead pull ${x.pullMs.toFixed(0)} ms rmi ${x.rmiMs.toFixed(0)} ms stored ${mib(x.stored)} MiB reclaimed ${mib(x.reclaimed)} MiB left ${mib(x.left)} MiB | podman (${driver}) pull ${y.pullMs.toFixed(0)} ms rmi ${y.rmiMs.toFixed(0)} ms stored ${mib(y.stored)} MiB reclaimed ${mib(y.reclaimed)} MiB left ${mib(y.left)} MiB`);
  }
  const m = (xs: Figures[], k: keyof Figures): number => median(xs.map((x) => x[k]));
  console.log(`median            bulkhead      podman(${driver})   ratio`);
  console.log(`pull (ms)         ${m(b, 'pullMs').toFixed(0).padStart(8)}    ${m(p, 'pullMs').toFixed(0).padStart(8)}       ${(m(b, 'pullMs') / m(p, 'pullMs')).toFixed(2)}x`);
  console.log(`rmi+reclaim (ms)  ${m(b, 'rmiMs').toFixed(0).padStart(8)}    ${m(p, 'rmiMs').toFixed(0).padStart(8)}       ${(m(b, 'rmiMs') / m(p, 'rmiMs')).toFixed(2)}x`);
  console.log(`stored (MiB)      ${mib(m(b, 'stored')).padStart(8)}    ${mib(m(p, 'stored')).padStart(8)}       ${(m(b, 'stored') / m(p, 'stored')).toFixed(2)}x`);
  console.log(`reclaimed (MiB)   ${mib(m(b, 'reclaimed')).padStart(8)}    ${mib(m(p, 'reclaimed')).padStart(8)}       ${(m(b, 'reclaimed') / m(p, 'reclaimed')).toFixed(2)}x`);
  console.log(`left (MiB)        ${mib(m(b, 'left')).padStart(8)}    ${mib(m(p, 'left')).padStart(8)}`);
} finally {
  await reg.close();
}
