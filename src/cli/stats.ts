// `bulkhead stats`: CPU, memory and pids of running containers (one sample; CPU % over 1 s).
import type { Command } from './command.ts';
import { withClient, findContainer } from './client.ts';
import { humanSize, shortId, table, writeJson } from './format.ts';
import type { ContainerStats } from '../api/cri.ts';

const command: Command = {
  name: 'stats',
  synopsis: 'bulkhead stats [--json] [CONTAINER...]',
  summary: 'Show resource use of running containers',
  flags: {},
  async run(ctx) {
    return await withClient(ctx, async (client) => {
      const ids = ctx.args.length > 0 ? await Promise.all(ctx.args.map(async (r) => (await findContainer(client, r)).id)) : undefined;
      const sample = async (): Promise<ContainerStats[]> => {
        const all = await client.listContainerStats({});
        return ids ? all.filter((s) => ids.includes(s.attributes.id)) : all;
      };
      const first = await sample();
      await new Promise((r) => setTimeout(r, 1000));
      const second = await sample();
      const before = new Map(first.map((s) => [s.attributes.id, s]));
      const rows = second.map((s) => {
        const p = before.get(s.attributes.id);
        const cpuNs = (s.cpu?.usageCoreNanoSeconds?.value ?? 0) - (p?.cpu?.usageCoreNanoSeconds?.value ?? 0);
        const dt = (s.cpu?.timestamp ?? 0) - (p?.cpu?.timestamp ?? 0);
        const cpuPct = dt > 0 ? (100 * cpuNs) / dt : 0;
        return { id: s.attributes.id, name: s.attributes.metadata.name, cpuPercent: Math.round(cpuPct * 100) / 100, memoryWorkingSetBytes: s.memory?.workingSetBytes?.value ?? 0, writableLayerBytes: s.writableLayer?.usedBytes?.value ?? 0 };
      });
      if (ctx.global.json) { writeJson(ctx.stdout, rows); return 0; }
      ctx.stdout.write(table(['CONTAINER', 'NAME', 'CPU %', 'MEM', 'DISK'], rows.map((r) => [shortId(r.id), r.name, r.cpuPercent.toFixed(2), humanSize(r.memoryWorkingSetBytes), humanSize(r.writableLayerBytes)])));
      return 0;
    });
  },
};
export default command;
