/**
 * The VMM's host cgroup: one directory per real hierarchy (v1 memory, cpu, cpuacct, pids — found in
 * /proc/self/mountinfo, wherever they are mounted — and the v2 one), the pod's limits written
 * there, QEMU's pid moved in. Every directory this makes is recorded in `<podDir>/cgroups.json`
 * before the mkdir, so whoever removes the pod (the supervisor, `delete --force`, an abandoned
 * start) removes them too. Nothing is ever created outside a cgroup filesystem.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, normalize } from 'node:path';
import { cgroupMounts, isCgroupFs } from '../cgroup/mounts.ts';
import type { Logger } from '../util/log.ts';

const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids'];
const RECORD = 'cgroups.json';

export interface VmmLimits {
  memoryBytes: number;
  /** CFS quota and period (µs) from the pod's CPU limit; absent = no CPU limit. */
  cpuQuota?: number;
  cpuPeriod?: number;
}

/** A cgroupsPath made safe to join under a hierarchy: relative, no `..`, no empty parts; else undefined. */
export function cleanCgroupPath(p: string): string | undefined {
  const rel = normalize(p.replace(/^\/+/, '')).replace(/\/+$/, '');
  if (!rel || rel === '.' || rel.split('/').some((c) => c === '..' || c === '' || c === '.') || rel.includes('\0')) return undefined;
  return rel;
}

function readRecord(podDir: string): string[] {
  try { return (JSON.parse(readFileSync(join(podDir, RECORD), 'utf8')) as string[]).filter((d) => typeof d === 'string'); } catch { return []; }
}

function writeRecord(podDir: string, dirs: string[]): void {
  writeFileSync(join(podDir, `${RECORD}.tmp`), JSON.stringify(dirs), { mode: 0o600 });
  renameSync(join(podDir, `${RECORD}.tmp`), join(podDir, RECORD));
}

/** The mount points the VMM is placed under: each v1 hierarchy with a controller it needs, and v2. */
export function vmmHierarchies(): { path: string; version: 1 | 2; controllers: string[] }[] {
  const seen = new Set<string>();
  return cgroupMounts().filter((m) => {
    if (seen.has(m.path)) return false;
    if (m.version === 1 && !m.controllers.some((c) => V1_CONTROLLERS.includes(c))) return false;
    seen.add(m.path);
    return isCgroupFs(m.path);
  });
}

function tryWrite(path: string, value: string, log: Logger): boolean {
  try { writeFileSync(path, value); return true; } catch (e) {
    log.warn('cannot set a VMM cgroup limit', { file: path, err: (e as Error).message });
    return false;
  }
}

/** Makes the VMM's cgroups (relative path `rel` in every hierarchy), sets `limits`, moves `pid` in. Returns the leaf dirs. */
export function placeVmm(rel: string, pid: number, limits: VmmLimits, podDir: string, log: Logger): string[] {
  const clean = cleanCgroupPath(rel);
  if (!clean) { log.warn('refusing an odd cgroup path for the VMM', { cgroup: rel }); return []; }
  const made = readRecord(podDir);
  const leaves: string[] = [];
  for (const h of vmmHierarchies()) {
    const leaf = join(h.path, clean);
    try {
      // each missing level: recorded first, then made (a crash in between leaves a record of nothing, harmless)
      let cur = h.path;
      for (const part of clean.split('/')) {
        cur = join(cur, part);
        if (!existsSync(cur)) {
          if (!isCgroupFs(join(cur, '..'))) throw new Error(`${join(cur, '..')} is not a cgroup filesystem`);
          if (!made.includes(cur)) { made.push(cur); writeRecord(podDir, made); }
          mkdirSync(cur);
        } else if (!isCgroupFs(cur)) throw new Error(`${cur} is not a cgroup filesystem`);
      }
      const has = (c: string): boolean => h.version === 2 || h.controllers.includes(c);
      if (h.version === 1 && has('memory')) tryWrite(join(leaf, 'memory.limit_in_bytes'), String(limits.memoryBytes), log);
      if (h.version === 1 && has('cpu') && limits.cpuQuota) {
        tryWrite(join(leaf, 'cpu.cfs_period_us'), String(limits.cpuPeriod ?? 100000), log);
        tryWrite(join(leaf, 'cpu.cfs_quota_us'), String(limits.cpuQuota), log);
      }
      if (h.version === 2) {
        // controllers may not be enabled for v2 on a hybrid host: the files are then absent
        try { writeFileSync(join(leaf, 'memory.max'), String(limits.memoryBytes)); } catch { /* not enabled */ }
        if (limits.cpuQuota) { try { writeFileSync(join(leaf, 'cpu.max'), `${limits.cpuQuota} ${limits.cpuPeriod ?? 100000}`); } catch { /* not enabled */ } }
      }
      writeFileSync(join(leaf, 'cgroup.procs'), String(pid));
      leaves.push(leaf);
    } catch (e) {
      log.warn('cannot place the VMM in its cgroup', { dir: leaf, err: (e as Error).message });
    }
  }
  return leaves;
}

function hasChildDirs(p: string): boolean {
  try { return readdirSync(p, { withFileTypes: true }).some((e) => e.isDirectory()); } catch { return false; }
}

/** Removes the cgroup directories recorded for the pod (deepest first); the VMM must be gone. */
export async function removeVmmCgroups(podDir: string): Promise<string[]> {
  const made = readRecord(podDir);
  const left: string[] = [];
  for (const d of [...made].sort((a, b) => b.length - a.length)) {
    if (!isCgroupFs(d)) continue; // gone already, or never a cgroup: nothing of ours
    if (hasChildDirs(d)) { left.push(d); continue; } // a shared parent another pod still uses
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) {
      try { rmdirSync(d); ok = true; } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') ok = true;
        else if (code === 'EBUSY') await new Promise((r) => setTimeout(r, 50));
        else break; // ENOTEMPTY: another pod's cgroup still below a shared parent
      }
    }
    if (!ok) left.push(d);
  }
  return left;
}
