// ImageService: ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo.
import { InvalidArgumentError, isNotFound } from '../errors.ts';
import type { ImageSpec, Opt } from '../api/cri.ts';
import type { CriDeps, CriImageRecord, CriRegistryAuth } from './deps.ts';
import type { AuthConfig, Image, ImageFsInfoResponse, ImageStatusResponse, PullImageRequest } from '../api/cri-messages.ts';
import { unary, type Impl } from './status.ts';

/** CRI's view of an image: user from the config's User ("1000", "1000:1000" → uid; "app" → username). */
export function toCriImage(rec: CriImageRecord): Image {
  const user = typeof rec.config?.User === 'string' ? rec.config.User : '';
  const first = user.split(':')[0] ?? '';
  const numeric = /^\d+$/.test(first);
  return {
    id: rec.id,
    repoTags: rec.repoTags,
    repoDigests: rec.repoDigests,
    size: rec.size,
    uid: numeric ? { value: Number(first) } : null,
    username: numeric ? '' : first,
    spec: { image: rec.id, annotations: {}, userSpecifiedImage: '', runtimeHandler: '' },
    pinned: Boolean(rec.pinned),
  };
}

export function toRegistryAuth(auth: Opt<AuthConfig>): CriRegistryAuth | undefined {
  if (!auth) return undefined;
  const out: CriRegistryAuth = {};
  if (auth.username) out.username = auth.username;
  if (auth.password) out.password = auth.password;
  if (auth.auth) out.auth = auth.auth;
  if (auth.identityToken) out.identityToken = auth.identityToken;
  if (auth.registryToken) out.registryToken = auth.registryToken;
  if (auth.serverAddress) out.serverAddress = auth.serverAddress;
  return Object.keys(out).length > 0 ? out : undefined;
}

function imageName(spec: Opt<ImageSpec>, method: string): string {
  const name = spec?.image ?? '';
  if (name === '') throw new InvalidArgumentError(`${method}: image.image must not be empty`);
  return name;
}

async function lookup(deps: CriDeps, ref: string): Promise<CriImageRecord | undefined> {
  try {
    return await deps.images.get(ref);
  } catch (err) {
    // A reference that is not even valid cannot name a present image.
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export function imageHandlers(deps: CriDeps): Record<string, Impl> {
  return {
    ListImages: unary(async (req: { filter?: { image?: Opt<ImageSpec> } | null }) => {
      const want = req.filter?.image?.image ?? '';
      if (want !== '') {
        const rec = await lookup(deps, want);
        return { images: rec ? [toCriImage(rec)] : [] };
      }
      return { images: (await deps.images.list()).map(toCriImage) };
    }),

    ImageStatus: unary(async (req: { image?: Opt<ImageSpec>; verbose?: boolean }): Promise<ImageStatusResponse> => {
      const rec = await lookup(deps, imageName(req.image, 'ImageStatus'));
      // CRI: an absent image is not an error, the response has no image.
      if (!rec) return { image: null, info: {} };
      const info: Record<string, string> = {};
      if (req.verbose) {
        const { config, ...rest } = rec;
        info.info = JSON.stringify({ ...rest, imageSpec: { config } });
      }
      return { image: toCriImage(rec), info };
    }),

    PullImage: unary(async (req: PullImageRequest, ctx) => {
      const ref = imageName(req.image, 'PullImage');
      const auth = toRegistryAuth(req.auth);
      const rec = await deps.images.pull(ref, auth ? { signal: ctx.signal, auth } : { signal: ctx.signal });
      return { imageRef: rec.id };
    }),

    RemoveImage: unary(async (req: { image?: Opt<ImageSpec> }) => {
      const ref = imageName(req.image, 'RemoveImage');
      try {
        await deps.images.remove(ref);
      } catch (err) {
        // Idempotent: an image that is already gone is success.
        if (!isNotFound(err)) throw err;
      }
      return {};
    }),

    ImageFsInfo: unary(async (): Promise<ImageFsInfoResponse> => {
      const u = await deps.images.fsUsage();
      const now = Date.now() * 1e6;
      const fs = {
        timestamp: now,
        fsId: { mountpoint: u.mountpoint ?? deps.info.root },
        usedBytes: { value: u.usedBytes ?? u.bytes ?? 0 },
        inodesUsed: { value: u.inodesUsed ?? u.inodes ?? 0 },
      };
      return { imageFilesystems: [fs], containerFilesystems: [fs] };
    }),
  };
}
