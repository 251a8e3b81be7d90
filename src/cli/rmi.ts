// `bulkhead rmi`: remove images by name, ID or ID prefix.
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { withClient } from './client.ts';

const command: Command = {
  name: 'rmi',
  synopsis: 'bulkhead rmi IMAGE...',
  summary: 'Remove images',
  flags: {},
  async run(ctx) {
    if (ctx.args.length === 0) throw new UsageError('rmi needs at least one IMAGE');
    return await withClient(ctx, async (client) => {
      let rc = 0;
      for (const ref of ctx.args) {
        try {
          const st = await client.imageStatus(ref);
          if (!st.image) throw new Error(`no such image: ${ref}`);
          await client.removeImage(ref);
          ctx.stdout.write(`Deleted: ${st.image.id}\n`);
        } catch (err) {
          ctx.stderr.write(`bulkhead: ${ref}: ${(err as Error).message}\n`);
          rc = 1;
        }
      }
      return rc;
    });
  },
};
export default command;
