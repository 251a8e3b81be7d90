/**
 * Copied volumes (pod annotation `io.bulkhead.vm.volumes=copy`): a pod VM without a virtio-fs share
 * (so it can be a template's clone or a warm-pool member) still gets the volumes a kubelet pod has,
 * by value. The guest is sent the files (agent request `Y`, protocol 8) before the container's
 * create and binds them at its start:
 *
 * - a read-only bind of a regular file, or of a directory tree of regular files, directories and
 *   symlinks that resolve inside it (kubelet's atomic-writer layout of configMaps, secrets, projected
 *   service-account tokens: `..data -> ..TIMESTAMP`, `key -> ..data/key`): copied, bound read-only.
 *   Kept fresh: the supervisor looks at each copied directory's metadata every REFRESH_MS and sends
 *   what changed, each replacement atomic in the guest (a file renamed into place, a symlink renamed
 *   over the old one: kubelet's `..data` swap reaches the guest as one rename, new entries before it,
 *   removals after). A single-file volume is copied once (a bind pins the file, as kubelet's subPath).
 * - a read-write bind of a regular file (kubelet's etc-hosts, the termination-log file): copied,
 *   writable in the guest; the termination log (destination /dev/termination-log, or a kubelet
 *   `pods/UID/containers/NAME/FILE` source) is copied back when the container exits: its last
 *   TERMINATION_LOG_BYTES, as the kubelet reads it.
 * - an emptyDir (a directory whose source has a `kubernetes.io~empty-dir` component): a guest
 *   directory per source path, shared by the pod's containers, never written back to the host. One
 *   whose host directory is a tmpfs mount of its own (kubelet's medium Memory, sized as its
 *   sizeLimit, else as the node's allocatable memory) is a guest tmpfs of that size (at most
 *   MAX_EMPTY_DIR_BYTES; agent protocol 9, else refused naming the fix); a disk emptyDir's sizeLimit
 *   is not in the CRI (the kubelet enforces it by measuring the host directory): its guest directory
 *   is bounded by the guest's /run tmpfs only.
 * - anything else (a read-write host directory, a tree over the bounds or with a special file or
 *   a symlink out of it, Bidirectional propagation) is refused at create (FailedPrecondition naming
 *   the destination, why, and what to do). No file's content is ever part of an error.
 *
 * Each container's files are read once, by its pod's supervisor (PodCopies.add), checked against
 * every bound and sent as read: create (classifyCopies) looks only at their metadata, so what the
 * guest gets is what was checked, and nothing is read twice.
 *
 * Reading on the host never follows a symlink: the tree is walked with lstat, each file is opened
 * O_NOFOLLOW and kept only if the opened object is the one the walk saw (device, inode) and its real
 * path (/proc/self/fd) lies under the volume's (a directory swapped for a symlink mid-walk reads
 * nothing from elsewhere). The sources are the engine's staging points (bulkhead-hostmount), so the
 * policy's host-path rules were applied before anything is read.
 */
