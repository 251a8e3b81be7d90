// `bulkhead-vm features`: what this runtime supports, in the OCI runtime features format.
import type { VmCommand } from './common.ts';

const command: VmCommand = {
  name: 'features',
  synopsis: 'bulkhead-vm features',
  summary: 'Print the supported OCI features (JSON)',
  flags: {},
  async run({ stdout }) {
    stdout.write(JSON.stringify({
      ociVersionMin: '1.0.0', ociVersionMax: '1.1.0', hooks: [], mountOptions: ['ro', 'rw'],
      linux: { namespaces: ['mount', 'uts', 'ipc'], capabilities: [], cgroup: { v1: false, v2: true, systemd: false, systemdUser: false } },
      annotations: { 'io.bulkhead.vm.isolation': 'vm', 'io.bulkhead.vm.memory-mib': 'guest memory for a pod VM', 'io.bulkhead.vm.vcpus': 'vCPUs for a pod VM' },
    }, null, 2) + '\n');
    return 0;
  },
};
export default command;
