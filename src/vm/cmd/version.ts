// `bulkhead-vm version` (also --version): the runtime's and the OCI spec's versions, as runc prints them.
import type { VmCommand } from './common.ts';

export const VERSION_TEXT = 'bulkhead-vm version 0.1.0\nspec: 1.0.2\n';

const command: VmCommand = {
  name: 'version',
  synopsis: 'bulkhead-vm version',
  summary: 'Print the runtime version and the OCI spec version',
  flags: {},
  async run({ stdout }) { stdout.write(VERSION_TEXT); return 0; },
};
export default command;
