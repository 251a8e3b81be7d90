// Pull + unpack benchmark: Bulkhead's image service vs `skopeo copy` + `umoci unpack`, same
// 5-layer ~60 MB image from a local docker-registry, cold stores for each run (fresh roots; the
// OS page cache is not dropped — the machine is shared). Prints times and the ratio.
//   node bench/pull.ts [repetitions=3]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRegistry } from '../test/fixtures/registry.ts';
import { buildLayer, busyboxLayers, pushImage, type TarEntry } from '../test/fixtures/images.ts';
import { createImageService } from '../src/image/image-service.ts';
import { silentLogger } from '../src/util/log.ts';
import { runChecked } from '../src/util/exec.ts';

const reps = Number(process.argv[2] ?? 3);
const reg = await startRegistry();
try {
  const text = (seed: number, bytes: number): Buffer => {
    const words = ['container', 'sandbox', 'overlay', 'registry', 'layer', 'digest', 'kernel', 'isolation', 'runtime', 'policy'];
    const parts: string[] = [];
    let n = 0;
    let i = seed;
    while (n < bytes) { const w = words[(i = (i * 1103515245 + 12345) & 0x7fffffff) % words.length]!; parts.push(w); n += w.length + 1; }
    return Buffer.from(parts.join(' ').slice(0, bytes));
  };
  const files = (dir: string, count: number, make: (i: number) => Buffer): TarEntry[] =>
    [{ type: 'dir', path: `${dir}/` }, ...Array.from({ length: count }, (_, i): TarEntry => ({ type: 'file', path: `${dir}/f${i}`, content: make(i) }))];
  const layers = [
    ...busyboxLayers('gzip'),
    buildLayer(files('rand1', 20, () => randomBytes(1024 * 1024))),
    buildLayer(files('text', 400, (i) => text(i, 64 * 1024))),
    buildLayer(files('rand2', 2000, () => randomBytes(8 * 1024))),
  ];
  const total = layers.reduce((a, l) => a + l.size, 0);
  const img = await pushImage(reg, 'bench/big', 'latest', { layers });
  console.log(`image ${img.ref}: ${layers.length} layers, ${(total / 1048576).toFixed(1)} MiB compressed`);

  const bulkhead: number[] = [];
  const peer: number[] = [];
  for (let r = 0; r < reps; r++) {
    {
      const root = await mkdtemp(join(tmpdir(), 'bench-bulkhead-'));
      const t0 = performance.now();
      const svc = await createImageService({ root, registries: { mirrors: {}, insecure: [] }, logger: silentLogger });
      await svc.pull(img.ref);
      bulkhead.push(performance.now() - t0);
      await svc.close();
      await rm(root, { recursive: true, force: true });
    }
    {
      const dir = await mkdtemp(join(tmpdir(), 'bench-umoci-'));
      const t0 = performance.now();
      await runChecked('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${img.ref}`, `oci:${join(dir, 'oci')}:t`], { timeoutMs: 600_000 });
      await runChecked('umoci', ['unpack', '--image', `${join(dir, 'oci')}:t`, join(dir, 'bundle')], { timeoutMs: 600_000 });
      peer.push(performance.now() - t0);
      await rm(dir, { recursive: true, force: true });
    }
    console.log(`run ${r + 1}: bulkhead ${bulkhead[r]!.toFixed(0)} ms, skopeo+umoci ${peer[r]!.toFixed(0)} ms`);
  }
  const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const b = median(bulkhead);
  const p = median(peer);
  console.log(`median: bulkhead ${b.toFixed(0)} ms, skopeo+umoci ${p.toFixed(0)} ms, ratio ${(b / p).toFixed(2)}x (goal <= 1.0x)`);
} finally {
  await reg.close();
}
