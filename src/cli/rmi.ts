// `bulkhead rmi`: remove images by name, ID or ID prefix.
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { eachRef, withClient } from './client.ts';
import { NotFoundError } from '../errors.ts';

const command: Command = {
  name: 'rmi',
  synopsis: 'bulkhead rmi IMAGE...',
  summary: 'Remove images',
  flags: {},
  async run(ctx) {
    if (ctx.args.length === 0) throw new UsageError('rmi needs at least one IMAGE');
    return await withClient(ctx, (client) => eachRef(ctx, async (ref) => {
      const st = await client.imageStatus(ref);
      if (!st.image) throw new NotFoundError(`no such image: ${ref}`, { reason: 'BH_IMAGE_NOT_PRESENT' });
      await client.removeImage(ref);
      return `Deleted: ${st.image.id}`;
    }));
  },
};
export default command;
