// `bulkhead df`: what images, containers and unused layers hold on disk, and what is reclaimable
// (like `docker system df`); -v lists images and containers; --json prints the daemon's answer.
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { withClient } from './client.ts';
import { humanSize, shortId, stateWord, table, writeJson } from './format.ts';
import type { DiskUsageResponse } from '../api/cri-messages.ts';

function pct(part: number, whole: number): string {
  return whole > 0 ? ` (${Math.round((100 * part) / whole)}%)` : '';
}

/** The summary table (also used by `system prune` to show before/after). */
export function formatDiskUsage(u: DiskUsageResponse, verbose: boolean): string {
  let out = table(['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'],
    u.rows.map((r) => [r.type, String(r.total), String(r.active), humanSize(r.size), `${humanSize(r.reclaimable)}${pct(r.reclaimable, r.size)}`]));
  if (verbose) {
    out += '\nImages space usage:\n\n' + table(['REPOSITORY:TAG', 'IMAGE ID', 'SIZE', 'UNIQUE SIZE', 'CONTAINERS'],
      u.images.map((i) => [i.repoTags.join(', ') || '<none>', shortId(i.id), humanSize(i.size), humanSize(i.uniqueSize), String(i.containers)]));
    out += '\nContainers space usage:\n\n' + table(['CONTAINER ID', 'NAME', 'IMAGE', 'STATE', 'SIZE'],
      u.containers.map((c) => [shortId(c.id), c.name, shortId(c.image), stateWord(c.state), humanSize(c.size)]));
  }
  out += `\nImage filesystem ${u.mountpoint}: ${humanSize(u.fsAvailable)} free of ${humanSize(u.fsTotal)}; pulls keep ${humanSize(u.fsReserve)} free\n`;
  return out;
}

/** Bytes everything in the table holds (images + containers + unused layers). */
export function totalSize(u: DiskUsageResponse): number {
  return u.rows.reduce((a, r) => a + r.size, 0);
}

const command: Command = {
  name: 'df',
  synopsis: 'bulkhead df [-v] [--json]',
  summary: 'Show disk usage of images and containers, and what is reclaimable',
  flags: { verbose: { type: 'boolean', short: 'v' } },
  async run(ctx) {
    if (ctx.args.length > 0) throw new UsageError('df takes no arguments');
    return await withClient(ctx, async (client) => {
      const u = await client.diskUsage({ signal: ctx.signal });
      if (ctx.global.json) writeJson(ctx.stdout, u);
      else ctx.stdout.write(formatDiskUsage(u, Boolean(ctx.flags.verbose)));
      return 0;
    });
  },
};
export default command;
