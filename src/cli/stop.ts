// `bulkhead stop`: stop containers (grace period, then SIGKILL).
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { eachRef, findContainer, withClient } from './client.ts';

const command: Command = {
  name: 'stop',
  synopsis: 'bulkhead stop [-t SECONDS] CONTAINER...',
  summary: 'Stop running containers (SIGTERM or the image StopSignal, then SIGKILL)',
  flags: { time: { type: 'string', short: 't' } },
  async run(ctx) {
    if (ctx.args.length === 0) throw new UsageError('stop needs at least one CONTAINER');
    const t = ctx.flags.time === undefined ? 10 : Number(ctx.flags.time);
    if (!Number.isInteger(t) || t < 0) throw new UsageError(`invalid -t ${JSON.stringify(ctx.flags.time)}: give a whole number of seconds, 0 or more (example: -t 10)`);
    return await withClient(ctx, (client) => eachRef(ctx, async (ref) => {
      const c = await findContainer(client, ref);
      await client.stopContainer(c.id, t, { timeoutMs: (t + 30) * 1000 });
    }));
  },
};
export default command;
