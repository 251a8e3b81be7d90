// `bulkhead images`: local images (table or --json).
import type { Command } from './command.ts';
import { withClient } from './client.ts';
import { humanSize, shortId, table, writeJson } from './format.ts';

function splitTag(ref: string): [string, string] {
  const i = ref.lastIndexOf(':');
  return i > ref.lastIndexOf('/') ? [ref.slice(0, i), ref.slice(i + 1)] : [ref, '<none>'];
}

const command: Command = {
  name: 'images',
  synopsis: 'bulkhead images [-q] [--json] [FILTER]',
  summary: 'List images',
  flags: { quiet: { type: 'boolean', short: 'q' } },
  async run(ctx) {
    return await withClient(ctx, async (client) => {
      const images = await client.listImages(ctx.args[0]);
      if (ctx.global.json) { writeJson(ctx.stdout, images); return 0; }
      if (ctx.flags.quiet) { for (const i of images) ctx.stdout.write(i.id + '\n'); return 0; }
      const rows: string[][] = [];
      for (const img of images) {
        const tags = img.repoTags.length > 0 ? img.repoTags : [(img.repoDigests[0] ?? '<none>').split('@')[0] + ':<none>'];
        for (const t of tags) {
          const [repo, tag] = splitTag(t);
          rows.push([repo, tag, shortId(img.id), humanSize(img.size)]);
        }
      }
      ctx.stdout.write(table(['IMAGE', 'TAG', 'IMAGE ID', 'SIZE'], rows));
      return 0;
    });
  },
};
export default command;
