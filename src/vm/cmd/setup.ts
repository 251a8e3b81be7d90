// `bulkhead-vm setup`: builds the guest assets (kernel, initramfs with the agent) and probes the accelerator.
import { detectAccel } from '../accel.ts';
import { ensureGuestAssets } from '../assets.ts';
import type { VmCommand } from './common.ts';
import { bool, str } from './flags.ts';

const command: VmCommand = {
  name: 'setup',
  synopsis: 'bulkhead-vm [--assets ROOT] setup [--kernel-deb FILE] [--reprobe]',
  summary: 'Build the guest kernel, initramfs and agent under ROOT/vm and probe KVM',
  flags: { 'kernel-deb': { type: 'string' }, reprobe: { type: 'boolean' } },
  async run({ global: g, flags, stdout }) {
    const deb = str(flags, 'kernel-deb');
    const assets = await ensureGuestAssets(g.assetsRoot, { progress: (l) => stdout.write(`bulkhead-vm setup: ${l}\n`), ...(deb ? { kernelDeb: deb } : {}) });
    stdout.write('bulkhead-vm setup: probing the accelerator (boots a guest under KVM once)\n');
    const a = await detectAccel(assets, { force: bool(flags, 'reprobe') });
    stdout.write(`bulkhead-vm setup: accel ${a.accel} (${a.reason})\nbulkhead-vm setup: guest kernel ${assets.kernelRelease}; assets in ${assets.dir}\n`);
    return 0;
  },
};
export default command;
