/**
 * `VMM`: the seam between the microVM runtime and a virtual machine monitor (QEMU's `microvm`
 * machine in qemu.ts; Firecracker in firecracker.ts where a binary is configured).
 *
 * Lifecycle: `boot(config)` starts the monitor and resolves once the guest's agent channel is
 * connected on the host side (a Duplex that carries the frames of protocol.ts). The guest is not
 * necessarily up yet: the caller waits for the agent's hello frame with its own timeout and, on
 * timeout, reports `consoleTail()`. `wait()` resolves once when the monitor process ends, with a
 * reason in words; `stop()` asks nicely (or not) and always leaves the process gone.
 *
 * A VM is one pod: its containers share the kernel, each with its own read-only root image in a
 * drive slot (slots exist from boot: microvm has no hotplug) and a writable layer inside the guest.
 */
import type { ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { readFile } from 'node:fs/promises';
import type { Qmp } from './qmp.ts';

export type Accel = 'kvm' | 'tcg';

export interface DriveSlot {
  /** Serial the guest sees in /sys/block/vdX/serial; the agent finds the device by it. */
  serial: string;
  /** Host file backing the drive (raw image), opened read-only by the VMM. */
  path: string;
}

export interface VmConfig {
  /** Short name used in process titles and logs. */
  name: string;
  kernel: string;
  initramfs: string;
  /** Extra kernel command line words. */
  kernelArgs?: string[];
  memoryMiB: number;
  vcpus: number;
  accel: Accel;
  drives: DriveSlot[];
  /** File the guest's serial console is written to. */
  consoleLog: string;
  /** Host tap device for a virtio-net NIC (in `netns` when given); absent = no network. */
  tap?: string;
  /** MAC of the guest NIC (the pod interface's: the egress guard pins untrusted pods to it). */
  mac?: string;
  /** Network namespace (path) the VMM runs in, so it can open `tap` there. */
  netns?: string;
  /** Directory for the VMM's own sockets and files. */
  workDir: string;
  /** vhost-user socket of the pod's virtio-fs server (share.ts); the guest sees it as tag `bhshare`. QEMU only. */
  fsSocket?: string;
  /**
   * Guest RAM in a file (VM templates, template.ts; QEMU only): `share` while a template boots (the
   * guest's pages land in the file), not in a clone (a private copy-on-write mapping of it).
   */
  memFile?: { path: string; share: boolean };
  /** A NIC with no host side (a template's: its clones have the pod's tap there). */
  unpluggedNic?: boolean;
  /** QMP control socket (server) the VMM listens on. QEMU only. */
  qmp?: string;
  /** Start waiting for a migration stream read from this file (a template's saved state), delivered over QMP. QEMU only. */
  incoming?: string;
  /**
   * Let the host's KSM merge the guest RAM with identical pages of other processes (QEMU's
   * mem-merge; absent = not). Only for a clone of a node-wide template (template_sharing node).
   */
  memMerge?: boolean;
  /** TCG's translation buffer in MiB (`-accel tcg,tb-size=`); absent = QEMU's default. QEMU under TCG only. */
  tbSizeMiB?: number;
  /** TCG's translation buffer in a memfd (`split-wx=on`), so an idle VM's can be trimmed (tb-trim.ts). QEMU under TCG only. */
  jitMemfd?: boolean;
}

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** In words, for container state and logs: "VMM killed by SIGKILL", "guest powered off". */
  reason: string;
}

export interface VmHandle {
  /** Host pid of the VMM process. */
  readonly pid: number;
  readonly accel: Accel;
  /** The VMM's QMP socket, when it was asked for one (VmConfig.qmp). */
  readonly qmp?: string;
  /** The agent channel, connected. */
  readonly control: Duplex;
  wait(): Promise<VmExit>;
  /** Graceful first (the caller has usually asked the agent to power off), SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<VmExit>;
  /** The last lines the guest wrote on its console. */
  consoleTail(lines?: number): Promise<string[]>;
}

export interface Vmm {
  readonly name: 'qemu' | 'firecracker';
  boot(config: VmConfig, signal?: AbortSignal): Promise<VmHandle>;
}

/** Last `n` non-empty lines of a console log file ("" when it does not exist). */
export async function tailFile(path: string, n = 20): Promise<string[]> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch { return []; }
  return text.replace(/\r/g, '').split('\n').filter((l) => l.trim() !== '').slice(-n);
}

/** VmHandle.stop for a VMM child process: SIGTERM, SIGKILL after `graceMs`, resolves with its exit. */
export async function stopVmmProcess(child: ChildProcess, exited: Promise<VmExit>, graceMs: number): Promise<VmExit> {
  if (child.exitCode !== null || child.signalCode !== null) return await exited;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    return await exited;
  } finally {
    clearTimeout(t);
  }
}

