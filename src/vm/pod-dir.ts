/** Ending a pod VM's host side from its pod dir: what `create` (a stale or failed start), `delete` and the orphan sweep do. */
import { rm } from 'node:fs/promises';
import { killPodProcesses } from './procs.ts';
import { releaseShare, shareDir } from './share.ts';
import { removeVmmCgroups, vmmCgroupPids } from './vm-cgroup.ts';

/** What endPodHost could not end: surviving pids (then nothing else was tried), cgroups and share mounts left. */
export interface PodHostLeft { left: number[]; cgroupsLeft: string[]; shareLeft: string[] }

/**
 * Ends the pod VM's host processes (SIGKILL after `graceMs`), then its cgroups and its volume
 * share; the dir stays. Processes that survived (none, normally) leave the rest in place: the
 * records that find them again stay for another try.
 */
export async function endPodHost(dir: string, graceMs = 500): Promise<PodHostLeft> {
  const left = await killPodProcesses(dir, graceMs, vmmCgroupPids(dir));
  if (left.length) return { left, cgroupsLeft: [], shareLeft: [] };
  const cgroupsLeft = await removeVmmCgroups(dir);
  const shareLeft = await releaseShare(shareDir(dir));
  return { left, cgroupsLeft, shareLeft };
}

/**
 * endPodHost, then the dir itself. Returns the pids that survived (none, normally): then nothing
 * else is removed.
 */
export async function endPodDir(dir: string, graceMs = 500): Promise<number[]> {
  const { left } = await endPodHost(dir, graceMs);
  if (left.length) return left;
  await rm(dir, { recursive: true, force: true });
  return [];
}
