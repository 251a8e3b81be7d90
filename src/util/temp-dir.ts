/**
 * Scratch directories under the system temp dir for short jobs (a runtime probe): named after the
 * process that made them (`<prefix><pid>-XXXXXX`), so that one left by a process killed mid-job is
 * found and removed by the next one: its pid is no longer alive. A directory with a mount under it
 * is left alone (never descended into).
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { liveStartTime } from './proc.ts';
import { mountsUnder } from './mountinfo.ts';

/** Unnamed leftovers of older versions (`<prefix>XXXXXX`) go once they are this old. */
const LEGACY_AGE_MS = 60 * 60 * 1000;

/** Removes `<prefix><pid>-*` directories whose process is gone (and old unnamed ones); returns their paths. */
export async function sweepTempDirs(prefix: string, dir = tmpdir()): Promise<string[]> {
  const removed: string[] = [];
  const owned = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:(\\d+)-)?[A-Za-z0-9]{6}$`);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = owned.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    if (m[1] !== undefined) {
      if (liveStartTime(Number(m[1])) !== undefined) continue;
    } else {
      const st = await stat(path).catch(() => undefined);
      if (!st || Date.now() - st.mtimeMs < LEGACY_AGE_MS) continue;
    }
    if ((await mountsUnder(path).catch(() => [path])).length > 0) continue;
    await rm(path, { recursive: true, force: true }).then(() => removed.push(path), () => {});
  }
  return removed;
}

/** A new scratch directory `<tmp>/<prefix><pid>-XXXXXX`, after sweeping the dead ones of the same prefix. */
export async function ownedTempDir(prefix: string, dir = tmpdir()): Promise<string> {
  await sweepTempDirs(prefix, dir);
  return await mkdtemp(join(dir, `${prefix}${process.pid}-`));
}