/** A saved template VM (template.ts): its RAM file and device state, and what its agent said. */
export interface TemplateImage {
  /** Hash of every input the template was built from (its directory name). */
  key: string;
  /** The guest RAM (mapped copy-on-write, private, by each clone). */
  memFile: string;
  /** QEMU's saved device state (without RAM: x-ignore-shared). */
  stateFile: string;
  /** The agent's hello at build time: kernel release and protocol version. */
  kernel: string;
  agentVersion: number;
  /** Its scope is the whole node (template_sharing node): its clones may share pages with every pod (VmConfig.memMerge). */
  nodeWide: boolean;
  /** The sandbox container created and started in the template (template-sandbox.ts): its request's hash, session id and guest pid. */
  sandbox?: { hash: string; gid: number; pid: number };
}

/** The sizing and layout a template must match to be cloned. */
export interface TemplateRequest {
  memoryMiB: number;
  vcpus: number;
  accel: Accel;
  /** The VM has a NIC (the pod has a network interface). */
  nic: boolean;
  /**
   * The pod's sandbox container, to be created and started in the template (template-sandbox.ts):
   * `hash` (sandboxHash) is part of the key, `kv` the generic part of its request. A template with
   * it is preferred; without one (none built and no room for another) the template without.
   */
  sandbox?: { hash: string; image: string; kv: [string, string][] };
}

/** Where a pod supervisor gets templates and restores clones (template.ts; QEMU only). */
export interface TemplateProvider {
  /** The template for `req`, built now (once, under a lock) when missing; throws when none can be had. */
  get(req: TemplateRequest, progress: (line: string) => void): Promise<TemplateImage>;
  /**
   * Feeds a clone of `t` (booted with memFile share=false, incoming = stateFile, qmp) its state;
   * resolves once it runs. `beforeRun` (the VMM's cgroup placement, slot 0's fill) is awaited after
   * the state is loaded and before the guest runs; its failure fails the restore. A template QEMU
   * refuses is removed (the next pod builds it again). `qmp`: the VMM's QMP connection already open
   * with the incoming capabilities set (a standby VMM's, standby-vmm.ts); absent = connect to vm.qmp.
   */
  restore(vm: VmHandle, t: TemplateImage, timeoutMs: number, beforeRun?: () => Promise<void>, qmp?: Qmp): Promise<void>;
  /** Removes template `t` (its clones fail their identity: every clone would); the next pod builds it again. */
  discard?(t: TemplateImage, reason: string): Promise<void>;
}

/**
 * What a clone's QEMU is spawned from when no pod is known yet (standby-vmm.ts): only the template's
 * inputs (its key, files, sizing, NIC or not, and the clone's TCG buffer), nothing of a pod.
 */
export interface StandbySpec {
  key: string;
  memFile: string;
  stateFile: string;
  kernel: string;
  initramfs: string;
  memoryMiB: number;
  vcpus: number;
  accel: Accel;
  /** The template has a NIC: the standby's tap waits in a holding netns until a pod takes it. */
  nic: boolean;
  /** VmConfig.memMerge: a clone of a node-wide template. */
  memMerge: boolean;
  tbSizeMiB?: number;
  /** VmConfig.jitMemfd: the clone's translation buffer can be trimmed once its pod is idle (tb-trim.ts). */
  jitMemfd?: boolean;
  /**
   * A template with its sandbox container: the standby is restored and warmed up ahead (standby-vmm.ts
   * `#warm`). `image`: the sandbox's root image (slot 0 holds it when the guest runs); `kv`: the generic
   * part of the sandbox's request (template-sandbox.ts, the same for every pod of this template); `gid`:
   * the sandbox's session in the agent.
   */
  warm?: { image: string; kv: [string, string][]; gid: number };
}

/**
 * A standby VMM handed to a pod: its files are the pod dir's now, its QMP connection open and
 * prepared for `migrate-incoming`; `tap`: its NIC's tap, moved into the pod netns under this name
 * (down, not yet joined to the pod interface).
 * `restored`: its guest already runs the template's state (restored and warmed up ahead, slot 0 holding
 * the sandbox's image): the pod sends its identity, no `migrate-incoming`; its QMP connection is closed.
 */
export interface AdoptedVmm { vm: VmHandle; qmp: Qmp; tap?: string; restored?: boolean }

/**
 * Clone VMMs spawned ahead, one per template recently cloned (standby-vmm.ts; the node-wide host
 * only). A pod's start takes the one spawned for exactly its spec instead of spawning QEMU.
 */
export interface StandbyProvider {
  /**
   * The standby VMM spawned for exactly `spec`, now the pod's: recorded as `<podDir>/vmm.proc`, its
   * slot files, console log and QMP socket moved into `podDir` (same names as a spawned clone's);
   * with `net` (a spec with a NIC), its tap moved into the pod netns `net.netns` (a path) named `net.tap`.
   * Undefined when there is none ready (the caller spawns as before); never another spec's.
   */
  take(spec: StandbySpec, podDir: string, net?: { netns: string; tap: string }): Promise<AdoptedVmm | undefined>;
  /** A clone of `spec` is up: keep a standby VMM for the next one (spawned a moment later, not during this pod's start). */
  cloned(spec: StandbySpec): void;
}
