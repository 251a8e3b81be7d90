/**
 * Temporary roots of tests, found again after the test process died. A test's after() removes its
 * root (and a daemon's or bulkhead-vm's state in it); a test process killed (a signal to the run, a
 * runner's timeout) runs no after(), and its root stayed for good: the pod VM and pod cgroups made
 * under it have owner records (src/cgroup/owner.ts) anchored in that root, which rightly keep them
 * for a restart on the same root that never comes. So each root is recorded here (pid and start
 * time of the test process, as owner records say it) and any test's next temporary root, or a test
 * daemon's close, removes the roots of dead test processes: what still runs naming them, mounts
 * under them, the root, then the orphaned cgroups and netns (their anchors gone now).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { sweepOrphanCgroups } from '../src/cgroup/owner.ts';
import { sweepOrphanNetns } from '../src/network/netns-owner.ts';
import { silentLogger } from '../src/util/log.ts';
import { lockRecord, parseLockRecord } from '../src/util/lock-record.ts';
import { deadOwnerRecords, dropOwnerRecord } from '../src/util/owner-record.ts';

/** Node-wide, beside the cgroup and netns owners. */
export const TEST_DIR_OWNERS = '/run/bulkhead-test-dirs';

/** A record is named as its root (mkdtemp's name under the temp dir). */
const RECORD_NAME = /^bulkhead-[A-Za-z0-9_.-]{1,100}$/;

/**
 * A new temporary root `<tmpdir>/<prefix>XXXXXX`, recorded as this process's; sweeps the roots of
 * dead test processes in the background.
 */
export function testTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  recordTestDir(dir);
  void sweepDeadTestDirs();
  return dir;
}

/** Records `dir` (a direct child of the temp dir) as this process's temporary root. */
export function recordTestDir(dir: string): void {
  const name = basename(dir);
  if (!RECORD_NAME.test(name) || join(tmpdir(), name) !== dir) return;
  const me = parseLockRecord(lockRecord());
  mkdirSync(TEST_DIR_OWNERS, { recursive: true, mode: 0o700 });
  writeFileSync(join(TEST_DIR_OWNERS, name), JSON.stringify({ pid: me.pid, ...(me.startTime ? { start: me.startTime } : {}), anchor: dir }) + '\n', { mode: 0o600 });
}

/** Forgets `dir`'s record; after the root is gone. */
export function dropTestDir(dir: string): void {
  rmSync(join(TEST_DIR_OWNERS, basename(dir)), { force: true });
}

/** Mount points at or under `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text.split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p === dir || p.startsWith(dir + '/'));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Pids of processes (daemons, conmon, runtimes, supervisors, QEMU) whose command line or cwd names `dir`; not this one. */
export function processesUsing(dir: string): number[] {
  const out: number[] = [];
  let names: string[] = [];
  try { names = readdirSync('/proc'); } catch { return out; }
  for (const e of names) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let cmd = '';
    let cwd = '';
    try { cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8'); } catch { continue; }
    try { cwd = readlinkSync(`/proc/${e}/cwd`); } catch { /* gone, or a kernel thread */ }
    if (cmd.includes(dir) || cwd === dir || cwd.startsWith(dir + '/')) out.push(Number(e));
  }
  return out;
}

/**
 * Removes a test's temporary root and what uses it: SIGKILLs the processes naming it, lazily
 * unmounts what is mounted under it (never removing through a mount), removes the tree.
 */
export function removeTestDir(dir: string): void {
  for (const pid of processesUsing(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m], { timeout: 10_000 });
  // --one-file-system: a mount that came back (or resisted) is not walked into
  const r = spawnSync('rm', ['-rf', '--one-file-system', '--', dir], { timeout: 60_000 });
  if (r.status === 0) dropTestDir(dir);
}

let sweeping: Promise<string[]> | undefined;

/**
 * Removes the temporary roots whose test process is dead (removeTestDir), then the cgroups and
 * netns whose owner records were anchored in them; returns the roots removed. One sweep at a time
 * in this process.
 */
export function sweepDeadTestDirs(): Promise<string[]> {
  sweeping ??= (async (): Promise<string[]> => {
    const removed: string[] = [];
    for (const { name, rec, anchorGone } of await deadOwnerRecords(TEST_DIR_OWNERS, RECORD_NAME)) {
      if (rec.anchor !== join(tmpdir(), name)) continue; // not a record this module wrote
      if (anchorGone) { await dropOwnerRecord(TEST_DIR_OWNERS, name); continue; }
      removeTestDir(rec.anchor);
      removed.push(rec.anchor);
    }
    if (removed.length > 0) {
      await sweepOrphanCgroups(silentLogger).catch(() => {});
      await sweepOrphanNetns(silentLogger, AbortSignal.timeout(60_000)).catch(() => {});
    }
    return removed;
  })().catch(() => [] as string[]).finally(() => { sweeping = undefined; });
  return sweeping;
}
