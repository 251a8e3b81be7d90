// `bulkhead ps`: containers, like `crictl ps` / `docker ps`.
import type { Command } from './command.ts';
import { withClient } from './client.ts';
import { ago, shortId, stateWord, table, writeJson } from './format.ts';
import { CLI_POD_LABEL as CLI_LABEL } from '../daemon/cli-pods.ts';

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
      const rows = shown.map((c) => {
        const pod = podById.get(c.podSandboxId);
        return [shortId(c.id), c.image.userSpecifiedImage || c.image.image, ago(c.createdAt), stateWord(c.state), c.metadata.name, pod?.metadata.name ?? shortId(c.podSandboxId), pod?.runtimeHandler || 'default'];
      });
      // A pod `bulkhead run` made whose container was never made (the run was cut short) holds the
      // name: -a shows it rather than hiding it.
      const withContainers = new Set(containers.map((c) => c.podSandboxId));
      const empty = ctx.flags.all ? pods.filter((p) => p.labels[CLI_LABEL] === 'run' && !withContainers.has(p.id)) : [];
      for (const p of empty) rows.push(['-', '-', ago(p.createdAt), 'no container', p.metadata.name, p.metadata.name, p.runtimeHandler || 'default']);
      ctx.stdout.write(table(['CONTAINER', 'IMAGE', 'CREATED', 'STATE', 'NAME', 'POD', 'ISOLATION'], rows));
      if (empty.length > 0) ctx.stderr.write(`bulkhead: ${empty.length === 1 ? 'a pod' : `${empty.length} pods`} made by 'bulkhead run' ${empty.length === 1 ? 'has' : 'have'} no container (the run was interrupted): remove with 'bulkhead rm ${empty.map((p) => p.metadata.name).join(' ')}'\n`);
      return 0;
    });
  },
};
export default command;
