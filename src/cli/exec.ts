// `bulkhead exec`: run a command in a running container; with -i/-t over the streaming server,
// otherwise through ExecSync. The command's exit code becomes bulkhead's.
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { findContainer, withClient } from './client.ts';
import { runStream } from './stream-client.ts';

const command: Command = {
  name: 'exec',
  synopsis: 'bulkhead exec [-i] [-t] [--timeout SECONDS] CONTAINER CMD [ARG...]',
  summary: 'Run a command in a running container',
  stopAtFirstPositional: true,
  flags: {
    interactive: { type: 'boolean', short: 'i' },
    tty: { type: 'boolean', short: 't' },
    timeout: { type: 'string' },
  },
  async run(ctx) {
    const [ref, ...cmd] = ctx.args;
    if (!ref || cmd.length === 0) throw new UsageError('exec needs a CONTAINER and a command (example: bulkhead exec web sh -c "id")');
    const interactive = Boolean(ctx.flags.interactive);
    const tty = Boolean(ctx.flags.tty);
    return await withClient(ctx, async (client) => {
      const c = await findContainer(client, ref);
      if (interactive || tty) {
        const url = await client.exec({ containerId: c.id, cmd, tty, stdin: interactive, stdout: true, stderr: !tty });
        const r = await runStream(url, { ...(interactive ? { stdin: process.stdin } : {}), stdout: ctx.stdout, stderr: ctx.stderr, tty, signal: ctx.signal });
        if (r.message) ctx.stderr.write(`bulkhead: ${r.message}\n`);
        return r.exitCode;
      }
      const timeout = ctx.flags.timeout === undefined ? 0 : Number(ctx.flags.timeout);
      if (!Number.isFinite(timeout) || timeout < 0) throw new UsageError(`invalid --timeout ${JSON.stringify(ctx.flags.timeout)}: give a number of seconds, 0 (none) or more (example: --timeout 30)`);
      const r = await client.execSync(c.id, cmd, timeout);
      ctx.stdout.write(r.stdout);
      ctx.stderr.write(r.stderr);
      return r.exitCode;
    });
  },
};
export default command;
