/**
 * Lock files: what one says of its owner ("PID STARTTIME [t=TOKEN]", the start time being field 22
 * of /proc/<pid>/stat in clock ticks since boot), whether that owner still holds it, and how one
 * is made and taken over without races. Shared by the daemon's pid lock (daemon/lock.ts) and the
 * lock files of builders and writers (image/lock.ts).
 *
 * A lock file is written whole beside its place and then linked there (link(2) fails with EEXIST
 * atomically), so nobody ever reads a lock without its owner: an empty file, read between another's
 * create and its write, was once judged stale and removed, and two holders went on at once. A
 * release removes the file only while it is still its own.
 *
 * A stale one is removed under a claim on its inode: a second link to it, `.<name>.stale.<inode>`
 * (link(2) again: one remover per stale file), made while the lock's place still holds it. The
 * claim is checked to be the file judged stale (same inode and text; else it is dropped and the
 * lock left alone), and only then is the place unlinked: no creator can link a lock there while
 * the stale file is in place, no other remover holds the claim, and a dead holder releases nothing,
 * so what is unlinked is the stale file. The place is never empty while a live holder's file is
 * moved elsewhere: moving the stale file aside and linking it back when it turned out to be
 * another's lost that holder's lock when a third process had made one in the gap (the link back
 * failed and the moved file was dropped; two holders went on at once, the first unaware).
 *
 * What a process killed inside these steps leaves (`.<name>.new.<pid>.<rand>`, a claim, or a
 * `.<name>.stale.<pid>.<rand>` moved aside by an older version) is hidden beside the lock; the lock
 * users sweep them (sweepLockLeftovers) where their locks live.
 */
import { randomBytes } from 'node:crypto';
import { link, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
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

/** A claim on a stale lock file older than this is its remover's that died (a removal takes a few ms). */
export const CLAIM_STALE_MS = 30_000;
/** A `.new.` file of a live pid older than this is a leftover all the same (the pid was reused). */
const LEFTOVER_STALE_MS = 10 * 60_000;

/** The claim on the stale lock file at `path` whose inode is `ino`. */
function claimPath(path: string, ino: number): string {
  return join(dirname(path), `.${basename(path)}.stale.${ino}`);
}

/**
 * Removes the stale lock file read as `seen` at `path`; false when the file there is another's by
 * now (left in place), or another remover is on it (retry). See the header for why it is safe.
 */
export async function removeStaleLockFile(path: string, seen: { ino: number; text: string }): Promise<boolean> {
  const claim = claimPath(path, seen.ino);
  try {
    await link(path, claim);
  } catch (err) {
    if (errno(err) === 'ENOENT') return true; // gone already
    if (errno(err) !== 'EEXIST') throw err;
    // another remover is on it; one that died on it left its claim: dropped once old (a link to the
    // stale file, or to nothing in place any more), and the caller tries again
    const st = await stat(claim).catch(() => undefined);
    if (st && Date.now() - st.ctimeMs > CLAIM_STALE_MS) await unlink(claim).catch(() => {});
    return false;
  }
  try {
    if (!(await sameFile(claim, seen.ino, seen.text))) return false; // another's lock by now: not ours to remove
    await unlink(path);
    return true;
  } finally {
    await unlink(claim).catch(() => {});
  }
}

/** A leftover of a killed lock maker or remover beside lock `name`: what it is, whose, of which inode. */
const LEFTOVER = /^\.(.+)\.(new|stale)\.(\d+)(?:\.([0-9a-f]{8}))?$/;

/** Whether `name` is a lock step's hidden file (a leftover once its process is gone): sweepLockLeftovers judges it, nothing else. */
export function isLockStepFile(name: string): boolean {
  return LEFTOVER.test(name);
}

/**
 * Removes what lock makers and removers killed mid-step left in `dir` (only for locks named `only`,
 * when given): a `.new.` file of a dead pid (or older than LEFTOVER_STALE_MS), a claim older than
 * CLAIM_STALE_MS or whose lock is no longer in place, and a lock moved aside by an older version —
 * put back when its holder lives and the place is free (it lost its lock in that crash), else
 * removed once its holder is dead. Never a lock itself, nor a step of a live process under way.
 * Returns the names removed. `now`: the clock the ages are judged by (a test ages a claim with it).
 */
export async function sweepLockLeftovers(dir: string, only?: string, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try { names = await readdir(dir); } catch { return removed; }
  for (const n of names) {
    const m = LEFTOVER.exec(n);
    if (!m || (only !== undefined && m[1] !== only)) continue;
    const [, lockName, kind, num, rand] = m as unknown as [string, string, 'new' | 'stale', string, string | undefined];
    const p = join(dir, n);
    const st = await stat(p).catch(() => undefined);
    if (!st) continue;
    const age = now - st.ctimeMs;
    let gone = false;
    if (kind === 'new' && rand !== undefined) {
      gone = !holderAlive({ pid: Number(num) }) || age > LEFTOVER_STALE_MS;
    } else if (kind === 'stale' && rand === undefined) {
      // a claim: a second link to a stale lock; it guards nothing once the lock is no longer in place
      const placed = await stat(join(dir, lockName)).catch(() => undefined);
      gone = placed?.ino !== Number(num) || age > CLAIM_STALE_MS;
    } else if (kind === 'stale') {
      // moved aside by an older version's removal: the holder it names may live on, unaware
      const text = await readFile(p, 'utf8').catch(() => '');
      if (holderAlive(parseLockRecord(text))) {
        try { await link(p, join(dir, lockName)); } catch { continue; } // the place is taken: kept while its holder lives
      } else if (holderAlive({ pid: Number(num) }) && age < LEFTOVER_STALE_MS) continue; // its mover may still be at it
      gone = true;
    }
    if (!gone) continue;
    await unlink(p).catch(() => {});
    removed.push(n);
  }
  return removed;
}
