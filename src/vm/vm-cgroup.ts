/**
 * The pod VM's host cgroup (the VMM's): which hierarchies (v1 memory, cpu, cpuacct, pids, and the
 * v2 one), which limits (the pod's memory and CPU), which processes (QEMU and the pod's virtiofsd
 * with the child it forks into its namespaces: whatever the VM adds on the host; the supervisor
 * stays out, as conmon stays out of a runc container's cgroup, so an OOM kill in the pod never takes
 * the process that cleans up after it), and where the journal of what was made lives
 * (`<podDir>/cgroups.json`), so whoever removes the pod (the supervisor, `delete --force`, an
 * abandoned start) removes them too. The cgroupfs work itself is src/cgroup/'s.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanCgroupPath, hierarchies, type Hierarchy } from '../cgroup/hierarchy.ts';
import { writeCgroupResources } from '../cgroup/limits.ts';
import { isCgroupFs } from '../cgroup/mounts.ts';
import { cgroupPids, JournalFile, makeCgroup, placePid, removeJournaled } from '../cgroup/tree.ts';
import { dropCgroupOwner, recordCgroupOwner } from '../cgroup/owner.ts';
import type { Logger } from '../util/log.ts';

export { cleanCgroupPath } from '../cgroup/hierarchy.ts';

const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids'];
const RECORD = 'cgroups.json';

export interface VmmLimits {
  memoryBytes: number;
  /** CFS quota and period (µs) from the pod's CPU limit; absent = no CPU limit. */
  cpuQuota?: number;
  cpuPeriod?: number;
}

/** The mount points the VMM is placed under: each v1 hierarchy with a controller it needs, and v2. */
export function vmmHierarchies(): Hierarchy[] {
  return hierarchies({ controllers: V1_CONTROLLERS });
}

/** `pid` and every live descendant of it (from /proc/PID/task/TID/children), parents first. */
export function processTree(pid: number, proc = '/proc'): number[] {
  const out: number[] = [];
  const seen = new Set<number>();
  const walk = (p: number): void => {
    if (seen.has(p) || seen.size > 4096) return;
    seen.add(p);
    out.push(p);
    let tids: string[];
    try { tids = readdirSync(join(proc, String(p), 'task')); } catch { return; }
    for (const t of tids) {
      let kids = '';
      try { kids = readFileSync(join(proc, String(p), 'task', t, 'children'), 'utf8'); } catch { continue; }
      for (const k of kids.split(' ')) if (/^\d+$/.test(k)) walk(Number(k));
    }
  };
  walk(pid);
  return out;
}

/**
 * Makes the pod VM's cgroups (relative path `rel` in every hierarchy), sets `limits`, moves each of
 * `pids` in (the VMM and the file server's processes). Returns the leaf dirs.
 */
export async function placeVmm(rel: string, pids: readonly number[], limits: VmmLimits, podDir: string, log: Logger): Promise<string[]> {
  const clean = cleanCgroupPath(rel);
  if (!clean) { log.warn('refusing an odd cgroup path for the VMM', { cgroup: rel }); return []; }
  const journal = new JournalFile(join(podDir, RECORD));
  // node-wide too (cgroup/owner.ts): a supervisor gone with the pod dir leaves it to any daemon's sweep
  await recordCgroupOwner(clean, podDir, { own: true });
  const made = makeCgroup(clean, vmmHierarchies(), (dir) => journal.add(dir));
  for (const f of made.failed) log.warn('cannot place the VMM in its cgroup', { dir: join(f.hierarchy, clean), err: f.reason });
  try {
    await writeCgroupResources(clean, {
      memory: { limit: limits.memoryBytes },
      ...(limits.cpuQuota ? { cpu: { quota: limits.cpuQuota, period: limits.cpuPeriod ?? 100000 } } : {}),
    });
  } catch (e) {
    log.warn('cannot set a VMM cgroup limit', { cgroup: clean, err: (e as Error).message });
  }
  return made.leaves.filter((leaf) => joinVmmCgroups([leaf], pids, log) > 0);
}

/** Moves `pids` into the pod VM's cgroup leaves (placeVmm's result); returns how many placements held. */
export function joinVmmCgroups(leaves: readonly string[], pids: readonly number[], log: Logger): number {
  let placed = 0;
  for (const leaf of leaves) {
    for (const pid of pids) {
      try { placePid(leaf, pid); placed++; } catch (e) {
        log.warn('cannot place a process of the pod VM in its cgroup', { dir: leaf, pid, err: (e as Error).message });
      }
    }
  }
  return placed;
}

/**
 * The processes in the pod VM's own cgroups (the journaled leaves: a parent made for several pods
 * holds none of its own), however they got there: whatever runs there is the VM's, recorded or not.
 */
export function vmmCgroupPids(podDir: string): number[] {
  const dirs = new JournalFile(join(podDir, RECORD)).dirs();
  const leaves = dirs.filter((d) => !dirs.some((o) => o.startsWith(`${d}/`)) && isCgroupFs(d));
  return [...new Set(leaves.flatMap(cgroupPids))];
}

/**
 * Removes the cgroup directories recorded for the pod (deepest first); the VMM must be gone. A
 * journaled leaf's owner record goes once it is gone in every hierarchy (a shared parent left
 * with another's child in it keeps no record: it has none).
 */
export async function removeVmmCgroups(podDir: string): Promise<string[]> {
  const dirs = new JournalFile(join(podDir, RECORD)).dirs();
  const left = await removeJournaled(dirs);
  for (const [rel, leaves] of journaledCgroups(dirs)) if (!leaves.some((d) => left.includes(d))) await dropCgroupOwner(rel);
  return left;
}

/** The cgroup paths (relative to their hierarchy) of journaled leaf directories, each with its directories. */
function journaledCgroups(dirs: readonly string[]): Map<string, string[]> {
  const rels = new Map<string, string[]>();
  for (const h of vmmHierarchies()) {
    for (const d of dirs) {
      if (!d.startsWith(`${h.path}/`) || dirs.some((o) => o.startsWith(`${d}/`))) continue;
      const rel = d.slice(h.path.length + 1);
      rels.set(rel, [...(rels.get(rel) ?? []), d]);
    }
  }
  return rels;
}
