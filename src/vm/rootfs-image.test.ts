// The microVM disk-image cache is reference counted: an image goes when no container directory
// claims it (after a grace), stale claims of removed containers do not keep it, and a concurrent
// claim keeps it. Real files in a temp dir; mkfs.ext4 / mkfs.erofs build the images.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, link, mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { findOnPath } from '../util/which.ts';
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

test('an erofs root image keeps owners, modes, mtimes, xattrs, symlinks and hard links, and is pruned like an ext4 one', { skip: findOnPath('mkfs.erofs') && findOnPath('dump.erofs') ? false : 'erofs-utils is not installed' }, async () => {
  const rootfs = join(base, 'erofs-rootfs');
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await chown(join(rootfs, 'etc/passwd'), 7, 8);
  await chmod(join(rootfs, 'etc'), 0o750);
  const when = new Date('2001-02-03T04:05:06Z');
  await utimes(join(rootfs, 'etc/passwd'), when, when);
  await symlink('passwd', join(rootfs, 'etc/link'));
  await link(join(rootfs, 'etc/passwd'), join(rootfs, 'etc/hard'));
  spawnSync('setfattr', ['-n', 'user.bh', '-v', 'kept', join(rootfs, 'etc/passwd')]);
  const images = join(base, 'erofs-images');
  await mkdir(images);
  const user = join(base, 'erofs-user');
  await mkdir(user);
  const img = await rootfsImage(rootfs, images, undefined, user, 'erofs');
  assert.match(img.path, /\/[a-f0-9]{32}\.erofs$/);
  assert.notEqual(img.path, (await rootfsImage(rootfs, images, undefined, user, 'ext4')).path, 'one image per format');
  const dump = (p: string): string => { const r = spawnSync('dump.erofs', [`--path=${p}`, img.path], { encoding: 'utf8' }); assert.equal(r.status, 0, r.stderr); return r.stdout; };
  const passwd = dump('/etc/passwd');
  assert.match(passwd, /Uid: 7\s+Gid: 8\s+Access: 0644/);
  assert.match(passwd, /Links: 2/);
  assert.match(passwd, /Timestamp: 2001-02-03 04:05:06/);
  if (spawnSync('getfattr', ['-n', 'user.bh', join(rootfs, 'etc/passwd')]).status === 0) assert.doesNotMatch(passwd, /Xattr size: 0\b/, 'the xattr is in the image');
  assert.match(dump('/etc'), /Access: 0750/);
  assert.match(dump('/etc/link'), /symlink/);
  const old = new Date(Date.now() - 3600_000);
  await rm(user, { recursive: true });
  for (const n of await readdir(images)) if (!n.endsWith('.users')) await utimes(join(images, n), old, old);
  for (const u of (await readdir(images)).filter((n) => n.endsWith('.users'))) for (const m of await readdir(join(images, u))) await utimes(join(images, u, m), old, old);
  assert.equal((await pruneRootfsImages(images, { graceMs: 1000 })).removed, 2, 'the erofs and the ext4 image');
});
