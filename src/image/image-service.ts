// Over 500 lines on purpose: the pull pipeline (resolve, fetch, verify, unpack, publish) and the pins it takes read in one place; GC, disk usage and platform choice live beside it.
/**
 * The image service: the one API the engine, the CRI server and the CLI use for images.
 *
 * Lifecycle: `createImageService(opts)` opens the stores under `opts.root` (cleaning partial
 * downloads and half-unpacked layers a dead process left), then pull/load/remove/gc/prepareRootfs
 * may run concurrently; `close()` waits for nothing and closes the metadata database.
 *
 * On disk under root: content/ (ContentStore), snapshots/ (Snapshotter), images/ (ImageStore).
 */
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { RegistryConfig } from './registry/config.ts';
import { AbortedError, InvalidArgumentError, NotFoundError, ResourceExhaustedError, UnavailableError, BulkheadError, wrapError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { runChecked, run } from '../util/exec.ts';
import { DEFAULT_IMAGE_CONFIG, SETTING, type ImageConfig } from './config.ts';
import { diskFullError, ensureRoom, isDiskFull, fsSpace, mountpointOf, spaceAboveReserve } from './disk.ts';
import { LocalContentStore } from './content/local-store.ts';
import { chainIds, isDigest } from './digest.ts';
import { SqliteImageStore, type ImageRecord, type LayerRecord, type OciImageConfig } from './image-store.ts';
import { formatReference, parseReference, repositoryName, tagName, type ImageReference } from './reference.ts';
import { AuthFile, type PullAuth } from './registry/auth.ts';
import { MediaTypes, RegistryClient } from './registry/client.ts';
import { OverlaySnapshotter } from './snapshot/overlay.ts';
import type { Mount } from './snapshot/snapshotter.ts';
import { applyLayer, DEFAULT_LIMITS, type UnpackLimits } from './unpack/apply.ts';
import type { PullProfiler } from './profile.ts';
import { FsWorkers } from './unpack/fs-queue.ts';
import { Pins, type Lease } from './pins.ts';
import { UsageMeter } from './usage.ts';
import { collectGarbage, measureDiskUsage, type DiskUsage, type GcResult, type ImageParts } from './gc.ts';

export type { DiskUsage, GcResult, ImageDiskUsage } from './gc.ts';
import { readArchive } from './load.ts';
import { hostPlatform, MANIFEST_TYPES, selectPlatform, type Descriptor, type Manifest } from './platform.ts';

export { hostPlatform, selectPlatform } from './platform.ts';

export type { ImageRecord, LayerRecord, OciImageConfig } from './image-store.ts';
export type { Mount } from './snapshot/snapshotter.ts';
export type { PullAuth } from './registry/auth.ts';
export type { UnpackLimits } from './unpack/apply.ts';
export type { PullProfiler, PullStage } from './profile.ts';

export type PullStatus = 'waiting' | 'downloading' | 'verifying' | 'extracting' | 'done' | 'exists';

export interface PullProgress {
  /** Short layer id (first 12 hex of the digest). */
  id: string;
  digest: string;
  status: PullStatus;
  /** Bytes so far (downloading/extracting) and the layer's size. */
  current: number;
  total: number;
}

export interface PullOptions {
  signal?: AbortSignal;
  onProgress?: (ev: PullProgress) => void;
  auth?: PullAuth;
  /** Platform to pick from an index; default linux/<this machine>. */
  platform?: { os: string; architecture: string; variant?: string };
}

export interface FsUsage {
  /** Where images live (the mountpoint the CRI reports). */
  mountpoint: string;
  bytes: number;
  inodes: number;
}

/** A pulled image: its record, and the `repository@digest` this pull fetched (the record's repoDigests may name other repositories sharing its ID). */
export type PulledImage = ImageRecord & { pulledDigest: string };

export interface PruneResult {
  removedImages: string[];
  removedSnapshots: string[];
  removedBlobs: number;
  /** Bytes the image store shrank by. */
  reclaimedBytes: number;
}

export interface ImageServiceOptions {
  root: string;
  registries: RegistryConfig;
  logger: Logger;
  limits?: Partial<UnpackLimits>;
  /** Layers downloaded at once; default 3. */
  concurrency?: number;
  /** Timing hooks for benchmarks (see profile.ts). */
  profiler?: PullProfiler;
  /** The `[images]` settings (reserve, layer cap, registry timeout); default DEFAULT_IMAGE_CONFIG. */
  config?: ImageConfig;
}

export interface ImageService {
  pull(ref: string, opts?: PullOptions): Promise<PulledImage>;
  get(refOrId: string): Promise<ImageRecord | undefined>;
  list(): Promise<ImageRecord[]>;
  /**
   * Untags a name (the image goes with its last name) or removes an image by ID, then frees at once
   * every blob and snapshot nothing else uses (GC). NotFound if unknown.
   */
  remove(refOrId: string): Promise<void>;
  /** Imports an OCI image layout archive or a docker-save tar; returns the images it held. */
  load(path: string, opts?: { signal?: AbortSignal }): Promise<ImageRecord[]>;
  /** A writable overlay for a container on top of the image; idempotent for the same key and image. */
  prepareRootfs(key: string, imageId: string): Promise<Mount[]>;
  removeRootfs(key: string): Promise<void>;
  /** Read-only lower dirs (topmost first) of an image, e.g. for building a microVM disk. */
  viewRootfs(imageId: string): Promise<string[]>;
  /**
   * Deletes blobs and snapshots that no image record, container snapshot or operation in progress
   * uses (reference counting over the records); returns what went. One GC at a time; pulls and
   * loads keep what they pinned.
   */
  gc(): Promise<GcResult>;
  /** Removes container snapshots (active/) whose key is not in `keep` (containers that no longer exist) and that are older than `graceMs` (default 10 min: a container being created is not listed yet). */
  removeStaleRootfs(keep: ReadonlySet<string>, graceMs?: number): Promise<string[]>;
  /** What images, container layers and unused data hold on disk (`bulkhead df`). */
  diskUsage(): Promise<DiskUsage>;
  /**
   * Removes container snapshots whose key is not in `containers`, images no container uses
   * (only untagged ones unless `all`), then runs GC (`bulkhead system prune`).
   */
  prune(opts: { all: boolean; containers: ReadonlySet<string> }): Promise<PruneResult>;
  fsUsage(): Promise<FsUsage>;
  close(): Promise<void>;
}

interface ConfigDoc { architecture?: string; os?: string; config?: OciImageConfig; rootfs?: { type?: string; diff_ids?: string[] } }

const INDEX_TYPES = new Set<string>([MediaTypes.ociIndex, MediaTypes.dockerList]);
const LAYER_TYPES = new Set<string>([
  'application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);
const CONFIG_MAX = 8 * 1024 * 1024;

function parseJson<T>(bytes: Buffer, what: string): T {
  try { return JSON.parse(bytes.toString('utf8')) as T; } catch { throw new InvalidArgumentError(`${what} is not valid JSON`); }
}

function checkDescriptor(d: unknown, what: string): Descriptor {
  const x = d as Descriptor;
  if (typeof x !== 'object' || x === null || typeof x.digest !== 'string' || !isDigest(x.digest) || typeof x.size !== 'number' || x.size < 0 || !Number.isSafeInteger(x.size)) {
    throw new InvalidArgumentError(`${what}: invalid descriptor`);
  }
  if (typeof x.mediaType !== 'string') x.mediaType = '';
  return x;
}

export async function createImageService(opts: ImageServiceOptions): Promise<ImageService> {
  const content = await LocalContentStore.open(join(opts.root, 'content'));
  await content.cleanIngests();
  const snapshots = await OverlaySnapshotter.open(join(opts.root, 'snapshots'), opts.profiler ? { profiler: opts.profiler } : {});
  const images = await SqliteImageStore.open(join(opts.root, 'images'));
  const authFile = await AuthFile.load(opts.registries.authFile);
  const registry = new RegistryClient({ registries: opts.registries, logger: opts.logger, authFile, timeoutMs: (opts.config ?? DEFAULT_IMAGE_CONFIG).registryTimeoutMs });
  return new LocalImageService(opts, content, snapshots, images, registry);
}


class LocalImageService implements ImageService {
  private readonly opts: ImageServiceOptions;
  private readonly content: LocalContentStore;
  private readonly snapshots: OverlaySnapshotter;
  private readonly images: SqliteImageStore;
  private readonly registry: RegistryClient;
  private readonly limits: UnpackLimits;
  private readonly unpacking = new Map<string, Promise<{ published: Promise<void> }>>();
  private readonly pins = new Pins();
  private readonly usage = new UsageMeter();
  private readonly cfg: ImageConfig;
  private readonly log: Logger;
  /** Threads that perform layer writes (one idle thread is kept between layers). */
  private readonly fsWorkers = new FsWorkers();

  constructor(opts: ImageServiceOptions, content: LocalContentStore, snapshots: OverlaySnapshotter, images: SqliteImageStore, registry: RegistryClient) {
    this.opts = opts;
    this.content = content;
    this.snapshots = snapshots;
    this.images = images;
    this.registry = registry;
    this.cfg = opts.config ?? DEFAULT_IMAGE_CONFIG;
    this.limits = { ...DEFAULT_LIMITS, maxBytes: this.cfg.maxLayerBytes, ...opts.limits };
    this.log = opts.logger.child({ part: 'image' });
  }

  async pull(refText: string, o: PullOptions = {}): Promise<PulledImage> {
    const ref = parseReference(refText);
    const what = `pull ${formatReference(ref)}`;
    const lease = this.pins.lease();
    try {
      await ensureRoom(this.opts.root, this.cfg, 0, what);
      return await this.doPull(ref, o, lease);
    } catch (err) {
      lease.release();
      await this.reclaimAfterFailure(what);
      if (o.signal?.aborted && !(err instanceof AbortedError)) throw new AbortedError(`${what} aborted`, { cause: err });
      throw wrapError(await diskFullError(err, this.opts.root, what), what);
    } finally {
      lease.release();
    }
  }

  /** A refused or failed pull/load leaves nothing: its blobs and snapshots go unless something else uses them. */
  private async reclaimAfterFailure(what: string): Promise<void> {
    await this.collectQuietly(what);
  }

  private async doPull(ref: ImageReference, o: PullOptions, lease: Lease): Promise<PulledImage> {
    const ropts = { ...(o.signal ? { signal: o.signal } : {}), ...(o.auth ? { auth: o.auth } : {}) };
    const top = await this.registry.getManifest(ref, ref.digest ?? ref.tag ?? 'latest', ropts);
    let manifestBytes = top.bytes;
    let manifestDigest = top.digest;
    let mediaType = top.mediaType;
    let indexDigest: string | undefined;
    if (INDEX_TYPES.has(mediaType)) {
      const index = parseJson<Manifest>(top.bytes, 'image index');
      const want = o.platform ?? hostPlatform();
      const d = selectPlatform(index, want);
      if (!d) throw new NotFoundError(`no image for ${want.os}/${want.architecture}${want.variant ? '/' + want.variant : ''} in the index`);
      checkDescriptor(d, 'index entry');
      indexDigest = top.digest;
      await lease.add([top.digest]);
      await this.content.writeBuffer(top.digest, top.bytes);
      const m = await this.registry.getManifest(ref, d.digest, ropts);
      manifestBytes = m.bytes; manifestDigest = m.digest; mediaType = m.mediaType;
    }
    if (!MANIFEST_TYPES.has(mediaType)) throw new InvalidArgumentError(`unsupported manifest media type "${mediaType}" (Docker schema 1 and others are not supported)`);
    const fetchBlob = async (digest: string, size: number, onProgress: ((n: number) => void) | undefined, signal: AbortSignal): Promise<unknown> => {
      await ensureRoom(this.opts.root, this.cfg, size, `pull ${formatReference(ref)}: blob ${digest} (${size} bytes)`);
      return await this.downloadWithRetry(ref, digest, size, { ...ropts, signal }, onProgress);
    };
    const names = { tags: [] as string[], digests: [`${repositoryName(ref)}@${indexDigest ?? manifestDigest}`] };
    const t = tagName(ref);
    if (t) names.tags.push(t);
    const rec = await this.importManifest(manifestBytes, manifestDigest, indexDigest, names, fetchBlob, o, lease);
    return { ...rec, pulledDigest: names.digests[0]! };
  }

  private async downloadWithRetry(ref: ImageReference, digest: string, size: number, ropts: { signal?: AbortSignal; auth?: PullAuth }, onProgress?: (n: number) => void): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.content.write(digest, size, async (offset, signal) => {
          const r = await this.registry.openBlob(ref, digest, offset, { ...ropts, ...(signal ? { signal } : {}) });
          return { stream: r.stream, offset: r.offset };
        }, { ...(ropts.signal ? { signal: ropts.signal } : {}), ...(onProgress ? { onProgress } : {}), ...(this.opts.profiler ? { profiler: this.opts.profiler } : {}) });
        return;
      } catch (err) {
        const code = err instanceof BulkheadError ? err.code : 'Internal';
        const transient = (code === 'Unavailable' || code === 'Internal') && !isDiskFull(err);
        if (!transient || attempt >= 4 || ropts.signal?.aborted) throw err;
        this.log.info('blob download interrupted; resuming', { digest, attempt, err: (err as Error).message });
      }
    }
  }

  /** Stores a manifest and everything it references, unpacks the layers and records the image. */
  private async importManifest(
    manifestBytes: Buffer, manifestDigest: string, indexDigest: string | undefined,
    names: { tags: string[]; digests: string[] },
    fetchBlob: (digest: string, size: number, onProgress: ((n: number) => void) | undefined, signal: AbortSignal) => Promise<unknown>,
    o: PullOptions, lease: Lease,
  ): Promise<ImageRecord> {
    // One signal for this import: a failed layer stops the others, then partial state is cleaned.
    const ctl = new AbortController();
    const onAbort = (): void => ctl.abort(o.signal?.reason);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.importManifestInner(manifestBytes, manifestDigest, indexDigest, names, fetchBlob, o, ctl, lease);
    } catch (err) {
      ctl.abort();
      await this.content.cleanIngests().catch(() => {});
      throw err;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  private async importManifestInner(
    manifestBytes: Buffer, manifestDigest: string, indexDigest: string | undefined,
    names: { tags: string[]; digests: string[] },
    fetchBlob: (digest: string, size: number, onProgress: ((n: number) => void) | undefined, signal: AbortSignal) => Promise<unknown>,
    o: PullOptions, ctl: AbortController, lease: Lease,
  ): Promise<ImageRecord> {
    const signal = ctl.signal;
    const manifest = parseJson<Manifest>(manifestBytes, 'image manifest');
    if (manifest.schemaVersion !== 2) throw new InvalidArgumentError('image manifest: schemaVersion must be 2');
    const configDesc = checkDescriptor(manifest.config, 'manifest config');
    if (configDesc.size > CONFIG_MAX) throw new ResourceExhaustedError(`image config is ${configDesc.size} bytes, more than ${CONFIG_MAX}`);
    const layers = (manifest.layers ?? []).map((l, i) => checkDescriptor(l, `manifest layer ${i}`));
    if (layers.length === 0) throw new InvalidArgumentError('image manifest has no layers');
    if (layers.length > this.limits.maxLayers) throw new ResourceExhaustedError(`image has ${layers.length} layers, more than the ${this.limits.maxLayers} allowed`);
    for (const l of layers) if (l.mediaType !== '' && !LAYER_TYPES.has(l.mediaType)) throw new InvalidArgumentError(`layer ${l.digest}: unsupported media type "${l.mediaType}"`);
    await lease.add([manifestDigest, configDesc.digest, ...layers.map((l) => l.digest)]);
    await this.content.writeBuffer(manifestDigest, manifestBytes);
    await fetchBlob(configDesc.digest, configDesc.size, undefined, signal);
    const config = parseJson<ConfigDoc>(await this.content.readBuffer(configDesc.digest, CONFIG_MAX), 'image config');
    const diffIds = config.rootfs?.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.length !== layers.length || !diffIds.every((d) => typeof d === 'string' && isDigest(d))) {
      throw new InvalidArgumentError(`image config: rootfs.diff_ids must list one sha256 digest per layer (${layers.length})`);
    }
    layers.forEach((l, i) => {
      if (/\.tar$/.test(l.mediaType) && l.digest !== diffIds[i]) throw new InvalidArgumentError(`layer ${l.digest}: an uncompressed layer's digest must equal its diff_id ${diffIds[i]}`);
    });
    const chains = chainIds(diffIds);
    await lease.add(chains);
    const progress = (i: number, status: PullStatus, current: number): void => {
      const l = layers[i]!;
      o.onProgress?.({ id: l.digest.slice(7, 19), digest: l.digest, status, current, total: l.size });
    };
    const have = await Promise.all(chains.map((c) => this.snapshots.stat(c)));
    if (have.some((h) => !h)) this.fsWorkers.warm(); // starts while the first layer downloads
    layers.forEach((_, i) => progress(i, have[i] ? 'exists' : 'waiting', 0));
    // Download in parallel (bounded), unpack in order as each parent becomes ready.
    const downloads: Promise<void>[] = [];
    let next = 0;
    const limit = this.opts.concurrency ?? 3;
    const started: (() => void)[] = [];
    const need = layers.map((_, i) => !have[i]);
    const slots = layers.map(() => { let r!: () => void; const p = new Promise<void>((res) => { r = res; }); started.push(r); return p; });
    const worker = async (): Promise<void> => {
      while (next < layers.length) {
        const i = next++;
        const l = layers[i]!;
        if (need[i] && !(await this.content.has(l.digest))) {
          progress(i, 'downloading', 0);
          await fetchBlob(l.digest, l.size, (n) => progress(i, 'downloading', n), signal);
          progress(i, 'verifying', l.size);
        }
        started[i]!();
      }
    };
    for (let k = 0; k < limit; k++) downloads.push(worker().catch((err: unknown) => { ctl.abort(); throw err; }));
    const dl = Promise.all(downloads);
    dl.catch(() => {});
    const unpacks = (async () => {
      // Each layer is usable as the next one's parent as soon as it is in place; all of them are
      // durable and named (syncfs, shared by overlapping commits) before the image is recorded.
      const published: Promise<void>[] = [];
      try {
        for (let i = 0; i < layers.length; i++) {
          if (!need[i]) continue;
          await Promise.race([slots[i]!, dl.then(() => slots[i])]);
          progress(i, 'extracting', 0);
          const r = await this.unpackLayer(layers[i]!, diffIds[i]!, chains[i]!, i > 0 ? chains[i - 1] : undefined, signal, (n) => progress(i, 'extracting', n));
          published.push(r.published);
          r.published.then(() => progress(i, 'done', layers[i]!.size), () => {});
        }
      } catch (err) {
        // The layers placed so far get named first, so the GC after this failure sees and frees them.
        await Promise.allSettled(published);
        throw err;
      }
      await Promise.all(published);
      await Promise.all(chains.map((c) => this.snapshots.whenPublished(c))); // layers another pull of this process placed
    })().catch((err: unknown) => { ctl.abort(); throw err; });
    const settled = await Promise.allSettled([...downloads, unpacks]);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof AbortedError))
      ?? settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const layerRecords: LayerRecord[] = layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size, diffId: diffIds[i]!, chainId: chains[i]! }));
    const body = {
      id: configDesc.digest,
      size: configDesc.size + layers.reduce((a, l) => a + l.size, 0),
      config: (config.config ?? {}) as OciImageConfig,
      manifestDigest,
      layers: layerRecords,
      architecture: config.architecture ?? '',
      os: config.os ?? '',
      created: Date.now(),
      ...(indexDigest ? { indexDigest } : {}),
    };
    return this.images.put(body, names);
  }

  /** Unpacks one layer; resolves once it can serve as a parent, with `published` for when it is durable and named. */
  private unpackLayer(l: Descriptor, diffId: string, chainId: string, parent: string | undefined, signal: AbortSignal | undefined, onBytes: (n: number) => void): Promise<{ published: Promise<void> }> {
    let p = this.unpacking.get(chainId);
    if (!p) {
      p = this.snapshots.commitDeferred(chainId, parent, async (dir, lowers) => {
        // The cap of one layer: the setting, and never more than the room above the disk reserve.
        const room = spaceAboveReserve(await fsSpace(this.opts.root, this.cfg));
        const byDisk = room < this.limits.maxBytes;
        const limits = byDisk ? { ...this.limits, maxBytes: Math.max(0, room) } : this.limits;
        const maxBytesReason = byDisk ? `the free space of the image filesystem above its reserve, setting ${SETTING.reserve}` : `setting ${SETTING.maxLayerBytes}`;
        await applyLayer(this.content.path(l.digest), {
          dir, lowers, expectedDiffId: diffId, name: l.digest, limits, maxBytesReason, logger: this.log, onBytes,
          ...(signal ? { signal } : {}), ...(this.opts.profiler ? { profiler: this.opts.profiler } : {}), workers: this.fsWorkers,
        });
      }).then((r) => ({ published: r.published })).finally(() => this.unpacking.delete(chainId));
      this.unpacking.set(chainId, p);
    }
    return p;
  }

  async get(refOrId: string): Promise<ImageRecord | undefined> {
    return this.images.get(refOrId);
  }

  async list(): Promise<ImageRecord[]> {
    return this.images.list();
  }

  async remove(refOrId: string): Promise<void> {
    const r = this.images.remove(refOrId);
    if (!r.removed) throw new NotFoundError(`image "${refOrId}" not found`, { reason: 'BH_IMAGE_NOT_PRESENT' });
    // The disk is freed now, not at some later sweep: the kubelet's image GC expects RemoveImage to free space.
    if (r.imageGone) await this.collectQuietly('remove');
  }

  /** GC after a removal: the removal itself succeeded, so a GC failure is logged (the next GC retries), not the caller's error. */
  private async collectQuietly(after: string): Promise<void> {
    try { await this.gc(); } catch (err) { this.log.warn('image GC failed; the next one retries', { after, err: (err as Error).message }); }
  }

  async load(path: string, o: { signal?: AbortSignal } = {}): Promise<ImageRecord[]> {
    const what = `load ${path}`;
    const lease = this.pins.lease();
    try {
      // The archive is copied out (ingest), then into the content store, then unpacked.
      const size = (await stat(path).catch(() => undefined))?.size ?? 0;
      await ensureRoom(this.opts.root, this.cfg, 2 * size, what);
      const archive = await readArchive(path, this.content, o.signal, (digests) => lease.add(digests));
      const out: ImageRecord[] = [];
      for (const img of archive) {
        const fetchBlob = async (digest: string, _size: number, _p: unknown, _s: AbortSignal): Promise<void> => {
          if (!(await this.content.has(digest))) throw new InvalidArgumentError(`archive ${path}: blob ${digest} is missing`);
        };
        out.push(await this.importManifest(img.manifest, img.manifestDigest, undefined, { tags: img.tags, digests: [] }, fetchBlob, o, lease));
      }
      return out;
    } catch (err) {
      lease.release();
      await this.reclaimAfterFailure(what);
      throw wrapError(await diskFullError(err, this.opts.root, what), what);
    } finally {
      lease.release();
    }
  }

  private async imageOrThrow(imageId: string): Promise<ImageRecord> {
    const img = this.images.get(imageId);
    if (!img) throw new NotFoundError(`image "${imageId}" not found`, { reason: 'BH_IMAGE_NOT_PRESENT' });
    return img;
  }

  async prepareRootfs(key: string, imageId: string): Promise<Mount[]> {
    // Pinned until the container's snapshot exists: a RemoveImage meanwhile must not take its layers.
    const lease = this.pins.lease();
    try {
      const first = await this.imageOrThrow(imageId);
      await lease.add(first.layers.map((l) => l.chainId));
      const img = await this.imageOrThrow(imageId);
      return await this.snapshots.prepare(key, img.layers[img.layers.length - 1]!.chainId);
    } finally {
      lease.release();
    }
  }

  async removeRootfs(key: string): Promise<void> {
    const parent = (await this.snapshots.active()).find((a) => a.key === key)?.parent;
    await this.snapshots.remove(key);
    // The last container of an image already removed held its layers: they go now.
    if (parent && !this.images.list().some((img) => img.layers.some((l) => l.chainId === parent))) await this.collectQuietly('removeRootfs');
  }

  async removeStaleRootfs(keep: ReadonlySet<string>, graceMs = 10 * 60_000): Promise<string[]> {
    const gone: string[] = [];
    for (const a of await this.snapshots.active()) {
      if (keep.has(a.key)) continue;
      // A container being created has its snapshot before the engine lists it: young ones stay.
      const born = (await stat(dirname(a.upper)).catch(() => undefined))?.mtimeMs ?? 0;
      if (Date.now() - born < graceMs) continue;
      await this.snapshots.remove(a.key);
      gone.push(a.key);
    }
    return gone;
  }

  async viewRootfs(imageId: string): Promise<string[]> {
    const img = await this.imageOrThrow(imageId);
    return await this.snapshots.view(img.layers[img.layers.length - 1]!.chainId);
  }

  async gc(): Promise<GcResult> {
    while (this.pins.running) await this.pins.running.catch(() => {});
    const run = this.collect();
    this.pins.running = run;
    try { return await run; } finally { if (this.pins.running === run) this.pins.running = undefined; }
  }

  /** One GC pass; runs while `pins.running` is set, so no lease grows meanwhile. */
  private async collect(): Promise<GcResult> {
    await Promise.resolve(); // `pins.running` is set before the first look at the pins
    // Pins first, records second: no pin is added while this runs, and one released meanwhile
    // belongs to an operation that recorded its image before releasing (or failed).
    const pinned = this.pins.snapshot();
    const r = await collectGarbage(this.parts(), pinned, () => this.pins.empty && this.unpacking.size === 0);
    this.log.info('image gc', { ...r });
    return r;
  }

  private parts(): ImageParts {
    return { images: this.images, snapshots: this.snapshots, content: this.content, usage: this.usage };
  }

  async diskUsage(): Promise<DiskUsage> {
    return { ...(await measureDiskUsage(this.parts())), space: await fsSpace(this.opts.root, this.cfg) };
  }

  async prune(o: { all: boolean; containers: ReadonlySet<string> }): Promise<PruneResult> {
    const before = await this.fsUsage();
    const removedSnapshots = await this.removeStaleRootfs(o.containers);
    const inUse = new Set((await this.snapshots.active()).map((a) => a.parent));
    const removedImages: string[] = [];
    for (const img of this.images.list()) {
      if (inUse.has(img.layers[img.layers.length - 1]?.chainId ?? '')) continue;
      if (!o.all && img.repoTags.length > 0) continue;
      if (this.images.remove(img.id).imageGone) removedImages.push(img.id);
    }
    const g = await this.gc();
    const after = await this.fsUsage();
    return { removedImages, removedSnapshots, removedBlobs: g.blobs, reclaimedBytes: Math.max(0, before.bytes - after.bytes) };
  }

  async fsUsage(): Promise<FsUsage> {
    // What the image store holds (content, snapshots incl. container layers, metadata); the rest of
    // the daemon's root (container state, logs, volumes) is not image data.
    const committed = (await this.snapshots.walk()).map((x) => join(this.snapshots.root, x.id));
    const frozen = new Set(committed);
    this.usage.forgetExcept(frozen); // removed snapshots
    const u = await this.usage.usageOf(['content', 'snapshots', 'images'].map((d) => join(this.opts.root, d)), frozen);
    return { mountpoint: await mountpointOf(this.opts.root), bytes: u.bytes, inodes: u.inodes };
  }

  async close(): Promise<void> {
    await this.fsWorkers.close();
    this.images.close();
  }
}

/** Mounts an overlay spec from prepareRootfs at `target` (mount(8)). */
export async function mountRootfs(mounts: Mount[], target: string, signal?: AbortSignal): Promise<void> {
  for (const m of mounts) {
    await runChecked('mount', ['-t', m.type, '-o', m.options.join(','), m.source, target], { timeoutMs: 30_000, ...(signal ? { signal } : {}) });
  }
}

/** Unmounts `target`; a target that is not mounted is fine (idempotent). */
export async function unmountRootfs(target: string): Promise<void> {
  const r = await run('umount', [target], { timeoutMs: 30_000 });
  if (r.code !== 0 && !/not mounted|no mount point|not found/i.test(r.stderr)) throw new UnavailableError(`umount ${target}: ${r.stderr.trim()}`);
}
