/**
 * Optional timing hooks for pulls (the benchmark's --profile). Stages overlap across layers
 * (layer 3 downloads while layer 1 unpacks), so their sum may exceed the pull's wall time.
 *   download    waiting for registry bytes and writing them to the ingest file
 *   verify      sha256 of the compressed blob (digest) and of the uncompressed tar (diffID)
 *   decompress  the rest of a layer apply: reading the blob, gunzip/zstd, tar parsing
 *   unpack      creating files, directories, links and their metadata; xattrs; directory times
 *   fsync       making blobs and snapshots durable
 */
export type PullStage = 'download' | 'verify' | 'decompress' | 'unpack' | 'fsync';

export interface PullProfiler {
  add(stage: PullStage, ms: number): void;
}

/** Sums per stage; `take()` returns and resets them. */
export class StageTotals implements PullProfiler {
  private totals: Record<PullStage, number> = { download: 0, verify: 0, decompress: 0, unpack: 0, fsync: 0 };
  add(stage: PullStage, ms: number): void { this.totals[stage] += ms; }
  take(): Record<PullStage, number> {
    const t = this.totals;
    this.totals = { download: 0, verify: 0, decompress: 0, unpack: 0, fsync: 0 };
    return t;
  }
}
