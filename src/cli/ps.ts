// `bulkhead ps`: containers, like `crictl ps` / `docker ps`.
import type { Command } from './command.ts';
import { withClient } from './client.ts';
import { ago, shortId, stateWord, table, writeJson } from './format.ts';

const command: Command = {
  name: 'ps',
  synopsis: 'bulkhead ps [-a] [-q] [--json]',
  summary: 'List containers (running ones; -a for all)',
  flags: { all: { type: 'boolean', short: 'a' }, quiet: { type: 'boolean', short: 'q' } },
  async run(ctx) {
    return await withClient(ctx, async (client) => {
      const [containers, pods] = await Promise.all([client.listContainers(), client.listPodSandbox()]);
      const shown = containers
        .filter((c) => ctx.flags.all || c.state === 'CONTAINER_RUNNING')
        .sort((a, b) => b.createdAt - a.createdAt);
      if (ctx.global.json) { writeJson(ctx.stdout, shown); return 0; }
      if (ctx.flags.quiet) { for (const c of shown) ctx.stdout.write(c.id + '\n'); return 0; }
      const podById = new Map(pods.map((p) => [p.id, p]));
      ctx.stdout.write(table(
        ['CONTAINER', 'IMAGE', 'CREATED', 'STATE', 'NAME', 'POD', 'ISOLATION'],
        shown.map((c) => {
          const pod = podById.get(c.podSandboxId);
          return [shortId(c.id), c.image.userSpecifiedImage || c.image.image, ago(c.createdAt), stateWord(c.state), c.metadata.name, pod?.metadata.name ?? shortId(c.podSandboxId), pod?.runtimeHandler || 'default'];
        }),
      ));
      return 0;
    });
  },
};
export default command;
