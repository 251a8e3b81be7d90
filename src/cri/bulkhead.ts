// Bulkhead's extension service (bulkhead.v1.Bulkhead): PullImageWithProgress, LoadImage, Info,
// DiskUsage, PruneImages.
import { InvalidArgumentError, UnimplementedError } from '../errors.ts';
import { isAbsolute } from 'node:path';
import type { CriDeps, CriPullProgress } from './deps.ts';
import { toRegistryAuth } from './image.ts';
import type { AuthConfig, DiskUsageResponse, InfoResponse, LoadImageResponse, PruneImagesResponse, PullProgressEvent } from '../api/cri-messages.ts';
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
      await send({ done: { imageRef: rec.id, imageId: rec.id, repoTags: rec.repoTags, repoDigests: rec.repoDigests, size: rec.size, repoDigest: rec.pulledDigest ?? '' } });
    }),

    LoadImage: unary(async (req: { path?: string }, ctx): Promise<LoadImageResponse> => {
      const path = req.path ?? '';
      if (!isAbsolute(path)) throw new InvalidArgumentError(`LoadImage: path must be an absolute path on the daemon's host (got "${path.slice(0, 200)}")`);
      const recs = await deps.images.load(path, { signal: ctx.signal });
      return { images: recs.map((r) => ({ id: r.id, repoTags: r.repoTags })) };
    }),

    DiskUsage: unary(async (): Promise<DiskUsageResponse> => {
      if (!deps.images.diskUsage) throw new UnimplementedError('DiskUsage: this daemon\'s image service does not report disk usage');
      const u = await deps.images.diskUsage();
      const ctrs = await deps.engine.listContainers(null);
      const byId = new Map(u.containers.map((c) => [c.key, c.size]));
      const containers = ctrs.map((c) => ({ id: c.id, name: c.metadata?.name ?? '', image: c.imageRef ?? c.image?.image ?? '', state: String(c.state ?? ''), size: byId.get(c.id) ?? 0 }));
      const running = containers.filter((c) => c.state === 'CONTAINER_RUNNING');
      const ctrSize = containers.reduce((a, c) => a + c.size, 0);
      return {
        rows: [
          { type: 'Images', total: u.images.length, active: u.images.filter((i) => i.containers > 0).length, size: u.imagesSize, reclaimable: u.imagesReclaimable },
          { type: 'Containers', total: containers.length, active: running.length, size: ctrSize, reclaimable: ctrSize - running.reduce((a, c) => a + c.size, 0) },
          { type: 'Unused layers', total: u.unused.count, active: 0, size: u.unused.size, reclaimable: u.unused.size },
        ],
        images: u.images,
        containers,
        mountpoint: u.space.mountpoint,
        fsTotal: u.space.totalBytes,
        fsAvailable: u.space.availBytes,
        fsReserve: u.space.reserveBytes,
      };
    }),

    PruneImages: unary(async (req: { all?: boolean }): Promise<PruneImagesResponse> => {
      if (!deps.images.prune) throw new UnimplementedError('PruneImages: this daemon\'s image service cannot prune');
      // Snapshots of containers the engine knows stay; the rest belong to nobody.
      const containers = new Set((await deps.engine.listContainers(null)).map((c) => c.id));
      return await deps.images.prune({ all: Boolean(req.all), containers });
    }),

    Info: unary(async (req: { reprobe?: boolean }): Promise<InfoResponse> => {
      const hs = await deps.handlers.statuses(req.reprobe ? { fresh: true } : {});
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
        warmPools: deps.engine.warmPools?.() ?? [],
      };
    }),
  };
}
