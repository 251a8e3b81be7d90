/** Ending a pod VM's host side from its pod dir: what `create` (a stale or failed start) and `delete` both do. */
import { rm } from 'node:fs/promises';
import { killPodProcesses } from './procs.ts';
import { releaseShare, shareDir } from './share.ts';
import { removeVmmCgroups } from './vm-cgroup.ts';

/** Ends the pod VM's host processes (SIGKILL after `graceMs`), then its cgroups, its volume share and the dir itself. */
export async function endPodDir(dir: string, graceMs = 500): Promise<void> {
  await killPodProcesses(dir, graceMs);
  await removeVmmCgroups(dir);
  await releaseShare(shareDir(dir));
  await rm(dir, { recursive: true, force: true });
}
