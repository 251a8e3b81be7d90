// The image filesystem's reserve and the per-layer cap, on a small tmpfs mounted as the image root:
// a pull refuses to start below the reserve; a gzip bomb stops at max_layer_bytes (or at the free
// space above the reserve) with RESOURCE_EXHAUSTED naming the setting, leaving nothing behind; a
// load that fills the disk says the filesystem is full (it said "cannot read it as a tar").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createImageService, type ImageService } from '../../src/image/image-service.ts';
import { DEFAULT_IMAGE_CONFIG, type ImageConfig } from '../../src/image/config.ts';
import { BulkheadError } from '../../src/errors.ts';
import { runChecked, run } from '../../src/util/exec.ts';
import { silentLogger } from '../../src/util/log.ts';
import { sharedRegistry, type TestRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, buildLayer, buildTar, pushImage, type TestImages } from '../../harness/images.ts';

const MiB = 1024 * 1024;
let base: string;
let mnt: string;
let reg: TestRegistry;
let images: TestImages;
const open: ImageService[] = [];

before(async () => {
  reg = await sharedRegistry();
  images = await buildAndPushTestImages(reg);
  base = await mkdtemp(join(tmpdir(), 'bulkhead-reserve-'));
  mnt = join(base, 'fs');
  await mkdir(mnt);
  await runChecked('mount', ['-t', 'tmpfs', '-o', 'size=40m,mode=0755', 'tmpfs', mnt], { timeoutMs: 10_000 });
});
after(async () => {
  for (const s of open) await s.close().catch(() => {});
  const u = await run('umount', [mnt], { timeoutMs: 10_000 });
  if (u.code !== 0) await run('umount', ['-l', mnt], { timeoutMs: 10_000 });
  await rm(base, { recursive: true, force: true });
});

async function service(name: string, cfg: Partial<ImageConfig>): Promise<{ svc: ImageService; root: string }> {
  const root = join(mnt, name);
  const svc = await createImageService({ root, registries: { mirrors: {}, insecure: [] }, logger: silentLogger, config: { ...DEFAULT_IMAGE_CONFIG, ...cfg } });
  open.push(svc);
  return { svc, root };
}

async function leftovers(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of ['content/blobs/sha256', 'content/ingest', 'snapshots/by-chain', 'snapshots/tmp']) out.push(...(await readdir(join(root, d))).map((n) => `${d}/${n}`));
  out.push(...(await readdir(join(root, 'snapshots'))).filter((n) => /^\d+$/.test(n)).map((n) => `snapshots/${n}`));
  return out;
}

function exhausted(re: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BulkheadError, String(err));
    assert.equal(err.code, 'ResourceExhausted', err.message);
    assert.match(err.message, re);
    return true;
  };
}

async function usedMiB(): Promise<number> {
  const s = await statfs(mnt);
  return ((s.blocks - s.bfree) * s.bsize) / MiB;
}

test('a pull refuses to start when the image filesystem is below its reserve, naming the filesystem and the setting', async () => {
  const { svc, root } = await service('reserve', { reserveBytes: 39 * MiB, reservePercent: 0 });
  await assert.rejects(svc.pull(images.busybox), exhausted(new RegExp(`the image filesystem ${mnt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} has .* free and must keep 39\\.0 MiB \\(setting \\[images\\] reserve_bytes / reserve_percent\\)`)));
  assert.deepEqual(await leftovers(root), []);
  await svc.close();
  await rm(root, { recursive: true, force: true });
});

test('a gzip bomb stops at max_layer_bytes with RESOURCE_EXHAUSTED naming the setting; nothing is left', async () => {
  const bomb = buildLayer([{ type: 'file', path: 'zeros', content: Buffer.alloc(100 * MiB) }]);
  assert.ok(bomb.size < MiB, `the bomb is small compressed (${bomb.size} bytes)`);
  const pushed = await pushImage(reg, 'test/bomb', 'latest', { layers: [bomb] });
  const { svc, root } = await service('bomb', { reserveBytes: MiB, reservePercent: 0, maxLayerBytes: 8 * MiB });
  await assert.rejects(svc.pull(pushed.ref), exhausted(/larger than 8388608 bytes uncompressed, the cap of one layer \(setting \[images\] max_layer_bytes\)/));
  assert.deepEqual(await leftovers(root), []);
  assert.ok(await usedMiB() < 4, `the filesystem is empty again (${(await usedMiB()).toFixed(1)} MiB used)`);
  await svc.close();
  await rm(root, { recursive: true, force: true });
});

test('with a large max_layer_bytes, a gzip bomb stops at the free space above the reserve, not at ENOSPC', async () => {
  const bomb = buildLayer([{ type: 'file', path: 'zeros', content: Buffer.alloc(100 * MiB) }]);
  const pushed = await pushImage(reg, 'test/bomb', 'latest', { layers: [bomb] });
  const { svc, root } = await service('bomb2', { reserveBytes: 4 * MiB, reservePercent: 0, maxLayerBytes: 8 * 1024 * MiB });
  await assert.rejects(svc.pull(pushed.ref), exhausted(/the cap of one layer \(the free space of the image filesystem above its reserve, setting \[images\] reserve_bytes/));
  assert.deepEqual(await leftovers(root), []);
  await svc.close();
  await rm(root, { recursive: true, force: true });
});

test('a load that fills the disk: RESOURCE_EXHAUSTED naming the full filesystem, not "cannot read it as a tar"; nothing partial is left', async () => {
  const { svc, root } = await service('load', { reserveBytes: 0, reservePercent: 0 });
  // A FIFO has no size to check first, so the disk fills while the archive is read.
  const fifo = join(base, 'archive.fifo');
  await runChecked('mkfifo', [fifo], { timeoutMs: 5_000 });
  const tar = buildTar([{ type: 'file', path: 'blobs/sha256/' + 'a'.repeat(64), content: Buffer.alloc(60 * MiB, 1) }]);
  const writer = new Promise<void>((resolve) => {
    const w = createWriteStream(fifo);
    w.on('error', () => resolve());
    w.end(tar, () => resolve());
  });
  await assert.rejects(svc.load(fifo), exhausted(new RegExp(`load ${fifo.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the image filesystem ${mnt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is full \\(no space left on device\\)`)));
  await writer;
  assert.deepEqual(await leftovers(root), []);
  assert.ok(await usedMiB() < 4, `the partial archive copy is gone (${(await usedMiB()).toFixed(1)} MiB used)`);
});
