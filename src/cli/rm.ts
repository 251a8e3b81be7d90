// `bulkhead rm`: remove containers; with the pod the CLI created for them when it is left empty.
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { eachRef, findContainer, findEmptyCliPod, findPod, withClient } from './client.ts';
import { CLI_POD_LABEL as CLI_LABEL, removeCliLogDirectory } from '../daemon/cli-pods.ts';
import { errorReason } from '../errors.ts';

const command: Command = {
  name: 'rm',
  synopsis: 'bulkhead rm [-f] CONTAINER...   |   bulkhead rm --pod [-f] POD...',
  summary: 'Remove containers (-f stops running ones first); --pod removes whole pods',
  flags: { force: { type: 'boolean', short: 'f' }, pod: { type: 'boolean' } },
  async run(ctx) {
    if (ctx.args.length === 0) throw new UsageError('rm needs at least one CONTAINER');
    return await withClient(ctx, (client) => eachRef(ctx, async (ref) => {
      if (ctx.flags.pod) {
        const p = await findPod(client, ref);
        const running = (await client.listContainers({ podSandboxId: p.id })).some((c) => c.state === 'CONTAINER_RUNNING');
        if (running && !ctx.flags.force) throw new UsageError(`pod ${ref} has running containers: stop them or use -f`);
        await client.stopPodSandbox(p.id);
        await client.removePodSandbox(p.id);
        if (p.labels[CLI_LABEL] === 'run') await removeCliLogDirectory(ctx.global.root, p.metadata);
        return;
      }
      let c;
      try {
        c = await findContainer(client, ref);
      } catch (err) {
        // no container by that name: the pod of a run that was cut short may still hold it
        if (errorReason(err) !== 'BH_CONTAINER_NOT_FOUND') throw err;
        const empty = await findEmptyCliPod(client, ref);
        if (!empty) throw err;
        await client.stopPodSandbox(empty.id);
        await client.removePodSandbox(empty.id);
        await removeCliLogDirectory(ctx.global.root, empty.metadata);
        return;
      }
      if (c.state === 'CONTAINER_RUNNING') {
        if (!ctx.flags.force) throw new UsageError(`container ${ref} is running: stop it first or use -f`);
        await client.stopContainer(c.id, 0);
      }
      await client.removeContainer(c.id);
      // A pod that `bulkhead run` made for this container goes with it.
      const pods = await client.listPodSandbox({ id: c.podSandboxId });
      const pod = pods[0];
      if (pod && pod.labels[CLI_LABEL] === 'run' && (await client.listContainers({ podSandboxId: pod.id })).length === 0) {
        await client.stopPodSandbox(pod.id);
        await client.removePodSandbox(pod.id);
        // the log directory `bulkhead run` chose is the client's to remove (the CRI leaves it)
        await removeCliLogDirectory(ctx.global.root, pod.metadata);
      }
    }));
  },
};
export default command;
