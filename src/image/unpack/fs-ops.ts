/**
 * The filesystem half of a layer apply, run on a worker thread (fs-worker.ts): the main thread
 * parses the tar and makes every safety decision in entry order, then queues these operations; the
 * worker performs them in the same order with plain synchronous syscalls, so tar parsing, hashing
 * and decompression overlap with the kernel's inode creation (the dominant cost). Every create is
 * exclusive (O_EXCL|O_NOFOLLOW, mkdir, symlink, link, COPYFILE_EXCL): an operation never writes
 * through something that is already there. The first failure stops the queue.
 */
import { chmodSync, closeSync, copyFileSync, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync, lutimesSync, mkdirSync, openSync, rmSync, symlinkSync, writeSync, constants as fsConstants } from 'node:fs';

/** Owner, permission bits and mtime (ms since the epoch). */
export interface OpMeta { uid: number; gid: number; mode: number; mtime: number }

export type FsOp =
  | { k: 'mkdir'; path: string; mode: number; meta?: OpMeta }
  | { k: 'meta'; path: string; meta: OpMeta; link: boolean }
  | { k: 'file'; path: string; data: Uint8Array; meta: OpMeta }
  | { k: 'open'; path: string }
  | { k: 'write'; data: Uint8Array }
  | { k: 'close'; meta: OpMeta }
  | { k: 'symlink'; path: string; target: string; meta: OpMeta }
  | { k: 'link'; from: string; path: string }
  | { k: 'copy'; from: string; path: string; meta: OpMeta }
  | { k: 'rm'; path: string }
  | { k: 'times'; paths: string[]; mtimes: number[] };

export type WorkerReply = { k: 'ack'; seq: number } | { k: 'error'; seq: number; message: string; code: string | undefined };

const CREATE_EXCL = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

function writeAll(fd: number, data: Uint8Array): void {
  for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
}

function setMeta(path: string, m: OpMeta, link: boolean): void {
  const t = m.mtime / 1000;
  lchownSync(path, m.uid, m.gid);
  if (!link) chmodSync(path, m.mode & 0o7777); // after chown, which clears setuid
  lutimesSync(path, t, t);
}

function fdMeta(fd: number, m: OpMeta): void {
  const t = m.mtime / 1000;
  fchownSync(fd, m.uid, m.gid);
  fchmodSync(fd, m.mode & 0o7777);
  futimesSync(fd, t, t);
}

/** Performs operations in order; keeps the one open large file between calls. */
export class FsOpRunner {
  private fd = -1;

  run(op: FsOp): void {
    switch (op.k) {
      case 'mkdir':
        mkdirSync(op.path, { mode: op.mode });
        if (op.meta) { lchownSync(op.path, op.meta.uid, op.meta.gid); chmodSync(op.path, op.meta.mode & 0o7777); }
        return;
      case 'meta': setMeta(op.path, op.meta, op.link); return;
      case 'file': {
        const fd = openSync(op.path, CREATE_EXCL, 0o600);
        try { if (op.data.length > 0) writeAll(fd, op.data); fdMeta(fd, op.meta); } finally { closeSync(fd); }
        return;
      }
      case 'open': this.fd = openSync(op.path, CREATE_EXCL, 0o600); return;
      case 'write': writeAll(this.fd, op.data); return;
      case 'close': {
        const fd = this.fd;
        this.fd = -1;
        try { fdMeta(fd, op.meta); } finally { closeSync(fd); }
        return;
      }
      case 'symlink': symlinkSync(op.target, op.path); setMeta(op.path, op.meta, true); return;
      case 'link': linkSync(op.from, op.path); return;
      case 'copy': copyFileSync(op.from, op.path, fsConstants.COPYFILE_EXCL); setMeta(op.path, op.meta, false); return;
      case 'rm': rmSync(op.path, { recursive: true, force: true }); return;
      case 'times':
        for (let i = 0; i < op.paths.length; i++) {
          const t = op.mtimes[i]! / 1000;
          try { lutimesSync(op.paths[i]!, t, t); } catch { /* removed by a later entry */ }
        }
        return;
    }
  }

  close(): void {
    if (this.fd >= 0) { try { closeSync(this.fd); } catch { /* already failed */ } this.fd = -1; }
  }
}
