/** bulkhead-vm's global options: its flags before the command name, then BULKHEAD_* variables, then defaults. */
import { resolve } from 'node:path';
import { InvalidArgumentError } from '../../errors.ts';
import type { FlagSpec, FlagValues } from '../../util/command.ts';
import { DEFAULT_ROOT } from '../state.ts';
import { parseTemplateSharing, type TemplateSharing } from '../template-sharing.ts';
import type { Accel } from '../vmm.ts';
import { str } from './flags.ts';
import { DEFAULT_BOOT_TIMEOUT_MS } from '../limits.ts';

export interface VmGlobal {
  /** State directory of containers and pod VMs; --root or BULKHEAD_VM_STATE. */
  root: string;
  /** Where failures are logged besides stderr; --log. */
  log?: string;
  logFormat: 'text' | 'json';
  /** Bulkhead's state root holding vm/ (the guest assets); --assets or BULKHEAD_ROOT. */
  assetsRoot: string;
  accel: 'auto' | Accel;
  bootTimeoutMs: number;
  cgroupParent: string;
  /** Firecracker binary: use the Firecracker driver instead of QEMU. */
  firecracker?: string;
  /** Who may share a VM template's memory (template.ts); --template-sharing or BULKHEAD_VM_TEMPLATE_SHARING, default 'level'. */
  templateSharing: TemplateSharing;
  /**
   * A template may hold the pod's sandbox container already started (template-sandbox.ts): 'on'
   * (default) or 'off' (its clones create and start it as a booted VM does); --template-sandbox or
   * BULKHEAD_VM_TEMPLATE_SANDBOX.
   */
  templateSandbox: 'on' | 'off';
  /**
   * The volume mode of a pod whose sandbox spec names none (annotation io.bulkhead.vm.volumes):
   * 'copy' = its VM has no virtio-fs share and its containers' volumes are copied in
   * (copy-volumes.ts); unset = a share. --volumes copy (a handler's runtime_args) or BULKHEAD_VM_VOLUMES.
   */
  volumes?: 'copy';
  /**
   * The node-wide host keeps a clone's QEMU spawned ahead per template recently cloned
   * (standby-vmm.ts): 'on' (default) or 'off' (this handler's clones spawn QEMU in their start);
   * --standby-vmm or BULKHEAD_VM_STANDBY_VMM (also 1/0).
   */
  standbyVmm: 'on' | 'off';
  /**
   * Who supervises pod VMs: 'node' (default) = one `_vmhost` process for every pod of this --root
   * (vmhost.ts: ~16 MiB less per idle pod, a larger blast radius); 'pod' = one `_vmd` process per pod.
   * --supervisor or BULKHEAD_VM_SUPERVISOR.
   */
  supervisor: 'pod' | 'node';
}

/** Pod VMs are supervised node-wide unless told otherwise (output is flow-controlled per client: vmd.ts CLIENT_BUFFER_BYTES). */
export const DEFAULT_SUPERVISOR: VmGlobal['supervisor'] = 'node';

/** runc's global flags that callers pass; the ones without a use here are accepted and ignored. */
export const GLOBAL_FLAGS: FlagSpec = {
  root: { type: 'string' },
  log: { type: 'string' },
  'log-format': { type: 'string' },
  assets: { type: 'string' },
  accel: { type: 'string' },
  'boot-timeout': { type: 'string' },
  'cgroup-parent': { type: 'string' },
  firecracker: { type: 'string' },
  'template-sharing': { type: 'string' },
  'template-sandbox': { type: 'string' },
  volumes: { type: 'string' },
  'standby-vmm': { type: 'string' },
  supervisor: { type: 'string' },
  criu: { type: 'string' },
  rootless: { type: 'string' },
  'systemd-cgroup': { type: 'boolean' },
  debug: { type: 'boolean' },
  version: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
};

