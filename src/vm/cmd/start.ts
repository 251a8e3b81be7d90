// `bulkhead-vm start`: starts a created container's process in the pod's VM.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError } from '../../errors.ts';
import { checkId, containerDir, readRecord, status } from '../state.ts';
import { trace } from '../trace.ts';
import { guestStep, withPod, type VmCommand } from './common.ts';

/** Starts container `id` under `root`; the microvm backend calls it in-process (no bulkhead-vm process). */
export async function startContainer(root: string, id: string, timeoutMs?: number): Promise<void> {
  trace(`start ${id.slice(0, 8)}`);
  const rec = await readRecord(root, checkId(id));
  const st = await status(root, rec);
  if (st.status !== 'created') throw new FailedPreconditionError(`container "${id}" is ${st.status}, not created`);
  await withPod(rec, (c) => c.request('start', { name: id }, timeoutMs), timeoutMs);
  await writeFile(join(containerDir(root, id), 'started'), new Date().toISOString());
  trace(`started ${id.slice(0, 8)}`);
}

const command: VmCommand = {
  name: 'start',
  synopsis: 'bulkhead-vm start ID',
  summary: 'Start the process of a created container',
  flags: {},
  byId: true,
  async run({ global: g, args }) {
    const id = checkId(args[0]);
    await guestStep(g, `start of container "${id}"`, (ms) => startContainer(g.root, id, ms));
    return 0;
  },
};
export default command;
