// The registry and image fixtures, checked with independent tools (skopeo, umoci, tar).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, lstat, readlink, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { startRegistry, startProxy } from '../../harness/registry.ts';
import { buildAndPushTestImages, buildTar, sha256, MT } from '../../harness/images.ts';
import { run } from '../../src/util/exec.ts';

const reg = await startRegistry();
const work = await mkdtemp(join(tmpdir(), 'bulkhead-fixtures-'));
after(async () => { await reg.close(); await rm(work, { recursive: true, force: true }); });

test('registry answers /v2/ and the images are pushed with stable digests', async () => {
  const images = await buildAndPushTestImages(reg);
  assert.equal(images.busybox, `${reg.host}/test/busybox:latest`);
  assert.equal(await buildAndPushTestImages(reg), images, 'cached per process');
  const r = await fetch(`${reg.url}/v2/test/busybox/manifests/latest`, { headers: { accept: MT.ociManifest } });
  assert.equal(r.status, 200);
  const body = Buffer.from(await r.arrayBuffer());
  assert.equal(sha256(body), images.pushed.busybox!.manifestDigest);
  const m = JSON.parse(body.toString()) as { layers: { digest: string }[] };
  assert.ok(m.layers.length >= 2);
  const blob = Buffer.from(await (await fetch(`${reg.url}/v2/test/busybox/blobs/${m.layers[0]!.digest}`)).arrayBuffer());
  assert.equal(sha256(blob), m.layers[0]!.digest);
  assert.equal(sha256(gunzipSync(blob)), images.pushed.busybox!.layers[0]!.diffId);
  const idx = await fetch(`${reg.url}/v2/test/index/manifests/latest`, { headers: { accept: MT.ociIndex } });
  assert.equal(idx.headers.get('content-type'), MT.ociIndex);
  const docker = await fetch(`${reg.url}/v2/test/docker/manifests/latest`, { headers: { accept: MT.dockerManifest } });
  assert.equal(docker.headers.get('content-type'), MT.dockerManifest);
});

test('tar writer output is read back by GNU tar (long names via PAX)', async () => {
  const long = 'd/' + 'x'.repeat(150);
  const tar = buildTar([{ type: 'dir', path: 'd/' }, { type: 'file', path: long, content: 'hi' }, { type: 'symlink', path: 'd/l', linkname: 'x' }]);
  const r = await run('tar', ['-tvf', '-'], { input: tar });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`${long}$`, 'm'));
  assert.match(r.stdout, /d\/l -> x/);
});

test('skopeo + umoci unpack the multilayer image with whiteouts applied', async () => {
  const images = await buildAndPushTestImages(reg);
  const oci = join(work, 'oci');
  const c = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${images.multilayer}`, `oci:${oci}:t`], { timeoutMs: 120_000 });
  assert.equal(c.code, 0, c.stderr);
  const bundle = join(work, 'bundle');
  const u = await run('umoci', ['unpack', '--image', `${oci}:t`, bundle], { timeoutMs: 120_000 });
  assert.equal(u.code, 0, u.stderr);
  const rootfs = join(bundle, 'rootfs');
  assert.equal(await readlink(join(rootfs, 'bin/sh')), 'busybox');
  assert.equal(await readFile(join(rootfs, 'data/keep.txt'), 'utf8'), 'keep\n');
  await assert.rejects(access(join(rootfs, 'data/gone.txt')), { code: 'ENOENT' });
  await assert.rejects(access(join(rootfs, 'data/opq/a.txt')), { code: 'ENOENT' });
  assert.equal((await lstat(join(rootfs, 'data/hard.txt'))).ino, (await lstat(join(rootfs, 'data/orig.txt'))).ino);
  assert.match(await readFile(join(rootfs, 'etc/passwd'), 'utf8'), /^app:x:1000:1000:/m);
});

test('proxy with bearer auth demands a token from its token server', async () => {
  await buildAndPushTestImages(reg);
  const front = await startProxy(reg, { auth: { kind: 'bearer', username: 'u', password: 'p' } });
  try {
    const r1 = await fetch(`${front.url}/v2/test/busybox/manifests/latest`);
    assert.equal(r1.status, 401);
    const ch = r1.headers.get('www-authenticate') ?? '';
    assert.match(ch, /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token"/);
    await r1.arrayBuffer();
    const tok = await fetch(`http://${front.tokenHost}/token`, { headers: { authorization: 'Basic ' + Buffer.from('u:p').toString('base64') } });
    const { token } = await tok.json() as { token: string };
    const r2 = await fetch(`${front.url}/v2/test/busybox/manifests/latest`, { headers: { authorization: `Bearer ${token}`, accept: MT.ociManifest } });
    assert.equal(r2.status, 200);
    await r2.arrayBuffer();
  } finally {
    await front.close();
  }
});
