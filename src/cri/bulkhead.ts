// Bulkhead's extension service (bulkhead.v1.Bulkhead): PullImageWithProgress, LoadImage, Info.
import { InvalidArgumentError } from '../errors.ts';
import { isAbsolute } from 'node:path';
import type { CriDeps, CriPullProgress } from './deps.ts';
import { toRegistryAuth } from './image.ts';
import type { AuthConfig, InfoResponse, LoadImageResponse, PullProgressEvent } from './messages.ts';
import { stream, unary, type Impl } from './status.ts';

export function bulkheadHandlers(deps: CriDeps): Record<string, Impl> {
  return {
    PullImageWithProgress: stream(async (req: { image?: string; auth?: AuthConfig | null }, ctx, send) => {
      const ref = req.image ?? '';
      if (ref === '') throw new InvalidArgumentError('PullImageWithProgress: image must not be empty');
      // Progress callbacks are synchronous; queue them and write in order with backpressure.
      let chain: Promise<void> = Promise.resolve();
      const onProgress = (ev: CriPullProgress): void => {
        const msg: PullProgressEvent = { layer: { id: ev.id, status: ev.status, current: ev.current ?? 0, total: ev.total ?? 0 } };
        chain = chain.then(() => send(msg)).catch(() => { /* the caller went away; the pull aborts via ctx.signal */ });
      };
      const auth = toRegistryAuth(req.auth);
      const rec = await deps.images.pull(ref, auth ? { signal: ctx.signal, onProgress, auth } : { signal: ctx.signal, onProgress });
      await chain;
      await send({ done: { imageRef: rec.id, imageId: rec.id, repoTags: rec.repoTags, repoDigests: rec.repoDigests, size: rec.size } });
    }),

    LoadImage: unary(async (req: { path?: string }, ctx): Promise<LoadImageResponse> => {
      const path = req.path ?? '';
      if (!isAbsolute(path)) throw new InvalidArgumentError(`LoadImage: path must be an absolute path on the daemon's host (got "${path.slice(0, 200)}")`);
      const recs = await deps.images.load(path, { signal: ctx.signal });
      return { images: recs.map((r) => ({ id: r.id, repoTags: r.repoTags })) };
    }),

    Info: unary(async (): Promise<InfoResponse> => {
      const hs = await deps.handlers.statuses();
      return {
        version: deps.info.version,
        pid: process.pid,
        root: deps.info.root,
        runDir: deps.info.runDir,
        socket: deps.info.socket,
        config: deps.info.config,
        defaultHandler: deps.handlers.defaultHandler,
        handlers: hs.map((h) => ({
          name: h.name, backend: h.backend, isolation: h.isolation, available: h.probe.available,
          reason: h.probe.reason ?? '', details: h.probe.details, isDefault: h.isDefault,
        })),
        versions: { node: process.version, bulkhead: deps.info.version, criApi: 'v1' },
        streamAddress: deps.info.streamAddress,
      };
    }),
  };
}