import { createHash } from 'node:crypto';
import { constants, realpathSync } from 'node:fs';
import { lstat, open, readdir, readlink, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '../errors.ts';
import type { OciSpec } from '../oci/spec.ts';
import type { GuestVolume } from './share.ts';
import { MOUNT_ORIGINS_ANNOTATION } from './annotations.ts';

/** Most bytes of one copied file. */
export const MAX_COPY_FILE_BYTES = 1 << 20;
/** Most bytes of one copied volume (a directory's files together). */
export const MAX_COPY_MOUNT_BYTES = 8 << 20;
/** Most entries (files, directories, symlinks) of one copied volume. */
export const MAX_COPY_MOUNT_ENTRIES = 1024;
/** Most bytes copied for one container, all its volumes together (guest RAM). */
export const MAX_COPY_CONTAINER_BYTES = 16 << 20;
/** Largest guest tmpfs of a sized emptyDir (its pages are the guest's RAM whatever the size). */
export const MAX_EMPTY_DIR_BYTES = 2 ** 40;
/** The guest agent's protocol that sizes an emptyDir (`Y op=ed`). */
export const SIZED_EMPTY_DIR_PROTOCOL = 9;
/** What is copied back of a termination log (Kubernetes' limit for the message). */
export const TERMINATION_LOG_BYTES = 4096;
/** How often the supervisor looks for changed sources of copied directories. */
export const REFRESH_MS = 2000;
/** Data bytes in one `Y` frame (the agent protocol's frames are at most 1 MiB). */
export const COPY_CHUNK_BYTES = 512 << 10;

export type CopyKind = 'ro-file' | 'ro-dir' | 'rw-file' | 'empty-dir';

/** One volume of a container as copied into the guest (kept in its create request). */
export interface CopyVolume {
  /** Its number among the container's copied volumes: the guest keeps it at /run/cv/GID/N. */
  n: number;
  kind: CopyKind;
  /** The host path read (the engine's staging point). */
  source: string;
  destination: string;
  readonly: boolean;
  /** rw-file: its content goes back to `source` when the container exits (the termination log). */
  writeBack?: boolean;
  /** empty-dir: the guest directory's name, from its host path (two containers binding one source share it). */
  emptyKey?: string;
  /** empty-dir: the size of its guest tmpfs, its host tmpfs's (kubelet's medium Memory, sized as sizeLimit); none: a directory on the guest's /run. */
  sizeBytes?: number;
}

/** One entry of a copied tree, by its path relative to the volume ("f" for a single file). */
export interface CopyEntry {
  type: 'd' | 'f' | 'l';
  mode: number;
  data?: Buffer;
  /** A file's size when its data was not read (classifyCopies looks at metadata only). */
  size?: number;
  target?: string;
  /** sha256 of a file's data, in what the supervisor keeps of a sent tree (kept), instead of the data. */
  digest?: string;
}
export type CopyTree = Map<string, CopyEntry>;

function refuse(dest: string, why: string): never {
  throw new FailedPreconditionError(`mount ${dest}: ${why}; a pod with io.bulkhead.vm.volumes=copy gets its volumes copied into the VM (read-only files and directories of regular files up to ${MAX_COPY_FILE_BYTES >> 20} MiB each, ${MAX_COPY_MOUNT_BYTES >> 20} MiB and ${MAX_COPY_MOUNT_ENTRIES} entries per volume; a read-write file; an emptyDir): run the pod without volumes=copy (its VM then boots with a virtio-fs share) or on another RuntimeClass`);
}

/** The real host path of each bind mount's staging point, as the engine recorded it (annotation). */
export function mountOrigins(spec: OciSpec): Record<string, string> {
  const raw = spec.annotations?.[MOUNT_ORIGINS_ANNOTATION];
  if (!raw || raw.length > 1 << 20) return {};
  try {
    const o = JSON.parse(raw) as unknown;
    if (!o || typeof o !== 'object' || Array.isArray(o)) return {};
    return Object.fromEntries(Object.entries(o as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch { return {}; }
}

/** A kubelet termination-message file: `/dev/termination-log`, or a source `.../pods/UID/containers/NAME/FILE`. */
function terminationLog(dest: string, origin: string): boolean {
  return dest === '/dev/termination-log' || /\/pods\/[^/]+\/containers\/[^/]+\/[^/]+$/.test(origin);
}

const TMPFS_MAGIC = 0x01021994;

/**
 * The size of an emptyDir's guest tmpfs: its host directory's when that is a tmpfs mounted there
 * (kubelet's medium Memory: sized as its sizeLimit), at most MAX_EMPTY_DIR_BYTES; else undefined.
 */
async function emptyDirSize(source: string, origin: string): Promise<number | undefined> {
  try {
    const [here, up] = await Promise.all([lstat(origin), lstat(dirname(origin))]);
    if (here.dev === up.dev) return undefined; // a directory on its parent's filesystem: a disk emptyDir
    const fs = await statfs(source);
    if (fs.type !== TMPFS_MAGIC) return undefined;
    return Math.min(MAX_EMPTY_DIR_BYTES, Math.max(4096, fs.bsize * fs.blocks));
  } catch { return undefined; }
}

/**
 * How each volume is copied (in order), or FailedPrecondition naming the first that cannot be. Only
 * the trees' metadata is read here (readCopy without data: their bounds by the sizes lstat gives);
 * their files are read once, when copied (PodCopies.add), and checked again there.
 */
export async function classifyCopies(vols: readonly GuestVolume[], origins: Record<string, string>): Promise<CopyVolume[]> {
  const out: CopyVolume[] = [];
  let total = 0;
  for (const [n, v] of vols.entries()) {
    const origin = origins[v.source] ?? v.source;
    let st;
    try { st = await lstat(v.source); } catch (e) { refuse(v.destination, `its host source cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`); }
    const base: CopyVolume = { n, kind: 'ro-file', source: v.source, destination: v.destination, readonly: v.readonly };
    if (st.isDirectory() && origin.split('/').includes('kubernetes.io~empty-dir')) {
      const size = await emptyDirSize(v.source, origin);
      out.push({ ...base, kind: 'empty-dir', emptyKey: createHash('sha256').update(origin).digest('hex').slice(0, 32), ...(size ? { sizeBytes: size } : {}) });
      continue;
    }
    if (st.isDirectory() && !v.readonly) refuse(v.destination, 'a read-write host directory cannot be copied (what the container writes would never reach the host)');
    if (!st.isDirectory() && !st.isFile()) refuse(v.destination, 'its host source is neither a regular file nor a directory');
    const c: CopyVolume = st.isDirectory() ? { ...base, kind: 'ro-dir' } : v.readonly ? base : { ...base, kind: 'rw-file', ...(terminationLog(v.destination, origin) ? { writeBack: true } : {}) };
    total += treeBytes(await readCopy(c, { data: false }));
    if (total > MAX_COPY_CONTAINER_BYTES) refuse(v.destination, `the container's copied volumes exceed ${MAX_COPY_CONTAINER_BYTES >> 20} MiB together`);
    out.push(c);
  }
  return out;
}

export function treeBytes(t: CopyTree): number {
  let n = 0;
  for (const e of t.values()) n += e.data?.length ?? e.size ?? 0;
  return n;
}

/** Reads one regular file without following a symlink, checked against what the walk saw and bounded. */
async function readFileAt(path: string, seen: { dev: number; ino: number }, realRoot: string, dest: string): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY).catch((e: NodeJS.ErrnoException) => refuse(dest, `a file of its host source cannot be opened (${e.code ?? 'error'})`));
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.dev !== seen.dev || st.ino !== seen.ino) refuse(dest, 'its host source changed while it was read (try again)');
    const real = await readlink(`/proc/self/fd/${fh.fd}`);
    if (real !== realRoot && !real.startsWith(`${realRoot}/`)) refuse(dest, 'a file of its host source lies outside it (a directory was replaced by a symlink)');
    if (st.size > MAX_COPY_FILE_BYTES) refuse(dest, `a file of its host source is over ${MAX_COPY_FILE_BYTES >> 20} MiB`);
    const buf = Buffer.alloc(Math.min(st.size + 1, MAX_COPY_FILE_BYTES + 1));
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got > MAX_COPY_FILE_BYTES) refuse(dest, `a file of its host source is over ${MAX_COPY_FILE_BYTES >> 20} MiB`);
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/**
 * Where a symlink of the tree leads, resolved as the kernel would inside the copy (every link on
 * the way followed, at most 40): undefined when it leaves the tree (an absolute target, a `..` above
 * the root) — a dangling link inside the tree is allowed.
 */
export function resolvesInside(tree: CopyTree, rel: string): boolean {
  let hops = 0;
  const walk = (start: string[], path: string): string[] | undefined => {
    if (path.startsWith('/')) return undefined;
    const cur = [...start];
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    for (const p of parts) {
      if (p === '..') { if (!cur.length) return undefined; cur.pop(); continue; }
      const here = [...cur, p].join('/');
      const e = tree.get(here);
      if (e?.type === 'l') {
        if (++hops > 40) return undefined;
        const r = walk(cur, e.target ?? '');
        if (!r) return undefined;
        cur.splice(0, cur.length, ...r);
        continue;
      }
      cur.push(p);
    }
    return cur;
  };
  const e = tree.get(rel);
  if (e?.type !== 'l') return true;
  hops = 1;
  return walk(rel.split('/').slice(0, -1), e.target ?? '') !== undefined;
}

/**
 * The volume's content as the guest gets it: a file as the entry "f"; a directory tree walked with
 * lstat (bounded: MAX_COPY_MOUNT_ENTRIES, MAX_COPY_MOUNT_BYTES; only files, directories and symlinks
 * that stay inside it). FailedPrecondition naming the destination otherwise. `data: false`: the
 * files are not opened, their sizes (lstat's) stand for their data in the bounds.
 */
export async function readCopy(v: CopyVolume, opts: { data?: boolean } = {}): Promise<CopyTree> {
  const withData = opts.data !== false;
  const fileOf = async (path: string, e: import('node:fs').Stats, realRoot: string): Promise<CopyEntry> => {
    if (withData) return { type: 'f', mode: e.mode & 0o7777, data: await readFileAt(path, e, realRoot, v.destination) };
    if (e.size > MAX_COPY_FILE_BYTES) refuse(v.destination, `a file of its host source is over ${MAX_COPY_FILE_BYTES >> 20} MiB`);
    return { type: 'f', mode: e.mode & 0o7777, size: e.size };
  };
  const tree: CopyTree = new Map();
  if (v.kind === 'empty-dir') return tree;
  let realRoot: string;
  try { realRoot = realpathSync(v.source); } catch (e) { refuse(v.destination, `its host source cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`); }
  const st = await lstat(v.source).catch((e: NodeJS.ErrnoException) => refuse(v.destination, `its host source cannot be read (${e.code ?? 'error'})`));
  if (v.kind !== 'ro-dir') {
    if (!st.isFile()) refuse(v.destination, 'its host source is no longer a regular file');
    tree.set('f', await fileOf(v.source, st, realRoot));
    return tree;
  }
  if (!st.isDirectory()) refuse(v.destination, 'its host source is no longer a directory');
  let bytes = 0;
  const visit = async (rel: string): Promise<void> => {
    const names = await readdir(rel ? join(v.source, rel) : v.source).catch((e: NodeJS.ErrnoException) => refuse(v.destination, `a directory of its host source cannot be read (${e.code ?? 'error'})`));
    for (const name of names.sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (tree.size >= MAX_COPY_MOUNT_ENTRIES) refuse(v.destination, `its host source has over ${MAX_COPY_MOUNT_ENTRIES} entries`);
      if (r.length > 4000) refuse(v.destination, 'its host source has a path over 4000 bytes');
      const path = join(v.source, r);
      const e = await lstat(path).catch((x: NodeJS.ErrnoException) => refuse(v.destination, `an entry of its host source cannot be read (${x.code ?? 'error'})`));
      if (e.isDirectory()) {
        if (e.dev !== st.dev) refuse(v.destination, 'its host source has another filesystem mounted inside it');
        tree.set(r, { type: 'd', mode: e.mode & 0o7777 });
        await visit(r);
      } else if (e.isFile()) {
        const f = await fileOf(path, e, realRoot);
        bytes += f.data?.length ?? f.size ?? 0;
        if (bytes > MAX_COPY_MOUNT_BYTES) refuse(v.destination, `its host source is over ${MAX_COPY_MOUNT_BYTES >> 20} MiB`);
        tree.set(r, f);
      } else if (e.isSymbolicLink()) {
        const target = await readlink(path).catch((x: NodeJS.ErrnoException) => refuse(v.destination, `a symlink of its host source cannot be read (${x.code ?? 'error'})`));
        if (!target || target.length > 4000 || target.includes('\0')) refuse(v.destination, 'a symlink of its host source has an unusable target');
        tree.set(r, { type: 'l', mode: 0o777, target });
      } else {
        refuse(v.destination, 'its host source holds a special file (device, FIFO or socket)');
      }
    }
  };
  await visit('');
  for (const [rel, e] of tree) {
    if (e.type === 'l' && !resolvesInside(tree, rel)) refuse(v.destination, `the symlink ${JSON.stringify(rel.slice(0, 200))} in its host source points outside it`);
  }
  return tree;
}

/**
 * A cheap fingerprint of a copied directory's source (names, types, sizes, modes, mtimes, inodes,
 * link targets; no content read): the refresh reads the tree again only when it changes.
 */
export async function treeStamp(source: string): Promise<string> {
  const h = createHash('sha256');
  let n = 0;
  const visit = async (rel: string): Promise<void> => {
    const names = (await readdir(rel ? join(source, rel) : source).catch(() => [] as string[])).sort();
    for (const name of names) {
      if (++n > MAX_COPY_MOUNT_ENTRIES + 1) return;
      const r = rel ? `${rel}/${name}` : name;
      const e = await lstat(join(source, r)).catch(() => undefined);
      if (!e) { h.update(`${r}\0gone\n`); continue; }
      h.update(`${r}\0${e.mode}\0${e.size}\0${e.mtimeMs}\0${e.ino}\0${e.isSymbolicLink() ? await readlink(join(source, r)).catch(() => '') : ''}\n`);
      if (e.isDirectory()) await visit(r);
    }
  };
  await visit('');
  return h.digest('hex');
}

/** One step for the agent (`Y`): header kv and data. */
export interface CopyOp { header: [string, string][]; data?: Buffer }

/** The `Y` payload: u32 BE header length | "key=value\0"… | data. */
export function encodeCopyOp(op: CopyOp): Buffer {
  const h = Buffer.from(op.header.map(([k, v]) => {
    if (v.includes('\0') || k.includes('=')) throw new InvalidArgumentError(`copy request field ${k} holds a NUL byte`);
    return `${k}=${v}\0`;
  }).join(''), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length);
  return Buffer.concat([len, h, op.data ?? Buffer.alloc(0)]);
}

function putOps(dir: string, rel: string, e: CopyEntry): CopyOp[] {
  const base: [string, string][] = [['op', 'put'], ['dir', dir], ['path', rel], ['type', e.type], ['mode', e.mode.toString(8)]];
  if (e.type === 'd') return [{ header: base }];
  if (e.type === 'l') return [{ header: [...base, ['target', e.target ?? '']] }];
  const data = e.data ?? Buffer.alloc(0);
  const ops: CopyOp[] = [];
  for (let off = 0; off === 0 || off < data.length; off += COPY_CHUNK_BYTES) {
    const end = off + COPY_CHUNK_BYTES >= data.length;
    ops.push({ header: [...base, ['off', String(off)], ...(end ? [['end', '1'] as [string, string]] : [])], data: data.subarray(off, off + COPY_CHUNK_BYTES) });
  }
  return ops;
}

const sha = (b: Buffer | undefined): string | undefined => (b ? createHash('sha256').update(b).digest('hex') : undefined);
const same = (a: CopyEntry, b: CopyEntry): boolean => a.type === b.type && a.mode === b.mode && a.target === b.target
  && (a.data && b.data ? a.data.equals(b.data) : (a.digest ?? sha(a.data)) === (b.digest ?? sha(b.data)));

/**
 * What the supervisor keeps of a tree it sent, to diff the next read against: the files' digests,
 * not their data (a pod's copies would otherwise sit in the node-wide supervisor's heap, up to
 * MAX_COPY_CONTAINER_BYTES per container).
 */
export function kept(t: CopyTree): CopyTree {
  return new Map([...t].map(([rel, e]) => [rel, e.type === 'f' ? { type: e.type, mode: e.mode, digest: e.digest ?? sha(e.data)! } : e]));
}

/**
 * The agent's steps from `old` (undefined: nothing in the guest yet) to `next` for volume `dir`
 * (GID/N), in the order that keeps every reader's view whole: removals of entries whose type
 * changed, new directories (parents first), new or changed files, new or changed symlinks (each
 * renamed over: kubelet's `..data` swap lands here, after what it points to), then the removals of
 * what is gone (deepest first).
 */
export function diffOps(dir: string, old: CopyTree | undefined, next: CopyTree): CopyOp[] {
  const ops: CopyOp[] = [];
  const del = (rel: string): CopyOp => ({ header: [['op', 'del'], ['dir', dir], ['path', rel]] });
  const prev = old ?? new Map<string, CopyEntry>();
  const sorted = [...next.keys()].sort((a, b) => a.split('/').length - b.split('/').length || (a < b ? -1 : 1));
  for (const rel of sorted) { const o = prev.get(rel); if (o && o.type !== next.get(rel)!.type) ops.push(del(rel)); }
  for (const type of ['d', 'f', 'l'] as const) {
    for (const rel of sorted) {
      const e = next.get(rel)!;
      const o = prev.get(rel);
      if (e.type !== type || (o && same(o, e))) continue;
      ops.push(...putOps(dir, rel, e));
    }
  }
  const gone = [...prev.keys()].filter((rel) => !next.has(rel)).sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? 1 : -1));
  for (const rel of gone) ops.push(del(rel));
  return ops;
}

