/**
 * Volumes into the guest: one virtio-fs share per pod VM (QEMU's `vhost-user-fs-device` served
 * by virtiofsd), the way Kata does it.
 *
 * Host side: `<root>/shares/<pod key>/` (a sibling of the pod dir, never inside it: nothing that
 * removes a pod dir recursively can reach into a volume) is bind-mounted onto itself and made a
 * shared mount of its own peer group before virtiofsd starts; virtiofsd's sandbox copies the mount
 * tree as a slave, so a volume bind-mounted under the share later (`<cid>/<n>`) appears in its view.
 * Each volume's source is the staging point the engine made with bulkhead-hostmount (the policy's
 * host-path rules and the openat2 + /proc/self/fd bind happen before anything is shared: a symlink
 * swapped in later cannot move the share), bind-mounted again here, read-only where the mount is.
 *
 * Removal never recurses through a mount: every mount under the share is lazily unmounted first
 * (deepest first, from /proc/self/mountinfo), then entries are removed only on the share's own
 * filesystem (a directory on another device is left, and said so).
 */
import { existsSync, readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { FailedPreconditionError, InternalError, InvalidArgumentError } from '../errors.ts';
import type { OciSpec } from '../oci/spec.ts';
import { run } from '../util/exec.ts';

/** Debian's virtiofsd (QEMU 7.2's C daemon, package qemu-system-common). */
export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
/** The virtio-fs tag the guest agent mounts (at /run/share). */
export const SHARE_TAG = 'bhshare';
/** Host socket virtiofsd listens on, in the pod dir. */
export const SHARE_SOCKET = 'virtiofsd.sock';
/** Field separator inside one `vol` request value (cannot occur in a cleaned path). */
const SEP = '\x1f';
/** Most volumes one container may carry into the guest. */
export const MAX_GUEST_VOLUMES = 256;
/** Files whose contents travel in the create request instead (fileMountsKv). */
const CONTENT_FILES = new Set(['/etc/resolv.conf', '/etc/hosts', '/etc/hostname']);

export type Propagation = 'private' | 'rslave' | 'rshared';

export interface GuestVolume {
  source: string;
  destination: string;
  readonly: boolean;
  propagation: Propagation;
}

/** The pod's share directory: `<root>/shares/<key>` for the pod dir `<root>/pods/<key>`. */
export function shareDir(podDir: string): string {
  return join(dirname(dirname(podDir)), 'shares', basename(podDir));
}

/**
 * The bind mounts of a container spec that must reach the guest (host paths, kubelet volumes),
 * in order. Refused (never dropped): a Bidirectional (rshared) mount — a mount made in the guest
 * cannot reach the host's mount table — and a destination that is not a clean absolute path.
 */
export function guestVolumes(spec: OciSpec): GuestVolume[] {
  const out: GuestVolume[] = [];
  for (const m of spec.mounts ?? []) {
    const opts = m.options ?? [];
    if (m.type !== 'bind' && !opts.includes('bind') && !opts.includes('rbind')) continue;
    if (CONTENT_FILES.has(m.destination)) continue;
    if (!m.source?.startsWith('/') || m.source.includes('\0')) throw new InvalidArgumentError(`mount ${JSON.stringify(m.destination)}: source must be an absolute path`);
    const dest = posix.normalize(m.destination);
    if (!dest.startsWith('/') || dest === '/' || dest.includes('\0') || dest.includes(SEP) || dest.length > 4096) {
      throw new InvalidArgumentError(`mount destination ${JSON.stringify(m.destination.slice(0, 200))} must be a clean absolute path other than /`);
    }
    const propagation: Propagation = opts.some((o) => o === 'rshared' || o === 'shared') ? 'rshared'
      : opts.some((o) => o === 'rslave' || o === 'slave') ? 'rslave' : 'private';
    if (propagation === 'rshared') {
      throw new FailedPreconditionError(`mount ${dest}: Bidirectional (rshared) propagation cannot reach the host from a microVM guest (a mount made in the VM stays in the VM); use a runc or runsc RuntimeClass for this pod, or HostToContainer propagation`);
    }
    out.push({ source: m.source, destination: dest, readonly: opts.includes('ro'), propagation });
  }
  if (out.length > MAX_GUEST_VOLUMES) throw new InvalidArgumentError(`${out.length} volumes exceed ${MAX_GUEST_VOLUMES} per microVM container`);
  return out;
}

/** Mount points at or under `dir` (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(dir: string): string[] {
  let text: string;
  try { text = readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return []; }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === dir || mp.startsWith(`${dir}/`)) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

async function mountCmd(args: string[], what: string): Promise<void> {
  const r = await run('mount', args, { timeoutMs: 20_000 });
  if (r.code !== 0) throw new InternalError(`${what}: ${r.stderr.trim() || `mount exited ${r.code}`}`);
}

/** Makes the share directory a shared mount of its own peer group (idempotent). */
export async function prepareShare(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!mountsUnder(dir).includes(dir)) await mountCmd(['--bind', dir, dir], `bind the pod share ${dir}`);
  await mountCmd(['--make-private', dir], `make the pod share ${dir} private`);
  await mountCmd(['--make-shared', dir], `make the pod share ${dir} shared`);
}

