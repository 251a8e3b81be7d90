/**
 * QEMU driver: `-M microvm` (virtio-mmio, no PCI, no firmware), `-nodefaults -no-user-config
 * -nographic`, seccomp sandbox on. The agent channel is a virtio-serial port whose host side is
 * one end of a socketpair handed to QEMU as fd 3 (no socket path, nothing to race for).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { InternalError, UnavailableError } from '../errors.ts';
import { recordProc } from './procs.ts';
import { SHARE_TAG } from './share.ts';
import { stopVmmProcess, tailFile, type Accel, type VmConfig, type VmExit, type VmHandle, type Vmm } from './vmm.ts';

export const QEMU_BINARY = 'qemu-system-x86_64';

/** The host TSC frequency in kHz: TCG's guest TSC runs at the host's, and the guest cannot calibrate it (no PIT/HPET on microvm). */
function hostTscKhz(): number {
  try {
    const m = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return Math.round(Number(m[1]) * 1000);
  } catch { /* not Linux? */ }
  return 2_000_000;
}

/** prctl(2)'s system call number per host architecture (Node's names), for noThpPrefix. */
const PRCTL_NR: Partial<Record<string, number>> = { x64: 157, arm64: 167 };
const PR_SET_THP_DISABLE = 41;

/**
 * A command that turns transparent huge pages off for QEMU and execs it: prctl(PR_SET_THP_DISABLE),
 * which execve keeps. QEMU asks for huge pages for TCG's translation buffer and every RAM block
 * (MADV_HUGEPAGE), so a clone's 64 KiB firmware ROM takes a whole 2 MiB page: measured 2.0-2.2 MiB
 * less QEMU per idle clone with it off (bench/density.ts, README "Memory of an idle pod"); the
 * buffer holds ~20 MiB of generated code either way. TCG only: a KVM guest's RAM gains from huge
 * pages. Perl (Debian's essential perl-base) makes the call, ignoring a failure (huge pages are
 * then as before), and execs the rest of its arguments; none without perl or on an unknown arch.
 * $BULKHEAD_VM_QEMU_THP=1 keeps QEMU's huge pages (bench/vm-tb.ts --thp compares).
 */
export function noThpPrefix(accel: Accel, arch: string = process.arch, perl = '/usr/bin/perl', env: NodeJS.ProcessEnv = process.env): string[] {
  const nr = PRCTL_NR[arch];
  if (accel !== 'tcg' || nr === undefined || env.BULKHEAD_VM_QEMU_THP === '1' || !existsSync(perl)) return [];
  return [perl, '-e', `syscall(${nr}, ${PR_SET_THP_DISABLE}, 1, 0, 0, 0); exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\\n"`, '--'];
}

/** A path for a QEMU option value: absolute, no option separators. */
function safePath(p: string, what: string): string {
  if (!p.startsWith('/') || /[,=\0]/.test(p)) throw new InternalError(`bad ${what} path ${p}`);
  return p;
}

/**
 * The guest kernel command line every booted VM (a template too) gets, but for the host's TSC figures and
 * the pod's network; a template's key holds it (template.ts), so a change here builds templates again.
 * `lsm=landlock,lockdown,yama`: Debian's kernel also starts AppArmor, TOMOYO, the BPF LSM and
 * IMA/EVM, which the guest never gives a policy (nothing in the initramfs loads one) and which so
 * confine nothing, yet run their hooks on every exec, open and mount; under TCG each hook is code a
 * clone translates (and keeps in its translation buffer) while its containers start: ~2% of the
 * ~34,000 blocks of an idle pod's clone (QEMU `-d in_asm` against the guest's kallsyms: apparmor 229,
 * tomoyo 186, integrity 97, bpf_lsm 67, plus their share of the security_* dispatch). `psi=0`: pressure
 * stall accounting on every task switch, which nothing in the guest reads. Landlock (a workload's own
 * sandboxing), Yama (ptrace scope) and lockdown stay. bench/density.ts, TCG, 4 idle pods, same session:
 * translation buffer 19.6 → 19.1 MiB per clone, QEMU 51.5-51.9 → 49.8-51.1 MiB.
 */
