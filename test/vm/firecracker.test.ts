// The Firecracker driver boots the guest and reaches its agent over vsock. Runs only where a
// firecracker binary is configured (BULKHEAD_FIRECRACKER) and KVM runs guests.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadGuestAssets } from '../../src/vm/assets.ts';
import { detectAccel } from '../../src/vm/accel.ts';
import { FirecrackerVmm } from '../../src/vm/firecracker.ts';
import { waitForHello } from '../../src/vm/vmd.ts';
import { ASSETS, skipReason, tempDir } from '../../harness/vm-assets.ts';

const bin = process.env.BULKHEAD_FIRECRACKER;
const skip = !bin ? 'no firecracker binary configured (set BULKHEAD_FIRECRACKER=/path/to/firecracker; none is installed on this host)'
  : !existsSync(bin) ? `BULKHEAD_FIRECRACKER=${bin} does not exist` : skipReason();

it('boots a guest under Firecracker and hears its agent', { skip, timeout: 120_000 }, async (t) => {
  const assets = await loadGuestAssets(ASSETS);
  const accel = await detectAccel(assets);
  if (accel.accel !== 'kvm') { t.skip(`Firecracker needs KVM: ${accel.reason}`); return; }
  const dir = tempDir('bulkhead-fc-');
  try {
    const vm = await new FirecrackerVmm(bin!).boot({
      name: 'fc-test', kernel: assets.kernel, initramfs: assets.initramfs, memoryMiB: 256, vcpus: 1, accel: 'kvm',
      drives: [], consoleLog: join(dir, 'console.log'), workDir: dir,
    });
    try {
      const hello = await waitForHello(vm, 60_000);
      assert.equal(hello.kernel, assets.kernelRelease);
    } finally {
      await vm.stop(1000);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
