/**
 * Who made a cgroup, so that one nobody can find again is removed. A pod's own cgroup
 * (`/bulkhead/pod-<id>`, shared parent of every daemon on the node that keeps the default) and a
 * pod VM's (`/bulkhead-vm/<pod>`) are found again only through their daemon's state: a daemon
 * killed and its root deleted left them for good, with whatever still ran in them and the memory
 * they still charged. So before one is made, its maker writes an owner record
 * (util/owner-record.ts) under CGROUP_OWNERS_DIR naming the cgroup, and drops it once the cgroup is
 * gone.
 *
 * A removal that leaves busy directories keeps the record, marked released (settleCgroupOwner);
 * its maker retries the removal while it runs (retryReleasedCgroup: the engine's
 * engine/released-cgroups.ts, with backoff and at later pod removals).
 *
 * sweepOrphanCgroups (any daemon's start, the test harness's teardown) takes a record whose owner
 * is dead and whose anchor is gone, or which is released: it kills what still runs in that cgroup
 * (nothing can manage it any more: its conmon or supervisor answers to a daemon that is gone, or
 * its pod was removed) when the cgroup is the
 * maker's own, removes the cgroup in every hierarchy (for one under a parent the maker was given,
 * only what it made: `made`, as topMissing recorded it), then the record once nothing of it is
 * left. A record whose owner is dead and whose cgroup is gone everywhere goes too (a crash between
 * the removal and the drop).
 */
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../util/log.ts';
import { deadOwnerRecords, dropOwnerRecord, ownedByMe, readOwnerRecord, writeOwnerRecord, type OwnerRecord } from '../util/owner-record.ts';
import { cleanCgroupPath, hierarchies } from './hierarchy.ts';
import { isCgroupFs } from './mounts.ts';
import { cgroupPids, removeMade, removeTree } from './tree.ts';

/** Node-wide, beside the netns owners (/run/bulkhead-netns). */
export const CGROUP_OWNERS_DIR = '/run/bulkhead-cgroups';

const RECORD_NAME = /^[0-9a-f]{24}$/;

function recordName(rel: string): string {
  return createHash('sha256').update(rel).digest('hex').slice(0, 24);
}

export interface CgroupOwnerOptions {
  /** The cgroup is the maker's own (it and everything in it go); else it sits under a parent it was given and only `made` goes. */
  own: boolean;
  /** Per hierarchy key, the topmost directory the maker made (topMissing), for a cgroup that is not its own. */
  made?: Record<string, string>;
  dir?: string;
}

/** Records this process as the maker of cgroup `path`, found again through `anchor`; before the cgroup is made. */
export async function recordCgroupOwner(path: string, anchor: string, opts: CgroupOwnerOptions): Promise<void> {
  const rel = cleanCgroupPath(path);
  if (rel === undefined) return;
  await writeOwnerRecord(opts.dir ?? CGROUP_OWNERS_DIR, recordName(rel), anchor, { cgroup: rel, own: opts.own, ...(opts.made ? { made: opts.made } : {}) });
}

/** Forgets cgroup `path`'s owner; after the cgroup is gone. */
export async function dropCgroupOwner(path: string, dir = CGROUP_OWNERS_DIR): Promise<void> {
  const rel = cleanCgroupPath(path);
  if (rel !== undefined) await dropOwnerRecord(dir, recordName(rel));
}

/**
 * After a removal of cgroup `path` by its maker: its record goes when `left` (the directories the
 * removal left, busy) is empty; else it stays, marked released (the maker's state no longer names
 * the cgroup, so the next sweep, once this process is gone, removes it without waiting for the
 * anchor to go) and owned by this process, for retryReleasedCgroup while it runs: true then.
 * No record: nothing to do.
 */
export async function settleCgroupOwner(path: string, left: readonly string[], dir = CGROUP_OWNERS_DIR): Promise<boolean> {
  const rel = cleanCgroupPath(path);
  if (rel === undefined) return false;
  if (left.length === 0) { await dropOwnerRecord(dir, recordName(rel)); return false; }
  const rec = await readOwnerRecord(dir, recordName(rel));
  if (rec === undefined || rec.cgroup !== rel) return false;
  const { pid: _pid, start: _start, anchor, ...fields } = rec;
  await writeOwnerRecord(dir, recordName(rel), anchor, { ...fields, released: true });
  return true;
}

