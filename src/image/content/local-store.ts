/**
 * The ContentStore on a local filesystem (see content-store.ts for the lifecycle).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { AbortedError, InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '../../errors.ts';
import { digestHex } from '../digest.ts';
import { lock, lockHeld } from '../lock.ts';
import { isLockStepFile, sweepLockLeftovers } from '../../util/lock-record.ts';
import type { BlobInfo, BlobOpener, ContentStore, WriteOptions } from './content-store.ts';
import { Readable } from 'node:stream';

export class LocalContentStore implements ContentStore {
  readonly root: string;
  private readonly blobs: string;
  private readonly ingest: string;
  private readonly inflight = new Map<string, Promise<BlobInfo>>();
  /** Work directories under ingest/ that an operation of this process uses (e.g. a load's extraction); cleanIngests keeps them. */
  readonly busyDirs = new Set<string>();

  private constructor(root: string) {
    this.root = root;
    this.blobs = join(root, 'blobs', 'sha256');
    this.ingest = join(root, 'ingest');
  }

  /** Opens (creating) the store under `root` (normally `<bulkhead root>/content`). */
  static async open(root: string): Promise<LocalContentStore> {
    const s = new LocalContentStore(root);
    await mkdir(s.blobs, { recursive: true });
    await mkdir(s.ingest, { recursive: true });
    return s;
  }

  path(digest: string): string {
    return join(this.blobs, digestHex(digest));
  }

  async info(digest: string): Promise<BlobInfo | undefined> {
    try {
      const st = await stat(this.path(digest));
      return { digest, size: st.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async has(digest: string): Promise<boolean> {
    return (await this.info(digest)) !== undefined;
  }

  async readBuffer(digest: string, maxSize = 64 * 1024 * 1024): Promise<Buffer> {
    const info = await this.info(digest);
    if (!info) throw new NotFoundError(`blob ${digest} not found in the content store`);
    if (info.size > maxSize) throw new ResourceExhaustedError(`blob ${digest} is ${info.size} bytes, more than the ${maxSize} allowed`);
    return await readFile(this.path(digest));
  }

  createReadStream(digest: string): Readable {
    return createReadStream(this.path(digest), { highWaterMark: 1024 * 1024 });
  }

  async writeBuffer(digest: string, data: Buffer): Promise<BlobInfo> {
    return await this.write(digest, data.length, async () => ({ stream: Readable.from([data]), offset: 0 }));
  }

  write(digest: string, size: number, opener: BlobOpener, opts: WriteOptions = {}): Promise<BlobInfo> {
    const hex = digestHex(digest);
    let p = this.inflight.get(hex);
    if (!p) {
      p = this.doWrite(digest, hex, size, opener, opts).finally(() => this.inflight.delete(hex));
      this.inflight.set(hex, p);
    }
    return p;
  }

  private async doWrite(digest: string, hex: string, size: number, opener: BlobOpener, opts: WriteOptions): Promise<BlobInfo> {
    const existing = await this.info(digest);
    if (existing) {
      if (size >= 0 && existing.size !== size) throw new InvalidArgumentError(`blob ${digest}: stored size ${existing.size} differs from the expected ${size}`);
      return existing;
    }
    const release = await lock(join(this.ingest, `${hex}.lock`), opts.signal);
    try {
      const again = await this.info(digest);
      if (again) return again;
      return await this.ingestLocked(digest, hex, size, opener, opts);
    } finally {
      await release();
    }
  }

  private async ingestLocked(digest: string, hex: string, size: number, opener: BlobOpener, opts: WriteOptions): Promise<BlobInfo> {
    const partial = join(this.ingest, `${hex}.partial`);
    const max = size >= 0 ? size : (opts.maxSize ?? Number.MAX_SAFE_INTEGER);
    const hash = createHash('sha256');
    let have = 0;
    // Resume: hash what an earlier attempt left behind.
    try {
      const st = await stat(partial);
      if (st.size > 0 && st.size <= max) {
        const rs = createReadStream(partial, { highWaterMark: 1024 * 1024 });
        for await (const chunk of rs) hash.update(chunk as Buffer);
        have = st.size;
      } else {
        await rm(partial, { force: true });
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let { stream, offset } = await opener(have, opts.signal);
    if (offset !== have) {
      // The source could not seek: start over.
      if (offset !== 0) { stream.destroy(); throw new InvalidArgumentError(`blob ${digest}: source resumed at ${offset}, wanted ${have}`); }
      hash.destroy();
      return await this.ingestFresh(digest, hex, size, stream, opts);
    }
    return await this.copyAndCommit(digest, hex, size, stream, hash, have, opts);
  }

  private async ingestFresh(digest: string, hex: string, size: number, stream: Readable, opts: WriteOptions): Promise<BlobInfo> {
    await rm(join(this.ingest, `${hex}.partial`), { force: true });
    return await this.copyAndCommit(digest, hex, size, stream, createHash('sha256'), 0, opts);
  }

  private async copyAndCommit(digest: string, hex: string, size: number, stream: Readable, hash: ReturnType<typeof createHash>, start: number, opts: WriteOptions): Promise<BlobInfo> {
    const partial = join(this.ingest, `${hex}.partial`);
    const max = size >= 0 ? size : (opts.maxSize ?? Number.MAX_SAFE_INTEGER);
    const out = createWriteStream(partial, { flags: start > 0 ? 'a' : 'w', mode: 0o600 });
    let written = start;
    const failed = new Promise<never>((_, reject) => out.once('error', reject));
    failed.catch(() => {});
    const onAbort = (): void => { stream.destroy(new AbortedError(`download of ${digest} aborted`)); };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const prof = opts.profiler;
    const t0 = performance.now();
    let hashMs = 0;
    try {
      for await (const chunk of stream) {
        const b = chunk as Buffer;
        written += b.length;
        if (written > max) throw new InvalidArgumentError(`blob ${digest}: more than the expected ${max} bytes`);
        if (prof) { const h0 = performance.now(); hash.update(b); hashMs += performance.now() - h0; } else hash.update(b);
        if (!out.write(b)) await Promise.race([new Promise<void>((resolve) => out.once('drain', resolve)), failed]);
        opts.onProgress?.(written);
      }
      out.end();
      await finished(out);
      if (prof) { prof.add('verify', hashMs); prof.add('download', performance.now() - t0 - hashMs); }
    } catch (err) {
      out.destroy();
      await finished(out).catch(() => {});
      throw err;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
    const got = 'sha256:' + hash.digest('hex');
    if ((size >= 0 && written !== size) || got !== digest) {
      await rm(partial, { force: true });
      if (size >= 0 && written !== size) throw new InvalidArgumentError(`blob ${digest}: got ${written} bytes, expected ${size}`);
      throw new InvalidArgumentError(`blob ${digest}: content digest mismatch (got ${got})`);
    }
    const s0 = performance.now();
    const fh = await open(partial, 'r');
    try { await fh.sync(); } finally { await fh.close(); }
    await rename(partial, join(this.blobs, hex));
    const dir = await open(this.blobs, 'r');
    try { await dir.sync(); } finally { await dir.close(); }
    prof?.add('fsync', performance.now() - s0);
    return { digest, size: written };
  }

  async delete(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
  }

  async list(): Promise<BlobInfo[]> {
    const out: BlobInfo[] = [];
    for (const name of await readdir(this.blobs)) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      const st = await stat(join(this.blobs, name)).catch(() => undefined);
      if (st) out.push({ digest: `sha256:${name}`, size: st.size });
    }
    return out;
  }

  async cleanIngests(): Promise<void> {
    // a lock step's hidden file is another process's under way until its owner is gone: judged there
    await sweepLockLeftovers(this.ingest);
    for (const name of await readdir(this.ingest)) {
      const m = /^([a-f0-9]{64})\.(partial|lock)$/.exec(name);
      if (!m) { if (!this.busyDirs.has(name) && !isLockStepFile(name)) await rm(join(this.ingest, name), { force: true, recursive: true }); continue; }
      if (this.inflight.has(m[1]!)) continue;
      if (await lockHeld(join(this.ingest, `${m[1]}.lock`))) continue;
      await rm(join(this.ingest, name), { force: true });
    }
  }
}
