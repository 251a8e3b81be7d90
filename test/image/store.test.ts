// Image metadata, remove + GC, load of OCI layout and docker-save archives.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir, readFile, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, buildTar, sha256, imageConfigBlob, MT, busyboxLayers } from '../../harness/images.ts';
import { createImageService } from '../../src/image/image-service.ts';
import { silentLogger } from '../../src/util/log.ts';

const reg = await sharedRegistry();
const images = await buildAndPushTestImages(reg);
const root = await mkdtemp(join(tmpdir(), 'bulkhead-store-'));
const svc = await createImageService({ root, registries: { mirrors: {}, insecure: [] }, logger: silentLogger });
after(async () => { await svc.close(); await rm(root, { recursive: true, force: true }); });

const count = async (dir: string): Promise<number> => (await readdir(join(root, dir))).length;

test('remove untags; the image goes with its last name; GC frees blobs and snapshots a container does not use', async () => {
  const bb = await svc.pull(images.busybox);
  const ml = await svc.pull(images.multilayer);
  assert.equal(await count('snapshots/by-chain'), 4);
  const blobsBefore = await count('content/blobs/sha256');
  assert.equal(blobsBefore, 2 + 2 + 2 + 2, 'manifest+config of each, 2 shared + 2 own layers');
  // a container on multilayer keeps its snapshots alive through remove + GC
  await svc.prepareRootfs('ctr-1', ml.id);
  await svc.remove(images.multilayer);
  assert.equal(await svc.get(images.multilayer), undefined);
  assert.equal(await svc.get(ml.id), undefined);
  await assert.rejects(svc.remove(images.multilayer), { code: 'NotFound' });
  // remove freed at once what only multilayer used; its snapshots stay for ctr-1
  assert.equal(await count('content/blobs/sha256'), blobsBefore - 4, 'manifest, config and 2 layers of multilayer freed by remove');
  assert.equal(await count('snapshots/by-chain'), 4, 'in use by ctr-1');
  let r = await svc.gc();
  assert.deepEqual([r.blobs, r.snapshots], [0, 0], 'nothing left for a later GC');
  await svc.removeRootfs('ctr-1'); // the last user of multilayer's snapshots: they go now
  assert.equal(await count('snapshots/by-chain'), 2);
  assert.equal((await readdir(join(root, 'snapshots'))).filter((n) => /^\d+$/.test(n)).length, 2);
  r = await svc.gc();
  assert.equal(r.snapshots, 0);
  // busybox is intact
  const [top] = await svc.viewRootfs(bb.id);
  assert.equal(await readlink(join(top!, 'bin/sh')), 'busybox');
  // remove by ID prefix
  await svc.remove(bb.id.slice(7, 19));
  assert.deepEqual(await svc.list(), []);
  await svc.gc();
  assert.equal(await count('content/blobs/sha256'), 0);
  assert.equal(await count('snapshots/by-chain'), 0);
});

test('a second name keeps the image; tags move between images', async () => {
  const a = await svc.pull(images.busybox);
  const b = await svc.pull(images.gzip);
  assert.equal(a.id, b.id, 'same config → same image');
  const rec = await svc.get(a.id);
  assert.deepEqual(rec?.repoTags.sort(), [images.busybox, images.gzip].sort());
  await svc.remove(images.busybox);
  assert.deepEqual((await svc.get(a.id))?.repoTags, [images.gzip]);
  await svc.remove(images.gzip);
  assert.equal(await svc.get(a.id), undefined);
});