/** The directories of cgroup `rel` and every cgroup below it, in every hierarchy, deepest last. */
async function subtree(rel: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 16 || out.length > 4096) return;
    out.push(dir);
    let entries: import('node:fs').Dirent[] = [];
    try { entries = await readdir(dir, { withFileTypes: true }); } catch { return; }
    for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name), depth + 1);
  };
  for (const h of hierarchies()) {
    const dir = join(h.path, rel);
    if (isCgroupFs(dir)) await walk(dir, 0);
  }
  return out;
}

/** SIGKILLs every process in the cgroup subtree until none is left (bounded); true when it emptied. */
async function killAll(dirs: readonly string[]): Promise<boolean> {
  for (let round = 0; round < 50; round++) {
    const pids = [...new Set(dirs.flatMap(cgroupPids))].filter((p) => p !== process.pid);
    if (pids.length === 0) return true;
    for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch { /* gone already */ } }
    await new Promise((r) => setTimeout(r, 20 + round * 5));
  }
  return false;
}

/** Why a reaped cgroup is gone, for the log. */
type ReapWhy = 'orphan' | 'released' | 'released-live';

const REAPED: Record<ReapWhy, string> = {
  orphan: 'orphaned cgroup removed: its daemon is gone and so is the state that would find it',
  released: 'cgroup of a removed pod, left busy by its daemon, removed',
  'released-live': 'cgroup of a removed pod, left busy at its removal, removed on a later retry',
};

/**
 * Kills what runs in cgroup `rel` when it is the maker's own, removes it (own: all of it; else what
 * `made` names), then its record `name`. Returns the directories left (busy: the record stays).
 */
async function reap(log: Logger, dir: string, name: string, rel: string, rec: OwnerRecord, why: ReapWhy): Promise<string[]> {
  const dirs = await subtree(rel);
  if (dirs.length === 0) { await dropOwnerRecord(dir, name); return []; }
  const own = rec.own === true;
  if (own && !(await killAll(dirs))) return dirs.filter((d) => cgroupPids(d).length > 0);
  const left = own ? await removeTree(rel) : await removeMade(rel, rec.made);
  if (left.length > 0) return left;
  await dropOwnerRecord(dir, name);
  log.warn(REAPED[why], { cgroup: rel, anchor: rec.anchor, ownerPid: rec.pid });
  return [];
}

/**
 * Removes the cgroups no daemon can find again (see the file's comment) and their owner records;
 * returns the cgroup paths removed.
 */
export async function sweepOrphanCgroups(log: Logger, dir = CGROUP_OWNERS_DIR): Promise<string[]> {
  const removed: string[] = [];
  for (const { name, rec, anchorGone } of await deadOwnerRecords(dir, RECORD_NAME)) {
    const rel = typeof rec.cgroup === 'string' ? cleanCgroupPath(rec.cgroup) : undefined;
    if (rel === undefined || name !== recordName(rel)) continue; // not a record this module wrote
    // its cgroup gone everywhere: whatever the anchor, nothing to keep
    if ((await subtree(rel)).length === 0) { await dropOwnerRecord(dir, name); continue; }
    // released: its maker removed what named it (the pod) but the cgroup stayed busy
    const released = rec.released === true;
    if (!anchorGone && !released) continue;
    const left = await reap(log, dir, name, rel, rec, released ? 'released' : 'orphan');
    if (left.length > 0) { log.warn('cannot remove an orphaned cgroup yet: left for the next sweep', { cgroup: rel, left: left.slice(0, 8) }); continue; }
    removed.push(rel);
  }
  return removed;
}

/**
 * Retries the removal of cgroup `path` that this process released (settleCgroupOwner) with
 * anchor `anchor`, as the sweep would once this process is gone: 'gone' when it and its record
 * are (or the record is no longer a released one of this process and anchor: a new maker's, or
 * removed already), else the directories still left.
 */
export async function retryReleasedCgroup(log: Logger, path: string, anchor: string, dir = CGROUP_OWNERS_DIR): Promise<'gone' | string[]> {
  const rel = cleanCgroupPath(path);
  if (rel === undefined) return 'gone';
  const name = recordName(rel);
  const rec = await readOwnerRecord(dir, name);
  if (rec === undefined || rec.cgroup !== rel || rec.released !== true || rec.anchor !== anchor || !ownedByMe(rec)) return 'gone';
  const left = await reap(log, dir, name, rel, rec, 'released-live');
  return left.length === 0 ? 'gone' : left;
}

/** The processes still in cgroup `path` and below it, in any hierarchy (at most `max`), for a log line. */
export async function pidsUnder(path: string, max = 8): Promise<number[]> {
  const rel = cleanCgroupPath(path);
  return rel === undefined ? [] : [...new Set((await subtree(rel)).flatMap(cgroupPids))].slice(0, max);
}
