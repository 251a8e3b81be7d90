// `bulkhead pods`: pod sandboxes, like `crictl pods`.
import type { Command } from './command.ts';
import { withClient } from './client.ts';
import { ago, shortId, stateWord, table, writeJson } from './format.ts';

const command: Command = {
  name: 'pods',
  synopsis: 'bulkhead pods [-q] [--json]',
  summary: 'List pod sandboxes with their isolation handler',
  flags: { quiet: { type: 'boolean', short: 'q' } },
  async run(ctx) {
    return await withClient(ctx, async (client) => {
      const pods = (await client.listPodSandbox()).sort((a, b) => b.createdAt - a.createdAt);
      if (ctx.global.json) { writeJson(ctx.stdout, pods); return 0; }
      if (ctx.flags.quiet) { for (const p of pods) ctx.stdout.write(p.id + '\n'); return 0; }
      ctx.stdout.write(table(
        ['POD ID', 'CREATED', 'STATE', 'NAME', 'NAMESPACE', 'ATTEMPT', 'RUNTIME'],
        pods.map((p) => [shortId(p.id), ago(p.createdAt), stateWord(p.state), p.metadata.name, p.metadata.namespace, String(p.metadata.attempt), p.runtimeHandler || 'default']),
      ));
      return 0;
    });
  },
};
export default command;
