/**
 * Making, placing into and removing cgroups (cgroupfs driver), so that whatever Bulkhead makes is
 * found again after a crash:
 *
 * - `makeCgroup` creates a cgroup in each hierarchy, calling the caller's journal with each
 *   directory *before* its mkdir (a crash in between leaves a journal entry for nothing, harmless)
 *   and never makes a directory outside a cgroup filesystem; `placePid` moves a process in.
 * - `JournalFile` is such a journal kept as a JSON list in a file the caller owns (the microVM's
 *   pod directory); `removeJournaled` removes what one lists, deepest first.
 * - For cgroups a runtime makes (runc mkdirs the spec's cgroupsPath itself), `topMissing` says,
 *   before the runtime runs, which directory per hierarchy will be new — recorded by the caller
 *   with its pod — and `removeMade` removes from the cgroup up to that directory; `removeTree`
 *   removes a cgroup Bulkhead owns wholly (every hierarchy, children first).
 *
 * Removal only ever rmdirs (a cgroup directory with processes is EBUSY and stays), and only on a
 * cgroup filesystem.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CGROUP_ROOT, cleanCgroupPath, hierarchies, hierarchyKey, type Hierarchy } from './hierarchy.ts';
import { isCgroupFs } from './mounts.ts';

export interface MadeCgroup {
  /** The cgroup's directory in each hierarchy it was made in. */
  leaves: string[];
  /** Hierarchies where it could not be made, and why (the caller decides whether that matters). */
  failed: { hierarchy: string; reason: string }[];
}

/**
 * Makes cgroup `rel` (a clean relative path, see cleanCgroupPath) in each of `hs`. `journal(dir)`
 * is called before each directory is made. Throws nothing for one hierarchy's failure: see `failed`.
 * A shared parent removed while it was empty, between its check and the mkdir below it (another
 * user's removal of an empty parent, e.g. bulkhead-vm-templates after the last build), is made again.
 */
export function makeCgroup(rel: string, hs: readonly Hierarchy[], journal: (dir: string) => void): MadeCgroup {
  const out: MadeCgroup = { leaves: [], failed: [] };
  const clean = cleanCgroupPath(rel);
  if (clean === undefined) return { leaves: [], failed: hs.map((h) => ({ hierarchy: h.path, reason: `invalid cgroup path ${JSON.stringify(rel.slice(0, 200))}` })) };
  for (const h of hs) {
    for (let attempt = 1; ; attempt++) {
      try {
        out.leaves.push(makeIn(h, clean, journal));
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 4) continue; // a parent went: walk again
        out.failed.push({ hierarchy: h.path, reason: (e as Error).message });
        break;
      }
    }
  }
  return out;
}

/** makeCgroup in one hierarchy: the leaf's directory. */
function makeIn(h: Hierarchy, clean: string, journal: (dir: string) => void): string {
  let cur = h.path;
  for (const part of clean.split('/')) {
    cur = join(cur, part);
    if (!existsSync(cur)) {
      const parent = join(cur, '..');
      if (!isCgroupFs(parent)) throw Object.assign(new Error(`${parent} is not a cgroup filesystem`), existsSync(parent) ? {} : { code: 'ENOENT' });
      journal(cur);
      mkdirSync(cur);
      if (h.version === 1 && h.controllers.includes('cpuset')) inheritCpuset(cur);
    } else if (!isCgroupFs(cur)) throw new Error(`${cur} is not a cgroup filesystem`);
  }
  return cur;
}

/** A new v1 cpuset cgroup starts with no CPUs and no memory nodes (a pid placed there is ENOSPC): take the parent's. */
function inheritCpuset(dir: string): void {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    if (readFileSync(join(dir, f), 'utf8').trim() === '') writeFileSync(join(dir, f), readFileSync(join(dir, '..', f), 'utf8').trim());
  }
}

/** The processes in the cgroup at `dir` (its cgroup.procs); none when it cannot be read. */
export function cgroupPids(dir: string): number[] {
  let text: string;
  try { text = readFileSync(join(dir, 'cgroup.procs'), 'utf8'); } catch { return []; }
  return text.split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
}

/** Moves process `pid` (all its threads) into the cgroup at `dir`. */
export function placePid(dir: string, pid: number): void {
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`invalid pid ${pid}`);
  if (!isCgroupFs(dir)) throw new Error(`${dir} is not a cgroup`);
  writeFileSync(join(dir, 'cgroup.procs'), String(pid));
}

/** A journal of directories made, as a JSON list in `file` (rewritten whole, atomically, on each add). */
export class JournalFile {
  readonly file: string;
  constructor(file: string) { this.file = file; }

  dirs(): string[] {
    try {
      const v: unknown = JSON.parse(readFileSync(this.file, 'utf8'));
      return Array.isArray(v) ? v.filter((d): d is string => typeof d === 'string') : [];
    } catch { return []; }
  }

