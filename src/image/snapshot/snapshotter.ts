/**
 * Snapshotter: filesystem trees for images and containers, overlayfs first.
 *
 * Glossary: a *committed* snapshot is one unpacked layer, immutable, keyed by its chain ID
 * (containerd-style: the identity of a layer together with everything below it); its parent is
 * the snapshot of the layer below. An *active* snapshot is a container's writable layer, keyed by
 * the caller's key (a container ID), on top of a committed chain.
 *
 * Lifecycle:
 *   commit(chainId, parent, fill) → committed (fill writes into an empty temp dir; on success the
 *     dir is renamed into place, on failure removed — a half-unpacked layer is never visible)
 *   view(chainId)                  → the lower dirs (read-only, topmost first), e.g. for a microVM
 *   prepare(key, chainId)          → active: upper/work dirs and the overlay Mount spec
 *   mounts(key)                    → the same spec again
 *   remove(key | chainId)          → gone (idempotent); committed snapshots only when no child
 *                                    or active snapshot uses them (GC decides that)
 *   walk()/active()                → everything, for GC and fsUsage
 */

/** A mount the caller performs (mount(8) / runc `mounts` shape). */
export interface Mount {
  type: string;
  source: string;
  options: string[];
}

export interface SnapshotInfo {
  chainId: string;
  /** Short directory id (keeps overlay's lowerdir option short). */
  id: string;
  parent?: string;
  /** The tree: `<root>/snapshots/<id>/fs`. */
  dir: string;
}

export interface ActiveSnapshot {
  key: string;
  parent: string;
  upper: string;
  work: string;
}

export interface Snapshotter {
  stat(chainId: string): Promise<SnapshotInfo | undefined>;
  commit(chainId: string, parent: string | undefined, fill: (dir: string, lowers: string[]) => Promise<void>): Promise<SnapshotInfo>;
  view(chainId: string): Promise<string[]>;
  prepare(key: string, parent: string): Promise<Mount[]>;
  mounts(key: string): Promise<Mount[]>;
  remove(keyOrChainId: string): Promise<void>;
  walk(): Promise<SnapshotInfo[]>;
  active(): Promise<ActiveSnapshot[]>;
}
