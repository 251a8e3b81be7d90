/**
 * Reads an image archive for `ImageService.load`: an OCI image layout in a tar (oci-layout,
 * index.json, blobs/sha256/...) or a `docker save` tar (manifest.json, <id>.json, <dir>/layer.tar).
 * Every file is hashed while it is copied out of the archive; blobs enter the content store only
 * verified. Returns the manifests to import, with their names.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { AbortedError, InvalidArgumentError } from '../errors.ts';
import type { LocalContentStore } from './content/local-store.ts';
import { digestHex, isDigest, sha256Of } from './digest.ts';
import { isDiskFull } from './disk.ts';
import { parseReference, tagName } from './reference.ts';
import { MediaTypes } from './registry/client.ts';
import { hostPlatform, selectPlatform } from './platform.ts';

export interface ArchiveImage {
  manifest: Buffer;
  manifestDigest: string;
  tags: string[];
}

interface Extracted { tmp: string; digest: string; size: number }

const MAX_FILES = 100_000;
const MAX_META = 8 * 1024 * 1024;

function normalise(name: string): string {
  return name.split('/').filter((c) => c !== '' && c !== '.').join('/');
}

function nameFromAnnotations(a: Record<string, string> | undefined): string[] {
  for (const key of ['io.containerd.image.name', 'org.opencontainers.image.ref.name']) {
    const v = a?.[key];
    if (!v || !(v.includes('/') || v.includes(':'))) continue;
    try {
      const t = tagName(parseReference(v));
      if (t) return [t];
    } catch { /* a bare tag or not a name */ }
  }
  return [];
}

/**
 * `pin` is called with the digest of every file of the archive before any of them enters the
 * content store, so the image service's GC keeps them until the import ends.
 */
