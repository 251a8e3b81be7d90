/**
 * A cross-process lock file: created with O_EXCL and holding the owner's pid. A lock whose pid
 * is no longer alive is stale and taken over (the daemon can die at any instruction).
 */
import { open, readFile, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError } from '../errors.ts';

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Tries once; returns a release function, or undefined when a live process holds it. */
export async function tryLock(path: string): Promise<(() => Promise<void>) | undefined> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return async () => { await unlink(path).catch(() => {}); };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (alive(pid)) return undefined;
      await unlink(path).catch(() => {});
    }
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

/** True when the pid written in `path` belongs to a live process. */
export async function lockHeld(path: string): Promise<boolean> {
  const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
  return alive(pid);
}
