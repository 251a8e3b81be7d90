/**
 * The built-in pod infra ("pause") root filesystem: a directory holding only a static busybox
 * (Debian's busybox-static), shared read-only by every pause container of the node.
 */
import { copyFile, mkdir, rename, stat, chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UnavailableError } from '../errors.ts';

const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

/** A static busybox on this host, or UnavailableError naming the package to install. */
export async function findStaticBusybox(): Promise<string> {
  for (const p of BUSYBOX_CANDIDATES) {
    try {
      const st = await stat(p);
      if (st.isFile()) return p;
    } catch { /* next */ }
  }
  throw new UnavailableError('no busybox found; install the busybox-static package');
}

/** Creates (once) `<dir>/bin/busybox` and the few dirs a pause container needs; returns dir. */
/** The pause rootfs's directories (each 0755). */
const PAUSE_DIRS = ['bin', 'proc', 'dev', 'sys', 'etc', 'tmp'];

export async function ensurePauseRootfs(dir: string): Promise<string> {
  const target = join(dir, 'bin', 'busybox');
  const dirs = [dir, ...PAUSE_DIRS.map((d) => join(dir, d))];
  try {
    await stat(target);
    // a rootfs made with another mode (a daemon whose umask was tightened meanwhile: 0600 dirs no
    // container could enter, kept across restarts) is mended, not reused as it is
    for (const d of dirs) if (((await stat(d)).mode & 0o7777) !== 0o755) await chmod(d, 0o755);
    return dir;
  } catch { /* create */ }
  for (const d of PAUSE_DIRS) await mkdir(join(dir, d), { recursive: true });
  // its modes whatever the umask: every container's root is this tree
  for (const d of dirs) await chmod(d, 0o755);
  const tmp = `${target}.tmp-${process.pid}`;
  await copyFile(await findStaticBusybox(), tmp);
  await chmod(tmp, 0o755);
  await rename(tmp, target);
  return dir;
}

/**
 * A throwaway OCI bundle in `dir` whose one process runs busybox `true` from a read-only rootfs
 * with /proc: what a runtime's host probe runs to learn whether it works here. `linux` is the
 * spec's linux section (the namespaces to make or join, a cgroup path).
 */
export async function writeProbeBundle(dir: string, linux: { namespaces: { type: string; path?: string }[]; cgroupsPath?: string }): Promise<void> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await copyFile(await findStaticBusybox(), join(rootfs, 'bin', 'busybox'));
  const spec = {
    ociVersion: '1.0.2',
    process: { user: { uid: 0, gid: 0 }, args: ['/bin/busybox', 'true'], cwd: '/', env: ['PATH=/bin'] },
    root: { path: rootfs, readonly: true },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
    linux,
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(spec));
}
