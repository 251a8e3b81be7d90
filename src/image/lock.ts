/**
 * A cross-process lock file for one writer of a blob or one builder of a VM template at a time:
 * made, read and taken over as util/lock-record.ts says (written whole then linked into place, so
 * a waiter never takes a lock being written for stale). A lock whose owner is dead, or whose pid
 * now names another process, is stale (the daemon or a builder can die at any instruction).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError } from '../errors.ts';
import { basename, dirname } from 'node:path';
import { createLockFile, holderAlive, parseLockRecord, readLockFile, removeStaleLockFile, sweepLockLeftovers } from '../util/lock-record.ts';
import { readFile } from 'node:fs/promises';

/** A lock file without an owner (written by an older version, or cut short by a full disk) is stale after this. */
const OWNERLESS_STALE_MS = 10_000;

/** Tries once; returns a release function, or undefined when a live process holds it. */
export async function tryLock(path: string): Promise<(() => Promise<void>) | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const mine = await createLockFile(path);
    if (mine) {
      // what lock steps of killed processes left beside it (its dir holds few files: in-flight ingests, templates)
      await sweepLockLeftovers(dirname(path), basename(path));
      return mine;
    }
    const seen = await readLockFile(path);
    if (!seen) continue; // released meanwhile
    if (seen.text.trim() === '' ? Date.now() - seen.mtimeMs < OWNERLESS_STALE_MS : holderAlive(seen.rec)) return undefined;
    if (!(await removeStaleLockFile(path, seen))) return undefined;
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