/** The create's `cvol` entry binding volume `v` of session `gid`: REL SEP DEST SEP ro|rw SEP d|f SEP private. */
export function copyBindKv(gid: number, v: CopyVolume): [string, string] {
  const rel = v.kind === 'empty-dir' ? `ed/${v.emptyKey}` : v.kind === 'ro-dir' ? `${gid}/${v.n}` : `${gid}/${v.n}/f`;
  const dir = v.kind === 'empty-dir' || v.kind === 'ro-dir';
  return ['cvol', [rel, v.destination, v.readonly ? 'ro' : 'rw', dir ? 'd' : 'f', 'private'].join('\x1f')];
}

/** The tmpfs size for a container's copies: twice what they hold (a refresh writes the new beside the old) plus room for its writable files. */
export function copyTmpfsBytes(trees: readonly CopyTree[], rwFiles: number): number {
  return 2 * trees.reduce((n, t) => n + treeBytes(t), 0) + rwFiles * MAX_COPY_FILE_BYTES + (256 << 10);
}

/** Checks a create request's `copies` (written by create; the supervisor's clients are root, still bounded). */
export function parseCopies(raw: unknown): CopyVolume[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.length > 256) throw new InvalidArgumentError('create: copies must be a list of at most 256 volumes');
  return raw.map((x: unknown, i): CopyVolume => {
    const c = x as Partial<CopyVolume>;
    const kinds: CopyKind[] = ['ro-file', 'ro-dir', 'rw-file', 'empty-dir'];
    if (!c || typeof c !== 'object' || c.n !== i || !kinds.includes(c.kind as CopyKind) || typeof c.source !== 'string' || !c.source.startsWith('/')
      || typeof c.destination !== 'string' || !c.destination.startsWith('/') || c.destination.includes('\x1f') || c.destination.includes('\0') || typeof c.readonly !== 'boolean'
      || (c.kind === 'empty-dir' && !/^[0-9a-f]{32}$/.test(c.emptyKey ?? ''))
      || (c.sizeBytes !== undefined && (c.kind !== 'empty-dir' || !Number.isSafeInteger(c.sizeBytes) || c.sizeBytes < 4096 || c.sizeBytes > MAX_EMPTY_DIR_BYTES))) throw new InvalidArgumentError(`create: copied volume ${i} is malformed`);
    return {
      n: i, kind: c.kind!, source: c.source, destination: c.destination, readonly: c.readonly, ...(c.writeBack === true ? { writeBack: true } : {}),
      ...(c.kind === 'empty-dir' ? { emptyKey: c.emptyKey!, ...(c.sizeBytes !== undefined ? { sizeBytes: c.sizeBytes } : {}) } : {}),
    };
  });
}

