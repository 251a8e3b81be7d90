/**
 * The host processes of a pod VM — its supervisor (`_vmd`) and its VMM (QEMU) — recorded in the
 * pod directory as `<role>.proc` ({pid, start}: start = field 22 of /proc/PID/stat, so a reused pid
 * is never taken for ours), and found again by anyone (`delete --force`, a restarted daemon's
 * orphan delete) even without a record: every such process names the pod directory on its
 * command line (`--pod-dir DIR`, QEMU's slot and console paths).
 */
import { readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { liveStartTime } from '../util/proc.ts';
import { join } from 'node:path';

/**
 * `vmd`: the pod's own supervisor; `host`: the node-wide host serving it (never ended by a pod's
 * delete: podProcesses leaves it out); `vmm`, `fsd`: what the supervisor spawned.
 */
export type ProcRole = 'vmd' | 'host' | 'vmm' | 'fsd';
export interface ProcRecord { pid: number; start: string }


/** Writes `<dir>/<role>.proc` (atomically, synchronously: right after the spawn, before any await). */
export function recordProc(dir: string, role: ProcRole, pid: number): ProcRecord {
  const rec: ProcRecord = { pid, start: liveStartTime(pid) ?? '' };
  const path = join(dir, `${role}.proc`);
  writeFileSync(`${path}.tmp`, JSON.stringify(rec), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
  return rec;
}

export function readProc(dir: string, role: ProcRole): ProcRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(join(dir, `${role}.proc`), 'utf8')) as ProcRecord;
    return Number.isInteger(r.pid) && r.pid > 1 ? r : undefined;
  } catch { return undefined; }
}

/** Whether the recorded process still runs (same pid, same start time). */
export function sameProc(r: ProcRecord | undefined): r is ProcRecord {
  return !!r && r.start !== '' && liveStartTime(r.pid) === r.start;
}

/** Live pids whose command line names `podDir` (as an argument or a path under it), not this process. */
export function pidsNaming(podDir: string): number[] {
  const dir = Buffer.from(podDir);
  const out: number[] = [];
  let names: string[];
  try { names = readdirSync('/proc'); } catch { return out; }
  for (const n of names) {
    if (!/^\d+$/.test(n) || Number(n) === process.pid) continue;
    let cmd: Buffer;
    try { cmd = readFileSync(`/proc/${n}/cmdline`); } catch { continue; }
    for (let i = cmd.indexOf(dir); i >= 0; i = cmd.indexOf(dir, i + 1)) {
      const next = cmd[i + dir.length];
      const prev = i === 0 ? 0 : cmd[i - 1];
      // a whole argument or a path under it, possibly after "path=" (QEMU's -drive file=..., -chardev path=...)
      if ((next === 0 || next === 0x2f /* / */ || next === undefined) && (prev === 0 || prev === 0x3d /* = */)) { out.push(Number(n)); break; }
    }
  }
  return out;
}

/** All live host processes of the pod VM in `podDir`: the recorded ones (verified) and any naming the dir. */
export function podProcesses(podDir: string): number[] {
  const pids = new Set(pidsNaming(podDir));
  for (const role of ['vmd', 'vmm', 'fsd'] as const) {
    const r = readProc(podDir, role);
    if (sameProc(r)) pids.add(r.pid);
  }
  pids.delete(process.pid);
  return [...pids];
}

/**
 * Ends every host process of the pod VM (and the `extra` pids: those in its cgroups): SIGTERM,
 * SIGKILL after `graceMs`, then waits (bounded) until they are gone. Never waits on a socket.
 * Returns the pids still alive (none, normally).
 */
export async function killPodProcesses(podDir: string, graceMs = 1500, extra: readonly number[] = []): Promise<number[]> {
  let pids = [...new Set([...podProcesses(podDir), ...extra.filter((p) => p !== process.pid)])];
  if (pids.length === 0) return [];
  const starts = new Map(pids.map((p) => [p, liveStartTime(p)]));
  const ours = (p: number): boolean => starts.get(p) !== undefined && liveStartTime(p) === starts.get(p);
  const signal = (sig: NodeJS.Signals): void => { for (const p of pids) { if (ours(p)) { try { process.kill(p, sig); } catch { /* gone */ } } } };
  if (graceMs > 0) {
    signal('SIGTERM');
    // polled often: a supervisor finishing its own cleanup exits within a few ms (a pod removal waits on this)
    for (const until = Date.now() + graceMs; Date.now() < until && pids.some(ours);) await new Promise((r) => setTimeout(r, 10));
  }
  pids = pids.filter(ours);
  signal('SIGKILL');
  for (const until = Date.now() + 3000; Date.now() < until && pids.some(ours);) await new Promise((r) => setTimeout(r, 10));
  return pids.filter(ours);
}
