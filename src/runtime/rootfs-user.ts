/**
 * Reads files of an untrusted root filesystem safely and resolves users and groups from its
 * /etc/passwd and /etc/group. Symlinks are resolved as if the rootfs were "/" (an absolute link
 * or ".." never leaves it), the number of links followed is bounded, the final open uses
 * O_NOFOLLOW, only regular files are read, and sizes are capped.
 */
import { constants } from 'node:fs';
import { lstat, open, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';

const MAX_LINKS = 40;
const MAX_FILE = 4 * 1024 * 1024;

/**
 * Host path of `path` inside `root`, resolving every symlink within the root. Missing trailing
 * components are allowed (the result may not exist).
 */
export async function resolveInRoot(root: string, path: string): Promise<string> {
  let pending = path.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') { done.pop(); continue; }
    const host = join(root, ...done, part);
    let st;
    try {
      st = await lstat(host);
    } catch {
      // after a missing component nothing can be a link; keep the rest lexically inside the root
      return join(root, posix.normalize('/' + [...done, part, ...pending].join('/')));
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new InvalidArgumentError(`too many symbolic links resolving ${path} in the root filesystem`);
      const target = await readlink(host);
      const parts = target.split('/').filter((p) => p !== '' && p !== '.');
      if (target.startsWith('/')) done.length = 0;
      pending = [...parts, ...pending];
      continue;
    }
    done.push(part);
  }
  return join(root, ...done);
}

/** Reads a regular file inside the rootfs; NotFoundError when absent; capped at `max` bytes. */
export async function readFileInRoot(root: string, path: string, max = MAX_FILE): Promise<string> {
  const host = await resolveInRoot(root, path);
  let fh;
  try {
    fh = await open(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${path} not found in the root filesystem`);
    throw new InvalidArgumentError(`cannot open ${path} in the root filesystem: ${(err as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InvalidArgumentError(`${path} in the root filesystem is not a regular file`);
    if (st.size > max) throw new InvalidArgumentError(`${path} in the root filesystem is larger than ${max} bytes`);
    const buf = Buffer.alloc(Math.min(st.size, max));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

export interface PasswdEntry { name: string; uid: number; gid: number; home: string }
export interface GroupEntry { name: string; gid: number; members: string[] }

const ID_MAX = 0xfffffffe;
function parseId(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= ID_MAX ? n : undefined;
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const f = line.split(':');
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (f[0] === undefined || f[0] === '' || uid === undefined || gid === undefined) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '/' });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const f = line.split(':');
    const gid = parseId(f[2]);
    if (f[0] === undefined || f[0] === '' || gid === undefined) continue;
    out.push({ name: f[0], gid, members: (f[3] ?? '').split(',').map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}

async function readOptional(root: string, path: string): Promise<string> {
  try {
    return await readFileInRoot(root, path);
  } catch (err) {
    if (err instanceof NotFoundError) return '';
    throw err;
  }
}

export interface ResolvedUser { uid: number; gid: number; additionalGids: number[]; home: string }

/**
 * Resolves a user spec ("name", "uid", "name:group", "uid:gid", "" = root) against the rootfs.
 * A numeric uid need not exist in /etc/passwd (gid then defaults to 0); a name must. The
 * additional groups are those of /etc/group naming the user, plus `supplementalGroups`.
 */
export async function resolveUser(root: string, spec: string, supplementalGroups: readonly number[] = []): Promise<ResolvedUser> {
  const [userPart = '', groupPart] = spec.split(':', 2);
  const passwd = parsePasswd(await readOptional(root, '/etc/passwd'));
  let uid: number;
  let gid = 0;
  let name: string | undefined;
  let home = '/';
  const numericUid = parseId(userPart);
  if (userPart === '') {
    uid = 0;
  } else if (numericUid !== undefined) {
    uid = numericUid;
  } else {
    const e = passwd.find((p) => p.name === userPart);
    if (!e) throw new NotFoundError(`user ${JSON.stringify(userPart)} not found in the image's /etc/passwd`);
    uid = e.uid;
  }
  const pw = passwd.find((p) => p.uid === uid && (numericUid !== undefined || p.name === userPart || userPart === ''));
  if (pw) { gid = pw.gid; name = pw.name; home = pw.home; }
  const groups = parseGroup(await readOptional(root, '/etc/group'));
  if (groupPart !== undefined && groupPart !== '') {
    const g = parseId(groupPart);
    if (g !== undefined) gid = g;
    else {
      const e = groups.find((x) => x.name === groupPart);
      if (!e) throw new NotFoundError(`group ${JSON.stringify(groupPart)} not found in the image's /etc/group`);
      gid = e.gid;
    }
  }
  const extra = new Set<number>();
  if (name !== undefined) for (const g of groups) if (g.members.includes(name) && g.gid !== gid) extra.add(g.gid);
  for (const g of supplementalGroups) if (g !== gid) extra.add(g);
  return { uid, gid, additionalGids: [...extra], home };
}
