/**
 * Container root filesystem → read-only image for a guest drive slot, built with `mkfs.erofs`
 * (or `mkfs.ext4 -d DIR`; no mount on the host, ever), cached by a key over the tree's metadata
 * (path, type, mode, owner, size, mtime, link target) so an unchanged rootfs is not rebuilt.
 *
 * erofs, where the guest assets load its module (GuestAssets.rootFormat): its mount is a fraction
 * of ext4's work (no journal, group descriptors, checksums, allocator state), and a clone restored
 * from a template runs every guest kernel path the first time through TCG's translator: measured
 * in the guest (agent timestamps, load ~15), a clone's first root mount 124 → 38 ms median, the
 * container create 273 → 203 ms; the clone QEMU's CPU per `run --rm … true` 20-30 ms less
 * (bench/vm-template.ts --baseline, three runs). Both keep owners, modes, mtimes, xattrs, links and
 * device nodes.
 *
 * Reference counting: each container that uses a cached image has a marker in `<image>.users/`
 * holding its container directory (written before the image is looked up, removed when the
 * container is deleted). `pruneRootfsImages` deletes images with no live marker, so the disk
 * images of removed containers do not pile up; several daemons may share one cache directory.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import { runChecked } from '../util/exec.ts';

const MAX_ENTRIES = 2_000_000;

interface TreeSummary { key: string; bytes: number; entries: number }

/** The filesystem of a root image; the guest agent mounts it by this name (create's `fstype`). */
export type RootImageFormat = 'ext4' | 'erofs';
const IMAGE_NAME = /^[a-f0-9]{32}\.(ext4|erofs)$/;

/**
 * The tree's key, size and entry count. Synchronous on purpose: it runs in `bulkhead-vm create`, a
 * short-lived process with nothing else to do meanwhile, where an awaited lstat per entry cost a
 * thread-pool round trip each (busybox, ~400 entries: ~30 ms async, a few ms sync).
 */
export function summarize(dir: string, signal?: AbortSignal): TreeSummary {
  const h = createHash('sha256');
  let bytes = 0;
  let entries = 0;
  const walk = (rel: string): void => {
    signal?.throwIfAborted();
    const names = readdirSync(join(dir, rel)).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(join(dir, r), { bigint: true });
      if (++entries > MAX_ENTRIES) throw new InvalidArgumentError(`rootfs ${dir} has more than ${MAX_ENTRIES} entries`);
      h.update(`${r}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.size}\0${st.mtimeNs}\0`);
      if (st.isSymbolicLink()) h.update(readlinkSync(join(dir, r)));
      if (st.isFile()) bytes += Number(st.size);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return { key: h.digest('hex').slice(0, 32), bytes, entries };
}

/** A marker name for a user (container directory) of a cached image. */
function markerName(user: string): string {
  return createHash('sha256').update(user).digest('hex').slice(0, 32);
}

/** Records `user` (a container directory) as a user of the cached image at `image`. */
export async function claimRootfsImage(image: string, user: string): Promise<void> {
  await mkdir(`${image}.users`, { recursive: true, mode: 0o700 });
  await writeFile(join(`${image}.users`, markerName(user)), user, { mode: 0o600 });
}

/** Drops `user`'s claim on `image`, then prunes the cache directory it is in. */
export async function releaseRootfsImage(image: string, user: string, opts: { graceMs?: number } = {}): Promise<void> {
  await rm(join(`${image}.users`, markerName(user)), { force: true });
  await pruneRootfsImages(dirname(image), opts);
}

/** Live markers of `image`: a marker whose container directory is gone (and is older than the grace) is stale and removed. */
async function liveUsers(image: string, graceMs: number, now: number): Promise<number> {
  let names: string[];
  try { names = await readdir(`${image}.users`); } catch { return 0; }
  let live = 0;
  for (const n of names) {
    const p = join(`${image}.users`, n);
    const user = await readFile(p, 'utf8').catch(() => '');
    const st = await stat(p).catch(() => undefined);
    if (!st) continue;
    // A create writes its marker before its directory: a young marker counts even without one.
    if ((user !== '' && existsSync(user)) || now - st.mtimeMs < graceMs) { live++; continue; }
    await rm(p, { force: true });
  }
  return live;
}

/**
 * Deletes cached images under `imagesDir` that no container uses (and that were not built or
 * claimed within `graceMs`, default 10 min); returns the bytes freed. Safe against a concurrent
 * create: an image is renamed aside, its users checked again, and put back if one appeared (a
 * create claims before it looks the image up, and rebuilds it when missing).
 */
export async function pruneRootfsImages(imagesDir: string, opts: { graceMs?: number } = {}): Promise<{ removed: number; bytes: number }> {
  const graceMs = opts.graceMs ?? 10 * 60_000;
  let names: string[];
  try { names = await readdir(imagesDir); } catch { return { removed: 0, bytes: 0 }; }
  let removed = 0;
  let bytes = 0;
  for (const n of names) {
    if (!IMAGE_NAME.test(n)) continue;
    const image = join(imagesDir, n);
    const now = Date.now();
    const st = await stat(image).catch(() => undefined);
    if (!st || now - st.mtimeMs < graceMs) continue;
    if (await liveUsers(image, graceMs, now) > 0) continue;
    const aside = `${image}.deleting-${process.pid}`;
    try { await rename(image, aside); } catch { continue; }
    if (await liveUsers(image, graceMs, Date.now()) > 0 && !existsSync(image)) { await rename(aside, image); continue; }
    await rm(aside, { force: true });
    await rm(`${image}.users`, { recursive: true, force: true });
    removed++;
    bytes += st.blocks * 512;
  }
  return { removed, bytes };
}

/**
 * The `format` image for `rootfs` under `imagesDir` (built when missing); its size in bytes. With
 * `user` (the container directory), the image is claimed for it first (see claimRootfsImage).
 */
export async function rootfsImage(rootfs: string, imagesDir: string, signal?: AbortSignal, user?: string, format: RootImageFormat = 'ext4'): Promise<{ path: string; size: number }> {
  const st = await lstat(rootfs).catch(() => undefined);
  if (!st?.isDirectory()) throw new InvalidArgumentError(`rootfs ${rootfs} is not a directory`);
  const sum = summarize(rootfs, signal);
  const path = join(imagesDir, `${sum.key}.${format}`);
  if (user !== undefined) {
    await claimRootfsImage(path, user);
    const now = new Date();
    await utimes(path, now, now).catch(() => {}); // in use again: not prunable within the grace
  }
  if (!existsSync(path)) {
    // room for metadata: 4 KiB per entry, 20% slack, 16 MiB floor
    const kib = Math.max(16 * 1024, Math.ceil((sum.bytes * 1.2 + sum.entries * 4096) / 1024) + 8 * 1024);
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      const opts = { timeoutMs: 600_000, ...(signal ? { signal } : {}) };
      if (format === 'erofs') await runChecked('mkfs.erofs', ['--quiet', tmp, rootfs], opts);
      else await runChecked('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-N', String(sum.entries + 1024), '-L', 'bulkhead-root', '-d', rootfs, tmp, `${kib}K`], opts);
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }
  return { path, size: (await lstat(path)).size };
}
