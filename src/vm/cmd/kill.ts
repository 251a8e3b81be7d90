// `bulkhead-vm kill`: sends a signal to a container's process (or, with --all, to all of its processes).
import { FailedPreconditionError } from '../../errors.ts';
import { signalNumber } from '../spec.ts';
import { checkId, readRecord, status } from '../state.ts';
import { guestStep, withPod, type VmCommand } from './common.ts';
import { bool } from './flags.ts';

/** Signals container `id` under `root` (`signal`: a name or number); the microvm backend calls it in-process. */
export async function killContainer(root: string, id: string, signal: string, all: boolean, timeoutMs?: number): Promise<void> {
  const sig = signalNumber(signal);
  const rec = await readRecord(root, checkId(id));
  const st = await status(root, rec);
  if (st.status === 'stopped') throw new FailedPreconditionError(`container "${id}" is not running`);
  await withPod(rec, (c) => c.request('kill', { name: id, signal: sig, all }, timeoutMs), timeoutMs);
}

const command: VmCommand = {
  name: 'kill',
  synopsis: 'bulkhead-vm kill [--all] ID [SIGNAL]',
  summary: 'Send a signal (default SIGTERM) to a container\'s process',
  flags: { all: { type: 'boolean', short: 'a' } },
  byId: true,
  async run({ global: g, flags, args }) {
    const id = checkId(args[0]);
    await guestStep(g, `kill of container "${id}"`, (ms) => killContainer(g.root, id, args[1] ?? 'SIGTERM', bool(flags, 'all'), ms));
    return 0;
  },
};
export default command;
