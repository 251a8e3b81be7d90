// `bulkhead inspect`: the full status of a container, pod or image as JSON (verbose CRI status).
import type { Command } from './command.ts';
import { UsageError } from './command.ts';
import { findContainer, findPod, withClient } from './client.ts';
import { writeJson } from './format.ts';
import { errorReason, NotFoundError } from '../errors.ts';

const NO_SUCH: ReadonlySet<string> = new Set(['BH_CONTAINER_NOT_FOUND', 'BH_POD_NOT_FOUND', 'BH_IMAGE_NOT_PRESENT']);

function parseInfo(info: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) {
    try { out[k] = JSON.parse(v); } catch { out[k] = v; }
  }
  return out;
}

const command: Command = {
  name: 'inspect',
  synopsis: 'bulkhead inspect [--type container|pod|image] NAME|ID...',
  summary: 'Show details of containers, pods or images as JSON',
  flags: { type: { type: 'string' } },
  async run(ctx) {
    if (ctx.args.length === 0) throw new UsageError('inspect needs a container, pod or image');
    const type = ctx.flags.type as string | undefined;
    if (type !== undefined && !['container', 'pod', 'image'].includes(type)) throw new UsageError('--type must be container, pod or image');
    return await withClient(ctx, async (client) => {
      const out: unknown[] = [];
      for (const ref of ctx.args) {
        const attempts: (() => Promise<unknown>)[] = [];
        if (!type || type === 'container') attempts.push(async () => {
          const c = await findContainer(client, ref);
          const r = await client.containerStatus(c.id, true);
          return { type: 'container', status: r.status, info: parseInfo(r.info) };
        });
        if (!type || type === 'pod') attempts.push(async () => {
          const p = await findPod(client, ref);
          const r = await client.podSandboxStatus(p.id, true);
          return { type: 'pod', status: r.status, info: parseInfo(r.info), containers: r.containersStatuses };
        });
        if (!type || type === 'image') attempts.push(async () => {
          const r = await client.imageStatus(ref, true);
          if (!r.image) throw new NotFoundError(`no such image: ${ref}`, { reason: 'BH_IMAGE_NOT_PRESENT' });
          return { type: 'image', image: r.image, info: parseInfo(r.info) };
        });
        let found: unknown;
        for (const a of attempts) {
          // only "no such object" moves on to the next kind; any other failure (NotFound too) is reported
          try { found = await a(); break; } catch (err) { if (!NO_SUCH.has(errorReason(err) ?? '')) throw err; }
        }
        if (found === undefined) throw new NotFoundError(`no such ${type ?? 'container, pod or image'}: ${ref}`);
        out.push(found);
      }
      writeJson(ctx.stdout, out);
      return 0;
    });
  },
};
export default command;
