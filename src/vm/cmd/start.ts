// `bulkhead-vm start`: starts a created container's process in the pod's VM.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError } from '../../errors.ts';
import { checkId, containerDir, readRecord, status } from '../state.ts';
import { withPod, type VmCommand } from './common.ts';

const command: VmCommand = {
  name: 'start',
  synopsis: 'bulkhead-vm start ID',
  summary: 'Start the process of a created container',
  flags: {},
  byId: true,
  async run({ global: g, args }) {
    const id = checkId(args[0]);
    const rec = await readRecord(g.root, id);
    const st = await status(g.root, rec);
    if (st.status !== 'created') throw new FailedPreconditionError(`container "${id}" is ${st.status}, not created`);
    await withPod(rec, (c) => c.request('start', { name: id }));
    await writeFile(join(containerDir(g.root, id), 'started'), new Date().toISOString());
    return 0;
  },
};
export default command;
