// `bulkhead-vm state`: the OCI state of a container as JSON, with the exit code and reason as annotations.
import { join } from 'node:path';
import { checkId, readRecord, status } from '../state.ts';
import type { VmCommand } from './common.ts';

/** The OCI state of container `id` under `root` as `bulkhead-vm state` prints it; the microvm backend calls it in-process. */
export async function containerState(root: string, id: string): Promise<string> {
  const rec = await readRecord(root, checkId(id));
  const st = await status(root, rec);
  const annotations: Record<string, string> = { ...rec.annotations, 'io.bulkhead.vm.pod': rec.podId };
  if (st.exit) {
    annotations['io.bulkhead.vm.exit-code'] = String(st.exit.code);
    if (st.exit.reason) annotations['io.bulkhead.vm.exit-reason'] = st.exit.reason;
  }
  return JSON.stringify({
    ociVersion: '1.0.2', id, status: st.status === 'creating' ? 'creating' : st.status,
    pid: st.status === 'stopped' ? 0 : rec.pid, bundle: rec.bundle, rootfs: join(rec.bundle, 'rootfs'), created: rec.created, annotations,
  }, null, 2) + '\n';
}

const command: VmCommand = {
  name: 'state',
  synopsis: 'bulkhead-vm state ID',
  summary: 'Print the OCI state of a container (JSON)',
  flags: {},
  byId: true,
  async run({ global: g, args, stdout }) {
    stdout.write(await containerState(g.root, checkId(args[0])));
    return 0;
  },
};
export default command;
