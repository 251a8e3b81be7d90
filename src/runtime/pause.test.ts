import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePauseRootfs } from './pause.ts';

const modes = (dir: string): number[] => ['', 'bin', 'proc', 'dev', 'sys', 'etc', 'tmp'].map((d) => statSync(join(dir, d)).mode & 0o7777);

test('the pause rootfs is 0755 whatever the umask it is made under, and one left with another mode is mended', async () => {
  const base = mkdtempSync(join(tmpdir(), 'bh-pause-'));
  const old = process.umask(0o177);
  try {
    const dir = join(base, 'pause');
    await ensurePauseRootfs(dir);
    process.umask(old);
    assert.deepEqual(modes(dir), Array(7).fill(0o755), 'made under umask 0177: still every container can enter it');
    assert.equal(statSync(join(dir, 'bin', 'busybox')).mode & 0o777, 0o755);
    // a rootfs an earlier daemon left 0600 (as a tightened process umask once made it) is mended on reuse
    chmodSync(dir, 0o600);
    chmodSync(join(dir, 'proc'), 0o700);
    await ensurePauseRootfs(dir);
    assert.deepEqual(modes(dir), Array(7).fill(0o755));
  } finally {
    process.umask(old);
    rmSync(base, { recursive: true, force: true });
  }
});