test('load: OCI image layout archive and docker-save tar', async () => {
  const layers = busyboxLayers('gzip');
  const cfg = imageConfigBlob({ layers, config: { Labels: { from: 'oci-archive' } } });
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, digest: sha256(cfg), size: cfg.length },
    layers: layers.map((l) => ({ mediaType: MT.ociLayerGzip, digest: l.digest, size: l.size })),
  }));
  const index = { schemaVersion: 2, manifests: [{ mediaType: MT.ociManifest, digest: sha256(manifest), size: manifest.length, annotations: { 'io.containerd.image.name': 'example.com/loaded/oci:v1', 'org.opencontainers.image.ref.name': 'v1' } }] };
  const blob = (b: Buffer) => ({ type: 'file' as const, path: `blobs/sha256/${sha256(b).slice(7)}`, content: b });
  const oci = buildTar([
    { type: 'file', path: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' },
    { type: 'file', path: 'index.json', content: JSON.stringify(index) },
    { type: 'dir', path: 'blobs/' }, { type: 'dir', path: 'blobs/sha256/' },
    blob(cfg), blob(manifest), ...layers.map((l) => blob(l.blob)),
  ]);
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-load-'));
  try {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'oci.tar'), oci);
    const [img] = await svc.load(join(dir, 'oci.tar'));
    assert.equal(img!.id, sha256(cfg));
    assert.deepEqual(img!.repoTags, ['example.com/loaded/oci:v1']);
    assert.equal((await svc.get('example.com/loaded/oci:v1'))?.config.Labels?.from, 'oci-archive');

    // docker save: uncompressed layer.tar files, <id>.json config, manifest.json with RepoTags
    const rawLayers = [buildTar([{ type: 'dir', path: 'etc/' }, { type: 'file', path: 'etc/motd', content: 'hello from docker save\n' }])];
    const dcfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['cat', '/etc/motd'] }, rootfs: { type: 'layers', diff_ids: rawLayers.map((t) => sha256(t)) } }));
    const save = buildTar([
      { type: 'file', path: `${sha256(dcfg).slice(7)}.json`, content: dcfg },
      { type: 'dir', path: 'abc/' },
      { type: 'file', path: 'abc/layer.tar', content: rawLayers[0]! },
      { type: 'file', path: 'manifest.json', content: JSON.stringify([{ Config: `${sha256(dcfg).slice(7)}.json`, RepoTags: ['saved:latest'], Layers: ['abc/layer.tar'] }]) },
      { type: 'file', path: 'repositories', content: '{}' },
    ]);
    await writeFile(join(dir, 'save.tar'), save);
    const [d] = await svc.load(join(dir, 'save.tar'));
    assert.deepEqual(d!.repoTags, ['docker.io/library/saved:latest']);
    assert.deepEqual(d!.config.Cmd, ['cat', '/etc/motd']);
    const [top] = await svc.viewRootfs('saved');
    assert.equal(await readFile(join(top!, 'etc/motd'), 'utf8'), 'hello from docker save\n');

    // a tampered archive is rejected
    const bad = Buffer.from(save);
    const at = bad.indexOf('hello from docker save');
    bad[at] = 'j'.charCodeAt(0);
    await writeFile(join(dir, 'bad.tar'), bad);
    await assert.rejects(svc.load(join(dir, 'bad.tar')), { code: 'InvalidArgument' });
    await writeFile(join(dir, 'junk.tar'), buildTar([{ type: 'file', path: 'x', content: 'y' }]));
    await assert.rejects(svc.load(join(dir, 'junk.tar')), /neither an OCI image layout/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

});

test('GC running over and over during pulls (RemoveImage of other images) never takes a blob or layer a pull in progress relies on', async () => {
  const blobsBefore = new Set(await readdir(join(root, 'content/blobs/sha256')));
  const chainsBefore = new Set(await readdir(join(root, 'snapshots/by-chain')));
  await svc.pull(images.busybox); // shared layers already present: the pulls below find them and must keep them
  let pulling = true;
  let passes = 0;
  const gcLoop = (async () => { while (pulling) { await svc.gc(); passes++; await new Promise((r) => setImmediate(r)); } })();
  try {
    const [ml, zs, un] = await Promise.all([svc.pull(images.multilayer), svc.pull(images.zstd), svc.pull(images.uncompressed)]);
    for (const img of [ml, zs, un]) {
      const [top] = await svc.viewRootfs(img.id);
      assert.ok(top, img.id);
      const have = await readdir(join(root, 'content/blobs/sha256'));
      for (const d of [img.id, img.manifestDigest]) assert.ok(have.includes(d.slice(7)), `${d} present`);
      assert.equal((await svc.viewRootfs(img.id)).length, img.layers.length, 'every layer unpacked and present');
    }
    // the shared busybox layers a pull found present are still there and whole
    const lowers = await svc.viewRootfs(ml.id);
    const links = await Promise.all(lowers.map((d) => readlink(join(d, 'bin/sh')).catch(() => undefined)));
    assert.ok(links.includes('busybox'), 'bin/sh of the busybox layer');
  } finally {
    pulling = false;
    await gcLoop;
  }
  assert.ok(passes > 3, `GC ran ${passes} times during the pulls`);
  for (const ref of [images.multilayer, images.zstd, images.uncompressed, images.busybox]) await svc.remove(ref).catch(() => {});
  for (const b of await readdir(join(root, 'content/blobs/sha256'))) assert.ok(blobsBefore.has(b), `blob ${b} freed`);
  for (const c of await readdir(join(root, 'snapshots/by-chain'))) assert.ok(chainsBefore.has(c), `snapshot ${c} freed`);
});

test('prune: container snapshots no container owns go (young ones stay: a create in progress), images no container uses go', async () => {
  const img = await svc.pull(images.user);
  await svc.prepareRootfs('orphan-ctr', img.id);
  assert.deepEqual(await svc.removeStaleRootfs(new Set()), [], 'a snapshot made a moment ago may be a create in progress');
  const r = await svc.prune({ all: true, containers: new Set(['orphan-ctr']) });
  assert.ok(!r.removedImages.includes(img.id), 'the image under a container stays');
  assert.deepEqual(await svc.removeStaleRootfs(new Set(), 0), ['orphan-ctr']);
  const r2 = await svc.prune({ all: true, containers: new Set() });
  assert.ok(r2.removedImages.includes(img.id));
  assert.ok(r2.reclaimedBytes > 0);
  assert.equal(await svc.get(img.id), undefined);
});
