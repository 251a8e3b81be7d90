/**
 * A pid lock file holding the owner's pid and its start time (field 22 of /proc/<pid>/stat, in
 * clock ticks since boot), made as util/lock-record.ts makes lock files (whole, then linked into
 * place: two daemons started at once never both take it). A file left by a dead process is stale and taken
 * over; a live owner makes `acquirePidLock` fail with FailedPreconditionError naming it.
 *
 * "Dead" includes a zombie (killed, not yet reaped by its parent: `kill(pid, 0)` still succeeds)
 * and a pid reused by another process (its start time differs from the recorded one), so a daemon
 * restarted right after a SIGKILL is not refused for 0.4-2 s.
 */
import { readFile, mkdir } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { FailedPreconditionError, ResourceExhaustedError } from '../errors.ts';
import { createLockFile, holderAlive, parseLockRecord, readLockFile, removeStaleLockFile, sweepLockLeftovers } from '../util/lock-record.ts';

export { holderAlive, parseLockRecord } from '../util/lock-record.ts';

export interface PidLock {
  path: string;
  release(): Promise<void>;
}

/** The live holder of the lock at `path`, if any (for callers that wait for a starting daemon). */
export async function lockHolder(path: string): Promise<number | undefined> {
  const rec = parseLockRecord(await readFile(path, 'utf8').catch(() => ''));
  return holderAlive(rec) ? rec.pid : undefined;
}

export async function acquirePidLock(path: string, what: string): Promise<PidLock> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 3; attempt++) {
    let release: (() => Promise<void>) | undefined;
    try {
      release = await createLockFile(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw new ResourceExhaustedError(`cannot write the lock ${path} for ${what}: its filesystem is full and the daemon's disk reserve is used up; free space there (remove exited containers' layers, unused images) and start again`, { cause: err });
      throw err;
    }
    if (release) {
      // what a daemon killed inside a lock step left beside this lock (its dir is the root or run dir)
      await sweepLockLeftovers(dirname(path), basename(path));
      return { path, release };
    }
    const seen = await readLockFile(path);
    if (!seen) continue; // released meanwhile
    if (seen.rec.pid === process.pid) throw new FailedPreconditionError(`${what} is already locked by this process (${path})`);
    if (holderAlive(seen.rec)) throw new FailedPreconditionError(`another Bulkhead daemon (pid ${seen.rec.pid}) already uses ${what} (lock ${path}); stop it first, or give this one its own --root and --run-dir`);
    // a dead owner's, or garbage (a lock file is never seen half-written: util/lock-record.ts)
    await removeStaleLockFile(path, seen);
  }
  throw new FailedPreconditionError(`cannot take the lock ${path} for ${what}: it changed hands three times while trying; retry`);
}
