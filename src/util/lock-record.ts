/**
 * What a lock file says of its owner: "PID STARTTIME" (field 22 of /proc/<pid>/stat, in clock ticks
 * since boot), and whether that owner still holds it. Shared by the daemon's pid lock
 * (daemon/lock.ts) and the lock files of builders and writers (image/lock.ts).
 */
import { procStat } from './proc.ts';

/** The content of a lock file for this process. */
export function lockRecord(): string {
  return `${process.pid} ${procStat(process.pid)?.startTime ?? ''}`.trimEnd() + '\n';
}

/** Parses "PID [STARTTIME]"; the start time is absent in files written by older versions. */
export function parseLockRecord(text: string): { pid: number; startTime?: string } {
  const [pid, startTime] = text.trim().split(/\s+/);
  const n = Number(pid);
  return startTime && /^\d+$/.test(startTime) ? { pid: n, startTime } : { pid: n };
}

/**
 * Whether the process a lock record names still holds it: it exists, is not a zombie (or dead),
 * and, when the record has a start time, started at that time (not a reused pid).
 */
export function holderAlive(rec: { pid: number; startTime?: string }): boolean {
  const { pid } = rec;
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const st = procStat(pid);
  if (st) {
    if (st.state === 'Z' || st.state === 'X') return false;
    return rec.startTime === undefined || rec.startTime === st.startTime;
  }
  // no /proc entry we can read: fall back to a signal probe
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}
