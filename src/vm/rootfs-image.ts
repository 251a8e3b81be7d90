/**
 * Container root filesystem → read-only ext4 image for a guest drive slot, built with
 * `mkfs.ext4 -d DIR` (no mount on the host, ever), cached by a key over the tree's metadata
 * (path, type, mode, owner, size, mtime, link target) so an unchanged rootfs is not rebuilt.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, readdir, readlink, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import { runChecked } from '../util/exec.ts';

const MAX_ENTRIES = 2_000_000;

interface TreeSummary { key: string; bytes: number; entries: number }

async function summarize(dir: string, signal?: AbortSignal): Promise<TreeSummary> {
  const h = createHash('sha256');
  let bytes = 0;
  let entries = 0;
  const walk = async (rel: string): Promise<void> => {
    signal?.throwIfAborted();
    const names = (await readdir(join(dir, rel))).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(join(dir, r), { bigint: true });
      if (++entries > MAX_ENTRIES) throw new InvalidArgumentError(`rootfs ${dir} has more than ${MAX_ENTRIES} entries`);
      h.update(`${r}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.size}\0${st.mtimeNs}\0`);
      if (st.isSymbolicLink()) h.update(await readlink(join(dir, r)));
      if (st.isFile()) bytes += Number(st.size);
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return { key: h.digest('hex').slice(0, 32), bytes, entries };
}

/** The image for `rootfs` under `imagesDir` (built when missing); its size in bytes. */
export async function rootfsImage(rootfs: string, imagesDir: string, signal?: AbortSignal): Promise<{ path: string; size: number }> {
  const st = await lstat(rootfs).catch(() => undefined);
  if (!st?.isDirectory()) throw new InvalidArgumentError(`rootfs ${rootfs} is not a directory`);
  const sum = await summarize(rootfs, signal);
  const path = join(imagesDir, `${sum.key}.ext4`);
  if (!existsSync(path)) {
    // room for metadata: 4 KiB per entry, 20% slack, 16 MiB floor
    const kib = Math.max(16 * 1024, Math.ceil((sum.bytes * 1.2 + sum.entries * 4096) / 1024) + 8 * 1024);
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      await runChecked('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-N', String(sum.entries + 1024), '-L', 'bulkhead-root', '-d', rootfs, tmp, `${kib}K`], { timeoutMs: 600_000, ...(signal ? { signal } : {}) });
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }
  return { path, size: (await lstat(path)).size };
}
