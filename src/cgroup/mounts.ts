/**
 * Where the cgroup hierarchies really are: read from /proc/self/mountinfo, never assumed. On this
 * kind of host `cpu` and `cpuacct` are separate v1 hierarchies and /sys/fs/cgroup/cpu,cpuacct is a
 * plain directory of the tmpfs under them; a mkdir there makes no cgroup at all.
 */
import { readFileSync, statfsSync } from 'node:fs';

export const CGROUP_SUPER_MAGIC = 0x27e0eb;
export const CGROUP2_SUPER_MAGIC = 0x63677270;

export interface CgroupMount {
  /** Mount point, e.g. /sys/fs/cgroup/cpu or /sys/fs/cgroup/cpu,cpuacct. */
  path: string;
  version: 1 | 2;
  /** v1: the controllers of the hierarchy (from the super options); v2: []. */
  controllers: string[];
}

/** mountinfo's octal escapes (\040 for a space, ...). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const [fstype, , superOpts] = line.slice(sep + 3).split(' ');
    const path = pre[4];
    if (!path) continue;
    if (fstype === 'cgroup2') out.push({ path: unescape(path), version: 2, controllers: [] });
    else if (fstype === 'cgroup') {
      const controllers = (superOpts ?? '').split(',').filter((o) => !['rw', 'ro'].includes(o) && !o.includes('=') && !['xattr', 'noprefix', 'clone_children', 'cpuset_v2_mode', 'favordynmods'].includes(o));
      out.push({ path: unescape(path), version: 1, controllers });
    }
  }
  return out;
}

export function cgroupMounts(): CgroupMount[] {
  try { return parseCgroupMounts(readFileSync('/proc/self/mountinfo', 'utf8')); } catch { return []; }
}

/** Whether `path` is on a cgroup (v1 or v2) filesystem: the check before any mkdir there. */
export function isCgroupFs(path: string): boolean {
  try {
    const t = statfsSync(path).type;
    return t === CGROUP_SUPER_MAGIC || t === CGROUP2_SUPER_MAGIC;
  } catch { return false; }
}
