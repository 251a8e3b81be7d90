/**
 * The cgroup directories of a pod: a requested cgroup_parent judged against the configured roots,
 * what creating the pod will make, and removing only that (or the engine's own pod cgroup).
 */
import { readdir, rmdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, normalize } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import { isUnder } from '../util/beneath.ts';
import { DEFAULT_CGROUP_ROOTS, type EngineOptions } from './options.ts';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** A requested cgroup_parent: a clean cgroupfs path strictly under one of the configured roots. */
export function checkCgroupParent(opts: EngineOptions, cp: string): string {
  const roots = (opts.cgroupRoots ?? DEFAULT_CGROUP_ROOTS).map((r) => normalize(r).replace(/(.)\/+$/, '$1'));
  const rule = `cgroup_parent must be a cgroupfs path under ${roots.join(' or ')} (engine cgroup_roots)`;
  if (!/^\/[A-Za-z0-9_.:@=+\/-]*$/.test(cp) || cp.split('/').some((x) => x === '..' || x === '.')) {
    throw new InvalidArgumentError(`cgroup_parent ${JSON.stringify(cp.slice(0, 200))} is not allowed: ${rule}, without "..")`);
  }
  const n = normalize(cp).replace(/(.)\/+$/, '$1');
  if (!roots.some((r) => isUnder(n, r) && n !== r)) throw new InvalidArgumentError(`cgroup_parent ${n} is not allowed: ${rule}`);
  return n;
}

/** Removes a cgroupfs path (and nothing above it) in every hierarchy; busy or missing dirs are left. */
export async function removeCgroupDirs(path: string): Promise<void> {
  const rel = path.replace(/^\/+/, '');
  if (!rel || rel.includes('..')) return;
  // v1: every controller hierarchy; v2: the one unified tree
  for (const h of await cgroupHierarchies()) {
    const dir = join(CGROUP_ROOT, h, rel);
    if (!existsSync(dir)) continue;
    await rmdirDeep(dir);
  }
}

/** The cgroupfs hierarchies: [''] on cgroup v2, every controller mount (not the alias symlinks) on v1/hybrid. */
async function cgroupHierarchies(): Promise<string[]> {
  if (existsSync(join(CGROUP_ROOT, 'cgroup.controllers'))) return [''];
  const out: string[] = [];
  try {
    for (const e of await readdir(CGROUP_ROOT, { withFileTypes: true })) if (e.isDirectory()) out.push(e.name);
  } catch { /* no cgroupfs */ }
  return out;
}

/** Per hierarchy, the shallowest directory of `path` that does not exist yet (what creating the pod will make). */
export async function missingCgroupDirs(path: string): Promise<Record<string, string>> {
  const parts = path.split('/').filter(Boolean);
  const out: Record<string, string> = {};
  for (const h of await cgroupHierarchies()) {
    for (let i = 1; i <= parts.length; i++) {
      const rel = '/' + parts.slice(0, i).join('/');
      if (!existsSync(join(CGROUP_ROOT, h, rel))) { out[h] = rel; break; }
    }
  }
  return out;
}

/** Removes what Bulkhead made of a requested cgroup parent: per hierarchy, from `path` up to the recorded top. */
export async function removeMadeCgroupDirs(path: string, made: Readonly<Record<string, string>>): Promise<void> {
  for (const [h, top] of Object.entries(made)) {
    if (top.includes('..') || h.includes('/') || h.includes('..') || !(path === top || path.startsWith(top + '/'))) continue;
    await rmdirDeep(join(CGROUP_ROOT, h, path));
    for (let dir = path; dir !== top && dir.length > top.length;) {
      dir = dir.slice(0, dir.lastIndexOf('/'));
      await rmdir(join(CGROUP_ROOT, h, dir)).catch(() => undefined);
    }
  }
}

async function rmdirDeep(dir: string): Promise<void> {
  let entries: import('node:fs').Dirent[] = [];
  try { entries = await readdir(dir, { withFileTypes: true }); } catch { return; }
  for (const e of entries) if (e.isDirectory()) await rmdirDeep(join(dir, e.name));
  await rmdir(dir).catch(() => undefined);
}
