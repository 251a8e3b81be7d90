/** Ending a pod VM's host side from its pod dir: what `create` (a stale or failed start) and `delete` both do. */
import { rm } from 'node:fs/promises';
import { killPodProcesses } from './procs.ts';
import { releaseShare, shareDir } from './share.ts';
import { removeVmmCgroups, vmmCgroupPids } from './vm-cgroup.ts';

/**
 * Ends the pod VM's host processes (SIGKILL after `graceMs`), then its cgroups, its volume share and
 * the dir itself. Returns the pids that survived (none, normally): then nothing else is removed, so
 * the records that find them again stay for another try.
 */
export async function endPodDir(dir: string, graceMs = 500): Promise<number[]> {
  const left = await killPodProcesses(dir, graceMs, vmmCgroupPids(dir));
  if (left.length) return left;
  await removeVmmCgroups(dir);
  await releaseShare(shareDir(dir));
  await rm(dir, { recursive: true, force: true });
  return [];
}
