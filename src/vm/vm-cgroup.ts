/**
 * The VMM's host cgroup: which hierarchies (v1 memory, cpu, cpuacct, pids, and the v2 one), which
 * limits (the pod's memory and CPU), and where the journal of what was made lives
 * (`<podDir>/cgroups.json`), so whoever removes the pod (the supervisor, `delete --force`, an
 * abandoned start) removes them too. The cgroupfs work itself is src/cgroup/'s.
 */
import { join } from 'node:path';
import { cleanCgroupPath, hierarchies, type Hierarchy } from '../cgroup/hierarchy.ts';
import { writeCgroupResources } from '../cgroup/limits.ts';
import { JournalFile, makeCgroup, placePid, removeJournaled } from '../cgroup/tree.ts';
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

/** Makes the VMM's cgroups (relative path `rel` in every hierarchy), sets `limits`, moves `pid` in. Returns the leaf dirs. */
export async function placeVmm(rel: string, pid: number, limits: VmmLimits, podDir: string, log: Logger): Promise<string[]> {
  const clean = cleanCgroupPath(rel);
  if (!clean) { log.warn('refusing an odd cgroup path for the VMM', { cgroup: rel }); return []; }
  const journal = new JournalFile(join(podDir, RECORD));
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
  const leaves: string[] = [];
  for (const leaf of made.leaves) {
    try { placePid(leaf, pid); leaves.push(leaf); } catch (e) {
      log.warn('cannot place the VMM in its cgroup', { dir: leaf, err: (e as Error).message });
    }
  }
  return leaves;
}

/** Removes the cgroup directories recorded for the pod (deepest first); the VMM must be gone. */
export async function removeVmmCgroups(podDir: string): Promise<string[]> {
  return await removeJournaled(new JournalFile(join(podDir, RECORD)).dirs());
}
