// The default root's by-id index (`bulkhead-vm` without --root finds a container created under
// another root): an entry whose state dir is gone (its root deleted with the container in it: a
// daemon killed, its temporary root removed) goes at the next create, and nothing else does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { indexAdd } from './state.ts';

test('indexAdd removes index entries whose state dir is gone, and keeps the others', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-vm-index-'));
  try {
    const index = join(dir, 'by-id');
    const live = join(dir, 'root', 'live');
    mkdirSync(live, { recursive: true });
    mkdirSync(index);
    symlinkSync(live, join(index, 'live'));
    symlinkSync(join(dir, 'deleted-root', 'gone'), join(index, 'gone'));
    symlinkSync('../root/live', join(index, 'relative'));
    const fresh = join(dir, 'root', 'fresh');
    mkdirSync(fresh);
    await indexAdd('fresh', fresh, index);
    assert.ok(lstatSync(join(index, 'fresh')).isSymbolicLink(), 'the new entry');
    assert.ok(existsSync(join(index, 'live')) && existsSync(join(index, 'relative')), 'entries of existing state dirs stay');
    assert.throws(() => lstatSync(join(index, 'gone')), { code: 'ENOENT' }, 'the entry of a deleted root goes');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
