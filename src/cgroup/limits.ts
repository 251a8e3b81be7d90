/**
 * Applies OCI Linux resources to an existing cgroup by writing its files directly (cgroupfs
 * driver; v1, including the v1 controllers of a hybrid host, and v2; each controller's directory
 * found through the mount table). For runtimes without an `update` command (runsc 2022): the
 * sandbox's processes already sit in the cgroup named by the spec's cgroupsPath, so writing its
 * limits changes what is in force; and for the microVM's VMM cgroup.
 */
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';
import type { OciLinuxResources } from '../oci/spec.ts';
import { cgroupMode, cleanCgroupPath, controllerDir } from './hierarchy.ts';

/** One write: file (relative to the cgroup dir of `controller`), value. */
interface Write { controller: string; file: string; value: string }

async function present(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** CPU shares (2..262144) to cgroup v2 cpu.weight (1..10000), the mapping runc and crun use. */
export function sharesToWeight(shares: number): number {
  return 1 + Math.floor(((Math.min(262144, Math.max(2, shares)) - 2) * 9999) / 262142);
}

/** The v1 files to write, in order. Memory ordering is decided at write time (see below). */
export function v1Writes(r: OciLinuxResources): Write[] {
  const w: Write[] = [];
  if (r.cpu?.shares !== undefined && r.cpu.shares > 0) w.push({ controller: 'cpu', file: 'cpu.shares', value: String(r.cpu.shares) });
  if (r.cpu?.period !== undefined && r.cpu.period > 0) w.push({ controller: 'cpu', file: 'cpu.cfs_period_us', value: String(r.cpu.period) });
  if (r.cpu?.quota !== undefined && r.cpu.quota !== 0) w.push({ controller: 'cpu', file: 'cpu.cfs_quota_us', value: String(r.cpu.quota < 0 ? -1 : r.cpu.quota) });
  if (r.cpu?.cpus) w.push({ controller: 'cpuset', file: 'cpuset.cpus', value: r.cpu.cpus });
  if (r.cpu?.mems) w.push({ controller: 'cpuset', file: 'cpuset.mems', value: r.cpu.mems });
  if (r.pids) w.push({ controller: 'pids', file: 'pids.max', value: r.pids.limit > 0 ? String(r.pids.limit) : 'max' });
  return w;
}

export function v2Writes(r: OciLinuxResources): Write[] {
  const w: Write[] = [];
  const m = r.memory;
  if (m?.limit !== undefined && m.limit !== 0) w.push({ controller: '', file: 'memory.max', value: m.limit < 0 ? 'max' : String(m.limit) });
  if (m?.swap !== undefined && m.swap !== 0) {
    // OCI swap is memory+swap; v2 limits swap alone
    const swap = m.swap < 0 || m.limit === undefined || m.limit < 0 ? 'max' : String(Math.max(0, m.swap - m.limit));
    w.push({ controller: '', file: 'memory.swap.max', value: swap });
  }
  if (r.cpu?.shares !== undefined && r.cpu.shares > 0) w.push({ controller: '', file: 'cpu.weight', value: String(sharesToWeight(r.cpu.shares)) });
  if ((r.cpu?.quota !== undefined && r.cpu.quota !== 0) || (r.cpu?.period !== undefined && r.cpu.period > 0)) {
    const quota = r.cpu?.quota === undefined || r.cpu.quota < 0 ? 'max' : String(r.cpu.quota);
    w.push({ controller: '', file: 'cpu.max', value: `${quota} ${r.cpu?.period && r.cpu.period > 0 ? r.cpu.period : 100000}` });
  }
  if (r.cpu?.cpus) w.push({ controller: '', file: 'cpuset.cpus', value: r.cpu.cpus });
  if (r.cpu?.mems) w.push({ controller: '', file: 'cpuset.mems', value: r.cpu.mems });
  if (r.pids) w.push({ controller: '', file: 'pids.max', value: r.pids.limit > 0 ? String(r.pids.limit) : 'max' });
  for (const [k, v] of Object.entries(r.unified ?? {})) {
    if (!/^[a-z]+\.[a-z0-9_.]+$/.test(k)) throw new InvalidArgumentError(`invalid unified cgroup key ${JSON.stringify(k)}`);
    w.push({ controller: '', file: k, value: v });
  }
  return w;
}

async function put(dir: string, file: string, value: string): Promise<void> {
  await writeFile(join(dir, file), value);
}

/**
 * Writes `resources` into the cgroup at `cgroupsPath` (absolute cgroupfs path, e.g.
 * /bulkhead/<id>). Throws NotFoundError when the cgroup does not exist.
 */
export async function writeCgroupResources(cgroupsPath: string, resources: OciLinuxResources): Promise<void> {
  const rel = cleanCgroupPath(cgroupsPath);
  if (rel === undefined) throw new InvalidArgumentError(`invalid cgroups path ${JSON.stringify(cgroupsPath.slice(0, 200))}: a cgroupfs path without ".." is needed`);
  const dirOf = (controller: string): string => {
    const d = controllerDir(controller || 'memory', rel);
    if (d === undefined) throw new NotFoundError(`no ${controller || 'cgroup v2'} hierarchy is mounted on this host; cannot set ${controller || 'cgroup'} limits`);
    return d;
  };
  if (cgroupMode() === 'v2') {
    const dir = dirOf('');
    if (!(await present(join(dir, 'cgroup.procs')))) throw new NotFoundError(`cgroup ${cgroupsPath} not found`);
    for (const w of v2Writes(resources)) await put(dir, w.file, w.value);
    return;
  }
  const memDir = dirOf('memory');
  if (!(await present(join(memDir, 'cgroup.procs')))) throw new NotFoundError(`cgroup ${cgroupsPath} not found`);
  const m = resources.memory;
  if (m && ((m.limit ?? 0) !== 0 || (m.swap ?? 0) !== 0)) {
    // memsw.limit must stay >= limit at every step: raise memsw first when growing, limit first when shrinking
    const memsw = await present(join(memDir, 'memory.memsw.limit_in_bytes'));
    const cur = Number((await readFile(join(memDir, 'memory.limit_in_bytes'), 'utf8')).trim());
    const limit = m.limit !== undefined && m.limit !== 0 ? String(m.limit) : undefined;
    const swap = memsw && m.swap !== undefined && m.swap !== 0 ? String(m.swap) : undefined;
    const growing = limit !== undefined && (Number(limit) < 0 || Number(limit) > cur);
    if (growing && swap !== undefined) await put(memDir, 'memory.memsw.limit_in_bytes', swap);
    if (limit !== undefined) await put(memDir, 'memory.limit_in_bytes', limit);
    if (!growing && swap !== undefined) await put(memDir, 'memory.memsw.limit_in_bytes', swap);
  }
  for (const w of v1Writes(resources)) await put(dirOf(w.controller), w.file, w.value);
}
