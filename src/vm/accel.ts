/**
 * Which accelerator really runs a guest here. /dev/kvm may exist and still not run guests (a
 * nested PVM host, for one): the probe boots the guest with accel=kvm and a short timeout and
 * takes KVM only if the agent answers; otherwise TCG. The answer is cached in <root>/vm/accel.json
 * under accelKey(): host kernel, guest kernel, the QEMU binary (path, size, mtime), and whether
 * /dev/kvm exists; where it exists, also the boot, so a host whose KVM starts working (a module
 * loaded, nested virtualization turned on, a reboot) is not kept on TCG by an old answer.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { findOnPath } from '../util/which.ts';
import type { GuestAssets } from './assets.ts';
import type { Accel } from './vmm.ts';

export interface AccelResult { accel: Accel; reason: string; key: string }

/** qemu.ts's QEMU_BINARY (not imported: every sandbox create reads the cache, and qemu.ts loads only for a probe). */
const QEMU = 'qemu-system-x86_64';

/** What the probe's answer depends on (see the file's comment). */
export function accelKey(kernelRelease: string, kvm = existsSync('/dev/kvm')): string {
  const qemu = findOnPath(QEMU);
  const st = qemu ? statSync(qemu, { throwIfNoEntry: false }) : undefined;
  const parts = [release(), kernelRelease, `${qemu ?? 'no-qemu'}:${st?.size ?? 0}:${Math.round(st?.mtimeMs ?? 0)}`, `kvm=${kvm ? 'yes' : 'no'}`];
  if (kvm) {
    let boot = '';
    try { boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { /* none */ }
    parts.push(`boot=${boot}`);
  }
  return parts.join('|');
}

export async function detectAccel(assets: GuestAssets, opts: { timeoutMs?: number; force?: boolean; signal?: AbortSignal } = {}): Promise<AccelResult> {
  const key = accelKey(assets.kernelRelease);
  const cache = join(assets.dir, 'accel.json');
  if (!opts.force) {
    try {
      const c = JSON.parse(await readFile(cache, 'utf8')) as AccelResult;
      if (c.key === key) return c;
    } catch { /* probe */ }
  }
  let result: AccelResult;
  // the QEMU driver and the supervisor's hello wait only for a probe: every sandbox `create` reads the cache above
  const { kvmDevicePresent, QemuVmm } = await import('./qemu.ts');
  if (!kvmDevicePresent()) {
    result = { accel: 'tcg', reason: '/dev/kvm does not exist', key };
  } else {
    const dir = await mkdtemp(join(assets.dir, '.probe-'));
    try {
      const vm = await new QemuVmm().boot({
        name: 'kvm-probe', kernel: assets.kernel, initramfs: assets.initramfs, memoryMiB: 256, vcpus: 1, accel: 'kvm',
        drives: [], consoleLog: join(dir, 'console.log'), workDir: dir,
      }, opts.signal);
      try {
        await (await import('./vmd.ts')).waitForHello(vm, opts.timeoutMs ?? 20_000);
        result = { accel: 'kvm', reason: 'a guest booted under KVM and its agent answered', key };
      } catch (e) {
        result = { accel: 'tcg', reason: `KVM did not run a guest: ${(e as Error).message.split('\n')[0]}`, key };
      } finally {
        await vm.stop(500);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  await writeFile(cache, JSON.stringify(result, null, 2) + '\n');
  return result;
}
