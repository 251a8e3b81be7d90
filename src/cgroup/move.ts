/**
 * Moving a running group of processes to another cgroup (cgroupfs, v1 and v2): a warm pool's
 * sandbox, started under the pool's own cgroup, goes under the cgroup_parent of the pod that takes
 * it. In every hierarchy where the source exists the target is made (each directory handed to
 * `journal` before its mkdir), given the source's settings that a runtime sets at start (device
 * list, cpuset, pids/memory/cpu limits), charged memory is told to move with the tasks (v1
 * memory.move_charge_at_immigrate), every process is moved, and the emptied source removed.
 *
 * Cost (measured, 2-core v1 host, kernel 6.18, bench/pool.ts): one RCU grace period, 5-15 ms,
 * whatever the number of processes and hierarchies; everything else is ~2 ms. A write to
 * cgroup.procs (or `tasks`: the same lock for any pid but the writer's own) takes the
 * cgroup_threadgroup_rwsem for writing, whose rcu_sync waits for a grace period unless a writer
 * was there less than a grace period ago; so the first write pays it and the 50-odd that follow
 * (9 hierarchies x 6 processes for a gVisor sandbox) cost ~0.02 ms each. Writing concurrently
 * gains nothing (the writers share that one grace period anyway, then queue on cgroup_mutex).
 * Hence the shape: `primeMove` lets a caller start that wait before it may move anything (a
 * no-op write); the first write of the move goes to the thread pool, so the caller's other steps
 * run during the grace period; the rest follow at once, synchronously, before rcu_sync falls idle
 * again. Directories are made before that first write: a cgroup.procs writer holds cgroup_mutex
 * (which mkdir needs) for the whole grace period. Host settings, not the daemon's to make: the
 * `favordynmods` cgroup mount option removes the wait (every fork and exit then takes the slow
 * path); /sys/kernel/rcu_expedited=1 shortens it (rcu_sync_enter waits with synchronize_rcu, which
 * that makes expedited, for every caller on the host). A rename cannot stand in for the move: v1
 * renames only within a parent (EIO here), v2 not at all (EPERM), and the kubelet's pod cgroup is
 * new with each pod.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { cleanCgroupPath, hierarchies, type Hierarchy } from './hierarchy.ts';
import { isCgroupFs } from './mounts.ts';
import { cgroupPids, makeCgroup } from './tree.ts';
import { procStat } from '../util/proc.ts';

/** Limits copied as they are (the files a runtime writes from an OCI spec's resources), per cgroup version. */
const COPIED = {
  1: ['pids.max', 'memory.limit_in_bytes', 'memory.memsw.limit_in_bytes', 'cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us'],
  2: ['pids.max', 'memory.max', 'memory.swap.max', 'cpu.max', 'cpu.weight'],
} as const;
/** The files applySettings writes in a hierarchy: v1 only its controllers' (a file of another is not there). */
const copiedIn = (h: Hierarchy): readonly string[] => h.version === 2 ? COPIED[2] : COPIED[1].filter((f) => h.controllers.includes(f.slice(0, f.indexOf('.'))));
/** A v1 hierarchy none of whose settings a move copies (freezer, blkio, name=systemd, ...). */
const bare = (h: Hierarchy): boolean => h.version === 1 && copiedIn(h).length === 0 && !['devices', 'cpuset', 'memory'].some((c) => h.controllers.includes(c));

