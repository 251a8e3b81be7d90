/**
 * Lock files: what one says of its owner ("PID STARTTIME [t=TOKEN]", the start time being field 22
 * of /proc/<pid>/stat in clock ticks since boot), whether that owner still holds it, and how one
 * is made and taken over without races. Shared by the daemon's pid lock (daemon/lock.ts) and the
 * lock files of builders and writers (image/lock.ts).
 *
 * A lock file is written whole beside its place and then linked there (link(2) fails with EEXIST
 * atomically), so nobody ever reads a lock without its owner: an empty file, read between another's
 * create and its write, was once judged stale and removed, and two holders went on at once. A
 * stale one is moved aside and removed only when what was moved is the file judged stale (same
 * inode and text), else put back; a release removes the file only while it is still its own.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { procStat } from './proc.ts';

/** The content of a lock file for this process. */
export function lockRecord(): string {
  return `${process.pid} ${procStat(process.pid)?.startTime ?? ''}`.trimEnd() + '\n';
}

/** Parses "PID [STARTTIME]"; the start time is absent in files written by older versions. */
export function parseLockRecord(text: string): { pid: number; startTime?: string } {
  const [pid, startTime] = text.trim().split(/\s+/);
  const n = Number(pid);
  return startTime && /^\d+$/.test(startTime) ? { pid: n, startTime } : { pid: n };
}

/**
 * Whether the process a lock record names still holds it: it exists, is not a zombie (or dead),
 * and, when the record has a start time, started at that time (not a reused pid).
 */
export function holderAlive(rec: { pid: number; startTime?: string }): boolean {
  const { pid } = rec;
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const st = procStat(pid);
  if (st) {
    if (st.state === 'Z' || st.state === 'X') return false;
    return rec.startTime === undefined || rec.startTime === st.startTime;
  }
  // no /proc entry we can read: fall back to a signal probe
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

/** A name beside `path` for a file of this process (hidden: directory scans skip dot files). */
function beside(path: string, what: string): string {
  return join(dirname(path), `.${basename(path)}.${what}.${process.pid}.${randomBytes(4).toString('hex')}`);
}

/** The file at `path` is the one read before: same inode (which a new file may reuse at once) and same text. */
async function sameFile(path: string, ino: number, text: string): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return st?.ino === ino && (await readFile(path, 'utf8').catch(() => undefined)) === text;
}

/**
 * Makes the lock file at `path` for this process (lockRecord and a token of this lock: one process
 * may hold several in turn); its release, or undefined when a lock file is there. A failed write
 * (a full disk) throws and leaves nothing.
 */
export async function createLockFile(path: string): Promise<(() => Promise<void>) | undefined> {
  const tmp = beside(path, 'new');
  const text = `${lockRecord().trimEnd()} t=${randomBytes(8).toString('hex')}\n`;
  try {
    await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
    const { ino } = await stat(tmp);
    try {
      await link(tmp, path);
    } catch (err) {
      if (errno(err) === 'EEXIST') return undefined;
      throw err;
    }
    return async () => {
      if (await sameFile(path, ino, text)) await unlink(path).catch(() => {});
    };
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** The lock file at `path` as read now: its inode, text and what it says of its owner; undefined when there is none. */
export async function readLockFile(path: string): Promise<{ ino: number; mtimeMs: number; text: string; rec: { pid: number; startTime?: string } } | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return undefined;
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  return { ino: st.ino, mtimeMs: st.mtimeMs, text, rec: parseLockRecord(text) };
}

/** Removes the stale lock file read as `seen` at `path`; false when the file there is another's by now (left in place). */
export async function removeStaleLockFile(path: string, seen: { ino: number; text: string }): Promise<boolean> {
  const aside = beside(path, 'stale');
  try {
    await rename(path, aside);
  } catch (err) {
    if (errno(err) === 'ENOENT') return true; // gone already
    throw err;
  }
  if (await sameFile(aside, seen.ino, seen.text)) {
    await unlink(aside).catch(() => {});
    return true;
  }
  // another took the stale lock over in between: its file goes back
  await link(aside, path).catch(() => {});
  await unlink(aside).catch(() => {});
  return false;
}
