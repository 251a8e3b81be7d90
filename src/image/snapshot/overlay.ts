/**
 * The overlayfs Snapshotter (see snapshotter.ts). Layout under `<root>` (normally
 * `<bulkhead root>/snapshots`):
 *   <id>/fs, <id>/parent, <id>/chainid, <id>/opaque.json   committed layers
 *   by-chain/<chain hex>                                  chain ID → id (written last)
 *   active/<key>/{upper,work,parent}                      container layers
 *   tmp/                                                  unpacks in progress
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../../errors.ts';
import { digestHex } from '../digest.ts';
import type { ActiveSnapshot, Mount, SnapshotInfo, Snapshotter } from './snapshotter.ts';

const KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

async function atomicWrite(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

export class OverlaySnapshotter implements Snapshotter {
  readonly root: string;
  private constructor(root: string) { this.root = root; }

  static async open(root: string): Promise<OverlaySnapshotter> {
    const s = new OverlaySnapshotter(root);
    await mkdir(join(root, 'by-chain'), { recursive: true });
    await mkdir(join(root, 'active'), { recursive: true });
    await rm(join(root, 'tmp'), { recursive: true, force: true }); // unpacks a dead process left
    await mkdir(join(root, 'tmp'), { recursive: true });
    return s;
  }

  async stat(chainId: string): Promise<SnapshotInfo | undefined> {
    const hex = digestHex(chainId);
    let id: string;
    try { id = (await readFile(join(this.root, 'by-chain', hex), 'utf8')).trim(); } catch { return undefined; }
    if (!/^\d+$/.test(id)) return undefined;
    const parent = (await readFile(join(this.root, id, 'parent'), 'utf8').catch(() => '')).trim();
    const info: SnapshotInfo = { chainId, id, dir: join(this.root, id, 'fs') };
    if (parent) info.parent = parent;
    return info;
  }

  async view(chainId: string): Promise<string[]> {
    const out: string[] = [];
    let cur: string | undefined = chainId;
    while (cur) {
      const info = await this.stat(cur);
      if (!info) throw new NotFoundError(`snapshot ${cur} not found`);
      out.push(info.dir);
      cur = info.parent;
      if (out.length > 1000) throw new InvalidArgumentError('snapshot chain too long');
    }
    return out;
  }

  async commit(chainId: string, parent: string | undefined, fill: (dir: string, lowers: string[]) => Promise<void>): Promise<SnapshotInfo> {
    const existing = await this.stat(chainId);
    if (existing) return existing;
    const lowers = parent ? await this.view(parent) : [];
    const tmp = join(this.root, 'tmp', randomBytes(8).toString('hex'));
    await mkdir(join(tmp, 'fs'), { recursive: true, mode: 0o755 });
    try {
      await fill(join(tmp, 'fs'), lowers);
      await writeFile(join(tmp, 'parent'), parent ?? '');
      await writeFile(join(tmp, 'chainid'), chainId);
      const id = await this.place(tmp);
      const again = await this.stat(chainId);
      if (again) { await rm(join(this.root, id), { recursive: true, force: true }); return again; } // another process won
      await atomicWrite(join(this.root, 'by-chain', digestHex(chainId)), id);
      const info: SnapshotInfo = { chainId, id, dir: join(this.root, id, 'fs') };
      if (parent) info.parent = parent;
      return info;
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Renames a finished temp dir to the next free numeric id. */
  private async place(tmp: string): Promise<string> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const ids = (await readdir(this.root)).filter((n) => /^\d+$/.test(n)).map(Number);
      const id = String((ids.length ? Math.max(...ids) : 0) + 1 + attempt);
      try {
        await mkdir(join(this.root, id)); // claim the number (atomic), then swap the tree in
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      await rm(join(this.root, id), { recursive: true });
      try {
        await rename(tmp, join(this.root, id));
        return id;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' || code === 'ENOTEMPTY') continue;
        throw err;
      }
    }
    throw new InvalidArgumentError('could not allocate a snapshot id');
  }

  private activeDir(key: string): string {
    if (!KEY.test(key)) throw new InvalidArgumentError(`invalid snapshot key "${key.slice(0, 200)}"`);
    return join(this.root, 'active', key);
  }

  async prepare(key: string, parent: string): Promise<Mount[]> {
    const dir = this.activeDir(key);
    const lowers = await this.view(parent);
    try {
      await mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        const cur = (await readFile(join(dir, 'parent'), 'utf8').catch(() => '')).trim();
        if (cur === parent) return await this.mounts(key);
        const { AlreadyExistsError } = await import('../../errors.ts');
        throw new AlreadyExistsError(`snapshot ${key} already exists on another image`);
      }
      throw err;
    }
    await mkdir(join(dir, 'upper'), { mode: 0o755 });
    await mkdir(join(dir, 'work'), { mode: 0o700 });
    await writeFile(join(dir, 'parent'), parent);
    return this.overlayMounts(dir, lowers);
  }

  private overlayMounts(dir: string, lowers: string[]): Mount[] {
    return [{
      type: 'overlay',
      source: 'overlay',
      options: [`lowerdir=${lowers.join(':')}`, `upperdir=${join(dir, 'upper')}`, `workdir=${join(dir, 'work')}`, 'index=off'],
    }];
  }

  async mounts(key: string): Promise<Mount[]> {
    const dir = this.activeDir(key);
    let parent: string;
    try { parent = (await readFile(join(dir, 'parent'), 'utf8')).trim(); } catch { throw new NotFoundError(`snapshot ${key} not found`); }
    return this.overlayMounts(dir, await this.view(parent));
  }

  async remove(keyOrChainId: string): Promise<void> {
    if (keyOrChainId.startsWith('sha256:')) {
      const info = await this.stat(keyOrChainId);
      if (!info) return;
      await rm(join(this.root, 'by-chain', digestHex(keyOrChainId)), { force: true });
      await rm(join(this.root, info.id), { recursive: true, force: true });
      return;
    }
    await rm(this.activeDir(keyOrChainId), { recursive: true, force: true });
  }

  async walk(): Promise<SnapshotInfo[]> {
    const out: SnapshotInfo[] = [];
    for (const hex of await readdir(join(this.root, 'by-chain'))) {
      if (!/^[a-f0-9]{64}$/.test(hex)) continue;
      const info = await this.stat(`sha256:${hex}`);
      if (info) out.push(info);
    }
    return out;
  }

  async active(): Promise<ActiveSnapshot[]> {
    const out: ActiveSnapshot[] = [];
    for (const key of await readdir(join(this.root, 'active'))) {
      const dir = join(this.root, 'active', key);
      const parent = (await readFile(join(dir, 'parent'), 'utf8').catch(() => '')).trim();
      out.push({ key, parent, upper: join(dir, 'upper'), work: join(dir, 'work') });
    }
    return out;
  }

  /** Removes numbered dirs no chain points at (a crash between rename and by-chain write). */
  async cleanOrphans(): Promise<void> {
    const live = new Set((await this.walk()).map((s) => s.id));
    for (const n of await readdir(this.root)) {
      if (/^\d+$/.test(n) && !live.has(n)) await rm(join(this.root, n), { recursive: true, force: true });
    }
  }
}