export async function readArchive(path: string, content: LocalContentStore, signal?: AbortSignal, pin?: (digests: string[]) => Promise<void>): Promise<ArchiveImage[]> {
  const workName = `load-${randomBytes(8).toString('hex')}`;
  const work = join(content.root, 'ingest', workName);
  content.busyDirs.add(workName);
  await mkdir(work, { recursive: true });
  try {
    const files = new Map<string, Extracted>();
    const extract = tarStream.extract();
    const src = createReadStream(path);
    const feed = pipeline(src, async function (s: AsyncIterable<Buffer>) {
      for await (const c of s) if (!extract.write(c)) await new Promise<void>((r) => { extract.once('drain', () => r()); });
      (extract as unknown as { end(): void }).end();
    }, ...(signal ? [{ signal }] : []) as []);
    feed.catch((err: unknown) => extract.destroy(err instanceof Error ? err : new Error(String(err))));
    let n = 0;
    try {
      for await (const entry of extract) {
        if (entry.header.type === 'file' || entry.header.type === 'contiguous-file') {
          if (++n > MAX_FILES) throw new InvalidArgumentError(`archive ${path}: more than ${MAX_FILES} files`);
          const tmp = join(work, String(n));
          const hash = createHash('sha256');
          let size = 0;
          await pipeline(entry as AsyncIterable<Buffer>, async function* (s: AsyncIterable<Buffer>) {
            for await (const c of s) { hash.update(c); size += c.length; yield c; }
          }, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
          files.set(normalise(entry.header.name), { tmp, digest: 'sha256:' + hash.digest('hex'), size });
        }
        for await (const _ of entry as AsyncIterable<Buffer>) { /* skip bodies of other entries */ }
      }
      await feed;
    } catch (err) {
      // Stop reading the archive: a feed left waiting on the destroyed extractor would hold the file (or pipe) open.
      src.destroy();
      extract.destroy();
      if (signal?.aborted) throw new AbortedError(`load ${path} aborted`, { cause: err });
      if (err instanceof InvalidArgumentError) throw err;
      if (isDiskFull(err)) throw err; // the caller names the full filesystem; the archive is not at fault
      throw new InvalidArgumentError(`archive ${path}: cannot read it as a tar: ${(err as Error).message}`, { cause: err });
    }
    await pin?.([...new Set([...files.values()].map((f) => f.digest))]);
    const readMeta = async (name: string): Promise<Buffer | undefined> => {
      const f = files.get(name);
      if (!f) return undefined;
      if (f.size > MAX_META) throw new InvalidArgumentError(`archive ${path}: ${name} is too large`);
      return await readFile(f.tmp);
    };
    const commit = async (digest: string, f: Extracted): Promise<void> => {
      if (f.digest !== digest) throw new InvalidArgumentError(`archive ${path}: blob ${digest} does not match its content (${f.digest})`);
      await content.write(digest, f.size, async () => ({ stream: createReadStream(f.tmp), offset: 0 }), signal ? { signal } : {});
    };
    const blobFile = (digest: string): Extracted => {
      const f = files.get(`blobs/sha256/${digestHex(digest)}`);
      if (!f) throw new InvalidArgumentError(`archive ${path}: blob ${digest} is missing`);
      return f;
    };

    const dockerManifest = await readMeta('manifest.json');
    const out: ArchiveImage[] = [];
    if (dockerManifest) {
      let list: unknown;
      try { list = JSON.parse(dockerManifest.toString('utf8')); } catch { throw new InvalidArgumentError(`archive ${path}: manifest.json is not valid JSON`); }
      if (!Array.isArray(list)) throw new InvalidArgumentError(`archive ${path}: manifest.json must be a list`);
      for (const item of list as { Config?: unknown; RepoTags?: unknown; Layers?: unknown }[]) {
        if (typeof item.Config !== 'string' || !Array.isArray(item.Layers)) throw new InvalidArgumentError(`archive ${path}: manifest.json entry without Config/Layers`);
        const cfg = files.get(normalise(item.Config));
        if (!cfg) throw new InvalidArgumentError(`archive ${path}: config ${item.Config} is missing`);
        await commit(cfg.digest, cfg);
        const layers = [];
        for (const l of item.Layers as unknown[]) {
          if (typeof l !== 'string') throw new InvalidArgumentError(`archive ${path}: bad layer name`);
          const f = files.get(normalise(l));
          if (!f) throw new InvalidArgumentError(`archive ${path}: layer ${l} is missing`);
          await commit(f.digest, f);
          const fh = await open(f.tmp, 'r');
          const head = Buffer.alloc(2);
          await fh.read(head, 0, 2, 0);
          await fh.close();
          const gz = head[0] === 0x1f && head[1] === 0x8b;
          layers.push({ mediaType: gz ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar', digest: f.digest, size: f.size });
        }
        const manifest = Buffer.from(JSON.stringify({
          schemaVersion: 2, mediaType: MediaTypes.ociManifest,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg.digest, size: cfg.size },
          layers,
        }));
        const tags: string[] = [];
        for (const t of Array.isArray(item.RepoTags) ? item.RepoTags : []) {
          if (typeof t !== 'string') continue;
          const name = tagName(parseReference(t));
          if (name) tags.push(name);
        }
        out.push({ manifest, manifestDigest: sha256Of(manifest), tags });
      }
      return out;
    }

    const indexBytes = await readMeta('index.json');
    if (!indexBytes || !files.has('oci-layout')) throw new InvalidArgumentError(`archive ${path}: neither an OCI image layout (oci-layout, index.json) nor a docker save tar (manifest.json)`);
    const visit = async (desc: { mediaType?: string; digest?: string; annotations?: Record<string, string> }, names: string[], depth: number): Promise<void> => {
      if (depth > 4 || typeof desc.digest !== 'string' || !isDigest(desc.digest)) throw new InvalidArgumentError(`archive ${path}: bad descriptor in index`);
      const f = blobFile(desc.digest);
      if (f.size > MAX_META) throw new InvalidArgumentError(`archive ${path}: manifest ${desc.digest} is too large`);
      await commit(desc.digest, f);
      const bytes = await readFile(f.tmp);
      const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; manifests?: { mediaType: string; digest: string; size: number; platform?: { os?: string; architecture?: string } }[]; config?: { digest: string }; layers?: { digest: string }[] };
      const mt = doc.mediaType ?? desc.mediaType ?? '';
      if (mt === MediaTypes.ociIndex || mt === MediaTypes.dockerList || (doc.manifests && !doc.config)) {
        const d = selectPlatform(doc as Parameters<typeof selectPlatform>[0], hostPlatform());
        if (!d) throw new InvalidArgumentError(`archive ${path}: no manifest for this platform in ${desc.digest}`);
        await visit(d, names, depth + 1);
        return;
      }
      for (const b of [doc.config, ...(doc.layers ?? [])]) {
        if (!b || typeof b.digest !== 'string') throw new InvalidArgumentError(`archive ${path}: manifest ${desc.digest} has a bad descriptor`);
        await commit(b.digest, blobFile(b.digest));
      }
      out.push({ manifest: bytes, manifestDigest: desc.digest, tags: names });
    };
    let index: { manifests?: { mediaType?: string; digest?: string; annotations?: Record<string, string> }[] };
    try { index = JSON.parse(indexBytes.toString('utf8')) as typeof index; } catch { throw new InvalidArgumentError(`archive ${path}: index.json is not valid JSON`); }
    for (const d of index.manifests ?? []) await visit(d, nameFromAnnotations(d.annotations), 0);
    return out;
  } finally {
    content.busyDirs.delete(workName);
    await rm(work, { recursive: true, force: true });
  }
}
