// Pulls every fixture image from a real registry and checks the unpacked trees.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, lstat, readlink, access, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages } from '../../harness/images.ts';
import { createImageService, mountRootfs, unmountRootfs, type PullProgress } from '../../src/image/image-service.ts';
import { silentLogger } from '../../src/util/log.ts';
import { run } from '../../src/util/exec.ts';

const reg = await sharedRegistry();
const images = await buildAndPushTestImages(reg);
const root = await mkdtemp(join(tmpdir(), 'bulkhead-pull-'));
const svc = await createImageService({ root, registries: { mirrors: {}, insecure: [] }, logger: silentLogger });
after(async () => { await svc.close(); await rm(root, { recursive: true, force: true }); });

async function mergedView(id: string): Promise<string[]> {
  return await svc.viewRootfs(id);
}

test('pull busybox: record, config, progress, unpacked layers', async () => {
  const events: PullProgress[] = [];
  const img = await svc.pull(images.busybox, { onProgress: (e) => events.push(e) });
  assert.equal(img.id, images.pushed.busybox!.configDigest);
  assert.deepEqual(img.repoTags, [images.busybox]);
  assert.deepEqual(img.repoDigests, [`${reg.host}/test/busybox@${images.pushed.busybox!.manifestDigest}`]);
  assert.deepEqual(img.config.Cmd, ['sh']);
  assert.equal(img.layers.length, 2);
  assert.ok(events.some((e) => e.status === 'downloading'));
  assert.equal(events.filter((e) => e.status === 'done').length, 2);
  const lowers = await mergedView(img.id);
  assert.equal(lowers.length, 2);
  const [top, bottom] = lowers as [string, string];
  assert.equal(await readlink(join(top, 'bin/sh')), 'busybox');
  assert.equal((await lstat(join(bottom, 'bin/busybox'))).mode & 0o7777, 0o755);
  assert.equal((await lstat(join(bottom, 'tmp'))).mode & 0o7777, 0o1777);
  assert.equal((await lstat(join(bottom, 'home/app'))).uid, 1000);
  // the same image again: everything exists
  const again: PullProgress[] = [];
  await svc.pull(images.busybox, { onProgress: (e) => again.push(e) });
  assert.ok(again.every((e) => e.status === 'exists'));
  assert.equal((await svc.get('127.0.0.1:' + reg.host.split(':')[1] + '/test/busybox'))?.id, img.id);
  assert.equal((await svc.get(img.id.slice(7, 19)))?.id, img.id);
  assert.equal((await svc.get(`${reg.host}/test/busybox@${images.pushed.busybox!.manifestDigest}`))?.id, img.id);
});

test('pull multilayer: whiteouts, opaque dir, hard link, symlink, setuid, owner, xattr; overlay mount shows the merged tree', async () => {
  const img = await svc.pull(images.multilayer);
  const lowers = await mergedView(img.id);
  const top = lowers[0]!;
  const wh = await lstat(join(top, 'data/gone.txt'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout is a 0:0 char device');
  const opq = await run('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', join(top, 'data/opq')]);
  assert.equal(opq.stdout, 'y');
  assert.equal((await lstat(join(top, 'data/hard.txt'))).ino, (await lstat(join(top, 'data/orig.txt'))).ino);
  assert.equal(await readlink(join(top, 'data/link')), 'keep.txt');
  assert.equal((await lstat(join(top, 'data/setuid'))).mode & 0o7777, 0o4755);
  const owned = await lstat(join(top, 'data/owned'));
  assert.equal(owned.uid, 1000);
  assert.equal(owned.mtimeMs, 1_600_000_000_000);
  const x = await run('getfattr', ['--only-values', '-n', 'user.bulkhead', join(top, 'data/xattr')]);
  assert.equal(x.stdout, 'hello');

  const mounts = await svc.prepareRootfs('c-multi', img.id);
  assert.equal(mounts[0]!.type, 'overlay');
  const target = await mkdtemp(join(tmpdir(), 'bulkhead-mnt-'));
  await mountRootfs(mounts, target);
  try {
    assert.equal(await readFile(join(target, 'data/keep.txt'), 'utf8'), 'keep\n');
    assert.equal(await readFile(join(target, 'data/link'), 'utf8'), 'keep\n');
    await assert.rejects(access(join(target, 'data/gone.txt')), { code: 'ENOENT' });
    await assert.rejects(access(join(target, 'data/olddir')), { code: 'ENOENT' });
    assert.deepEqual((await readdir(join(target, 'data/opq'))).sort(), ['b.txt']);
    assert.equal(await readlink(join(target, 'bin/sh')), 'busybox');
    const sh = await run('chroot', [target, '/bin/sh', '-c', 'echo hi from $(id -u) > /tmp/out; cat /tmp/out']);
    assert.equal(sh.stdout, 'hi from 0\n');
  } finally {
    await unmountRootfs(target);
    await rm(target, { recursive: true, force: true });
  }
  await svc.removeRootfs('c-multi');
  await svc.removeRootfs('c-multi');
});

test('pull user, docker schema2, gzip/zstd/uncompressed variants', async () => {
  const user = await svc.pull(images.user);
  assert.equal(user.config.User, '1000:1000');
  const docker = await svc.pull(images.docker);
  assert.equal(docker.config.Labels?.kind, 'docker');
  const ids = new Set<string>();
  for (const r of [images.gzip, images.zstd, images.uncompressed]) {
    const img = await svc.pull(r);
    const top = (await mergedView(img.id))[0]!;
    assert.equal(await readlink(join(top, 'bin/sh')), 'busybox');
    ids.add(img.layers[0]!.chainId);
  }
  assert.equal(ids.size, 1, 'same diffIDs → same snapshots whatever the compression');
});

test('index: linux/amd64 by default, arm64/v8 when asked', async () => {
  const amd = await svc.pull(images.index);
  assert.equal(amd.config.Labels?.arch, 'amd64');
  assert.equal(amd.indexDigest, images.indexDigest);
  assert.deepEqual(amd.repoDigests, [`${reg.host}/test/index@${images.indexDigest}`]);
  const arm = await svc.pull(images.index, { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  assert.equal(arm.config.Labels?.arch, 'arm64');
  await assert.rejects(svc.pull(images.index, { platform: { os: 'linux', architecture: 's390x' } }), { code: 'NotFound' });
});