/** Hands one `Y` payload for session `gid` to the guest (vmd.ts: in order, after what the channel holds drains). */
export type SendCopy = (gid: number, payload: Buffer, op: 'copy' | 'refresh') => Promise<void>;

interface Held { copies: CopyVolume[]; trees: Map<number, CopyTree>; stamps: Map<number, string> }

/**
 * A pod VM's copied volumes, kept by its supervisor (vmd.ts): the first copy of a container's
 * volumes before its create, their refresh (every REFRESH_MS, one pass at a time, only directories
 * whose metadata changed are read again), the termination log's way back. `send` hands one `Y`
 * payload for a container's session to the guest (in order, waiting while the channel is full).
 */
export class PodCopies {
  readonly #held = new Map<number, Held>();
  readonly #send: SendCopy;
  readonly #warn: (msg: string, fields: Record<string, unknown>) => void;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  readonly #failing = new Set<string>();

  constructor(send: SendCopy, warn: (msg: string, fields: Record<string, unknown>) => void) {
    this.#send = send;
    this.#warn = warn;
  }

  /**
   * Reads session `gid`'s volumes once, checks them and sends what was read (FailedPrecondition
   * naming a destination when one cannot be copied); the create's `cvol` entries. `agentProtocol`:
   * the guest agent's (a sized emptyDir needs SIZED_EMPTY_DIR_PROTOCOL).
   */
  async add(gid: number, copies: readonly CopyVolume[], agentProtocol: number): Promise<[string, string][]> {
    const h: Held = { copies: [...copies], trees: new Map(), stamps: new Map() };
    const sized = copies.filter((v) => v.kind === 'empty-dir' && v.sizeBytes !== undefined);
    if (sized.length > 0 && agentProtocol < SIZED_EMPTY_DIR_PROTOCOL) {
      throw new FailedPreconditionError(`mount ${sized[0]!.destination}: its emptyDir is a ${Math.round(sized[0]!.sizeBytes! / 1048576)} MiB tmpfs on the host (medium Memory, sizeLimit) and this pod VM's guest agent (protocol ${agentProtocol}) cannot size its copy; update the guest assets (bin/bulkhead-vm setup, or scripts/setup.sh) or run the pod without volumes=copy`);
    }
    for (const v of copies) {
      if (v.kind === 'empty-dir') continue;
      if (v.kind === 'ro-dir') h.stamps.set(v.n, await treeStamp(v.source));
      h.trees.set(v.n, await readCopy(v));
    }
    const trees = [...h.trees.values()];
    if (trees.reduce((n, t) => n + treeBytes(t), 0) > MAX_COPY_CONTAINER_BYTES) refuse(copies[0]!.destination, `the container's copied volumes exceed ${MAX_COPY_CONTAINER_BYTES >> 20} MiB together`);
    // a sized emptyDir: its own guest tmpfs (made once for the pod; a later container's is a no-op)
    for (const key of new Set(sized.map((v) => v.emptyKey!))) {
      const v = sized.find((x) => x.emptyKey === key)!;
      await this.#send(gid, encodeCopyOp({ header: [['op', 'ed'], ['dir', key], ['size', String(v.sizeBytes)]] }), 'copy');
    }
    if (trees.length) {
      const size = copyTmpfsBytes(trees, copies.filter((v) => v.kind === 'rw-file').length);
      await this.#send(gid, encodeCopyOp({ header: [['op', 'init'], ['dir', String(gid)], ['size', String(size)]] }), 'copy');
      for (const [n, t] of h.trees) for (const op of diffOps(`${gid}/${n}`, undefined, t)) await this.#send(gid, encodeCopyOp(op), 'copy');
    }
    // only a copied directory is refreshed: what it was, as digests
    for (const v of copies) {
      const t = h.trees.get(v.n);
      if (t && v.kind === 'ro-dir') h.trees.set(v.n, kept(t)); else h.trees.delete(v.n);
    }
    this.#held.set(gid, h);
    if (copies.some((v) => v.kind === 'ro-dir')) this.#timer ??= setInterval(() => void this.refresh(), REFRESH_MS).unref();
    return copies.map((v) => copyBindKv(gid, v));
  }

