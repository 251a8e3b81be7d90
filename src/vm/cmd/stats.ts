// `bulkhead-vm stats`: a container's resource usage as the guest sees it (JSON).
import { checkId, readRecord } from '../state.ts';
import { withPod, type VmCommand } from './common.ts';

/** Container `id`'s usage in the guest as `bulkhead-vm stats` prints it; the microvm backend calls it in-process. */
export async function containerStats(root: string, id: string, timeoutMs?: number): Promise<Record<string, number>> {
  const rec = await readRecord(root, checkId(id));
  return await withPod(rec, (c) => c.request<Record<string, number>>('stats', { name: id }, timeoutMs), timeoutMs);
}

const command: VmCommand = {
  name: 'stats',
  synopsis: 'bulkhead-vm stats ID',
  summary: 'Print a container\'s CPU and memory usage inside the guest (JSON)',
  flags: {},
  byId: true,
  async run({ global: g, args, stdout }) {
    stdout.write(JSON.stringify(await containerStats(g.root, checkId(args[0]))) + '\n');
    return 0;
  },
};
export default command;
