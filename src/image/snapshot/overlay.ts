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
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, UnavailableError } from '../../errors.ts';
import { run } from '../../util/exec.ts';
import type { PullProfiler } from '../profile.ts';
import { digestHex } from '../digest.ts';
import type { ActiveSnapshot, Mount, SnapshotInfo, Snapshotter } from './snapshotter.ts';

const KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

async function atomicWrite(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** syncfs(2) on the filesystem holding `dir` (coreutils `sync -f`; Node has no binding). */
async function syncFs(dir: string): Promise<void> {
  const r = await run('sync', ['-f', dir], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new UnavailableError(`sync -f ${dir}: ${r.stderr.trim()}`);
}

export class OverlaySnapshotter implements Snapshotter {
  readonly root: string;
  private readonly profiler: PullProfiler | undefined;
  /** Placed and usable as parents in this process, not yet named under by-chain/ (awaiting a sync). */
  private readonly unpublished = new Map<string, SnapshotInfo>();
  private readonly publishing = new Map<string, Promise<void>>();
  private syncing: Promise<void> | undefined;
  private nextSync: Promise<void> | undefined;
  private constructor(root: string, profiler: PullProfiler | undefined) { this.root = root; this.profiler = profiler; }

  static async open(root: string, opts: { profiler?: PullProfiler } = {}): Promise<OverlaySnapshotter> {
    const s = new OverlaySnapshotter(root, opts.profiler);
    await mkdir(join(root, 'by-chain'), { recursive: true });
    await mkdir(join(root, 'active'), { recursive: true });
    await rm(join(root, 'tmp'), { recursive: true, force: true }); // unpacks a dead process left
    await mkdir(join(root, 'tmp'), { recursive: true });
    return s;
  }

  async stat(chainId: string): Promise<SnapshotInfo | undefined> {
    return this.unpublished.get(chainId) ?? await this.statOnDisk(chainId);
  }

  private async statOnDisk(chainId: string): Promise<SnapshotInfo | undefined> {
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
    const r = await this.commitDeferred(chainId, parent, fill);
    await r.published;
    return r.info;
  }

  /**
   * Like commit, but resolves as soon as the snapshot is in place: from then on this process can
   * use it (e.g. as the parent of the next layer); `published` resolves once its data is on disk
   * and it is named under by-chain/ (visible to other processes and after a restart).
   */
  async commitDeferred(chainId: string, parent: string | undefined, fill: (dir: string, lowers: string[]) => Promise<void>): Promise<{ info: SnapshotInfo; published: Promise<void> }> {
    const existing = await this.stat(chainId);
    if (existing) return { info: existing, published: this.publishing.get(chainId) ?? Promise.resolve() };
    const lowers = parent ? await this.view(parent) : [];
    const tmp = join(this.root, 'tmp', randomBytes(8).toString('hex'));
    await mkdir(join(tmp, 'fs'), { recursive: true, mode: 0o755 });
    let id: string;
    try {
      await fill(join(tmp, 'fs'), lowers);
      await writeFile(join(tmp, 'parent'), parent ?? '');
      await writeFile(join(tmp, 'chainid'), chainId);
      id = await this.place(tmp);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    const info: SnapshotInfo = { chainId, id, dir: join(this.root, id, 'fs') };
    if (parent) info.parent = parent;
    this.unpublished.set(chainId, info);
    const published = this.publish(info);
    published.catch(() => {});
    this.publishing.set(chainId, published);
    return { info, published };
  }

  /** Resolves when `chainId` is named on disk (at once unless a commit of it is awaiting its sync). */
  whenPublished(chainId: string): Promise<void> {
    return this.publishing.get(chainId) ?? Promise.resolve();
  }

  /** Names a placed snapshot once its data is on disk: after a crash a named snapshot is never short of data. */
  private async publish(info: SnapshotInfo): Promise<void> {
    try {
      await this.requestSync();
      // Another process may have published the same chain meanwhile: theirs stays, ours is an orphan for GC.
      if (!(await this.statOnDisk(info.chainId))) await atomicWrite(join(this.root, 'by-chain', digestHex(info.chainId)), info.id);
    } catch (err) {
      await rm(join(this.root, info.id), { recursive: true, force: true }).catch(() => {});
      throw err;
    } finally {
      this.unpublished.delete(info.chainId);
      this.publishing.delete(info.chainId);
    }
  }

  /** Resolves after a syncfs that started after this call; commits that overlap share one. */
  private requestSync(): Promise<void> {
    if (this.nextSync) return this.nextSync;
    if (!this.syncing) {
      const s0 = performance.now();
      this.syncing = syncFs(this.root).finally(() => { this.syncing = undefined; this.profiler?.add('fsync', performance.now() - s0); });
      return this.syncing;
    }
    this.nextSync = this.syncing.catch(() => {}).then(() => { this.nextSync = undefined; return this.requestSync(); });
    return this.nextSync;
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
    const live = new Set([...(await this.walk()), ...this.unpublished.values()].map((s) => s.id));
    for (const n of await readdir(this.root)) {
      if (/^\d+$/.test(n) && !live.has(n)) await rm(join(this.root, n), { recursive: true, force: true });
    }
  }
}
