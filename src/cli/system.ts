// `bulkhead system prune`: removes stopped containers of pods the CLI made (and those pods once
// empty), unused images (untagged ones; all unused with -a), container snapshots no container
// owns, and runs the image GC; prints what went and the space reclaimed. `system df` = `df`.
import { createInterface } from 'node:readline/promises';
import type { Command, CommandContext } from './command.ts';
import { UsageError } from './command.ts';
import { withClient } from './client.ts';
import { humanSize, shortId, writeJson } from './format.ts';
import { formatDiskUsage, totalSize } from './df.ts';
import { CLI_LABEL } from './run.ts';
import type { CriClient } from '../cri/client.ts';

async function confirm(ctx: CommandContext, all: boolean): Promise<boolean> {
  ctx.stderr.write(`WARNING! This will remove:\n  - all stopped containers started with \`bulkhead run\` (and their pods)\n  - ${all ? 'all images without at least one container using them' : 'all untagged images no container uses'}\n  - container layers no container owns, and unused blobs and layers\nAre you sure you want to continue? [y/N] `);
  if (!process.stdin.isTTY) {
    ctx.stderr.write('\n');
    throw new UsageError('system prune asks before removing anything; not on a terminal, pass -f to skip the question');
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
  try {
    const answer = await rl.question('', { signal: ctx.signal });
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

export interface PruneReport {
  deletedContainers: string[];
  deletedPods: string[];
  deletedImages: string[];
  deletedSnapshots: string[];
  deletedBlobs: number;
  reclaimedBytes: number;
}

export async function systemPrune(client: CriClient, all: boolean, signal: AbortSignal): Promise<PruneReport> {
  const before = await client.diskUsage({ signal });
  const deletedContainers: string[] = [];
  const deletedPods: string[] = [];
  // Only what the CLI made: containers of Kubernetes pods belong to the kubelet.
  for (const c of await client.listContainers(undefined, { signal })) {
    if (c.labels[CLI_LABEL] === undefined || c.state === 'CONTAINER_RUNNING') continue;
    await client.removeContainer(c.id, { signal });
    deletedContainers.push(c.id);
  }
  for (const p of await client.listPodSandbox(undefined, { signal })) {
    if (p.labels[CLI_LABEL] !== 'run') continue;
    if ((await client.listContainers({ podSandboxId: p.id }, { signal })).length > 0) continue;
    await client.stopPodSandbox(p.id, { signal });
    await client.removePodSandbox(p.id, { signal });
    deletedPods.push(p.id);
  }
  const r = await client.pruneImages(all, { signal });
  const after = await client.diskUsage({ signal });
  return {
    deletedContainers, deletedPods,
    deletedImages: r.removedImages, deletedSnapshots: r.removedSnapshots, deletedBlobs: r.removedBlobs,
    reclaimedBytes: Math.max(0, totalSize(before) - totalSize(after)),
  };
}

const command: Command = {
  name: 'system',
  synopsis: 'bulkhead system prune [-a] [-f] [--json]   |   bulkhead system df [-v]',
  summary: 'Reclaim disk: remove stopped CLI containers, unused images and layers (prune); show usage (df)',
  flags: { all: { type: 'boolean', short: 'a' }, force: { type: 'boolean', short: 'f' }, verbose: { type: 'boolean', short: 'v' } },
  async run(ctx) {
    const sub = ctx.args[0];
    if (ctx.args.length !== 1 || (sub !== 'prune' && sub !== 'df')) throw new UsageError('usage: bulkhead system prune [-a] [-f]  or  bulkhead system df [-v]');
    return await withClient(ctx, async (client) => {
      if (sub === 'df') {
        const u = await client.diskUsage({ signal: ctx.signal });
        if (ctx.global.json) writeJson(ctx.stdout, u); else ctx.stdout.write(formatDiskUsage(u, Boolean(ctx.flags.verbose)));
        return 0;
      }
      const all = Boolean(ctx.flags.all);
      if (!ctx.flags.force && !(await confirm(ctx, all))) { ctx.stderr.write('Nothing removed.\n'); return 1; }
      const r = await systemPrune(client, all, ctx.signal);
      if (ctx.global.json) { writeJson(ctx.stdout, r); return 0; }
      if (r.deletedContainers.length > 0) ctx.stdout.write('Deleted Containers:\n' + r.deletedContainers.map((id) => id + '\n').join('') + '\n');
      if (r.deletedImages.length > 0) ctx.stdout.write('Deleted Images:\n' + r.deletedImages.map((id) => `deleted: ${id}\n`).join('') + '\n');
      if (r.deletedSnapshots.length > 0) ctx.stdout.write(`Deleted ${r.deletedSnapshots.length} container layer(s) no container owned: ${r.deletedSnapshots.map(shortId).join(', ')}\n\n`);
      ctx.stdout.write(`Total reclaimed space: ${humanSize(r.reclaimedBytes)}\n`);
      return 0;
    });
  },
};
export default command;
