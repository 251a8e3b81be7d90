// applyLayer on its own: entries that replace earlier entries of the same layer. The writer tracks
// what the layer created instead of asking the filesystem, so these pin that bookkeeping down.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, readlink, lstat, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLayer, type TarEntry } from '../../../harness/tar.ts';
import { applyLayer } from './apply.ts';

const base = await mkdtemp(join(tmpdir(), 'bulkhead-apply-'));
after(() => rm(base, { recursive: true, force: true }));
let n = 0;

async function apply(entries: TarEntry[]): Promise<string> {
  const snap = join(base, String(++n));
  const dir = join(snap, 'fs');
  await mkdir(dir, { recursive: true });
  const l = buildLayer(entries);
  await writeFile(join(snap, 'blob'), l.blob);
  await applyLayer(join(snap, 'blob'), { dir, lowers: [], expectedDiffId: l.diffId, name: 'test' });
  return dir;
}

test('a later file entry replaces an earlier one', async () => {
  const d = await apply([{ type: 'file', path: 'a', content: 'one' }, { type: 'file', path: 'a', content: 'two', mode: 0o600 }]);
  assert.equal(await readFile(join(d, 'a'), 'utf8'), 'two');
  assert.equal((await lstat(join(d, 'a'))).mode & 0o777, 0o600);
});

test('a directory replaced by a symlink is no parent any more', async () => {
  await assert.rejects(apply([
    { type: 'dir', path: 'd/' }, { type: 'file', path: 'd/x', content: 'x' },
    { type: 'symlink', path: 'd', linkname: '/etc' }, { type: 'file', path: 'd/y', content: 'pwned' },
  ]), /parent directory "d" is a symlink in this layer/);
});

test('a directory replaced by a file forgets its subtree', async () => {
  await assert.rejects(apply([
    { type: 'dir', path: 'd/' }, { type: 'dir', path: 'd/e/' }, { type: 'file', path: 'd/e/x', content: 'x' },
    { type: 'file', path: 'd', content: 'file now' }, { type: 'file', path: 'd/e/y', content: 'y' },
  ]), /parent "d" is not a directory/);
});

test('a directory can come back after it was replaced', async () => {
  const d = await apply([
    { type: 'dir', path: 'd/' }, { type: 'file', path: 'd/x', content: 'x' },
    { type: 'symlink', path: 'd', linkname: 'elsewhere' }, { type: 'dir', path: 'd/' }, { type: 'file', path: 'd/y', content: 'y' },
  ]);
  assert.ok((await lstat(join(d, 'd'))).isDirectory());
  assert.equal(await readFile(join(d, 'd/y'), 'utf8'), 'y');
  await assert.rejects(lstat(join(d, 'd/x')), /ENOENT/);
});

test('hard links: to an earlier file, kept when the same link repeats, and a symlink target stays a symlink', async () => {
  const d = await apply([
    { type: 'file', path: 'f', content: 'data' }, { type: 'link', path: 'h', linkname: 'f' }, { type: 'link', path: 'h', linkname: 'f' },
    { type: 'symlink', path: 's', linkname: 'f' }, { type: 'link', path: 'hs', linkname: 's' }, { type: 'dir', path: 'sub/' }, { type: 'file', path: 'sub/z', content: 'z' },
  ]);
  const [f, h] = await Promise.all([lstat(join(d, 'f')), lstat(join(d, 'h'))]);
  assert.equal(f.ino, h.ino);
  assert.equal(await readlink(join(d, 'hs')), 'f');
  await assert.rejects(apply([{ type: 'symlink', path: 's', linkname: '/' }, { type: 'link', path: 'h', linkname: 's' }, { type: 'file', path: 'h/x', content: 'x' }]), /parent "h" is not a directory|symlink/);
});

test('a whiteout of an entry made earlier in the same layer replaces it', async () => {
  const d = await apply([{ type: 'dir', path: 'd/' }, { type: 'file', path: 'd/x', content: 'x' }, { type: 'file', path: '.wh.d' }]);
  const st = await lstat(join(d, 'd'));
  assert.ok(st.isCharacterDevice() && st.rdev === 0);
});
