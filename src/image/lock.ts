/**
 * A cross-process lock file holding its owner's pid and start time (util/lock-record.ts), for one
 * writer of a blob or one builder of a VM template at a time. The file is written whole and then
 * linked into place (link(2) fails with EEXIST atomically), so nobody ever reads a lock without
 * its owner: an empty file, read between another's create and its write, was once judged stale
 * and removed, and two template builders ran at once. A lock whose owner is dead, or whose pid now
 * names another process, is stale (the daemon or a builder can die at any instruction): it is
 * moved aside and removed only when what was moved is the file judged stale, else put back. A
 * release removes the file only while it is still the one its owner made.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError } from '../errors.ts';
import { holderAlive, lockRecord, parseLockRecord } from '../util/lock-record.ts';

/** A lock file without an owner (written by an older version, or cut short by a full disk) is stale after this. */
const OWNERLESS_STALE_MS = 10_000;

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

/** A name beside `path` for a file of this process (hidden: directory scans skip dot files). */
function beside(path: string, what: string): string {
  return join(dirname(path), `.${basename(path)}.${what}.${process.pid}.${randomBytes(4).toString('hex')}`);
}

/** The file at `path` is the one read before: same inode (which a new file may reuse at once) and same text. */
async function same(path: string, ino: number, text: string): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return st?.ino === ino && (await readFile(path, 'utf8').catch(() => undefined)) === text;
}

/**
 * Makes the lock file whole beside it, then links it into place; its release, or undefined when
 * the file exists. Its text ends with a token of this lock (one process may hold several in turn).
 */
async function create(path: string): Promise<(() => Promise<void>) | undefined> {
  const tmp = beside(path, 'new');
  const text = `${lockRecord().trimEnd()} t=${randomBytes(8).toString('hex')}\n`;
  await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
  try {
    const { ino } = await stat(tmp);
    try {
      await link(tmp, path);
    } catch (err) {
      if (errno(err) === 'EEXIST') return undefined;
      throw err;
    }
    return async () => {
      if (await same(path, ino, text)) await unlink(path).catch(() => {});
    };
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** Removes the stale lock file (`ino`, `text`) at `path`; false when the file there is another's by now (left in place). */
async function removeStale(path: string, ino: number, text: string): Promise<boolean> {
  const aside = beside(path, 'stale');
  try {
    await rename(path, aside);
  } catch (err) {
    if (errno(err) === 'ENOENT') return true; // gone already
    throw err;
  }
  if (await same(aside, ino, text)) {
    await unlink(aside).catch(() => {});
    return true;
  }
  // another waiter took the stale lock over in between: its file goes back
  await link(aside, path).catch(() => {});
  await unlink(aside).catch(() => {});
  return false;
}

/** Tries once; returns a release function, or undefined when a live process holds it. */
export async function tryLock(path: string): Promise<(() => Promise<void>) | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const mine = await create(path);
    if (mine) return mine;
    const st = await stat(path).catch(() => undefined);
    if (!st) continue; // released meanwhile
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    if (text.trim() === '' ? Date.now() - st.mtimeMs < OWNERLESS_STALE_MS : holderAlive(parseLockRecord(text))) return undefined;
    if (!(await removeStale(path, st.ino, text))) return undefined;
  }
  return undefined;
}

/** Waits (polling) until the lock is ours. In-process callers must serialise themselves first. */
export async function lock(path: string, signal?: AbortSignal): Promise<() => Promise<void>> {
  for (;;) {
    if (signal?.aborted) throw new AbortedError(`waiting for lock ${path} aborted`);
    const release = await tryLock(path);
    if (release) return release;
    await sleep(50);
  }
}

/** True when the owner recorded in `path` is alive (and is that process, not a reused pid). */
export async function lockHeld(path: string): Promise<boolean> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return holderAlive(parseLockRecord(text));
}