const read = (f: string): string | undefined => { try { return readFileSync(f, 'utf8').trim(); } catch { return undefined; } };
const write = (f: string, v: string): void => {
  try { writeFileSync(f, v); } catch (e) { throw new Error(`writing ${JSON.stringify(v.slice(0, 40))} to ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); }
};

/** One hierarchy's part of a move: the source and the target directory. */
interface Leg { h: Hierarchy; old: string; dir: string }

/**
 * Pays the grace period of a move ahead, moving nothing: a process of `cgroup` written to its own
 * cgroup.procs (the kernel takes the same lock and finds nothing to migrate). A move started less
 * than a grace period after this resolves does not wait again; one started while it runs waits for
 * it (pass it as `moveCgroup`'s `after`, so that the move's mkdirs, which need the cgroup_mutex
 * this write holds meanwhile, do not block the event loop). Resolves to the time it was done
 * (performance.now()), undefined when it wrote nothing; never rejects.
 */
export function primeMove(cgroup: string): Promise<number | undefined> {
  const rel = cleanCgroupPath(cgroup);
  const hs = rel === undefined ? [] : hierarchies().filter((h) => existsSync(join(h.path, rel)));
  const h = hs.find(bare) ?? hs[0];
  if (!h || rel === undefined) return Promise.resolve(undefined);
  const dir = join(h.path, rel);
  const pid = cgroupPids(dir)[0];
  return pid === undefined ? Promise.resolve(undefined) : writeFile(join(dir, 'cgroup.procs'), String(pid)).then(() => performance.now(), () => undefined);
}

/**
 * How recent a prime must be for the move to write at once on the event loop: rcu_sync stays
 * passed for one grace period (milliseconds) after its last writer; later, the move's first write
 * goes to the thread pool as without a prime (a write that waits would block the loop).
 */
const WARM_MS = 2;

export interface MoveOptions {
  /** Also remove the source's parents up to this cgroup (an ancestor of `from`) where they are empty. */
  removeUpTo?: string;
  /** Start once this settles (a primeMove of the source: when it resolved, if it did its write). */
  after?: Promise<number | undefined>;
}

/**
 * Moves every process of cgroup `from` to cgroup `to` (relative cgroup paths); rejects naming the
 * hierarchy on failure. Every process is moved and the sources removed (see MoveOptions.removeUpTo)
 * when the promise resolves; a caller records the target before calling (a crash at any point
 * leaves nothing it does not know of).
 */
export async function moveCgroup(from: string, to: string, journal: (dir: string) => void, opts: MoveOptions = {}): Promise<void> {
  const src = cleanCgroupPath(from);
  const dst = cleanCgroupPath(to);
  if (src === undefined || dst === undefined) throw new Error(`invalid cgroup path ${JSON.stringify((src === undefined ? from : to).slice(0, 200))}`);
  const top = opts.removeUpTo === undefined ? src : cleanCgroupPath(opts.removeUpTo);
  if (top === undefined || !(src === top || src.startsWith(`${top}/`))) throw new Error(`cgroup ${JSON.stringify(from.slice(0, 200))} is not under ${JSON.stringify(String(opts.removeUpTo).slice(0, 200))}`);
  const up = src.split('/').length - top.split('/').length;
  const primedAt = await opts.after;
  // a grace period just passed (the prime resolved this very moment): writes now do not wait
  const warm = primedAt !== undefined && performance.now() - primedAt < WARM_MS;
  const legs: Leg[] = [];
  for (const h of hierarchies()) {
    const old = join(h.path, src);
    if (!existsSync(old) || !isCgroupFs(old)) continue;
    legs.push({ h, old, dir: makeTarget(h, dst, to, journal) });
  }
  // the first process into its new place pays the grace period, off the event loop, as early as
  // can be: in a hierarchy with nothing to set when there is one; the others get their settings
  // meanwhile (writes that need no cgroup_mutex)
  const first = legs.find((l) => bare(l.h)) ?? legs[0];
  if (!first) return;
  if (warm) {
    for (const leg of legs) applySettings(leg, dst);
    await drainAll(legs, from, up);
    return;
  }
  const rest = legs.filter((l) => l !== first);
  applySettings(first, dst);
  const pid = cgroupPids(first.old)[0];
  const paying = pid === undefined ? Promise.resolve() : writeFile(join(first.dir, 'cgroup.procs'), String(pid)).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw new Error(`moving pid ${pid} to ${first.dir}: ${(e as Error).message}`);
  });
  try {
    for (const leg of rest) applySettings(leg, dst);
  } finally {
    await paying;
  }
  await drainAll(legs, from, up);
}

/**
 * The target's directory in `h`: where its parent exists (the kubelet made the pod's cgroup) one
 * mkdir on a cgroup filesystem; else makeCgroup, which checks and makes each level.
 */
function makeTarget(h: Hierarchy, dst: string, to: string, journal: (dir: string) => void): string {
  const dir = join(h.path, dst);
  if (isCgroupFs(dirname(dir))) {
    if (existsSync(dir)) {
      if (!isCgroupFs(dir)) throw new Error(`cgroup ${to} could not be made in ${h.path}: ${dir} is not a cgroup filesystem`);
      return dir;
    }
    journal(dir);
    try { mkdirSync(dir); return dir; } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cgroup ${to} could not be made in ${h.path}: ${(e as Error).message}`);
      return dir;
    }
  }
  const made = makeCgroup(dst, [h], journal);
  const failed = made.failed[0];
  if (failed || !made.leaves[0]) throw new Error(`cgroup ${to} could not be made in ${h.path}: ${failed?.reason ?? 'unknown'}`);
  return made.leaves[0];
}

