// `bulkhead-vm update`: not supported, and says so up front (help, usage and the error).
import { UnimplementedError } from '../../errors.ts';
import type { VmCommand } from './common.ts';

export const UPDATE_UNSUPPORTED = 'not supported: a microVM\'s memory and vCPUs are fixed when its pod VM boots, and a container\'s limits inside the guest when it is created';

const command: VmCommand = {
  name: 'update',
  synopsis: 'bulkhead-vm update [--resources FILE] ID   (not supported)',
  summary: `Change a container's resources — ${UPDATE_UNSUPPORTED}`,
  flags: { resources: { type: 'string', short: 'r' } },
  byId: true,
  async run() {
    throw new UnimplementedError(`update: ${UPDATE_UNSUPPORTED}; to change them, recreate the pod with the new limits (the VM is sized from the pod sandbox's limits or its annotations io.bulkhead.vm.memory-mib and io.bulkhead.vm.vcpus)`);
  },
};
export default command;
