// Over 500 lines on purpose: the layer-apply state machine and every path check it makes read top to bottom in one file, for review.
/**
 * Safe layer apply: reads one layer blob (gzip, zstd or plain tar) and writes it into a fresh
 * snapshot directory in overlayfs conventions (whiteouts as 0:0 character devices, opaque
 * directories as trusted.overlay.opaque=y), checking every entry against the directory and the
 * merged lower layers so nothing is ever written outside it. Verifies the diffID.
 *
 * The caller gives an empty directory and removes it when this throws (no partial state).
 */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readlinkSync, type Stats } from 'node:fs';
import { lstat, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import tarStream from 'tar-stream';
import { AbortedError, BulkheadError, InvalidArgumentError, ResourceExhaustedError } from '../../errors.ts';
import { run } from '../../util/exec.ts';
import type { Logger } from '../../util/log.ts';
import type { PullProfiler } from '../profile.ts';
import type { OpMeta } from './fs-ops.ts';
import { FsWorkers, type FsQueue } from './fs-queue.ts';
import { TarEnd } from './tar-end.ts';

export interface UnpackLimits {
  /** Entries in one layer. */
  maxEntries: number;
  /** Uncompressed bytes of one layer (the whole tar stream). */
  maxBytes: number;
  /** Path components of one entry. */
  maxDepth: number;
  /** Bytes of one entry's path or link target. */
  maxPathLength: number;
  /** Layers in one image (checked by the caller). */
  maxLayers: number;
}

export const DEFAULT_LIMITS: UnpackLimits = {
  maxEntries: 1_000_000,
  maxBytes: 64 * 1024 * 1024 * 1024,
  maxDepth: 256,
  maxPathLength: 4096,
  maxLayers: 128,
};

/** Sidecar in each snapshot (next to fs/) listing its opaque directories, so lookups need no getxattr. */
export const OPAQUE_FILE = 'opaque.json';

export interface ApplyOptions {
  /** Directory to fill (empty, exists). */
  dir: string;
  /** Lower layers' fs dirs, topmost first. */
  lowers: string[];
  expectedDiffId: string;
  /** For messages: the layer's digest. */
  name: string;
  limits?: Partial<UnpackLimits>;
  signal?: AbortSignal;
  logger?: Logger;
  onBytes?: (compressedRead: number) => void;
  /** What bounds maxBytes, for the message when a layer outgrows it (e.g. "setting [images] max_layer_bytes"). */
  maxBytesReason?: string;
  /** Timing hooks (verify, decompress, unpack). */
  profiler?: PullProfiler;
  /** Worker threads that perform the writes; without it, one is started (and ended) for this layer. */
  workers?: FsWorkers;
}

export interface ApplyResult {
  diffId: string;
  entries: number;
  /** Uncompressed bytes. */
  bytes: number;
  opaque: string[];
}

/** xattrs an image may set; everything else (trusted.*, security.selinux, ACLs) is dropped. */
function xattrAllowed(name: string): boolean {
  return name.startsWith('user.') || name === 'security.capability';
}

const SMALL_FILE = 1024 * 1024;

/** Does a relative symlink target climb above the root from a directory `depth` levels down? */
function symlinkEscapes(depth: number, target: string): boolean {
  if (target.startsWith('/')) return false; // absolute: resolved against the container's root at run time
  let d = depth;
  for (const c of target.split('/')) {
    if (c === '..') { if (--d < 0) return true; } else if (c !== '' && c !== '.') d++;
  }
  return false;
}

type TarHeader = Omit<tarStream.Header, 'pax'> & { pax?: Record<string, string> | null };

type Kind = 'dir' | 'file' | 'symlink' | 'other';

class LayerWriter {
  private readonly o: ApplyOptions;
  private readonly limits: UnpackLimits;
  /** What this layer has created, by relative path ('' is the root). */
  private readonly made = new Map<string, Kind>([['', 'dir']]);
  /** Tracked children of each tracked directory, so a replaced directory forgets its subtree. */
  private readonly children = new Map<string, Set<string>>();
  private readonly mergedCache = new Map<string, Promise<{ st: Stats; path: string } | undefined>>();
  private readonly opaqueCache = new Map<string, Set<string>>();
  private readonly dirTimes: { path: string; mtime: number }[] = [];
  private readonly xattrs: { rel: string; name: string; value: Buffer }[] = [];
  readonly opaque = new Set<string>();
  entries = 0;

  private readonly q: FsQueue;

  constructor(o: ApplyOptions, q: FsQueue) {
    this.o = o;
    this.q = q;
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
  }

  private fail(entry: string, why: string): never {
    throw new InvalidArgumentError(`layer ${this.o.name}: entry "${entry.slice(0, 300)}": ${why}`);
  }

  /** Splits an entry name into components inside the root; rejects escapes. */
  clean(name: string, entry: string): string[] {
    if (name.includes('\0')) this.fail(entry, 'path contains a NUL byte');
    if (Buffer.byteLength(name) > this.limits.maxPathLength) this.fail(entry, `path longer than ${this.limits.maxPathLength} bytes`);
    const comps: string[] = [];
    for (const c of name.split('/')) {
      if (c === '' || c === '.') continue;
      if (c === '..') this.fail(entry, 'path escapes the root ("..")');
      comps.push(c);
    }
    if (comps.length > this.limits.maxDepth) this.fail(entry, `path deeper than ${this.limits.maxDepth} components`);
    return comps;
  }

  private async opaqueOf(lower: string): Promise<Set<string>> {
    let s = this.opaqueCache.get(lower);
    if (!s) {
      s = new Set<string>();
      try {
        const list = JSON.parse(await readFile(join(lower, '..', OPAQUE_FILE), 'utf8')) as unknown;
        if (Array.isArray(list)) for (const x of list) if (typeof x === 'string') s.add(x);
      } catch { /* no opaque dirs */ }
      this.opaqueCache.set(lower, s);
    }
    return s;
  }

  /** What the merged lower layers hold at `comps` (undefined: nothing, or whited out). */
  merged(comps: string[]): Promise<{ st: Stats; path: string } | undefined> {
    const key = comps.join('/');
    let p = this.mergedCache.get(key);
    if (!p) {
      p = this.lookupLowers(comps);
      this.mergedCache.set(key, p);
    }
    return p;
  }

  private async lookupLowers(comps: string[]): Promise<{ st: Stats; path: string } | undefined> {
    for (const lower of this.o.lowers) {
      const opaque = await this.opaqueOf(lower);
      let hidden = false;
      for (let i = 0; i < comps.length; i++) {
        const rel = comps.slice(0, i + 1).join('/');
        const path = join(lower, rel);
        const st = await lstat(path).catch(() => undefined);
        if (!st) break;
        if (st.isCharacterDevice() && st.rdev === 0) return undefined;
        if (i === comps.length - 1) return { st, path };
        if (!st.isDirectory()) return undefined;
        if (opaque.has(rel)) hidden = true;
      }
      if (hidden) return undefined;
    }
    return undefined;
  }

  /** Records that this layer created `rel` (of `kind`), replacing nothing (the caller cleared it). */
  private note(rel: string, kind: Kind): void {
    this.made.set(rel, kind);
    const cut = rel.lastIndexOf('/');
    const parent = cut < 0 ? '' : rel.slice(0, cut);
    let c = this.children.get(parent);
    if (!c) { c = new Set<string>(); this.children.set(parent, c); }
    c.add(rel);
  }

  /** Forgets `rel` and everything under it. */
  private forget(rel: string): void {
    const kind = this.made.get(rel);
    if (kind === undefined) return;
    this.made.delete(rel);
    const cut = rel.lastIndexOf('/');
    this.children.get(cut < 0 ? '' : rel.slice(0, cut))?.delete(rel);
    if (kind !== 'dir') return;
    const stack = [rel];
    while (stack.length > 0) {
      const d = stack.pop()!;
      const c = this.children.get(d);
      if (!c) continue;
      this.children.delete(d);
      for (const x of c) { if (this.made.get(x) === 'dir') stack.push(x); this.made.delete(x); }
    }
  }

  /**
   * Makes every parent of `comps` a real directory in this layer; rejects symlinked parents.
   * What this layer holds is tracked in `made` (the directory starts empty and only this writer
   * fills it), so no lstat is needed; every create below is exclusive (EEXIST, never a write
   * through something already there), so a tracking slip fails the layer instead of escaping.
   */
  async parents(comps: string[], entry: string): Promise<void> {
    if (comps.length <= 1 || this.made.get(comps.slice(0, -1).join('/')) === 'dir') return; // ancestors of a tracked dir are tracked dirs
    for (let i = 0; i < comps.length - 1; i++) {
      const rel = comps.slice(0, i + 1).join('/');
      const kind = this.made.get(rel);
      if (kind === 'dir') continue;
      if (kind === 'symlink') this.fail(entry, `parent directory "${rel}" is a symlink in this layer`);
      if (kind !== undefined) this.fail(entry, `parent "${rel}" is not a directory`);
      const low = await this.merged(comps.slice(0, i + 1));
      if (low?.st.isSymbolicLink()) this.fail(entry, `parent directory "${rel}" is a symlink in a lower layer`);
      const path = join(this.o.dir, rel);
      if (low?.st.isDirectory()) {
        // Same attributes as below: an upper directory's own mode and owner win in overlayfs.
        this.q.push({ k: 'mkdir', path, mode: 0o755, meta: { uid: low.st.uid, gid: low.st.gid, mode: low.st.mode, mtime: 0 } });
        this.dirTimes.push({ path, mtime: low.st.mtimeMs });
      } else {
        this.q.push({ k: 'mkdir', path, mode: 0o755 });
      }
      this.note(rel, 'dir');
    }
  }

  private clear(path: string, rel: string): void {
    this.q.push({ k: 'rm', path });
    this.forget(rel);
  }

  async entry(header: TarHeader, body: AsyncIterable<Buffer>, bytesLeft: () => number): Promise<void> {
    const name = header.name;
    if (++this.entries > this.limits.maxEntries) this.fail(name, `more than ${this.limits.maxEntries} entries in one layer`);
    const comps = this.clean(name, name);
    const type = header.type ?? 'file';
    const uid = header.uid ?? 0;
    const gid = header.gid ?? 0;
    if (uid < 0 || gid < 0 || uid > 0xfffffffe || gid > 0xfffffffe) this.fail(name, 'owner out of range');
    const m: OpMeta = { uid, gid, mode: header.mode ?? 0o644, mtime: header.mtime?.getTime() ?? 0 };
    if (comps.length === 0) {
      if (type !== 'directory') this.fail(name, 'replaces the root directory with a non-directory');
      this.q.push({ k: 'meta', path: this.o.dir, meta: m, link: false });
      this.dirTimes.push({ path: this.o.dir, mtime: m.mtime });
      return;
    }
    await this.parents(comps, name);
    const rel = comps.join('/');
    const base = comps[comps.length - 1]!;
    const parentRel = comps.slice(0, -1).join('/');
    const path = join(this.o.dir, rel);

    if (base.startsWith('.wh.')) {
      if (base === '.wh..wh..opq') {
        if (comps.length === 1) this.fail(name, 'opaque marker for the root directory');
        this.opaque.add(parentRel);
        return;
      }
      if (base.startsWith('.wh..wh.')) this.fail(name, 'unknown whiteout metadata entry');
      const victim = base.slice(4);
      if (victim === '' ) this.fail(name, 'bare whiteout ".wh." names nothing');
      if (victim === '.' || victim === '..') this.fail(name, 'whiteout of "." or ".."');
      const vrel = parentRel === '' ? victim : `${parentRel}/${victim}`;
      const vpath = join(this.o.dir, vrel);
      this.clear(vpath, vrel);
      await this.q.drain();
      const r = await run('mknod', ['-m', '0000', vpath, 'c', '0', '0'], { timeoutMs: 10_000, ...(this.o.signal ? { signal: this.o.signal } : {}) });
      if (r.code !== 0) throw new InvalidArgumentError(`layer ${this.o.name}: cannot create whiteout for "${vrel}": ${r.stderr.trim()}`);
      this.note(vrel, 'other');
      return;
    }
    if (comps.length === 1 && (base === 'proc' || base === 'dev') && type !== 'directory') this.fail(name, `replaces /${base} with a ${type}`);

    const existing = this.made.get(rel);
    switch (type) {
      case 'directory': {
        if (existing !== undefined && existing !== 'dir') this.clear(path, rel);
        if (existing !== 'dir') { this.q.push({ k: 'mkdir', path, mode: 0o700, meta: m }); this.note(rel, 'dir'); }
        else this.q.push({ k: 'meta', path, meta: m, link: false });
        this.dirTimes.push({ path, mtime: m.mtime });
        break;
      }
      case 'file':
      case 'contiguous-file': {
        if (existing !== undefined) this.clear(path, rel);
        const size = header.size ?? 0;
        if (size > bytesLeft()) throw tooLarge(this.o.name, this.limits.maxBytes, this.o.maxBytesReason);
        if (size <= SMALL_FILE) {
          // Small files: gathered into one owned buffer, created by one operation on the worker.
          const data = new Uint8Array(size);
          let got = 0;
          for await (const c of body) {
            if (got + c.length > size) this.fail(name, 'file longer than its header says');
            data.set(c, got);
            got += c.length;
          }
          if (got !== size) this.fail(name, 'file shorter than its header says');
          this.q.push({ k: 'file', path, data, meta: m }, data);
        } else {
          this.q.push({ k: 'open', path });
          for await (const c of body) {
            const data = new Uint8Array(c);
            this.q.push({ k: 'write', data }, data);
            await this.q.room();
          }
          this.q.push({ k: 'close', meta: m });
        }
        await this.q.room();
        this.note(rel, 'file');
        break;
      }
      case 'symlink': {
        const target = header.linkname ?? '';
        if (target === '' || target.includes('\0')) this.fail(name, 'symlink without a valid target');
        if (Buffer.byteLength(target) > this.limits.maxPathLength) this.fail(name, `symlink target longer than ${this.limits.maxPathLength} bytes`);
        if (existing !== undefined) this.clear(path, rel);
        this.q.push({ k: 'symlink', path, target, meta: m });
        this.note(rel, 'symlink');
        break;
      }
      case 'link': {
        const tcomps = this.clean(header.linkname ?? '', name);
        if (tcomps.length === 0) this.fail(name, 'hard link to the root directory');
        const trel = tcomps.join('/');
        // Every parent of the target must be a real directory of this layer or of the merged lowers.
        for (let i = 0; i < tcomps.length - 1; i++) {
          const prel = tcomps.slice(0, i + 1).join('/');
          const pk = this.made.get(prel);
          const ok = pk !== undefined ? pk === 'dir' : (await this.merged(tcomps.slice(0, i + 1)))?.st.isDirectory() === true;
          if (!ok) this.fail(name, `hard link target "${trel}" has a parent that is not a real directory (symlink or missing)`);
        }
        const tpath = join(this.o.dir, trel);
        const tkind = this.made.get(trel);
        // Reading what this layer wrote: wait until the worker has written it.
        if (tkind !== undefined || existing !== undefined) await this.q.drain();
        let tst = tkind !== undefined ? lstatSync(tpath) : undefined;
        let from = tpath;
        let fromLower = false;
        if (!tst) {
          const low = await this.merged(tcomps);
          if (!low) this.fail(name, `hard link target "${trel}" does not exist`);
          tst = low.st;
          from = low.path;
          fromLower = true;
        }
        if (tst.isDirectory()) this.fail(name, 'hard link to a directory');
        if (tst.isCharacterDevice() && tst.rdev === 0) this.fail(name, 'hard link to a whiteout');
        if (tst.isSymbolicLink()) {
          const t = readlinkSync(from);
          if (symlinkEscapes(tcomps.length - 1, t)) this.fail(name, `hard link to a symlink escaping the root ("${t.slice(0, 200)}")`);
        }
        if (existing !== undefined) {
          if (!fromLower) {
            const est = lstatSync(path);
            if (est.ino === tst.ino && est.dev === tst.dev) break;
          }
          this.clear(path, rel);
        }
        if (fromLower) {
          // No hard links across snapshots: copy the lower file up into this layer.
          const lm: OpMeta = { uid: tst.uid, gid: tst.gid, mode: tst.mode, mtime: tst.mtimeMs };
          if (tst.isSymbolicLink()) this.q.push({ k: 'symlink', path, target: readlinkSync(from), meta: lm });
          else if (tst.isFile()) this.q.push({ k: 'copy', from, path, meta: lm });
          else this.fail(name, 'hard link to a special file in a lower layer');
          this.note(rel, tst.isSymbolicLink() ? 'symlink' : 'file');
        } else {
          this.q.push({ k: 'link', from: tpath, path });
          this.note(rel, tkind!);
        }
        break;
      }
      case 'fifo': {
        if (existing !== undefined) this.clear(path, rel);
        await this.q.drain();
        const r = await run('mknod', ['-m', (m.mode & 0o777).toString(8), path, 'p'], { timeoutMs: 10_000 });
        if (r.code !== 0) throw new InvalidArgumentError(`layer ${this.o.name}: cannot create fifo "${rel}": ${r.stderr.trim()}`);
        this.note(rel, 'other');
        this.q.push({ k: 'meta', path, meta: m, link: false });
        break;
      }
      case 'character-device':
      case 'block-device':
        // Device nodes from an image are never created: the runtime provides /dev.
        this.o.logger?.debug('skipping device node in layer', { layer: this.o.name, entry: rel });
        break;
      default:
        this.fail(name, `unsupported entry type ${type}`);
    }
    if (header.pax) {
      for (const [k, v] of Object.entries(header.pax)) {
        if (!k.startsWith('SCHILY.xattr.')) continue;
        const xname = k.slice('SCHILY.xattr.'.length);
        if (!xattrAllowed(xname)) { this.o.logger?.debug('dropping xattr from layer', { layer: this.o.name, entry: rel, xattr: xname }); continue; }
        if (type === 'symlink') continue;
        this.xattrs.push({ rel, name: xname, value: Buffer.from(v, 'latin1') });
      }
    }
  }

  /** Directory times, opaque markers and xattrs, once every entry is written. */
  async finish(): Promise<void> {
    // Directory times last (in reverse, so a parent's time is set after its children are done).
    const rev = this.dirTimes.reverse();
    this.q.push({ k: 'times', paths: rev.map((d) => d.path), mtimes: rev.map((d) => d.mtime) });
    await this.q.drain();
    const lines: string[] = [];
    const esc = (p: string): string => Array.from(Buffer.from(p)).map((b) => (/[A-Za-z0-9._/+,-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : '\\' + b.toString(8).padStart(3, '0'))).join('');
    for (const x of this.xattrs) {
      const kind = this.made.get(x.rel);
      if (kind === undefined || kind === 'symlink') continue;
      lines.push(`# file: ${esc(x.rel)}`, `${x.name}=0x${x.value.toString('hex')}`, '');
    }
    for (const rel of this.opaque) {
      if (this.made.get(rel) !== 'dir') continue;
      lines.push(`# file: ${esc(rel)}`, 'trusted.overlay.opaque=0x79', '');
    }
    if (lines.length > 0) {
      const r = await run('setfattr', ['-h', '--restore=-'], { input: lines.join('\n') + '\n', cwd: this.o.dir, timeoutMs: 120_000, ...(this.o.signal ? { signal: this.o.signal } : {}) });
      if (r.code !== 0) throw new InvalidArgumentError(`layer ${this.o.name}: setting extended attributes failed: ${r.stderr.trim()}`);
    }
  }
}

/** A layer that unpacks to more than the cap (a gzip bomb, or not enough disk): ResourceExhausted naming what sets the cap. */
function tooLarge(name: string, max: number, reason: string | undefined): ResourceExhaustedError {
  return new ResourceExhaustedError(`layer ${name}: larger than ${max} bytes uncompressed, the cap of one layer (${reason ?? 'UnpackLimits.maxBytes'}); raise it only for images you trust`);
}

/** Hashes and counts the uncompressed stream; stops it when it grows past the cap. */
class Hasher extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  /** Time spent hashing. */
  ms = 0;
  private readonly max: number;
  private readonly name: string;
  private readonly reason: string | undefined;
  constructor(max: number, name: string, reason: string | undefined) {
    super({ highWaterMark: 1024 * 1024 });
    this.max = max;
    this.name = name;
    this.reason = reason;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.max + 1024 * 1024) { cb(tooLarge(this.name, this.max, this.reason)); return; }
    const t0 = performance.now();
    this.hash.update(chunk);
    this.ms += performance.now() - t0;
    cb(null, chunk);
  }
}

