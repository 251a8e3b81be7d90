/**
 * The image filesystem: where it is mounted, how full it is, and the one error for "it is full".
 * Pulls and loads ask `room()` before writing and name the filesystem when the kernel says ENOSPC.
 */
import { readFile, realpath, statfs } from 'node:fs/promises';
import { errorReason, ResourceExhaustedError } from '../errors.ts';
import { reserveFor, SETTING, type ImageConfig } from './config.ts';

export interface FsSpace {
  /** Mount point of the filesystem holding the image store. */
  mountpoint: string;
  totalBytes: number;
  /** Bytes an unprivileged writer may still use (f_bavail). */
  availBytes: number;
  /** Bytes to keep free (the configured reserve on this filesystem). */
  reserveBytes: number;
}

/** Unescapes a mountinfo field (\040 for space, etc.). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The mount point of the filesystem `path` is on (the longest mountinfo entry that contains it). */
export async function mountpointOf(path: string): Promise<string> {
  const real = await realpath(path).catch(() => path);
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  let best = '/';
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const p = unescape(mp);
    if ((real === p || real.startsWith(p.endsWith('/') ? p : p + '/')) && p.length > best.length) best = p;
  }
  return best;
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export async function fsSpace(root: string, cfg: ImageConfig): Promise<FsSpace> {
  const st = await statfs(root);
  const totalBytes = Number(st.blocks) * Number(st.bsize);
  return { mountpoint: await mountpointOf(root), totalBytes, availBytes: Number(st.bavail) * Number(st.bsize), reserveBytes: reserveFor(cfg, totalBytes) };
}

/** Bytes that may still be written before the filesystem drops to its reserve (may be ≤ 0). */
export function spaceAboveReserve(s: FsSpace): number {
  return s.availBytes - s.reserveBytes;
}

/**
 * Refuses `what` when writing `need` more bytes would take the image filesystem below its
 * reserve: ResourceExhausted naming the filesystem, the figures and the setting.
 */
export async function ensureRoom(root: string, cfg: ImageConfig, need: number, what: string): Promise<FsSpace> {
  const s = await fsSpace(root, cfg);
  if (need > spaceAboveReserve(s) || spaceAboveReserve(s) <= 0) {
    throw new ResourceExhaustedError(`${what}: the image filesystem ${s.mountpoint} has ${humanBytes(s.availBytes)} free and must keep ${humanBytes(s.reserveBytes)} (setting ${SETTING.reserve}); ${need > 0 ? `${humanBytes(need)} more does not fit; ` : ''}free space with \`bulkhead system prune\` or lower the reserve`, { reason: 'BH_IMAGE_FS_FULL' });
  }
  return s;
}

/** Is `err` (or its cause chain) the kernel saying the disk or quota is full? */
export function isDiskFull(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  }
  return false;
}

/** ENOSPC/EDQUOT while `what` → ResourceExhausted naming the filesystem; anything else unchanged. */
export async function diskFullError(err: unknown, root: string, what: string): Promise<unknown> {
  if (!isDiskFull(err)) return err;
  if (errorReason(err) === 'BH_IMAGE_FS_FULL') return err;
  const mp = await mountpointOf(root);
  return new ResourceExhaustedError(`${what}: the image filesystem ${mp} is full (no space left on device); free space with \`bulkhead system prune\` or \`bulkhead rmi\`, or move the daemon root to a larger filesystem`, { cause: err, reason: 'BH_IMAGE_FS_FULL' });
}