  /** The container is gone: nothing more is refreshed or written back for it. */
  forget(gid: number): void {
    this.#held.delete(gid);
    if (![...this.#held.values()].some((h) => h.copies.some((v) => v.kind === 'ro-dir'))) { clearInterval(this.#timer); this.#timer = undefined; }
  }

  /** The `Y get` payloads for session `gid`'s termination log(s), each with the volume it is for. */
  writeBacks(gid: number): { v: CopyVolume; payload: Buffer }[] {
    return (this.#held.get(gid)?.copies ?? []).filter((v) => v.writeBack).map((v) => ({ v, payload: encodeCopyOp({ header: [['op', 'get'], ['dir', `${gid}/${v.n}`], ['path', 'f']] }) }));
  }

  /** Writes what the guest's file holds (its last TERMINATION_LOG_BYTES) to the host file, without following a symlink. */
  async writeBack(v: CopyVolume, content: Buffer): Promise<void> {
    const fh = await open(v.source, constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
    try {
      if (!(await fh.stat()).isFile()) throw new FailedPreconditionError(`mount ${v.destination}: the host file is no longer a regular file`);
      await fh.truncate(0);
      await fh.write(content.subarray(Math.max(0, content.length - TERMINATION_LOG_BYTES)), 0, undefined, 0);
    } finally {
      await fh.close();
    }
  }

  /** One refresh pass: every copied directory whose source's metadata changed is read again and its difference sent. */
  async refresh(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      for (const [gid, h] of [...this.#held]) {
        for (const v of h.copies) {
          if (v.kind !== 'ro-dir' || this.#held.get(gid) !== h) continue;
          const key = `${gid}/${v.n}`;
          try {
            const stamp = await treeStamp(v.source);
            if (stamp === h.stamps.get(v.n)) continue;
            const next = await readCopy(v);
            if (this.#held.get(gid) !== h) break;
            for (const op of diffOps(key, h.trees.get(v.n), next)) await this.#send(gid, encodeCopyOp(op), 'refresh');
            h.trees.set(v.n, kept(next));
            h.stamps.set(v.n, stamp);
            this.#failing.delete(key);
          } catch (e) {
            // the guest keeps the last good copy; said once until it succeeds again
            if (!this.#failing.has(key)) this.#warn('a copied volume was not refreshed (the guest keeps its last copy)', { destination: v.destination, reason: (e as Error).message });
            this.#failing.add(key);
          }
        }
      }
    } finally {
      this.#busy = false;
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#held.clear();
  }
}
