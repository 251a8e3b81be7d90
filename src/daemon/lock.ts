/**
 * A pid lock file: created exclusively, holding the owner's pid. A file left by a dead process is
 * stale and taken over; a live owner makes `acquirePidLock` fail with FailedPrecondition naming it.
 */
import { open, readFile, unlink, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FailedPreconditionError } from '../errors.ts';

export interface PidLock {
  path: string;
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

export async function acquirePidLock(path: string, what: string): Promise<PidLock> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return {
        path,
        release: async () => {
          const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
          if (owner === process.pid) await unlink(path).catch(() => {});
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (pid === process.pid) throw new FailedPreconditionError(`${what} is already locked by this process (${path})`);
      if (alive(pid)) throw new FailedPreconditionError(`another Bulkhead daemon (pid ${pid}) already uses ${what} (lock ${path})`);
      await unlink(path).catch(() => {});
    }
  }
  throw new FailedPreconditionError(`cannot take the lock ${path} for ${what}`);
}
