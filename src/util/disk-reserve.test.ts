import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskReserve } from './disk-reserve.ts';

describe('the disk reserve', () => {
  it('a running daemon\'s writes take it a quarter at a time but never the last quarter; a start takes that', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulkhead-reserve-'));
    try {
      const r = new DiskReserve(dir, { bytes: 4 * 4096 });
      r.ensure();
      assert.equal(statSync(r.path).size, 4 * 4096);
      const freed: boolean[] = [];
      for (let i = 0; i < 6; i++) freed.push(r.release('a write'));
      assert.deepEqual(freed, [true, true, true, false, false, false]);
      assert.equal(statSync(r.path).size, 4096, 'the last quarter stays for a restart');
      assert.equal(r.release('daemon start', { forStart: true }), true);
      assert.equal(existsSync(r.path), false);
      assert.equal(r.release('daemon start', { forStart: true }), false, 'nothing left to give');
      r.ensure();
      assert.ok(r.held(), 'made again when there is room');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
