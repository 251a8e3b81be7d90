/**
 * Mounting a container's rootfs from the mounts the image service returns, and taking it down
 * again. Mount points are found in /proc/self/mountinfo (not guessed), so unmounting after a
 * crash works whatever state the mount was left in.
 */
import { InternalError } from '../errors.ts';
import { runShort } from '../util/shell-runner.ts';
import { mountsUnder } from '../util/mountinfo.ts';

export { mountsUnder };

/** A mount as containerd describes one: `mount -t type -o options source target`. */
export interface RootfsMount {
  type: string;
  source: string;
  options: string[];
}

export async function isMountPoint(dir: string): Promise<boolean> {
  return (await mountsUnder(dir)).includes(dir);
}

/**
 * The overlay option `volatile` (Linux 5.10+) added to the mounts that have a writable layer: the
 * upper filesystem is then never synced, neither at the workload's fsyncs nor at the unmount, where
 * the kernel otherwise syncs the whole filesystem the upper layer is on (1-30 ms per container on a
 * shared host, a few ms quiet). Only for a writable layer nothing uses after the container's one
 * run (a one-shot pod's, `bulkhead run --rm`, as podman does for its `run --rm`): a host crash
 * loses nothing that would be read again.
 */
export function volatileUpper(mounts: readonly RootfsMount[]): RootfsMount[] {
  return mounts.map((m) => m.type === 'overlay' && m.options.some((o) => o.startsWith('upperdir=')) && !m.options.includes('volatile')
    ? { ...m, options: [...m.options, 'volatile'] } : m);
}

/** Mounts `mounts` in order on `target` (the first makes the root; later ones stack). */
export async function mountAll(mounts: readonly RootfsMount[], target: string): Promise<void> {
  if (mounts.length === 0) throw new InternalError('image service returned no rootfs mounts');
  for (const m of mounts) {
    const mount = (options: readonly string[]) => {
      const args = ['-t', m.type];
      if (options.length > 0) args.push('-o', options.join(','));
      args.push(m.source, target);
      return runShort('mount', args, { timeoutMs: 30_000 });
    };
    let r = await mount(m.options);
    // a kernel older than 5.10 refuses `volatile`: the layer is then mounted as any other
    if (r.code !== 0 && m.options.includes('volatile')) r = await mount(m.options.filter((o) => o !== 'volatile'));
    if (r.code !== 0) {
      await unmountTree(target);
      throw new InternalError(`mount ${m.type} on ${target}: ${r.stderr.trim()}`);
    }
  }
}

/** Unmounts everything at or under `dir` (repeatedly, for stacked mounts). Missing dir: fine. */
export async function unmountTree(dir: string): Promise<void> {
  for (let round = 0; round < 8; round++) {
    const mps = await mountsUnder(dir);
    if (mps.length === 0) return;
    for (const mp of mps) {
      const r = await runShort('umount', [mp], { timeoutMs: 30_000 });
      if (r.code !== 0) await runShort('umount', ['-l', mp], { timeoutMs: 30_000 });
    }
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) throw new InternalError(`could not unmount ${left.join(', ')}`);
}