export const GUEST_KERNEL_ARGS: readonly string[] = ['console=ttyS0', 'loglevel=4', 'pci=off', 'edd=off', 'panic=-1', 'reboot=t', 'lsm=landlock,lockdown,yama', 'psi=0'];

export function qemuArgs(cfg: VmConfig): string[] {
  const khz = hostTscKhz();
  const cmdline = [
    ...GUEST_KERNEL_ARGS,
    // microvm has no PIT/HPET to calibrate the TSC against: give the frequency, skip the watchdog
    `tsc_early_khz=${khz}`, 'tsc=reliable', `lpj=${Math.round((khz * 1000) / 250)}`,
    ...(cfg.kernelArgs ?? []),
  ].join(' ');
  const merge = cfg.memMerge ? 'on' : 'off';
  const args = [
    '-name', `bulkhead-${cfg.name},process=bulkhead-vm-${cfg.name}`,
    // vhost-user-fs needs the guest RAM in shared memory the file server can map; a template's RAM is a file its clones map
    // mem-merge/merge: whether the host's KSM may merge this guest's RAM with other processes' (QEMU's
    // default: yes). Off unless asked (VmConfig.memMerge): KSM merges across every VM of the host,
    // whatever their trust level, and a merged page's copy-on-write timing tells one guest what another holds
    '-M', `microvm,x-option-roms=off,rtc=on,mem-merge=${merge}${cfg.fsSocket || cfg.memFile ? ',memory-backend=mem' : ''}`,
    ...(cfg.memFile ? ['-object', `memory-backend-file,id=mem,size=${cfg.memoryMiB}M,mem-path=${safePath(cfg.memFile.path, 'template memory file')},share=${cfg.memFile.share ? 'on' : 'off'},merge=${merge}`]
      : cfg.fsSocket ? ['-object', `memory-backend-memfd,id=mem,size=${cfg.memoryMiB}M,share=on,merge=${merge}`] : []),
    // tb-size: TCG's translation buffer (QEMU's default is 1 GiB here); what a guest ran stays resident up to it
    // split-wx: the buffer in a memfd (written through one mapping, run from another), whose pages an idle trim gives back (tb-trim.ts)
    '-accel', cfg.accel === 'tcg' ? ['tcg', ...(cfg.tbSizeMiB ? [`tb-size=${cfg.tbSizeMiB}`] : []), ...(cfg.jitMemfd ? ['split-wx=on'] : [])].join(',') : cfg.accel,
    '-cpu', cfg.accel === 'kvm' ? 'host' : 'max',
    '-m', `${cfg.memoryMiB}M`,
    '-smp', String(cfg.vcpus),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    // A clone's RAM already holds its template's booted kernel: no -kernel. QEMU would keep the kernel
    // image in its heap for fw_cfg (~13.5 MiB of the clone's ~60 here), which the restored guest never reads.
    ...(cfg.incoming ? [] : ['-kernel', cfg.kernel, '-initrd', cfg.initramfs, '-append', cmdline]),
    '-chardev', `file,id=con,path=${cfg.consoleLog}`, '-serial', 'chardev:con',
    '-device', 'virtio-serial-device,max_ports=2',
    '-chardev', 'socket,id=agent,fd=3',
    '-device', 'virtserialport,chardev=agent,name=bulkhead.agent',
  ];
  for (const d of cfg.drives) {
    if (/[,=]/.test(d.path) || !/^[A-Za-z0-9_-]{1,20}$/.test(d.serial)) throw new InternalError(`bad drive ${d.serial} ${d.path}`);
    args.push('-drive', `id=${d.serial},file=${d.path},format=raw,if=none,readonly=on,cache=none,aio=threads`,
      '-device', `virtio-blk-device,drive=${d.serial},serial=${d.serial}`);
  }
  if (cfg.fsSocket) {
    if (/[,=]/.test(cfg.fsSocket)) throw new InternalError(`bad virtio-fs socket path ${cfg.fsSocket}`);
    // vhost-user (libvhost-user) serves only modern virtio: microvm's virtio-mmio defaults to legacy
    args.push('-global', 'virtio-mmio.force-legacy=false', '-chardev', `socket,id=fs,path=${cfg.fsSocket}`, '-device', `vhost-user-fs-device,chardev=fs,tag=${SHARE_TAG}`);
  }
  if (cfg.tap || cfg.unpluggedNic) {
    if (cfg.tap !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(cfg.tap)) throw new InternalError(`bad tap name ${cfg.tap}`);
    if (cfg.mac !== undefined && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(cfg.mac)) throw new InternalError(`bad MAC ${cfg.mac}`);
    args.push('-netdev', cfg.tap ? `tap,id=net0,ifname=${cfg.tap},script=no,downscript=no,vhost=off` : 'hubport,id=net0,hubid=0',
      '-device', `virtio-net-device,netdev=net0${cfg.mac ? `,mac=${cfg.mac}` : ''}`);
  }
  if (cfg.qmp) args.push('-qmp', `unix:${safePath(cfg.qmp, 'QMP socket')},server=on,wait=off`);
  if (cfg.incoming) args.push('-incoming', 'defer');
  return args;
}

