// OverlaySnapshotter commits: a deferred commit is usable as a parent at once and named on disk
// (by-chain/) only once published; a failed fill leaves nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OverlaySnapshotter } from './overlay.ts';
import { InvalidArgumentError } from '../../errors.ts';

const root = await mkdtemp(join(tmpdir(), 'bulkhead-overlay-'));
after(() => rm(root, { recursive: true, force: true }));
const A = 'sha256:' + 'a'.repeat(64);
const B = 'sha256:' + 'b'.repeat(64);
const C = 'sha256:' + 'c'.repeat(64);

test('deferred commits chain before they are published; published ones are on disk', async () => {
  const s = await OverlaySnapshotter.open(join(root, 's1'));
  const a = await s.commitDeferred(A, undefined, async (dir) => { await writeFile(join(dir, 'a'), 'a'); });
  const b = await s.commitDeferred(B, A, async (dir, lowers) => {
    assert.deepEqual(lowers, [a.info.dir]);
    await writeFile(join(dir, 'b'), 'b');
  });
  await Promise.all([a.published, b.published]);
  const fresh = await OverlaySnapshotter.open(join(root, 's1')); // what another process sees
  assert.deepEqual(await fresh.view(B), [b.info.dir, a.info.dir]);
  assert.equal(await readFile(join(b.info.dir, 'b'), 'utf8'), 'b');
  assert.deepEqual((await s.commitDeferred(B, A, async () => assert.fail('unpacked twice'))).info, b.info);
});

test('a failed fill leaves no snapshot and no temp dir', async () => {
  const s = await OverlaySnapshotter.open(join(root, 's2'));
  await assert.rejects(s.commit(C, undefined, async (dir) => { await writeFile(join(dir, 'x'), 'x'); throw new InvalidArgumentError('bad layer'); }), /bad layer/);
  assert.equal(await s.stat(C), undefined);
  assert.deepEqual(await readdir(join(root, 's2', 'tmp')), []);
  assert.deepEqual(await readdir(join(root, 's2', 'by-chain')), []);
});
