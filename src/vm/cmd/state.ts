// `bulkhead-vm state`: the OCI state of a container as JSON, with the exit code and reason as annotations.
import { join } from 'node:path';
import { checkId, readRecord, status } from '../state.ts';
import type { VmCommand } from './common.ts';

const command: VmCommand = {
  name: 'state',
  synopsis: 'bulkhead-vm state ID',
  summary: 'Print the OCI state of a container (JSON)',
  flags: {},
  byId: true,
  async run({ global: g, args, stdout }) {
    const id = checkId(args[0]);
    const rec = await readRecord(g.root, id);
    const st = await status(g.root, rec);
    const annotations: Record<string, string> = { ...rec.annotations, 'io.bulkhead.vm.pod': rec.podId };
    if (st.exit) {
      annotations['io.bulkhead.vm.exit-code'] = String(st.exit.code);
      if (st.exit.reason) annotations['io.bulkhead.vm.exit-reason'] = st.exit.reason;
    }
    stdout.write(JSON.stringify({
      ociVersion: '1.0.2', id, status: st.status === 'creating' ? 'creating' : st.status,
      pid: st.status === 'stopped' ? 0 : rec.pid, bundle: rec.bundle, rootfs: join(rec.bundle, 'rootfs'), created: rec.created, annotations,
    }, null, 2) + '\n');
    return 0;
  },
};
export default command;
