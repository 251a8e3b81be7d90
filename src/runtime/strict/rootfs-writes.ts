/**
 * Did a training run write to its root filesystem (outside volumes)? The container's root is an
 * overlay mount (src/image/snapshot/overlay.ts); whatever the workload writes lands in its upper
 * directory. The listing (path, type, size, mtime) is taken after `runc create` (the runtime's own
 * mount points and files are there by then) and again at the end: any difference is a write.
 * Volumes are separate mounts and never reach the upper directory.
 */
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

const MAX_ENTRIES = 20_000;

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The overlay upper directory of the mount at `mountpoint` (from /proc/self/mountinfo), if it is one. */
export async function upperDirOf(mountpoint: string): Promise<string | undefined> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  let found: string | undefined;
  for (const line of text.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const f = pre.split(' ');
    if (unescape(f[4] ?? '') !== mountpoint) continue;
    const [type, , opts] = post.split(' ');
    if (type !== 'overlay') continue;
    const m = /(?:^|,)upperdir=([^,]+)/.exec(opts ?? '');
    if (m) found = unescape(m[1]!); // the last mount on the point is the one seen
  }
  return found;
}

/** A listing of a directory tree; `truncated` when it has more than MAX_ENTRIES entries. */
export async function listTree(dir: string): Promise<{ entries: Record<string, string>; truncated: boolean }> {
  const entries: Record<string, string> = {};
  let n = 0;
  const walk = async (rel: string): Promise<boolean> => {
    let names: string[];
    try { names = await readdir(join(dir, rel)); } catch { return true; }
    for (const name of names) {
      if (++n > MAX_ENTRIES) return false;
      const p = rel ? `${rel}/${name}` : name;
      let st;
      try { st = await lstat(join(dir, p)); } catch { continue; }
      const kind = st.isDirectory() ? 'd' : st.isFile() ? 'f' : st.isSymbolicLink() ? 'l' : 'o';
      entries[p] = `${kind}:${kind === 'd' ? '' : st.size}:${kind === 'd' ? '' : st.mtimeMs}:${st.mode}`;
      if (kind === 'd' && !(await walk(p))) return false;
    }
    return true;
  };
  const complete = await walk('');
  return { entries, truncated: !complete };
}

/** Whether `after` differs from `before` (a truncated listing counts as a write). */
export function treeChanged(before: { entries: Record<string, string>; truncated: boolean }, after: { entries: Record<string, string>; truncated: boolean }): string | undefined {
  if (after.truncated || before.truncated) return `more than ${MAX_ENTRIES} entries`;
  for (const [p, v] of Object.entries(after.entries)) {
    if (before.entries[p] === undefined) return `created /${p}`;
    if (before.entries[p] !== v && !v.startsWith('d:')) return `changed /${p}`;
  }
  for (const p of Object.keys(before.entries)) if (after.entries[p] === undefined) return `removed /${p}`;
  return undefined;
}
