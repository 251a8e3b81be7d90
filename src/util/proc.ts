/**
 * What /proc/<pid>/stat says of a process: its state, parent and start time. The start time
 * (clock ticks since boot) names a process together with its pid, so a reused pid is not
 * mistaken for one recorded earlier.
 */
import { readFileSync } from 'node:fs';

export interface ProcStat {
  /** One letter: R, S, D, Z, T, X, ... */
  state: string;
  ppid: number;
  /** The kernel's per-process flags (PF_*: 0x4 is PF_EXITING). */
  flags: number;
  /** Start time in clock ticks since boot. */
  startTime: string;
  /** CPU time used, user and system, in clock ticks (USER_HZ, 100 per second on Linux). */
  cpuTicks: number;
}

/** The stat of `pid`, or undefined when there is no such process. */
export function procStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try { text = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return undefined; }
  // "pid (comm) state ppid ..." where comm may hold spaces and parentheses: fields restart after the last ')'
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const ppid = Number(rest[1]);
  const flags = Number(rest[6]);
  const startTime = rest[19];
  const cpuTicks = Number(rest[11]) + Number(rest[12]);
  if (!state || !startTime || !Number.isInteger(ppid) || !Number.isInteger(flags) || !Number.isInteger(cpuTicks)) return undefined;
  return { state, ppid, flags, startTime, cpuTicks };
}

/** CPU time `pid` has used (user and system), ms; 0 when it is gone. */
export function processCpuMs(pid: number): number {
  return (procStat(pid)?.cpuTicks ?? 0) * 10;
}

/** Start time of `pid`, or undefined when it is gone or has exited (a zombie). */
export function liveStartTime(pid: number): string | undefined {
  const st = procStat(pid);
  return st && st.state !== 'Z' && st.state !== 'X' ? st.startTime : undefined;
}
