/**
 * Which cgroup layout the host has and where each controller's hierarchy is, from the mount table
 * (mounts.ts), never from directory names under /sys/fs/cgroup: on a hybrid host a directory there
 * may be a plain tmpfs directory (cpu,cpuacct here) where a mkdir makes no cgroup at all.
 *
 * Layouts: `v2` — one unified hierarchy at /sys/fs/cgroup; `v1-hybrid` — v1 controller
 * hierarchies plus a v2 one (usually /sys/fs/cgroup/unified, with no controllers enabled);
 * `v1` — v1 hierarchies only; `none` — no cgroup filesystem mounted.
 */
import { join, normalize, relative } from 'node:path';
import { cgroupMounts, isCgroupFs, type CgroupMount } from './mounts.ts';

export const CGROUP_ROOT = '/sys/fs/cgroup';

export type CgroupLayout = 'v2' | 'v1-hybrid' | 'v1' | 'none';

/** A mounted hierarchy: its mount point, version and (v1) controllers. */
export type Hierarchy = CgroupMount;

let cached: CgroupMount[] | undefined;
/** The host's cgroup mounts (read once per process; a test passes its own list to the functions below). */
export function hostMounts(): CgroupMount[] {
  cached ??= cgroupMounts();
  return cached;
}

export function layoutOf(mounts: readonly CgroupMount[]): CgroupLayout {
  const v2 = mounts.some((m) => m.version === 2);
  const v1 = mounts.some((m) => m.version === 1);
  if (mounts.some((m) => m.version === 2 && m.path === CGROUP_ROOT)) return 'v2';
  if (v1) return v2 ? 'v1-hybrid' : 'v1';
  return v2 ? 'v2' : 'none';
}

export function cgroupLayout(mounts: readonly CgroupMount[] = hostMounts()): CgroupLayout {
  return layoutOf(mounts);
}

/**
 * Which files limits and stats use: 'v2' only when the controllers live in the unified hierarchy;
 * a hybrid host's controllers are v1 (its v2 hierarchy has none enabled).
 */
export function cgroupMode(mounts: readonly CgroupMount[] = hostMounts()): 'v1' | 'v2' {
  return layoutOf(mounts) === 'v2' ? 'v2' : 'v1';
}

/** A layout in words, for `bulkhead doctor` and probes. */
export function describeLayout(mounts: readonly CgroupMount[] = hostMounts()): string {
  switch (layoutOf(mounts)) {
    case 'v2': return 'v2 unified';
    case 'v1-hybrid': return `v1 hybrid (v1 controllers + v2 at ${mounts.find((m) => m.version === 2)?.path ?? '?'})`;
    case 'v1': return 'v1';
    case 'none': return 'none (no cgroup filesystem mounted)';
  }
}

/** A cgroupsPath made safe to join under a hierarchy: relative, normalized, no `..` left, no NUL; else undefined. */
export function cleanCgroupPath(p: string): string | undefined {
  if (p.includes('\0')) return undefined;
  const rel = normalize(p.replace(/^\/+/, '')).replace(/\/+$/, '');
  if (!rel || rel === '.' || rel.split('/').some((c) => c === '..' || c === '' || c === '.')) return undefined;
  return rel;
}

/**
 * The hierarchies a cgroup is made in: each real cgroup mount once (a mount seen twice, e.g. bound
 * elsewhere, counts once); v1 ones only with one of `controllers` when given; the v2 one always.
 */
export function hierarchies(opts: { controllers?: readonly string[]; mounts?: readonly CgroupMount[] } = {}): Hierarchy[] {
  const seen = new Set<string>();
  return (opts.mounts ?? hostMounts()).filter((m) => {
    if (seen.has(m.path)) return false;
    if (opts.controllers && m.version === 1 && !m.controllers.some((c) => opts.controllers!.includes(c))) return false;
    seen.add(m.path);
    return opts.mounts !== undefined || isCgroupFs(m.path);
  });
}

/** The directory of cgroup `rel` in the hierarchy that holds `controller` (v2: the unified one); undefined when none does. */
export function controllerDir(controller: string, rel: string, mounts: readonly CgroupMount[] = hostMounts()): string | undefined {
  const m = cgroupMode(mounts) === 'v2'
    ? mounts.find((x) => x.version === 2 && x.path === CGROUP_ROOT) ?? mounts.find((x) => x.version === 2)
    : mounts.find((x) => x.version === 1 && x.controllers.includes(controller));
  return m ? join(m.path, rel) : undefined;
}

/**
 * A hierarchy's name as the pod records have kept it since before this module: its mount point
 * relative to /sys/fs/cgroup ('memory', 'unified'; '' for a v2 root). Undefined for a mount
 * elsewhere or deeper.
 */
export function hierarchyKey(h: Hierarchy): string | undefined {
  const k = relative(CGROUP_ROOT, h.path);
  return k.startsWith('..') || k.includes('/') ? undefined : k;
}
