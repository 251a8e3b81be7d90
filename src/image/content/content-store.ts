/**
 * ContentStore: content-addressed blobs (manifests, configs, layers) at
 * `<root>/content/blobs/sha256/<hex>`.
 *
 * Lifecycle of a blob:
 *   1. `write(digest, size, open)` ingests it: bytes go to `<root>/content/ingest/<hex>.partial`
 *      (same filesystem), are hashed while written, then size and digest are checked, the file is
 *      fsynced and renamed into `blobs/`. Nothing unverified is ever visible under `blobs/`.
 *      An interrupted ingest leaves its partial file; the next write of that digest resumes it
 *      (`open(offset)` is asked for the rest, e.g. an HTTP Range request) or restarts it.
 *      Concurrent writes of one digest in this process share one ingest; across processes a lock
 *      file serialises them.
 *   2. Readers use `has`/`path`/`readBuffer`/`createReadStream` at any time.
 *   3. `delete(digest)` removes it (only GC calls this, once nothing refers to the blob).
 */
import type { Readable } from 'node:stream';
import type { PullProfiler } from '../profile.ts';

export interface BlobInfo {
  digest: string;
  size: number;
}

/** Opens the blob's bytes starting at `offset`; may return a stream from 0 when it cannot seek. */
export type BlobOpener = (offset: number, signal: AbortSignal | undefined) => Promise<{ stream: Readable; offset: number }>;

export interface WriteOptions {
  signal?: AbortSignal;
  /** Called with bytes written so far while ingesting. */
  onProgress?: (current: number) => void;
  /** Cap when the size is not known in advance. */
  maxSize?: number;
  /** Timing hooks (download, verify, fsync). */
  profiler?: PullProfiler;
}

export interface ContentStore {
  has(digest: string): Promise<boolean>;
  info(digest: string): Promise<BlobInfo | undefined>;
  /** Absolute path of a committed blob (whether or not it exists). */
  path(digest: string): string;
  readBuffer(digest: string, maxSize?: number): Promise<Buffer>;
  createReadStream(digest: string): Readable;
  /** Ingests a blob; `size` < 0 when unknown. Resolves when the verified blob is committed. */
  write(digest: string, size: number, open: BlobOpener, opts?: WriteOptions): Promise<BlobInfo>;
  /** Ingests a small blob held in memory. */
  writeBuffer(digest: string, data: Buffer): Promise<BlobInfo>;
  delete(digest: string): Promise<void>;
  /** Every committed blob. */
  list(): Promise<BlobInfo[]>;
  /** Removes partial ingests no live process holds. */
  cleanIngests(): Promise<void>;
}