/** --boot-timeout, else BULKHEAD_VM_BOOT_TIMEOUT_MS, else DEFAULT_BOOT_TIMEOUT_MS (checkGlobal checks it). */
export function bootTimeout(flags: FlagValues, env: NodeJS.ProcessEnv): number {
  return Number(str(flags, 'boot-timeout') ?? env.BULKHEAD_VM_BOOT_TIMEOUT_MS ?? DEFAULT_BOOT_TIMEOUT_MS);
}

/** The message of a --boot-timeout out of its range (undefined: it is fine). */
export function badBootTimeout(ms: number): string | undefined {
  return Number.isInteger(ms) && ms >= 100 && ms <= 3_600_000 ? undefined : '--boot-timeout (BULKHEAD_VM_BOOT_TIMEOUT_MS) must be an integer of milliseconds, 100..3600000';
}

export function globalOptions(flags: FlagValues, env: NodeJS.ProcessEnv): VmGlobal {
  const standby = str(flags, 'standby-vmm') ?? env.BULKHEAD_VM_STANDBY_VMM ?? 'on';
  const g: VmGlobal = {
    root: resolve(str(flags, 'root') ?? env.BULKHEAD_VM_STATE ?? DEFAULT_ROOT),
    logFormat: str(flags, 'log-format') === 'json' ? 'json' : 'text',
    assetsRoot: resolve(str(flags, 'assets') ?? env.BULKHEAD_ROOT ?? '/var/lib/bulkhead'),
    accel: (str(flags, 'accel') ?? env.BULKHEAD_VM_ACCEL ?? 'auto') as VmGlobal['accel'],
    bootTimeoutMs: bootTimeout(flags, env),
    cgroupParent: str(flags, 'cgroup-parent') ?? 'bulkhead-vm',
    supervisor: (str(flags, 'supervisor') ?? env.BULKHEAD_VM_SUPERVISOR ?? DEFAULT_SUPERVISOR) as VmGlobal['supervisor'],
    templateSharing: parseTemplateSharing(str(flags, 'template-sharing') ?? env.BULKHEAD_VM_TEMPLATE_SHARING, '--template-sharing') ?? 'level',
    templateSandbox: (str(flags, 'template-sandbox') ?? env.BULKHEAD_VM_TEMPLATE_SANDBOX ?? 'on') as VmGlobal['templateSandbox'],
    standbyVmm: (standby === '1' ? 'on' : standby === '0' ? 'off' : standby) as VmGlobal['standbyVmm'],
  };
  const log = str(flags, 'log');
  if (log) g.log = log;
  const volumes = str(flags, 'volumes') ?? env.BULKHEAD_VM_VOLUMES;
  if (volumes !== undefined && volumes !== 'share') {
    if (volumes !== 'copy') throw new InvalidArgumentError('--volumes (BULKHEAD_VM_VOLUMES) must be copy or share');
    g.volumes = 'copy';
  }
  const fc = str(flags, 'firecracker') ?? env.BULKHEAD_VM_FIRECRACKER;
  if (fc) g.firecracker = fc;
  return g;
}

/** The global options every command relies on, checked. */
export function checkGlobal(g: VmGlobal): void {
  if (!['auto', 'kvm', 'tcg'].includes(g.accel)) throw new InvalidArgumentError('--accel must be auto, kvm or tcg');
  if (!['on', 'off'].includes(g.templateSandbox)) throw new InvalidArgumentError('--template-sandbox (BULKHEAD_VM_TEMPLATE_SANDBOX) must be on or off');
  if (!['on', 'off'].includes(g.standbyVmm)) throw new InvalidArgumentError('--standby-vmm (BULKHEAD_VM_STANDBY_VMM) must be on or off (or 1/0)');
  if (!['pod', 'node'].includes(g.supervisor)) throw new InvalidArgumentError('--supervisor (BULKHEAD_VM_SUPERVISOR) must be pod or node');
  const bad = badBootTimeout(g.bootTimeoutMs);
  if (bad) throw new InvalidArgumentError(bad);
}
