// `bulkhead-vm stats`: a container's resource usage as the guest sees it (JSON).
import { checkId, readRecord } from '../state.ts';
import { withPod, type VmCommand } from './common.ts';

const command: VmCommand = {
  name: 'stats',
  synopsis: 'bulkhead-vm stats ID',
  summary: 'Print a container\'s CPU and memory usage inside the guest (JSON)',
  flags: {},
  byId: true,
  async run({ global: g, args, stdout }) {
    const id = checkId(args[0]);
    const rec = await readRecord(g.root, id);
    const s = await withPod(rec, (c) => c.request('stats', { name: id }));
    stdout.write(JSON.stringify(s) + '\n');
    return 0;
  },
};
export default command;
