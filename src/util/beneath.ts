/**
 * Paths under a root the daemon trusts (the pod-log root, the seccomp profile root), walked
 * component by component with lstat so a symlink anywhere below the root is refused instead of
 * followed out of it. The root itself is configuration (an administrator's path) and may be a
 * symlink; everything under it comes from requests and may not.
 */
import { lstat, mkdir } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';

/** Whether `path` is `dir` or under it (both normalized, absolute). */
export function isUnder(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(dir + '/');
}

/**
 * The components of `path` below `root`: `path` must be absolute, clean (no `..`, no NUL) and
 * strictly under `root`. `what` and `rule` name the field and the setting in messages.
 */
export function partsBeneath(root: string, path: string, what: string, rule: string): string[] {
  if (typeof path !== 'string' || !isAbsolute(path) || path.includes('\0')) throw new InvalidArgumentError(`${what} must be an absolute path (${rule})`);
  if (path.split('/').includes('..')) throw new InvalidArgumentError(`${what} must not contain ".." (${rule})`);
  const n = normalize(path).replace(/\/+$/, '');
  if (n === root || !isUnder(n, root)) throw new InvalidArgumentError(`${what} must be under ${root} (${rule})`);
  return n.slice(root === '/' ? 1 : root.length + 1).split('/');
}

/** The components of a relative path: no absolute path, no `..`, no empty name. */
export function relativeParts(rel: string, what: string, rule: string): string[] {
  if (typeof rel !== 'string' || rel === '' || isAbsolute(rel) || rel.includes('\0')) throw new InvalidArgumentError(`${what} must be a relative path (${rule})`);
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..')) throw new InvalidArgumentError(`${what} must not contain ".." or be empty (${rule})`);
  return parts;
}

/**
 * Checks that every directory from `root` down through `dirs` is a real directory (lstat: a
 * symlink is refused), creating the missing ones with `mode` when `create`. Returns the first
 * directory this call created (undefined when all existed).
 */
export async function walkDirsBeneath(root: string, dirs: readonly string[], opts: { create: boolean; mode?: number; what: string; rule: string }): Promise<string | undefined> {
  let cur = root;
  let first: string | undefined;
  for (const name of dirs) {
    cur = join(cur, name);
    let st;
    try {
      st = await lstat(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !opts.create) throw new InvalidArgumentError(`${opts.what}: ${cur} does not exist (${opts.rule})`);
      try {
        await mkdir(cur, { mode: opts.mode ?? 0o755 });
        first ??= cur;
        continue;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        st = await lstat(cur);
      }
    }
    if (st.isSymbolicLink()) throw new InvalidArgumentError(`${opts.what}: ${cur} is a symlink; symlinks under ${root} are not followed (${opts.rule})`);
    if (!st.isDirectory()) throw new InvalidArgumentError(`${opts.what}: ${cur} is not a directory (${opts.rule})`);
  }
  return first;
}
