// `bulkhead pull`: pulls an image through the daemon, with per-layer progress (bars on a terminal,
// plain lines otherwise). Also `ensureImage`, which `run` uses to pull only when the image is missing.
import type { Command, CommandContext } from './command.ts';
import { UsageError } from './command.ts';
import type { CriClient } from '../cri/client.ts';
import type { PullDone } from '../api/cri-messages.ts';
import type { PullProgress } from '../image/image-service.ts';
import { withClient } from './client.ts';
import { InternalError } from '../errors.ts';

/** Pulls `image` with progress on stderr (unless quiet). Returns the final event. */
export async function pullWithProgress(client: CriClient, image: string, ctx: CommandContext, quiet: boolean): Promise<PullDone> {
  // the renderer is loaded only when a pull happens (not on every `run` of a present image)
  const render = quiet || ctx.global.json ? undefined : (await import('./progress.ts')).createProgressRenderer(ctx.stderr);
  let done: PullDone | undefined;
  try {
    for await (const ev of client.pullImageWithProgress(image, undefined, { signal: ctx.signal })) {
      if (ev.layer) render?.update({ id: ev.layer.id.replace(/^sha256:/, '').slice(0, 12), digest: ev.layer.id, status: ev.layer.status as PullProgress['status'], current: ev.layer.current, total: ev.layer.total });
      if (ev.done) done = ev.done;
    }
  } finally {
    render?.done();
  }
  if (!done) throw new InternalError(`pull of ${image} ended without a result`);
  return done;
}

/** The image reference to create containers from: the local image if present, else pulled now. */
export async function ensureImage(client: CriClient, image: string, ctx: CommandContext, quiet: boolean): Promise<string> {
  const st = await client.imageStatus(image);
  if (st.image) return st.image.id;
  if (!quiet) ctx.stderr.write(`Unable to find image '${image}' locally; pulling\n`);
  const done = await pullWithProgress(client, image, ctx, quiet);
  return done.imageId || done.imageRef;
}

const command: Command = {
  name: 'pull',
  synopsis: 'bulkhead pull [-q] [--json] IMAGE',
  summary: 'Pull an image from a registry',
  flags: { quiet: { type: 'boolean', short: 'q' } },
  async run(ctx) {
    const image = ctx.args[0];
    if (!image || ctx.args.length > 1) throw new UsageError('pull needs exactly one IMAGE (example: bulkhead pull busybox)');
    return await withClient(ctx, async (client) => {
      const done = await pullWithProgress(client, image, ctx, Boolean(ctx.flags.quiet));
      if (ctx.global.json) ctx.stdout.write(JSON.stringify(done) + '\n');
      // The digest of the repository pulled: repoDigests lists every repository sharing the image ID.
      else ctx.stdout.write(`${done.repoDigest || done.imageRef}\nImage ID: ${done.imageId}\n`);
      return 0;
    });
  },
};
export default command;