export class QemuVmm implements Vmm {
  readonly name = 'qemu' as const;
  readonly #binary: string;
  constructor(binary: string = QEMU_BINARY) { this.#binary = binary; }

  async boot(cfg: VmConfig, signal?: AbortSignal): Promise<VmHandle> {
    signal?.throwIfAborted();
    const args = qemuArgs(cfg);
    if (cfg.netns !== undefined && (!cfg.netns.startsWith('/') || cfg.netns.includes('\0'))) throw new InternalError(`bad netns path ${cfg.netns}`);
    // setpriv --pdeathsig KILL: QEMU dies with its supervisor, whatever kills that (a VMM must never
    // outlive the process that would clean up after it). In the pod's netns (to open its tap):
    // nsenter --net setns()es; under TCG without huge pages (noThpPrefix). All exec, so the pid is QEMU's.
    const qemu = [...noThpPrefix(cfg.accel), this.#binary, ...args];
    const vmm = cfg.netns ? ['nsenter', `--net=${cfg.netns}`, '--', ...qemu] : qemu;
    // a clone's saved device state is fd 4 (QMP `migrate-incoming fd:4`, template.ts)
    const stateFd = cfg.incoming ? openSync(cfg.incoming, 'r') : undefined;
    let child;
    try {
      child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...vmm], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', ...(stateFd !== undefined ? [stateFd] : [])], ...(signal ? { signal } : {}) });
    } finally {
      if (stateFd !== undefined) closeSync(stateFd);
    }
    // recorded before anything else can run: a restarted caller finds it by pid and start time
    if (child.pid !== undefined) { try { recordProc(cfg.workDir, 'vmm', child.pid); } catch { /* pod dir gone: killed below by pdeathsig at worst */ } }
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => { if (stderr.length < 64 * 1024) stderr += b.toString('utf8'); });
    const spawned = await new Promise<boolean>((resolve, reject) => {
      child.once('spawn', () => resolve(true));
      child.once('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') reject(new UnavailableError('setpriv is not installed; apt-get install util-linux'));
        else reject(e);
      });
    });
    if (!spawned || child.pid === undefined) throw new InternalError('qemu did not start');
    const control = child.stdio[3] as Socket;
    const exited = new Promise<VmExit>((resolve) => {
      child.once('exit', (code, sig) => {
        const detail = stderr.trim().split('\n').slice(-3).join(' | ');
        const reason = sig ? `VMM (qemu pid ${child.pid}) killed by ${sig}${detail ? `: ${detail}` : ''}`
          : code === 0 ? 'guest powered off'
          : `VMM (qemu) exited with code ${code}${detail ? `: ${detail}` : ''}`;
        resolve({ code, signal: sig, reason });
      });
    });
    const consoleLog = cfg.consoleLog;
    return {
      pid: child.pid,
      accel: cfg.accel,
      ...(cfg.qmp ? { qmp: cfg.qmp } : {}),
      control,
      wait: () => exited,
      stop: (graceMs = 3000) => stopVmmProcess(child, exited, graceMs),
      consoleTail: (n = 20) => tailFile(consoleLog, n),
    };
  }
}

/** Whether the host offers /dev/kvm at all (whether it really runs a guest is probed by booting). */
export function kvmDevicePresent(): boolean {
  return existsSync('/dev/kvm');
}

export type { Accel };
