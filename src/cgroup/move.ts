/**
 * Moving a running group of processes to another cgroup (cgroupfs, v1 and v2): a warm pool's
 * sandbox, started under the pool's own cgroup, goes under the cgroup_parent of the pod that takes
 * it. In every hierarchy where the source exists the target is made (each directory handed to
 * `journal` before its mkdir), given the source's settings that a runtime sets at start (device
 * list, cpuset, pids/memory/cpu limits), charged memory is told to move with the tasks (v1
 * memory.move_charge_at_immigrate), every process is moved, and the emptied source removed.
 * Cost: ~10-20 ms on a 2-core v1 host, most of it the first move's wait for the kernel's
 * threadgroup lock (an RCU grace period), whatever the number of hierarchies.
 */
import { existsSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanCgroupPath, hierarchies } from './hierarchy.ts';
import { isCgroupFs } from './mounts.ts';
import { makeCgroup } from './tree.ts';

/** Limits copied as they are (the files a runtime writes from an OCI spec's resources). */
const COPIED = ['pids.max', 'memory.limit_in_bytes', 'memory.memsw.limit_in_bytes', 'cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us', 'cpu.max', 'memory.max', 'memory.swap.max', 'cpu.weight'];

const read = (f: string): string | undefined => { try { return readFileSync(f, 'utf8').trim(); } catch { return undefined; } };
const write = (f: string, v: string): void => {
  try { writeFileSync(f, v); } catch (e) { throw new Error(`writing ${JSON.stringify(v.slice(0, 40))} to ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); }
};

/** Moves every process of cgroup `from` to cgroup `to` (relative cgroup paths); throws naming the hierarchy on failure. */
export function moveCgroup(from: string, to: string, journal: (dir: string) => void): void {
  const src = cleanCgroupPath(from);
  const dst = cleanCgroupPath(to);
  if (src === undefined || dst === undefined) throw new Error(`invalid cgroup path ${JSON.stringify((src === undefined ? from : to).slice(0, 200))}`);
  for (const h of hierarchies()) {
    const old = join(h.path, src);
    if (!existsSync(old) || !isCgroupFs(old)) continue;
    const made = makeCgroup(dst, [h], journal);
    const failed = made.failed[0];
    if (failed || !made.leaves[0]) throw new Error(`cgroup ${to} could not be made in ${h.path}: ${failed?.reason ?? 'unknown'}`);
    const dir = made.leaves[0];
    if (h.version === 1 && h.controllers.includes('devices')) {
      const list = read(join(old, 'devices.list')) ?? '';
      if (list !== 'a *:* rwm') {
        write(join(dir, 'devices.deny'), 'a');
        for (const line of list.split('\n').filter(Boolean)) write(join(dir, 'devices.allow'), line);
      }
    }
    if (h.version === 1 && h.controllers.includes('cpuset')) {
      // as runc does: an empty cpuset on the way down (a parent made without one) takes its parent's
      let cur = h.path;
      for (const part of dst.split('/')) {
        const next = join(cur, part);
        for (const f of ['cpuset.cpus', 'cpuset.mems']) if (read(join(next, f)) === '') write(join(next, f), read(join(cur, f)) ?? '');
        cur = next;
      }
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        const v = read(join(old, f));
        if (v && v !== read(join(dir, f))) write(join(dir, f), v);
      }
    }
    for (const f of COPIED) {
      const v = read(join(old, f));
      if (v !== undefined && v !== read(join(dir, f))) write(join(dir, f), v);
    }
    if (h.version === 1 && h.controllers.includes('memory')) {
      try { writeFileSync(join(dir, 'memory.move_charge_at_immigrate'), '3'); } catch { /* a kernel without it: charges stay behind */ }
    }
    // processes forked while moving land in the source: go round until it is empty
    for (let round = 0; ; round++) {
      const pids = (read(join(old, 'cgroup.procs')) ?? '').split('\n').filter(Boolean);
      if (pids.length === 0) break;
      if (round >= 20) throw new Error(`cgroup ${from} in ${h.path} does not empty (${pids.length} processes left)`);
      for (const pid of pids) {
        try { writeFileSync(join(dir, 'cgroup.procs'), pid); } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw new Error(`moving pid ${pid} to ${dir}: ${(e as Error).message}`);
        }
      }
    }
    try { rmdirSync(old); } catch { /* a child cgroup (none expected) keeps it; removed with the pool member */ }
  }
}
