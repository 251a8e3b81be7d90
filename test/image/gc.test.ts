// Image GC over the real socket: RemoveImage frees disk at once (the kubelet's pattern:
// ImageFsInfo → RemoveImage → ImageFsInfo), shared layers stay while another image uses them,
// and a refused pull leaves no blobs. A real daemon, a real registry on 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestDaemon } from '../../harness/daemon.ts';
import type { TestRegistry } from '../../harness/registry.ts';
import { startImageDaemon } from '../fixtures/image-daemon.ts';
import { buildLayer, busyboxLayers, pushImage, type TestImages } from '../../harness/images.ts';
import { BulkheadError } from '../../src/errors.ts';
import { randomUUID } from 'node:crypto';
import type { ContainerConfig, PodSandboxConfig } from '../../src/api/cri.ts';

let d: TestDaemon;
let reg: TestRegistry;
let images: TestImages;

before(async () => { ({ d, reg, images } = await startImageDaemon('bulkhead-gc-')); });
after(async () => { await d?.close(); });

async function used(): Promise<{ bytes: number; inodes: number; mountpoint: string }> {
  const fs = await d.client.imageFsInfo();
  const f = fs.imageFilesystems[0]!;
  return { bytes: Number(f.usedBytes?.value ?? -1), inodes: Number(f.inodesUsed?.value ?? -1), mountpoint: f.fsId?.mountpoint ?? '' };
}

async function blobs(): Promise<string[]> {
  return (await readdir(join(d.root, 'content/blobs/sha256'))).map((h) => `sha256:${h}`).sort();
}

async function chains(): Promise<string[]> {
  return (await readdir(join(d.root, 'snapshots/by-chain'))).sort();
}

test('the kubelet GC pattern: ImageFsInfo → RemoveImage → ImageFsInfo shows the bytes and inodes of before the pull', async () => {
  // Warm-up: the metadata database and the store's directories reach their steady size.
  await d.client.pullImage(images.zstd);
  await d.client.removeImage(images.zstd);
  const before = await used();
  assert.ok(before.mountpoint.startsWith('/'), `mountpoint ${before.mountpoint}`);
  await d.client.pullImage(images.multilayer);
  const pulled = await used();
  assert.ok(pulled.bytes > before.bytes + 4096, `pull grew the store: ${before.bytes} → ${pulled.bytes}`);
  assert.ok(pulled.inodes > before.inodes);
  await d.client.removeImage(images.multilayer);
  const afterRm = await used();
  assert.equal(afterRm.bytes, before.bytes, `used bytes after RemoveImage: ${afterRm.bytes}, before the pull: ${before.bytes}, after it: ${pulled.bytes}`);
  assert.equal(afterRm.inodes, before.inodes);
  assert.deepEqual(await blobs(), []);
  assert.deepEqual(await chains(), []);
});

test('a layer shared with another image stays until the last image using it goes', async () => {
  await d.client.pullImage(images.busybox);
  await d.client.pullImage(images.multilayer);
  const bb = images.pushed.busybox!;
  const ml = images.pushed.multilayer!;
  await d.client.removeImage(images.multilayer);
  const left = await blobs();
  for (const l of bb.layers) assert.ok(left.includes(l.digest), `busybox layer ${l.digest} kept`);
  assert.ok(left.includes(bb.configDigest) && left.includes(bb.manifestDigest));
  for (const l of ml.layers.slice(bb.layers.length)) assert.ok(!left.includes(l.digest), `multilayer-only layer ${l.digest} freed`);
  assert.ok(!left.includes(ml.manifestDigest) && !left.includes(ml.configDigest));
  assert.equal((await chains()).length, bb.layers.length, 'only the busybox snapshots are left');
  // the image still works: a pull finds everything present
  assert.equal((await d.client.imageStatus(images.busybox)).image?.id, bb.configDigest);
  await d.client.removeImage(images.busybox);
  assert.deepEqual(await blobs(), []);
  assert.deepEqual(await chains(), []);
});

test('a refused pull leaves no blobs and no snapshots (its good layers included)', async () => {
  const bad = buildLayer([{ type: 'file', path: '../../escape', content: 'x' }]);
  const refused = await pushImage(reg, 'test/gc-refused', 'latest', { layers: [...busyboxLayers('gzip'), bad] });
  const blobsBefore = await blobs();
  const chainsBefore = await chains();
  await assert.rejects(d.client.pullImage(refused.ref), (err: unknown) => err instanceof BulkheadError && err.code === 'InvalidArgument' && /escapes the root/.test(err.message));
  assert.deepEqual(await blobs(), blobsBefore);
  assert.deepEqual(await chains(), chainsBefore);
  assert.deepEqual(await readdir(join(d.root, 'content/ingest')), [], 'no partial download');
  assert.deepEqual((await readdir(join(d.root, 'snapshots'))).filter((n) => /^\d+$/.test(n)), [], 'no snapshot dir');
});

test('RemoveImage keeps the layers a created container sits on; the container starts; removing it frees them', async () => {
  await d.client.pullImage(images.user);
  const name = `gc-${process.pid}`;
  const pod = await d.client.runPodSandbox({
    metadata: { name, namespace: 'gc-test', uid: randomUUID(), attempt: 0 }, logDirectory: join(d.base, 'logs', name), labels: {}, linux: {},
  } as PodSandboxConfig, 'runc');
  try {
    const ctr = await d.client.createContainer(pod, { metadata: { name, attempt: 0 }, image: { image: images.user }, command: ['sh', '-c', 'cat /bin/busybox > /dev/null && echo ok'], logPath: `${name}.log` } as ContainerConfig, null);
    await d.client.removeImage(images.user);
    assert.equal((await d.client.imageStatus(images.user)).image, null);
    const u = images.pushed.user!;
    const left = await blobs();
    assert.ok(!left.includes(u.configDigest), 'the image record and its own blobs went');
    assert.equal((await chains()).length, u.layers.length, 'the layers under the container stay');
    await d.client.startContainer(ctr);
    for (let i = 0; i < 200; i++) {
      if ((await d.client.containerStatus(ctr)).status?.state === 'CONTAINER_EXITED') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const st = await d.client.containerStatus(ctr);
    assert.equal(st.status?.exitCode, 0, JSON.stringify(st.status));
    await d.client.removeContainer(ctr);
    assert.deepEqual(await chains(), [], 'the last user of the layers went: they are freed');
    assert.deepEqual(await blobs(), []);
  } finally {
    await d.client.stopPodSandbox(pod).catch(() => {});
    await d.client.removePodSandbox(pod).catch(() => {});
  }
});
