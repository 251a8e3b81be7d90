/**
 * The strict profiles of a node, beside the image store: `<root>/profiles/sha256/<hex>.json`, one
 * file per image manifest digest. A profile is written to a temporary file in the same directory,
 * fsynced, renamed over the old one and the directory fsynced: a reader (the daemon creating a
 * container, `bulkhead profile show`) sees the old profile or the new one, never a torn one, also
 * after a crash.
 *
 * Profiles named by an annotation (`io.bulkhead.strict.profile`) are files under the profile root
 * `<root>/profiles` (a cluster that learns elsewhere mounts its ConfigMap there). The annotation's
 * path is checked lexically (absolute, no `..`, under the root: src/util/beneath.ts), then resolved
 * with realpath and must still be under the root's real path — so the symlinks a ConfigMap volume
 * is made of (`key -> ..data/key`) work and a symlink that leads out is refused — and the resolved
 * file is opened O_NOFOLLOW, regular, bounded in size. Only the daemon's administrator writes under
 * the root; the annotation only names a path.
 */
import { constants } from 'node:fs';
import { mkdir, open, readdir, realpath, rename, rm, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../../errors.ts';
import { isUnder, partsBeneath } from '../../util/beneath.ts';
import { parseProfile, type StrictProfile } from './profile.ts';

const DIGEST = /^sha256:([a-f0-9]{64})$/;
const MAX_PROFILE_BYTES = 256 * 1024;
const RULE = 'strict profiles named by annotation are regular files under the strict profile root, symlinks only within it';

export function profileDirOf(root: string): string { return join(root, 'profiles'); }

export class ProfileStore {
  readonly dir: string;
  constructor(dir: string) { this.dir = dir; }

  #path(manifestDigest: string): string {
    const m = DIGEST.exec(manifestDigest);
    if (!m) throw new InvalidArgumentError(`image manifest digest ${JSON.stringify(manifestDigest.slice(0, 100))} is not sha256:<64 hex>`);
    return join(this.dir, 'sha256', `${m[1]}.json`);
  }

  /** The profile of an image, or undefined when none was learned. */
  async get(manifestDigest: string): Promise<StrictProfile | undefined> {
    try {
      return await readProfileFile(this.#path(manifestDigest), `strict profile of ${manifestDigest}`);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** Writes atomically (temp + fsync + rename + directory fsync). */
  async put(profile: StrictProfile): Promise<string> {
    const path = this.#path(profile.manifestDigest);
    const dir = join(this.dir, 'sha256');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(JSON.stringify(profile, null, 1) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    const d = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try { await d.sync(); } finally { await d.close(); }
    return path;
  }

  /** Removes an image's profile; false when there was none. */
  async remove(manifestDigest: string): Promise<boolean> {
    const path = this.#path(manifestDigest);
    try {
      await rm(path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async list(): Promise<StrictProfile[]> {
    let names: string[];
    try { names = await readdir(join(this.dir, 'sha256')); } catch { return []; }
    const out: StrictProfile[] = [];
    for (const n of names.filter((x) => /^[a-f0-9]{64}\.json$/.test(x)).sort()) {
      const p = await this.get(`sha256:${n.slice(0, 64)}`).catch(() => undefined);
      if (p) out.push(p);
    }
    return out;
  }
}

/** Reads and checks a profile file (O_NOFOLLOW, regular file, bounded); NotFoundError when missing. */
async function readProfileFile(path: string, what: string): Promise<StrictProfile> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError(`${what} does not exist`);
    if (code === 'ELOOP') throw new InvalidArgumentError(`${what} is a symlink; symlinks are not followed (${RULE})`);
    throw new InvalidArgumentError(`${what} cannot be opened: ${code ?? 'error'}`);
  }
  let text: string;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InvalidArgumentError(`${what} is not a regular file (${RULE})`);
    if (st.size > MAX_PROFILE_BYTES) throw new InvalidArgumentError(`${what} is larger than ${MAX_PROFILE_BYTES} bytes`);
    const buf = Buffer.alloc(MAX_PROFILE_BYTES + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > MAX_PROFILE_BYTES) throw new InvalidArgumentError(`${what} is larger than ${MAX_PROFILE_BYTES} bytes`);
    }
    text = buf.subarray(0, n).toString('utf8');
  } finally {
    await fh.close();
  }
  let value: unknown;
  // JSON.parse's message quotes the text: never pass it on
  try { value = JSON.parse(text); } catch { throw new InvalidArgumentError(`${what} is not valid JSON`); }
  return parseProfile(value, what);
}

/**
 * A profile named by an annotation: `ref` is an absolute path strictly under `root`, with no
 * symlink in any component below the root.
 */
export async function readProfileBeneath(root: string, ref: string): Promise<StrictProfile> {
  const what = `strict profile ${JSON.stringify(ref.slice(0, 200))}`;
  const parts = partsBeneath(root, ref, what, `${RULE} (${root})`);
  let realRoot: string;
  let real: string;
  try {
    realRoot = await realpath(root);
    real = await realpath(join(root, ...parts));
  } catch {
    throw new InvalidArgumentError(`${what} does not exist (${RULE})`);
  }
  if (!isUnder(real, realRoot) || real === realRoot) throw new InvalidArgumentError(`${what} resolves through a symlink to a place outside ${root} (${RULE})`);
  return await readProfileFile(real, what);
}