  add(dir: string): void {
    const dirs = this.dirs();
    if (dirs.includes(dir)) return;
    dirs.push(dir);
    writeFileSync(`${this.file}.tmp`, JSON.stringify(dirs), { mode: 0o600 });
    renameSync(`${this.file}.tmp`, this.file);
  }
}

function hasChildDirs(p: string): boolean {
  try { return readdirSync(p, { withFileTypes: true }).some((e) => e.isDirectory()); } catch { return false; }
}

/**
 * Removes the journaled directories, deepest first; their processes must be gone (a cgroup just
 * emptied may stay EBUSY for a moment: retried for ~1 s). A directory with a child cgroup (a shared
 * parent another user still has) and one that is not on a cgroup filesystem are left. Returns the
 * directories left.
 */
export async function removeJournaled(dirs: readonly string[]): Promise<string[]> {
  const left: string[] = [];
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
    if (!isCgroupFs(d)) continue; // gone already, or never a cgroup: nothing of ours
    if (hasChildDirs(d)) { left.push(d); continue; }
    if (!(await rmdirCgroup(d))) left.push(d);
  }
  return left;
}

/**
 * rmdir of one cgroup directory whose processes are gone: true once it is gone (or was). One just
 * emptied may stay EBUSY while its last tasks finish exiting: retried, 5 ms doubling to 50, for
 * ~1 s. false when it stays: busy after that, or another cgroup below it (ENOTEMPTY, EBUSY).
 */
export async function rmdirCgroup(dir: string): Promise<boolean> {
  for (let waited = 0, delay = 5; ; waited += delay, delay = Math.min(delay * 2, 50)) {
    try { rmdirSync(dir); return true; } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY' || waited >= 1000) return false;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** rmdir of a cgroup directory and every cgroup below it, children first; busy ones stay. */
async function rmdirDeep(dir: string): Promise<void> {
  let entries: import('node:fs').Dirent[] = [];
  try { entries = await readdir(dir, { withFileTypes: true }); } catch { return; }
  for (const e of entries) if (e.isDirectory()) await rmdirDeep(join(dir, e.name));
  await rmdir(dir).catch(() => undefined);
}

/**
 * Removes cgroup `path` (and the cgroups below it unless `deep` is false; nothing above) in every
 * hierarchy; busy directories are left, and returned (the cgroup's, per hierarchy where it stays).
 */
export async function removeTree(path: string, opts: { deep?: boolean } = {}): Promise<string[]> {
  const rel = cleanCgroupPath(path);
  if (rel === undefined) return [];
  const left: string[] = [];
  for (const h of hierarchies()) {
    const dir = join(h.path, rel);
    if (!isCgroupFs(dir)) continue;
    if (opts.deep === false) await rmdir(dir).catch(() => undefined);
    else await rmdirDeep(dir);
    if (existsSync(dir)) left.push(dir);
  }
  return left;
}

/**
 * Per hierarchy (keyed as hierarchyKey names it), the topmost directory of cgroup `path` that does
 * not exist yet: what a runtime creating the cgroup will make, for the caller to record first.
 */
export function topMissing(path: string): Record<string, string> {
  const rel = cleanCgroupPath(path);
  if (rel === undefined) return {};
  const parts = rel.split('/');
  const out: Record<string, string> = {};
  for (const h of hierarchies()) {
    const key = hierarchyKey(h);
    if (key === undefined) continue;
    for (let i = 1; i <= parts.length; i++) {
      const sub = '/' + parts.slice(0, i).join('/');
      if (!existsSync(join(h.path, sub))) { out[key] = sub; break; }
    }
  }
  return out;
}

/**
 * Removes what was made of cgroup `path` per `made` (from topMissing, read back from a record, so
 * checked again): the cgroup and those below it, then each parent up to the recorded top. Returns
 * the recorded tops still there (a directory made below one was left: busy, or another cgroup in it).
 */
export async function removeMade(path: string, made: unknown): Promise<string[]> {
  if (typeof made !== 'object' || made === null) return [];
  const rel = cleanCgroupPath(path);
  if (rel === undefined) return [];
  const abs = '/' + rel;
  const left: string[] = [];
  for (const [key, top] of Object.entries(made as Record<string, unknown>)) {
    if (typeof top !== 'string' || key.includes('/') || key.includes('..') || cleanCgroupPath(top) !== top.replace(/^\/+/, '')) continue;
    if (!(abs === top || abs.startsWith(top + '/'))) continue;
    const base = join(CGROUP_ROOT, key);
    if (!isCgroupFs(base)) continue; // not a hierarchy (any more): nothing of ours there
    await rmdirDeep(join(base, abs));
    for (let dir = abs; dir !== top && dir.length > top.length;) {
      dir = dir.slice(0, dir.lastIndexOf('/'));
      await rmdir(join(base, dir)).catch(() => undefined);
    }
    // any made directory left keeps the recorded top (a child needs its parent)
    if (existsSync(join(base, top))) left.push(join(base, top));
  }
  return left;
}
