/**
 * A cgroup's statistics (cgroupfs driver), on cgroup v1 (also the v1 controllers of a hybrid
 * host) and v2; each controller's directory found through the mount table (hierarchy.ts).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';
import { cgroupMode, cleanCgroupPath, controllerDir } from './hierarchy.ts';

/** What a cgroup says about its processes (runtime/backend.ts's ContainerStats is this type). */
export interface CgroupStats {
  /** Cumulative CPU time in ns. */
  cpuUsageNs: number;
  /** Usage minus inactive file pages (what the kubelet evicts on). */
  memoryWorkingSetBytes: number;
  memoryUsageBytes: number;
  pids: number;
  /** OOM kills in the cgroup. */
  oomKills: number;
  /** When the figures were read. */
  timestamp: Date;
}

async function num(path: string | undefined): Promise<number | undefined> {
  if (path === undefined) return undefined;
  try {
    const t = (await readFile(path, 'utf8')).trim();
    return t === 'max' ? undefined : Number(t);
  } catch {
    return undefined;
  }
}

async function keyed(path: string | undefined): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  if (path === undefined) return m;
  try {
    for (const line of (await readFile(path, 'utf8')).split('\n')) {
      const [k, v] = line.trim().split(/\s+/);
      if (k && v !== undefined) m.set(k, Number(v));
    }
  } catch { /* absent */ }
  return m;
}

const file = (controller: string, rel: string, name: string): string | undefined => {
  const dir = controllerDir(controller, rel);
  return dir === undefined ? undefined : join(dir, name);
};

/** Reads the cgroup at `cgroupsPath` (a cgroupfs path, e.g. /bulkhead/pod-x/<id>); NotFoundError when it is not there. */
export async function readCgroupStats(cgroupsPath: string): Promise<CgroupStats> {
  const rel = cleanCgroupPath(cgroupsPath);
  if (rel === undefined) {
    // "" would read the root cgroup: the whole host's figures, never a container's
    if (cgroupsPath.replace(/\/+/g, '') === '') throw new NotFoundError('no cgroup recorded for this container');
    throw new InvalidArgumentError(`invalid cgroups path ${JSON.stringify(cgroupsPath.slice(0, 200))}: a cgroupfs path without ".." is needed`);
  }
  const timestamp = new Date();
  if (cgroupMode() === 'v2') {
    const cpu = await keyed(file('cpu', rel, 'cpu.stat'));
    const usage = await num(file('memory', rel, 'memory.current'));
    if (usage === undefined && cpu.size === 0) throw new NotFoundError(`cgroup ${cgroupsPath} not found`);
    const mstat = await keyed(file('memory', rel, 'memory.stat'));
    const events = await keyed(file('memory', rel, 'memory.events'));
    const inactive = mstat.get('inactive_file') ?? 0;
    return {
      cpuUsageNs: (cpu.get('usage_usec') ?? 0) * 1000,
      memoryUsageBytes: usage ?? 0,
      memoryWorkingSetBytes: Math.max(0, (usage ?? 0) - inactive),
      pids: (await num(file('pids', rel, 'pids.current'))) ?? 0,
      oomKills: events.get('oom_kill') ?? 0,
      timestamp,
    };
  }
  const usage = await num(file('memory', rel, 'memory.usage_in_bytes'));
  const cpu = await num(file('cpuacct', rel, 'cpuacct.usage'));
  if (usage === undefined && cpu === undefined) throw new NotFoundError(`cgroup ${cgroupsPath} not found`);
  const mstat = await keyed(file('memory', rel, 'memory.stat'));
  const oom = await keyed(file('memory', rel, 'memory.oom_control'));
  const inactive = mstat.get('total_inactive_file') ?? mstat.get('inactive_file') ?? 0;
  return {
    cpuUsageNs: cpu ?? 0,
    memoryUsageBytes: usage ?? 0,
    memoryWorkingSetBytes: Math.max(0, (usage ?? 0) - inactive),
    pids: (await num(file('pids', rel, 'pids.current'))) ?? 0,
    oomKills: oom.get('oom_kill') ?? 0,
    timestamp,
  };
}

/**
 * OOM kills counted in the cgroup at `cgroupsPath` (cgroup v1 memory.oom_control's oom_kill, v2
 * memory.events'); 0 when it cannot be read (gone, not a valid path). One file: cheap on an exit.
 */
export async function readOomKills(cgroupsPath: string): Promise<number> {
  const rel = cleanCgroupPath(cgroupsPath);
  if (rel === undefined) return 0;
  const m = cgroupMode() === 'v2' ? await keyed(file('memory', rel, 'memory.events')) : await keyed(file('memory', rel, 'memory.oom_control'));
  return m.get('oom_kill') ?? 0;
}
