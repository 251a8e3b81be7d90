/**
 * What image data costs on disk: blocks and inodes under a set of paths, each inode once, never
 * crossing into another filesystem. Committed snapshot directories never change, so their figures
 * are remembered (keyed by dev:ino and ctime) and the kubelet's frequent ImageFsInfo walks only what
 * can change.
 */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface Usage { bytes: number; inodes: number }

export class UsageMeter {
  /** Usage of committed snapshot dirs by path, valid while the dir's dev:ino|ctime is `id`. */
  readonly #frozen = new Map<string, { id: string; u: Usage }>();

  /** Bytes of blocks under `path` (files once, by inode), not crossing into other filesystems. */
  async bytes(path: string): Promise<number> {
    return (await this.usageOf([path])).bytes;
  }

  /** Forgets remembered figures of directories not in `keep` (removed snapshots). */
  forgetExcept(keep: ReadonlySet<string>): void {
    for (const p of this.#frozen.keys()) if (!keep.has(p)) this.#frozen.delete(p);
  }

  /** Blocks and inodes under `paths`; directories in `frozen` are walked once and remembered. */
  async usageOf(paths: string[], frozen?: ReadonlySet<string>): Promise<Usage> {
    let bytes = 0;
    let inodes = 0;
    const seen = new Set<string>();
    const visit = async (p: string, dev: number | undefined): Promise<void> => {
      const st = await lstat(p).catch(() => undefined);
      if (!st || (dev !== undefined && st.dev !== dev)) return;
      const k = `${st.dev}:${st.ino}`;
      if (seen.has(k)) return;
      if (frozen?.has(p) && st.isDirectory()) {
        const id = `${k}|${st.ctimeMs}`;
        let u = this.#frozen.get(p)?.id === id ? this.#frozen.get(p)!.u : undefined;
        if (!u) { u = await this.usageOf([p]); this.#frozen.set(p, { id, u }); }
        seen.add(k);
        bytes += u.bytes;
        inodes += u.inodes;
        return;
      }
      seen.add(k);
      inodes++;
      bytes += st.blocks * 512;
      if (!st.isDirectory()) return;
      let names: string[];
      try { names = await readdir(p); } catch { return; }
      for (const n of names) await visit(join(p, n), st.dev);
    };
    for (const p of paths) await visit(p, undefined);
    return { bytes, inodes };
  }
}
