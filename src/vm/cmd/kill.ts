// `bulkhead-vm kill`: sends a signal to a container's process (or, with --all, to all of its processes).
import { FailedPreconditionError } from '../../errors.ts';
import { signalNumber } from '../spec.ts';
import { checkId, readRecord, status } from '../state.ts';
import { withPod, type VmCommand } from './common.ts';
import { bool } from './flags.ts';

const command: VmCommand = {
  name: 'kill',
  synopsis: 'bulkhead-vm kill [--all] ID [SIGNAL]',
  summary: 'Send a signal (default SIGTERM) to a container\'s process',
  flags: { all: { type: 'boolean', short: 'a' } },
  byId: true,
  async run({ global: g, flags, args }) {
    const id = checkId(args[0]);
    const sig = signalNumber(args[1] ?? 'SIGTERM');
    const rec = await readRecord(g.root, id);
    const st = await status(g.root, rec);
    if (st.status === 'stopped') throw new FailedPreconditionError(`container "${id}" is not running`);
    await withPod(rec, (c) => c.request('kill', { name: id, signal: sig, all: bool(flags, 'all') }));
    return 0;
  },
};
export default command;
