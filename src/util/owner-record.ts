/**
 * Owner records of node-wide things a daemon makes outside its own root: a pod's network namespace,
 * a bridge, a cgroup. Such a thing outlives its daemon, and the daemon finds it again only through
 * its own state; a daemon killed and its root deleted (a test's temporary root, a node
 * re-provisioned) left things no daemon would ever look at. So before it makes one, a daemon writes
 * `<dir>/<name>` = {pid, start, anchor, ...what it needs to remove it}: itself (pid and start time,
 * as lock files say it: lock-record.ts) and a path that exists as long as the state that finds the
 * thing again does. The record goes once the thing is gone.
 *
 * A record is an orphan's (orphanRecords) only when its owner is dead and its anchor is gone: one
 * whose owner's state still exists is left to that owner's restart. What makes a thing removable
 * beyond that (its name, its contents) is the caller's rule.
 */
import { lstat, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { holderAlive, lockRecord, parseLockRecord } from './lock-record.ts';

export interface OwnerRecord { pid: number; start?: string; anchor: string; [field: string]: unknown }

/** Records this process as the maker of `name`, found again through `anchor`; before it is made. */
export async function writeOwnerRecord(dir: string, name: string, anchor: string, extra: Record<string, unknown> = {}): Promise<void> {
  const me = parseLockRecord(lockRecord());
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const rec: OwnerRecord = { ...extra, pid: me.pid, ...(me.startTime ? { start: me.startTime } : {}), anchor };
  await writeFile(join(dir, name), JSON.stringify(rec) + '\n', { mode: 0o600 });
}

/** Forgets `name`'s owner; after the thing is gone. */
export async function dropOwnerRecord(dir: string, name: string): Promise<void> {
  await rm(join(dir, name), { force: true });
}

/** The record `name` in `dir`; undefined when there is none, or it does not parse or has no absolute anchor. */
export async function readOwnerRecord(dir: string, name: string): Promise<OwnerRecord | undefined> {
  let rec: Partial<OwnerRecord>;
  try { rec = JSON.parse(await readFile(join(dir, name), 'utf8')) as Partial<OwnerRecord>; } catch { return undefined; }
  if (typeof rec !== 'object' || rec === null || typeof rec.pid !== 'number' || typeof rec.anchor !== 'string' || !rec.anchor.startsWith('/')) return undefined;
  return rec as OwnerRecord;
}

/** Whether record `rec` names this process as its owner (pid and start time). */
export function ownedByMe(rec: OwnerRecord): boolean {
  const me = parseLockRecord(lockRecord());
  return rec.pid === me.pid && (rec.start === undefined || rec.start === me.startTime);
}

async function gone(path: string): Promise<boolean> {
  try { await lstat(path); return false; } catch (err) { return (err as NodeJS.ErrnoException).code === 'ENOENT'; }
}

/**
 * The records in `dir` (files named as `name` allows) whose owner is dead, each with whether its
 * anchor is gone too. A record that does not parse, or has no absolute anchor, is nobody's to
 * judge: skipped.
 */
export async function deadOwnerRecords(dir: string, name: RegExp): Promise<{ name: string; rec: OwnerRecord; anchorGone: boolean }[]> {
  const out: { name: string; rec: OwnerRecord; anchorGone: boolean }[] = [];
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    if (!name.test(n)) continue;
    const rec = await readOwnerRecord(dir, n);
    if (rec === undefined || holderAlive({ pid: rec.pid, ...(typeof rec.start === 'string' ? { startTime: rec.start } : {}) })) continue;
    out.push({ name: n, rec, anchorGone: await gone(rec.anchor) });
  }
  return out;
}

/** The records in `dir` whose owner is dead and whose anchor is gone: an orphan's. */
export async function orphanRecords(dir: string, name: RegExp): Promise<{ name: string; rec: OwnerRecord }[]> {
  return (await deadOwnerRecords(dir, name)).filter((r) => r.anchorGone);
}
