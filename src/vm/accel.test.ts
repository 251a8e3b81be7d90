import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { accelKey, detectAccel } from './accel.ts';
import type { GuestAssets } from './assets.ts';

describe('the accelerator probe\'s cache key', () => {
  it('names the guest kernel, the QEMU binary and /dev/kvm; with /dev/kvm, the boot too', () => {
    const withKvm = accelKey('6.1.0-test', true);
    const without = accelKey('6.1.0-test', false);
    assert.notEqual(withKvm, without, 'a /dev/kvm that appears (or goes) makes the answer stale');
    assert.match(withKvm, /\|boot=[0-9a-f-]+$/, 'where /dev/kvm exists, a KVM answer holds for one boot only');
    assert.doesNotMatch(without, /boot=/, 'without /dev/kvm, TCG holds until something named here changes');
    assert.notEqual(accelKey('6.1.0-other', false), without, 'another guest kernel is probed again');
    assert.match(without, /qemu-system-x86_64:\d+:\d+|no-qemu:0:0/, 'the QEMU binary is named with its size and time');
  });

  it('a cached answer under this key is used as is; one under another key is not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulkhead-accel-'));
    try {
      const assets = { dir, kernelRelease: '6.1.0-test' } as GuestAssets;
      const key = accelKey(assets.kernelRelease);
      await writeFile(join(dir, 'accel.json'), JSON.stringify({ accel: 'kvm', reason: 'cached', key }));
      assert.deepEqual(await detectAccel(assets), { accel: 'kvm', reason: 'cached', key });
      // an older Bulkhead's key (kernel and guest kernel only): not this answer, whatever it said
      await writeFile(join(dir, 'accel.json'), JSON.stringify({ accel: 'tcg', reason: 'old', key: `${key.split('|')[0]}|6.1.0-test|qemu` }));
      const ac = new AbortController();
      ac.abort();
      // the probe is aborted before it boots anything: that it starts at all shows the stale answer was refused
      const r = await detectAccel(assets, { signal: ac.signal }).then((x) => x.reason, (e: Error) => `probe: ${e.message}`);
      assert.notEqual(r, 'old', r);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
