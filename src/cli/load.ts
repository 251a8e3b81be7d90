// `bulkhead load`: import an OCI image-layout archive or a `docker save` tar.
import { resolve } from 'node:path';
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { withClient } from './client.ts';
import { writeJson } from './format.ts';

const command: Command = {
  name: 'load',
  synopsis: 'bulkhead load -i ARCHIVE.tar',
  summary: 'Load images from an OCI archive or a docker-save tar',
  flags: { input: { type: 'string', short: 'i' } },
  async run(ctx) {
    const path = (ctx.flags.input as string | undefined) ?? ctx.args[0];
    if (!path) throw new UsageError('load needs an archive: bulkhead load -i image.tar');
    return await withClient(ctx, async (client) => {
      const r = await client.loadImage(resolve(path), { signal: ctx.signal });
      if (ctx.global.json) { writeJson(ctx.stdout, r); return 0; }
      for (const img of r.images) ctx.stdout.write(`Loaded image: ${img.repoTags.join(', ') || img.id}\n`);
      return 0;
    });
  },
};
export default command;
