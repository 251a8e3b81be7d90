// Pull + unpack benchmark: Bulkhead's image service vs `skopeo copy` + `umoci unpack`, same
// 5-layer image (~60 MB compressed, ~9,000 entries: busybox, incompressible binaries, text, and
// many small files in nested dirs with symlinks and hard links, like a distro image) from a local
// docker-registry. Cold stores for each run (fresh roots; the OS page cache is not dropped — the
// machine is shared). Runs alternate (B P, P B, ...) so drift hits both; prints median and min of
// each and the ratio of medians. --profile prints where Bulkhead's time goes (see
// src/image/profile.ts: stages overlap across layers, so they may add up to more than the wall time).
//   node bench/pull.ts [repetitions=3] [--profile]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRegistry } from '../harness/registry.ts';
import { buildLayer, busyboxLayers, pushImage, type TarEntry } from '../harness/images.ts';
import { createImageService } from '../src/image/image-service.ts';
import { StageTotals, type PullStage } from '../src/image/profile.ts';
import { silentLogger } from '../src/util/log.ts';
import { runChecked } from '../src/util/exec.ts';

const args = process.argv.slice(2);
const profile = args.includes('--profile');
const reps = Number(args.find((a) => !a.startsWith('--')) ?? 3);

/** Deterministic pseudo-English text (compresses about 3:1 with gzip, like docs and scripts). */
const WORDS = ['container', 'sandbox', 'overlay', 'registry', 'layer', 'digest', 'kernel', 'isolation', 'runtime', 'policy',
  'the', 'of', 'and', 'to', 'in', 'is', 'for', 'with', 'on', 'as', 'file', 'data', 'value', 'return', 'if', 'else', 'struct',
  'int', 'char', 'void', 'static', 'const', 'function', 'package', 'license', 'copyright', 'version', 'install', 'config'];
function text(seed: number, bytes: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  let i = seed * 7919 + 1;
  while (n < bytes) {
    i = (Math.imul(i, 1103515245) + 12345) & 0x7fffffff;
    const w = WORDS[(i >>> 8) % WORDS.length]!;
    const sep = (i & 15) === 0 ? '\n' : (i & 31) === 1 ? '; ' : ' ';
    parts.push(w, sep);
    n += w.length + sep.length;
  }
  return Buffer.from(parts.join('').slice(0, bytes));
}

