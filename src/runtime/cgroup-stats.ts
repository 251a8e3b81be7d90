/**
 * Container statistics read from its cgroup (cgroupfs driver), on cgroup v1 (also the v1
 * controllers of a hybrid host) and v2.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError } from '../errors.ts';
import type { ContainerStats } from './backend.ts';

const ROOT = '/sys/fs/cgroup';

async function num(path: string): Promise<number | undefined> {
  try {
    const t = (await readFile(path, 'utf8')).trim();
    return t === 'max' ? undefined : Number(t);
  } catch {
    return undefined;
  }
}

async function keyed(path: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  try {
    for (const line of (await readFile(path, 'utf8')).split('\n')) {
      const [k, v] = line.trim().split(/\s+/);
      if (k && v !== undefined) m.set(k, Number(v));
    }
  } catch { /* absent */ }
  return m;
}

let mode: Promise<'v1' | 'v2'> | undefined;
/** 'v1' when the v1 memory controller is mounted (also on hybrid hosts), else 'v2'. */
export function cgroupMode(): Promise<'v1' | 'v2'> {
  mode ??= (async () => {
    try {
      await stat(join(ROOT, 'cgroup.controllers'));
      return 'v2' as const;
    } catch {
      return 'v1' as const;
    }
  })();
  return mode;
}

export async function readCgroupStats(cgroupsPath: string): Promise<ContainerStats> {
  const rel = cgroupsPath.replace(/^\/+/, '');
  const timestamp = new Date();
  if ((await cgroupMode()) === 'v2') {
    const dir = join(ROOT, rel);
    const cpu = await keyed(join(dir, 'cpu.stat'));
    const usage = await num(join(dir, 'memory.current'));
    if (usage === undefined && cpu.size === 0) throw new NotFoundError(`cgroup ${cgroupsPath} not found`);
    const mstat = await keyed(join(dir, 'memory.stat'));
    const events = await keyed(join(dir, 'memory.events'));
    const inactive = mstat.get('inactive_file') ?? 0;
    return {
      cpuUsageNs: (cpu.get('usage_usec') ?? 0) * 1000,
      memoryUsageBytes: usage ?? 0,
      memoryWorkingSetBytes: Math.max(0, (usage ?? 0) - inactive),
      pids: (await num(join(dir, 'pids.current'))) ?? 0,
      oomKills: events.get('oom_kill') ?? 0,
      timestamp,
    };
  }
  const usage = await num(join(ROOT, 'memory', rel, 'memory.usage_in_bytes'));
  const cpu = await num(join(ROOT, 'cpuacct', rel, 'cpuacct.usage'));
  if (usage === undefined && cpu === undefined) throw new NotFoundError(`cgroup ${cgroupsPath} not found`);
  const mstat = await keyed(join(ROOT, 'memory', rel, 'memory.stat'));
  const oom = await keyed(join(ROOT, 'memory', rel, 'memory.oom_control'));
  const inactive = mstat.get('total_inactive_file') ?? mstat.get('inactive_file') ?? 0;
  return {
    cpuUsageNs: cpu ?? 0,
    memoryUsageBytes: usage ?? 0,
    memoryWorkingSetBytes: Math.max(0, (usage ?? 0) - inactive),
    pids: (await num(join(ROOT, 'pids', rel, 'pids.current'))) ?? 0,
    oomKills: oom.get('oom_kill') ?? 0,
    timestamp,
  };
}