async function sniff(path: string): Promise<'gzip' | 'zstd' | 'none'> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    if (bytesRead >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (bytesRead >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'none';
  } finally {
    await fh.close();
  }
}

/** Applies the layer blob at `blobPath` into `opts.dir`. Throws InvalidArgumentError naming the bad entry. */
/** Turns a failed write (an errno error from the worker) into the layer's error. */
function writeError(name: string, err: unknown): BulkheadError {
  if (err instanceof BulkheadError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const msg = `layer ${name}: cannot apply the layer: ${(err as Error).message}`;
  return code === 'ENOSPC' || code === 'EDQUOT' ? new ResourceExhaustedError(msg, { cause: err }) : new InvalidArgumentError(msg, { cause: err });
}

/** Applies the layer blob at `blobPath` into `opts.dir`. Throws InvalidArgumentError naming the bad entry. */
export async function applyLayer(blobPath: string, opts: ApplyOptions): Promise<ApplyResult> {
  const own = opts.workers ? undefined : new FsWorkers();
  const workers = opts.workers ?? own!;
  const q = workers.acquire();
  let ok = false;
  try {
    const r = await applyWith(blobPath, opts, q);
    ok = true;
    return r;
  } finally {
    // A worker that failed or was interrupted is ended (awaited): nothing is written after this returns.
    await workers.release(q, ok);
    await own?.close();
  }
}

async function applyWith(blobPath: string, opts: ApplyOptions, q: FsQueue): Promise<ApplyResult> {
  const t0 = performance.now();
  let unpackMs = 0;
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const w = new LayerWriter(opts, q);
  const kind = await sniff(blobPath);
  const source = createReadStream(blobPath, { highWaterMark: 1024 * 1024 });
  let read = 0;
  if (opts.onBytes) source.on('data', (c) => { read += c.length; opts.onBytes!(read); });
  const hasher = new Hasher(limits.maxBytes, opts.name, opts.maxBytesReason);
  const extract = tarStream.extract();
  const decompress = kind === 'gzip' ? createGunzip({ chunkSize: 256 * 1024 }) : kind === 'zstd' ? createZstdDecompress() : new PassThrough();
  // Node streams up to the hasher; tar-stream (streamx) is fed by hand with backpressure.
  const sink = async function (src: AsyncIterable<Buffer>): Promise<void> {
    for await (const chunk of src) {
      if (!extract.write(chunk)) await new Promise<void>((resolve) => { extract.once('drain', () => resolve()); });
    }
    (extract as unknown as { end(): void }).end();
  };
  // TarEnd completes a layer that stops right after its last entry's data (see tar-end.ts).
  const tarEnd = new TarEnd(opts.name);
  const feed = opts.signal ? pipeline(source, decompress, hasher, tarEnd, sink, { signal: opts.signal }) : pipeline(source, decompress, hasher, tarEnd, sink);
  feed.catch((err: unknown) => { extract.destroy(err instanceof Error ? err : new Error(String(err))); });
  let fileBytes = 0;
  try {
    for await (const entry of extract) {
      const h = entry.header as TarHeader;
      if (h.type === 'file' || h.type === 'contiguous-file') fileBytes += h.size ?? 0;
      const e0 = performance.now();
      await w.entry(h, entry as AsyncIterable<Buffer>, () => limits.maxBytes - (fileBytes - (h.size ?? 0)));
      unpackMs += performance.now() - e0;
      for await (const _ of entry as AsyncIterable<Buffer>) { /* drain what the writer did not read */ }
    }
    await feed;
  } catch (err) {
    source.destroy();
    extract.destroy();
    if (opts.signal?.aborted) throw new AbortedError(`unpacking layer ${opts.name} aborted`, { cause: err });
    if (err instanceof BulkheadError) throw err;
    if (q.error === err) throw writeError(opts.name, err);
    throw new InvalidArgumentError(`layer ${opts.name}: cannot read the layer: ${(err as Error).message}`, { cause: err });
  }
  const diffId = 'sha256:' + hasher.hash.digest('hex');
  if (diffId !== opts.expectedDiffId) throw new InvalidArgumentError(`layer ${opts.name}: uncompressed content digest ${diffId} does not match the image config's diff_id ${opts.expectedDiffId}`);
  const f0 = performance.now();
  try {
    await w.finish();
  } catch (err) {
    throw writeError(opts.name, err);
  }
  await writeFile(join(opts.dir, '..', OPAQUE_FILE), JSON.stringify([...w.opaque]));
  const p = opts.profiler;
  if (p) {
    unpackMs += performance.now() - f0;
    p.add('verify', hasher.ms);
    p.add('unpack', unpackMs);
    p.add('decompress', performance.now() - t0 - unpackMs - hasher.ms);
  }
  return { diffId, entries: w.entries, bytes: hasher.bytes, opaque: [...w.opaque] };
}
