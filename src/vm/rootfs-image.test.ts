// The microVM disk-image cache is reference counted: an image goes when no container directory
// claims it (after a grace), stale claims of removed containers do not keep it, and a concurrent
// claim keeps it. Real files in a temp dir; mkfs.ext4 builds the image.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimRootfsImage, pruneRootfsImages, releaseRootfsImage, rootfsImage } from './rootfs-image.ts';

const base = await mkdtemp(join(tmpdir(), 'bulkhead-vmimg-'));
after(async () => { await rm(base, { recursive: true, force: true }); });

test('disk images of removed containers are pruned; images a container uses stay', async () => {
  const rootfs = join(base, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await writeFile(join(rootfs, 'bin/hello'), 'hello\n');
  const images = join(base, 'images');
  await mkdir(images);
  const c1 = join(base, 'c1');
  const c2 = join(base, 'c2');
  await mkdir(c1);
  await mkdir(c2);
  const a = await rootfsImage(rootfs, images, undefined, c1);
  const b = await rootfsImage(rootfs, images, undefined, c2);
  assert.equal(a.path, b.path, 'one cached image for one tree');
  // within the grace nothing goes, even unclaimed
  await releaseRootfsImage(a.path, c1);
  assert.ok(existsSync(a.path));
  const old = new Date(Date.now() - 3600_000);
  await utimes(a.path, old, old);
  // c2 still uses it
  assert.deepEqual(await pruneRootfsImages(images, { graceMs: 1000 }), { removed: 0, bytes: 0 });
  assert.ok(existsSync(a.path));
  // c2's directory is gone (crashed delete): its old claim is stale and the image goes
  await rm(c2, { recursive: true });
  for (const m of await readdir(`${a.path}.users`)) await utimes(join(`${a.path}.users`, m), old, old);
  const r = await pruneRootfsImages(images, { graceMs: 1000 });
  assert.equal(r.removed, 1);
  assert.ok(r.bytes > 0);
  assert.deepEqual(await readdir(images), []);
  // a claim made meanwhile keeps an image: claim first, then the image is rebuilt when missing
  const c3 = join(base, 'c3');
  await mkdir(c3);
  await claimRootfsImage(a.path, c3);
  const again = await rootfsImage(rootfs, images, undefined, c3);
  await utimes(again.path, old, old);
  assert.equal((await pruneRootfsImages(images, { graceMs: 1000 })).removed, 0);
  await releaseRootfsImage(again.path, c3, { graceMs: 1000 });
  assert.deepEqual(await readdir(images), [], 'the last user released it: pruned at once (its mtime is past the grace)');
});