/** The target gets the source's settings, as a runtime would have set them at start. */
function applySettings({ h, old, dir }: Leg, dst: string): void {
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
  for (const f of copiedIn(h)) {
    const v = read(join(old, f));
    if (v !== undefined && v !== read(join(dir, f))) write(join(dir, f), v);
  }
  if (h.version === 1 && h.controllers.includes('memory')) {
    try { writeFileSync(join(dir, 'memory.move_charge_at_immigrate'), '3'); } catch { /* a kernel without it: charges stay behind */ }
  }
}

/** Whether process `pid` is exiting (PF_EXITING), a zombie or gone: nothing of it is left to move. */
function exiting(pid: number): boolean {
  const st = procStat(pid);
  return st === undefined || st.state === 'Z' || st.state === 'X' || (st.flags & 0x4) !== 0;
}

/**
 * Moves what is left in the source (processes forked while moving land there: round until empty),
 * then removes it and its `up` parents that are empty; false when the source is still busy.
 */
function drain({ h, old, dir }: Leg, from: string, up: number): boolean {
  for (let round = 0; ; round++) {
    // a process on its way out stays listed and is not moved (the kernel skips an exiting task)
    const pids = round === 0 ? cgroupPids(old) : cgroupPids(old).filter((pid) => !exiting(pid));
    if (pids.length === 0) break;
    if (round >= 20) throw new Error(`cgroup ${from} in ${h.path} does not empty (${pids.length} processes left)`);
    for (const pid of pids) {
      try { writeFileSync(join(dir, 'cgroup.procs'), String(pid)); } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw new Error(`moving pid ${pid} to ${dir}: ${(e as Error).message}`);
      }
    }
  }
  let gone = old;
  for (let i = 0; i <= up; i++, gone = dirname(gone)) {
    try { rmdirSync(gone); } catch (e) {
      // EBUSY: a process still exiting holds the source a moment longer (drainAll looks again)
      return i > 0 || (e as NodeJS.ErrnoException).code !== 'EBUSY';
    }
  }
  return true;
}

/**
 * drain() for every leg; a source held by an exiting process is looked at again for up to ~50 ms
 * (its exit takes it out), then left to the caller's record of it (removed with the pod).
 */
async function drainAll(legs: readonly Leg[], from: string, up: number): Promise<void> {
  let busy = legs.filter((leg) => !drain(leg, from, up));
  for (let i = 0; busy.length > 0 && i < 25; i++) {
    await new Promise((r) => setTimeout(r, 2));
    busy = busy.filter((leg) => !drain(leg, from, up));
  }
}
