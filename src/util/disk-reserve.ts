/**
 * A small preallocated file in the daemon's root that keeps room for keeping the books on a full
 * disk. A container filling its writable layer fills the filesystem of the state root; the state
 * database then cannot record an exit or a removal (SQLite needs a few pages for any write), and
 * the daemon cannot restart. Writes that record or remove what exists (never ones creating
 * something new) release part of the reserve when they meet ENOSPC/SQLITE_FULL and retry; the
 * daemon releases a part at start when the disk is full (pid files, the database's shared memory
 * file need a few pages). It is released a quarter at a time (truncated). The last quarter is never
 * given to a running daemon's writes, only to a start (`forStart`), so that however many writes met
 * the full disk a restart still finds room for its lock file and databases; it is made again once
 * there is room for it thrice.
 *
 * The file is written with real blocks (zeros, not a sparse file), under a temporary name renamed
 * into place, so a half-written reserve never counts.
 */
import { closeSync, openSync, renameSync, rmSync, statfsSync, statSync, truncateSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from './log.ts';

export const RESERVE_NAME = 'disk-reserve';
export const DEFAULT_RESERVE_BYTES = 8 * 1024 * 1024;

export class DiskReserve {
  readonly path: string;
  readonly bytes: number;
  readonly #dir: string;
  readonly #log: Logger | undefined;

  constructor(dir: string, opts: { bytes?: number; logger?: Logger } = {}) {
    this.#dir = dir;
    this.path = join(dir, RESERVE_NAME);
    this.bytes = opts.bytes ?? DEFAULT_RESERVE_BYTES;
    this.#log = opts.logger;
  }

  /** Bytes free to unprivileged writers on the reserve's filesystem (undefined if it cannot be asked). */
  free(): number | undefined {
    try {
      const s = statfsSync(this.#dir);
      return s.bavail * s.bsize;
    } catch {
      return undefined;
    }
  }

  held(): boolean {
    try { return statSync(this.path).size >= this.bytes; } catch { return false; }
  }

  /**
   * Frees a quarter of the reserve; true when that freed space. The last quarter is kept for a
   * daemon start: only `forStart` releases it. Never throws.
   */
  release(why: string, opts: { forStart?: boolean } = {}): boolean {
    try {
      const size = statSync(this.path).size;
      const step = Math.ceil(this.bytes / 4);
      if (size <= step) {
        if (!opts.forStart) return false;
        unlinkSync(this.path);
      } else {
        truncateSync(this.path, size - step);
      }
      this.#log?.warn('disk full: released part of the disk reserve so that records can be kept and removals proceed', { path: this.path, freed: Math.min(size, step), left: Math.max(0, size - step), why });
      return size > 0;
    } catch {
      return false;
    }
  }

  /** At daemon start: releases a quarter (the last one too) when less than the reserve's size is free. */
  releaseIfFull(why: string): boolean {
    const f = this.free();
    return f !== undefined && f < this.bytes && this.release(why, { forStart: true });
  }

  /** Makes the reserve when it is missing and there is room for it twice over. Never throws. */
  ensure(): void {
    if (this.held()) return;
    const f = this.free();
    if (f === undefined || f < 3 * this.bytes) return;
    const tmp = `${this.path}.tmp`;
    let fd: number | undefined;
    try {
      fd = openSync(tmp, 'w', 0o600);
      const chunk = Buffer.alloc(Math.min(this.bytes, 1024 * 1024));
      for (let done = 0; done < this.bytes;) done += writeSync(fd, chunk, 0, Math.min(chunk.length, this.bytes - done));
      closeSync(fd);
      fd = undefined;
      renameSync(tmp, this.path);
    } catch (err) {
      this.#log?.debug('disk reserve not made', { path: this.path, err });
    } finally {
      if (fd !== undefined) { try { closeSync(fd); } catch { /* */ } }
      rmSync(tmp, { force: true });
    }
  }
}

/** An error that says the disk is full: ENOSPC/EDQUOT from a syscall, or SQLite's SQLITE_FULL (13). */
export function isDiskFull(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as NodeJS.ErrnoException & { errcode?: number };
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return true;
  // SQLITE_FULL, and SQLITE_IOERR_SHMSIZE (4874): the -shm file could not be grown
  if (typeof e.errcode === 'number' && ((e.errcode & 0xff) === 13 || e.errcode === 4874)) return true;
  return /database or disk is full|no space left on device/i.test(e.message);
}
