// `bulkhead logs`: a container's output, read from its CRI-format log file as crictl does.
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { findContainer, withClient } from './client.ts';
import { readLogs } from './log-reader.ts';

const command: Command = {
  name: 'logs',
  synopsis: 'bulkhead logs [-f] [--tail N] [--since TIME] [-t] CONTAINER',
  summary: "Print a container's logs",
  flags: {
    follow: { type: 'boolean', short: 'f' },
    tail: { type: 'string' },
    since: { type: 'string' },
    timestamps: { type: 'boolean', short: 't' },
  },
  async run(ctx) {
    const ref = ctx.args[0];
    if (!ref) throw new UsageError('logs needs a CONTAINER');
    const tail = ctx.flags.tail === undefined ? undefined : Number(ctx.flags.tail);
    if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw new UsageError(`invalid --tail ${JSON.stringify(ctx.flags.tail)}: give a whole number of lines, 0 or more (example: --tail 20)`);
    let since: Date | undefined;
    if (typeof ctx.flags.since === 'string') {
      const rel = /^(\d+)(s|m|h)$/.exec(ctx.flags.since);
      since = rel ? new Date(Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6 }[rel[2] as 's']) : new Date(ctx.flags.since);
      if (Number.isNaN(since.getTime())) throw new UsageError('--since takes a time (RFC 3339) or a duration like 10m');
    }
    return await withClient(ctx, async (client) => {
      const c = await findContainer(client, ref);
      const { status } = await client.containerStatus(c.id);
      const opts = {
        follow: Boolean(ctx.flags.follow),
        signal: ctx.signal,
        exited: async () => (await client.containerStatus(c.id)).status.state !== 'CONTAINER_RUNNING',
        ...(tail !== undefined ? { tail } : {}),
        ...(since ? { since } : {}),
      };
      for await (const line of readLogs(status.logPath, opts)) {
        const out = line.stream === 'stderr' ? ctx.stderr : ctx.stdout;
        out.write(ctx.flags.timestamps ? `${line.time} ${line.content}` : line.content);
      }
      return 0;
    });
  },
};
export default command;
