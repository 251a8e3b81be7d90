/**
 * Finding again the pod VMs whose supervisor died. A pod dir records its supervisor (`vmd.proc`:
 * its own `_vmd`; `host.proc`: the node-wide host, cmd/vmhost.ts, written before the pod's start)
 * and the processes that supervisor spawned (`vmm.proc`, `fsd.proc`), each {pid, start}. The VMM
 * and the file server run under `setpriv --pdeathsig KILL`, so they normally die with it; one that
 * did not (the supervisor died between the fork and the prctl, or a record of another runtime
 * version) would run on, unowned, with the pod's cgroups, slots and share. A new node-wide host
 * sweeps `<root>/pods/` for those before it serves: it ends their processes, removes their cgroups,
 * share, slot files and socket, and keeps the dir with `exit.json` (why) for the container's
 * `delete`, which removes the rest as for any pod.
 */
import { existsSync, readdirSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../util/log.ts';
import { endPodHost } from './pod-dir.ts';
import { readProc, sameProc } from './procs.ts';

/** Whether the pod dir has a live recorded VMM or file server and no live supervisor (its own or a host). */
export function orphaned(podDir: string): boolean {
  if (sameProc(readProc(podDir, 'vmd')) || sameProc(readProc(podDir, 'host'))) return false;
  return sameProc(readProc(podDir, 'vmm')) || sameProc(readProc(podDir, 'fsd'));
}

/**
 * Ends every orphaned pod VM under `podsRoot` (dirs in `hosted` are skipped: this host's own).
 * Returns the pod dirs it ended.
 */
export async function sweepOrphanPods(podsRoot: string, hosted: ReadonlySet<string>, log: Logger): Promise<string[]> {
  let names: string[];
  try { names = readdirSync(podsRoot); } catch { return []; }
  const ended: string[] = [];
  for (const n of names) {
    const dir = join(podsRoot, n);
    if (hosted.has(dir) || !orphaned(dir)) continue;
    try {
      const { left, cgroupsLeft, shareLeft } = await endPodHost(dir, 0);
      for (const f of readdirSync(dir)) if (/^slot\d+\.img$/.test(f) || f === 'vmd.sock') await rm(join(dir, f), { force: true });
      const reason = 'the VMM outlived its supervisor (ended by the node-wide VM supervisor at its start)';
      if (existsSync(dir)) await writeFile(join(dir, 'exit.json'), JSON.stringify({ reason, at: new Date().toISOString() })).catch(() => {});
      log.warn('orphaned pod VM ended', { podDir: dir, left, cgroupsLeft, shareLeft });
      ended.push(dir);
    } catch (e) {
      // removed meanwhile (its delete): the next pod dir is still looked at
      log.warn('cannot end an orphaned pod VM', { podDir: dir, err: (e as Error).message });
    }
  }
  return ended;
}
