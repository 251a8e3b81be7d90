/**
 * microvm: each pod in its own QEMU microVM with its own guest kernel ('vm' isolation), driven
 * through conmon with `bulkhead-vm` (src/vm/cli.ts) as the OCI runtime. The infra container is
 * the pod's VM: its create boots the VM, its delete stops it; app containers are created inside
 * that VM through the CRI annotations. The probe reports the accelerator (kvm, or tcg when KVM
 * cannot run a guest here) and whether the guest kernel is set up.
 *
 * Network: not yet attached (no tap into the pod netns): pods run with `--network none` semantics.
 */
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../util/exec.ts';
import type { BackendOptions, ContainerStats, CreateContainerOptions, PodModel, ProbeResult, RuntimeCommand } from '../backend.ts';
import { CONTAINER_TYPE_ANNOTATION, ConmonBackend, SANDBOX_ID_ANNOTATION, versionLine } from '../conmon-backend.ts';
import type { OciSpec } from '../oci.ts';
import { loadGuestAssets } from '../../vm/assets.ts';
import { detectAccel } from '../../vm/accel.ts';
import { InternalError } from '../../errors.ts';

export const BULKHEAD_VM_BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/bulkhead-vm');

export interface MicrovmBackendOptions extends BackendOptions {
  /** Bulkhead's state root holding `vm/` (kernel, initramfs, images); default $BULKHEAD_ROOT or /var/lib/bulkhead. */
  assetsRoot?: string;
}

export class MicrovmBackend extends ConmonBackend {
  readonly name: string = 'microvm';
  readonly isolation = 'vm' as const;
  readonly podModel: PodModel = { infraContainer: true, network: 'sandbox', joinInfraNamespaces: false };
  readonly #assetsRoot: string;

  constructor(opts: MicrovmBackendOptions) {
    super(opts);
    this.#assetsRoot = opts.assetsRoot ?? process.env.BULKHEAD_ROOT ?? '/var/lib/bulkhead';
  }

  runtimeCommand(): RuntimeCommand {
    return { path: this.opts.binary ?? BULKHEAD_VM_BIN, globalArgs: ['--root', this.stateDir, '--assets', this.#assetsRoot, ...(this.opts.runtimeArgs ?? [])] };
  }

  protected override adjustSpec(spec: OciSpec, opts: CreateContainerOptions): OciSpec {
    spec.annotations = spec.annotations ?? {};
    spec.annotations[CONTAINER_TYPE_ANNOTATION] = opts.pod.role;
    spec.annotations[SANDBOX_ID_ANNOTATION] = opts.pod.role === 'sandbox' ? opts.id : opts.pod.sandboxContainerId ?? opts.id;
    if (spec.linux?.namespaces) spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'network').map((n) => ({ type: n.type }));
    return spec;
  }

  /** From the guest (the host cgroup of a container's supervisor says nothing about the guest). */
  override async stats(id: string, signal?: AbortSignal): Promise<ContainerStats> {
    const c = this.runtimeCommand();
    const r = await run(c.path, [...c.globalArgs, 'stats', id], { timeoutMs: 20_000, ...(signal ? { signal } : {}) });
    if (r.code !== 0) throw new InternalError(`bulkhead-vm stats ${id}: ${r.stderr.trim()}`);
    const s = JSON.parse(r.stdout) as Record<string, number>;
    return {
      cpuUsageNs: (s.cpu_usec ?? 0) * 1000, memoryWorkingSetBytes: s.memory_bytes ?? 0, memoryUsageBytes: s.memory_bytes ?? 0,
      pids: s.pids ?? 0, oomKills: s.oom_kills ?? 0, timestamp: new Date(),
    };
  }

  protected async probeHost(signal?: AbortSignal): Promise<ProbeResult> {
    const opt = signal ? { signal } : {};
    const details: Record<string, string> = {};
    try {
      const q = await run('qemu-system-x86_64', ['--version'], { timeoutMs: 10_000, ...opt });
      details.vmm = versionLine(q.stdout);
    } catch {
      return { available: false, reason: 'qemu-system-x86_64 is not installed; apt-get install qemu-system-x86', details };
    }
    try {
      const c = await run(this.opts.conmon ?? 'conmon', ['--version'], { timeoutMs: 10_000, ...opt });
      details.conmonVersion = versionLine(c.stdout);
    } catch {
      return { available: false, reason: 'conmon is not installed; apt-get install conmon', details };
    }
    let assets;
    try { assets = await loadGuestAssets(this.#assetsRoot); } catch (e) {
      return { available: false, reason: (e as Error).message, details: { ...details, kernel: 'not set up' } };
    }
    details.kernel = assets.kernelRelease;
    details.assets = join(this.#assetsRoot, 'vm');
    const a = await detectAccel(assets, { ...opt });
    details.accel = a.accel;
    details.accelReason = a.reason;
    return { available: true, details };
  }
}
