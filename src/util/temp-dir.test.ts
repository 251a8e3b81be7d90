import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ownedTempDir, sweepTempDirs } from './temp-dir.ts';

describe('scratch directories named after their process', () => {
  it('a dead process\'s directory goes, a live one\'s and a fresh unnamed one stay, an old unnamed one goes, a mount is never entered', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'bulkhead-tempdir-test-'));
    try {
      // a pid that is surely gone: a child that has exited and been reaped
      const dead = spawnSync('true').pid!;
      const deadDir = join(tmp, `bh-probe-${dead}-AAAAAA`);
      mkdirSync(join(deadDir, 'rootfs', 'bin'), { recursive: true });
      writeFileSync(join(deadDir, 'rootfs', 'bin', 'x'), 'x');
      const liveDir = join(tmp, `bh-probe-${process.pid}-BBBBBB`);
      mkdirSync(liveDir);
      const freshLegacy = join(tmp, 'bh-probe-CCCCCC');
      mkdirSync(freshLegacy);
      const oldLegacy = join(tmp, 'bh-probe-DDDDDD');
      mkdirSync(oldLegacy);
      utimesSync(oldLegacy, new Date(Date.now() - 2 * 3600_000), new Date(Date.now() - 2 * 3600_000));
      const mounted = join(tmp, `bh-probe-${dead}-EEEEEE`);
      mkdirSync(join(mounted, 'm'), { recursive: true });
      assert.equal(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', join(mounted, 'm')]).status, 0);
      const other = join(tmp, `bh-other-${dead}-FFFFFF`);
      mkdirSync(other);
      try {
        const removed = await sweepTempDirs('bh-probe-', tmp);
        assert.deepEqual(removed.map((p) => basename(p)).sort(), [basename(deadDir), basename(oldLegacy)].sort());
        assert.ok(existsSync(liveDir) && existsSync(freshLegacy) && existsSync(join(mounted, 'm')) && existsSync(other));
        const mine = await ownedTempDir('bh-probe-', tmp);
        assert.match(basename(mine), new RegExp(`^bh-probe-${process.pid}-[A-Za-z0-9]{6}$`));
      } finally {
        spawnSync('umount', ['-l', join(mounted, 'm')]);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