function cleanId(id: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) throw new InvalidArgumentError(`container id ${JSON.stringify(id.slice(0, 64))} is not a clean name`);
  return id;
}

/**
 * Bind-mounts each volume's source under `<share>/<cid>/<n>` (read-only where the mount is) and
 * returns the agent's `vol` entries: `<cid>/<n> SEP destination SEP ro|rw SEP d|f SEP propagation`.
 * A source that is gone is an error, never a silent drop. On failure what was mounted is undone.
 */
export async function attachVolumes(share: string, cid: string, vols: readonly GuestVolume[]): Promise<[string, string][]> {
  if (!vols.length) return [];
  if (!mountsUnder(share).includes(share)) {
    throw new FailedPreconditionError(`the pod VM has no volume share (${share} is not mounted): host paths and kubelet volumes need virtio-fs (${VIRTIOFSD}, package qemu-system-common); recreate the pod after installing it`);
  }
  const base = join(share, cleanId(cid));
  await mkdir(base, { mode: 0o700 });
  const kv: [string, string][] = [];
  try {
    for (const [i, v] of vols.entries()) {
      let st;
      try { st = await stat(v.source); } catch (e) {
        throw new FailedPreconditionError(`mount ${v.destination}: its host source cannot be shared with the guest (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      const dir = st.isDirectory();
      const target = join(base, String(i));
      if (dir) await mkdir(target, { mode: 0o755 }); else await writeFile(target, '', { flag: 'wx', mode: 0o644 });
      await mountCmd(['--rbind', v.source, target], `share the volume for ${v.destination}`);
      if (v.readonly) await mountCmd(['-o', 'remount,bind,ro', target], `make the shared volume for ${v.destination} read-only`);
      kv.push(['vol', [`${cid}/${i}`, v.destination, v.readonly ? 'ro' : 'rw', dir ? 'd' : 'f', v.propagation].join(SEP)]);
    }
  } catch (e) {
    await detachVolumes(share, cid);
    throw e;
  }
  return kv;
}

async function umountLazy(mp: string): Promise<void> {
  await run('umount', ['-l', mp], { timeoutMs: 20_000 }).catch(() => undefined);
}

/**
 * Removes what is at `path` on the filesystem of `dev` only: a directory on another device (a
 * mount that could not be undone) is left in place and reported.
 */
async function removeOnDevice(path: string, dev: number, left: string[]): Promise<void> {
  let st;
  try { st = await lstat(path); } catch { return; }
  if (st.dev !== dev) { left.push(path); return; }
  if (!st.isDirectory()) { await unlink(path).catch(() => { left.push(path); }); return; }
  for (const n of await readdir(path).catch(() => [] as string[])) await removeOnDevice(join(path, n), dev, left);
  await rmdir(path).catch(() => { left.push(path); });
}

/** Undoes one container's volumes under the share; returns paths that could not be removed. */
export async function detachVolumes(share: string, cid: string): Promise<string[]> {
  const base = join(share, cleanId(cid));
  if (!existsSync(base)) return [];
  for (const mp of mountsUnder(base)) await umountLazy(mp);
  // a mount that is still there is never descended into (a host path may share the device)
  const still = mountsUnder(base);
  if (still.length) return still;
  const left: string[] = [];
  await removeOnDevice(base, (await lstat(share)).dev, left);
  return left;
}

/** Unmounts everything under the pod's share (the share itself last) and removes it; returns what stayed. */
export async function releaseShare(share: string): Promise<string[]> {
  if (!existsSync(share)) return [];
  for (const mp of mountsUnder(share)) await umountLazy(mp);
  const still = mountsUnder(share);
  if (still.length) return still;
  const left: string[] = [];
  const parent = dirname(share);
  await removeOnDevice(share, (await lstat(parent)).dev, left);
  return left;
}