function distroLayers(): TarEntry[][] {
  // Layer 3: incompressible "binaries" (usr/lib/*.so, usr/bin/*): a few large, many medium.
  const bins: TarEntry[] = [{ type: 'dir', path: 'usr/' }, { type: 'dir', path: 'usr/lib/' }, { type: 'dir', path: 'usr/bin/' }];
  for (let i = 0; i < 30; i++) bins.push({ type: 'file', path: `usr/lib/libbig${i}.so.1`, mode: 0o755, content: randomBytes(1024 * 1024 + i * 4096) });
  for (let i = 0; i < 30; i++) bins.push({ type: 'symlink', path: `usr/lib/libbig${i}.so`, linkname: `libbig${i}.so.1` });
  for (let i = 0; i < 400; i++) bins.push({ type: 'file', path: `usr/bin/tool${i}`, mode: 0o755, content: randomBytes(16 * 1024 + (i % 7) * 4096) });
  // Layer 4: text (docs, scripts, headers) in many small and medium files, nested.
  const docs: TarEntry[] = [{ type: 'dir', path: 'usr/' }, { type: 'dir', path: 'usr/share/' }, { type: 'dir', path: 'usr/share/doc/' }, { type: 'dir', path: 'usr/include/' }];
  for (let p = 0; p < 400; p++) {
    docs.push({ type: 'dir', path: `usr/share/doc/pkg${p}/` });
    docs.push({ type: 'file', path: `usr/share/doc/pkg${p}/copyright`, content: text(p, 1500 + (p % 13) * 200) });
    docs.push({ type: 'file', path: `usr/share/doc/pkg${p}/changelog`, content: text(p + 5000, 4000 + (p % 29) * 1500) });
    if (p % 4 === 0) docs.push({ type: 'link', path: `usr/share/doc/pkg${p}/LICENSE`, linkname: `usr/share/doc/pkg${p}/copyright` });
  }
  for (let i = 0; i < 1500; i++) docs.push({ type: 'file', path: `usr/include/h${i % 50}_${i}.h`, content: text(i + 9000, 1000 + (i % 17) * 700) });
  for (let i = 0; i < 40; i++) docs.push({ type: 'file', path: `usr/share/big${i}.txt`, content: text(i + 20000, 256 * 1024) });
  // Layer 5: many small files (a language runtime's library tree): 4 levels deep, half random.
  const lib: TarEntry[] = [{ type: 'dir', path: 'usr/' }, { type: 'dir', path: 'usr/lib/' }, { type: 'dir', path: 'usr/lib/python3/' }];
  for (let a = 0; a < 20; a++) {
    lib.push({ type: 'dir', path: `usr/lib/python3/m${a}/` });
    for (let b = 0; b < 10; b++) {
      lib.push({ type: 'dir', path: `usr/lib/python3/m${a}/s${b}/` });
      for (let c = 0; c < 25; c++) {
        const n = a * 1000 + b * 100 + c;
        lib.push({ type: 'file', path: `usr/lib/python3/m${a}/s${b}/f${c}.py`, content: text(n + 40000, 200 + (n % 11) * 300) });
        if (c % 2 === 0) lib.push({ type: 'file', path: `usr/lib/python3/m${a}/s${b}/f${c}.pyc`, content: randomBytes(500 + (n % 13) * 400) });
      }
    }
  }
  return [bins, docs, lib];
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const min = (a: number[]): number => Math.min(...a);

const reg = await startRegistry();
try {
  const layers = [...busyboxLayers('gzip'), ...distroLayers().map((e) => buildLayer(e))];
  const total = layers.reduce((a, l) => a + l.size, 0);
  const img = await pushImage(reg, 'bench/big', 'latest', { layers });
  console.log(`image ${img.ref}: ${layers.length} layers, ${(total / 1048576).toFixed(1)} MiB compressed`);

  const totals = new StageTotals();
  const stages: Record<PullStage, number>[] = [];
  const timeline: string[] = [];
  const bulkhead = async (): Promise<number> => {
    const root = await mkdtemp(join(tmpdir(), 'bench-bulkhead-'));
    try {
      const t0 = performance.now();
      const svc = await createImageService({ root, registries: { mirrors: {}, insecure: [] }, logger: silentLogger, ...(profile ? { profiler: totals } : {}) });
      const t = (): string => ((performance.now() - t0) / 1000).toFixed(2);
      const seen = new Map<string, string>();
      timeline.length = 0;
      await svc.pull(img.ref, profile ? {
        onProgress: (ev) => {
          if (seen.get(ev.id) === ev.status) return;
          seen.set(ev.id, ev.status);
          timeline.push(`${t()}s ${ev.id} ${ev.status}`);
        },
      } : {});
      const ms = performance.now() - t0;
      await svc.close();
      if (profile) stages.push(totals.take());
      return ms;
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  };
  const peer = async (): Promise<number> => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-umoci-'));
    try {
      const t0 = performance.now();
      await runChecked('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${img.ref}`, `oci:${join(dir, 'oci')}:t`], { timeoutMs: 600_000 });
      await runChecked('umoci', ['unpack', '--image', `${join(dir, 'oci')}:t`, join(dir, 'bundle')], { timeoutMs: 600_000 });
      return performance.now() - t0;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  const b: number[] = [];
  const p: number[] = [];
  for (let r = 0; r < reps; r++) {
    if (r % 2 === 0) { b.push(await bulkhead()); p.push(await peer()); } else { p.push(await peer()); b.push(await bulkhead()); }
    console.log(`run ${r + 1}: bulkhead ${b[r]!.toFixed(0)} ms, skopeo+umoci ${p[r]!.toFixed(0)} ms`);
  }
  console.log(`bulkhead     median ${median(b).toFixed(0)} ms, min ${min(b).toFixed(0)} ms`);
  console.log(`skopeo+umoci median ${median(p).toFixed(0)} ms, min ${min(p).toFixed(0)} ms`);
  console.log(`ratio (median) ${(median(b) / median(p)).toFixed(2)}x, (min) ${(min(b) / min(p)).toFixed(2)}x (goal <= 1.0x)`);
  if (profile) {
    console.log('bulkhead profile, median per stage over runs (ms; stages overlap across layers):');
    for (const s of ['download', 'verify', 'decompress', 'unpack', 'fsync'] as const) {
      console.log(`  ${s.padEnd(10)} ${median(stages.map((x) => x[s])).toFixed(0).padStart(6)}`);
    }
    console.log(`layer timeline of the last bulkhead run (layers in order: ${layers.map((l) => l.digest.slice(7, 19)).join(' ')}):`);
    for (const line of timeline) console.log('  ' + line);
  }
} finally {
  await reg.close();
}
