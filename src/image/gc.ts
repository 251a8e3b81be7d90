/**
 * Garbage collection and disk accounting over the image parts: what no image record, container
 * snapshot or pin references is removed; `bulkhead df` sees per-image shared and unique bytes.
 */
import { join } from 'node:path';
import type { LocalContentStore } from './content/local-store.ts';
import { isDigest } from './digest.ts';
import type { SqliteImageStore } from './image-store.ts';
import type { OverlaySnapshotter } from './snapshot/overlay.ts';
import type { FsSpace } from './disk.ts';
import type { UsageMeter } from './usage.ts';

export interface ImageParts {
  images: SqliteImageStore;
  snapshots: OverlaySnapshotter;
  content: LocalContentStore;
  usage: UsageMeter;
}

export interface GcResult {
  blobs: number;
  snapshots: number;
  /** Bytes of blob files freed (blocks); snapshot trees are not walked to count theirs (that would double the cost of removing them). */
  bytes: number;
}

export interface ImageDiskUsage {
  id: string;
  repoTags: string[];
  /** Bytes on disk of its blobs and unpacked layers. */
  size: number;
  /** Of `size`, what no other image uses (freed by removing this image alone). */
  uniqueSize: number;
  /** Container snapshots on top of this image. */
  containers: number;
}

export interface DiskUsage {
  images: ImageDiskUsage[];
  /** Distinct bytes all images use, and the bytes only unused images (no container) use. */
  imagesSize: number;
  imagesReclaimable: number;
  /** Container writable layers (snapshot key = container ID) and their bytes. */
  containers: { key: string; size: number }[];
  /** Blobs and snapshots nothing uses (what gc() frees). */
  unused: { count: number; size: number };
  space: FsSpace;
}

/**
 * One GC pass. `pinned` (taken before the records are listed: an operation that records its image
 * and releases meanwhile stays covered) is kept; `idle()` says no pull, load or unpack is under way at the end, so
 * half-placed snapshot dirs are orphans.
 */
export async function collectGarbage(parts: ImageParts, pinned: ReadonlySet<string>, idle: () => boolean): Promise<GcResult> {
  const blobs = new Set<string>();
  const chains = new Set<string>();
  for (const img of parts.images.list()) {
    blobs.add(img.id); blobs.add(img.manifestDigest);
    if (img.indexDigest) blobs.add(img.indexDigest);
    // Another repository's manifest of the same image ID (the record keeps the last one pulled).
    for (const name of img.repoDigests) { const d = name.slice(name.lastIndexOf('@') + 1); if (isDigest(d)) blobs.add(d); }
    for (const l of img.layers) { blobs.add(l.digest); chains.add(l.chainId); }
  }
  // Every ancestor of a kept chain (a container's parent, a pinned chain) is kept too.
  const keepAncestors = async (start: string | undefined): Promise<void> => {
    let cur = start;
    while (cur && !chains.has(cur)) {
      chains.add(cur);
      cur = (await parts.snapshots.stat(cur))?.parent;
    }
  };
  for (const a of await parts.snapshots.active()) await keepAncestors(a.parent);
  let nb = 0;
  let ns = 0;
  let bytes = 0;
  for (const b of await parts.content.list()) {
    if (blobs.has(b.digest) || pinned.has(b.digest)) continue;
    bytes += await parts.usage.bytes(parts.content.path(b.digest));
    await parts.content.delete(b.digest);
    nb++;
  }
  const all = await parts.snapshots.walk();
  for (const s of all) if (pinned.has(s.chainId)) await keepAncestors(s.chainId);
  for (const s of all) {
    if (chains.has(s.chainId)) continue;
    await parts.snapshots.remove(s.chainId);
    ns++;
  }
  // Half-placed snapshot dirs are only orphans when no pull or load is under way.
  if (pinned.size === 0 && idle()) await parts.snapshots.cleanOrphans();
  return { blobs: nb, snapshots: ns, bytes };
}

/** Per-image shared and unique bytes, container layers, and what nothing uses. */
export async function measureDiskUsage(parts: ImageParts): Promise<Omit<DiskUsage, 'space'>> {
  const imgs = parts.images.list();
  const active = await parts.snapshots.active();
  // Each blob and snapshot once: its bytes, and which images use it.
  const items = new Map<string, { bytes: number; users: Set<string> }>();
  const bytesOfBlob = async (d: string): Promise<number> => parts.usage.bytes(parts.content.path(d));
  const snapDirs = new Map((await parts.snapshots.walk()).map((x) => [x.chainId, join(parts.snapshots.root, x.id)]));
  for (const img of imgs) {
    const keys = [`b:${img.id}`, `b:${img.manifestDigest}`, ...(img.indexDigest ? [`b:${img.indexDigest}`] : []),
      ...img.layers.map((l) => `b:${l.digest}`), ...img.layers.map((l) => `s:${l.chainId}`)];
    for (const k of keys) {
      let it = items.get(k);
      if (!it) {
        const bytes = k.startsWith('b:') ? await bytesOfBlob(k.slice(2)) : snapDirs.has(k.slice(2)) ? await parts.usage.bytes(snapDirs.get(k.slice(2))!) : 0;
        it = { bytes, users: new Set() };
        items.set(k, it);
      }
      it.users.add(img.id);
    }
  }
  const usedBy = new Map<string, number>();
  for (const img of imgs) {
    const top = img.layers[img.layers.length - 1]?.chainId;
    usedBy.set(img.id, active.filter((a) => a.parent === top).length);
  }
  const images: ImageDiskUsage[] = imgs.map((img) => {
    let size = 0;
    let uniqueSize = 0;
    for (const it of items.values()) if (it.users.has(img.id)) { size += it.bytes; if (it.users.size === 1) uniqueSize += it.bytes; }
    return { id: img.id, repoTags: img.repoTags, size, uniqueSize, containers: usedBy.get(img.id) ?? 0 };
  });
  let imagesSize = 0;
  let imagesReclaimable = 0;
  for (const it of items.values()) {
    imagesSize += it.bytes;
    if ([...it.users].every((id) => (usedBy.get(id) ?? 0) === 0)) imagesReclaimable += it.bytes;
  }
  const containers = await Promise.all(active.map(async (a) => ({ key: a.key, size: await parts.usage.bytes(join(parts.snapshots.root, 'active', a.key)) })));
  // Unused: blobs and snapshots no image references and no container snapshot sits on.
  const keptChains = new Set<string>();
  for (const a of active) {
    let cur: string | undefined = a.parent;
    while (cur && !keptChains.has(cur)) { keptChains.add(cur); cur = (await parts.snapshots.stat(cur))?.parent; }
  }
  let count = 0;
  let size = 0;
  for (const b of await parts.content.list()) if (!items.has(`b:${b.digest}`)) { count++; size += await bytesOfBlob(b.digest); }
  for (const [chain, dir] of snapDirs) if (!items.has(`s:${chain}`) && !keptChains.has(chain)) { count++; size += await parts.usage.bytes(dir); }
  return { images, imagesSize, imagesReclaimable, containers, unused: { count, size } };
}
