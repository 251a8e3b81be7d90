/**
 * microvm: each pod in its own QEMU microVM with its own guest kernel ('vm' isolation), driven
 * through conmon with `bulkhead-vm` (src/vm/cli.ts) as the OCI runtime. The infra container is
 * the pod's VM: its create boots the VM, its delete stops it; app containers are created inside
 * that VM through the CRI annotations. The probe reports the accelerator (kvm, or tcg when KVM
 * cannot run a guest here) and whether the guest kernel is set up.
 *
 * Network: the sandbox container's spec names the pod netns path (linux.namespaces, type network);
 * bulkhead-vm joins the VM to it through a tap (network/tap.ts). App containers' specs carry no
 * netns (podSandbox below): they share the VM's. No path = no NIC in the guest (`--network none`).
 */
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../util/exec.ts';
import type { BackendOptions, ContainerStats, CreateContainerOptions, ProbeResult, RuntimeCommand } from '../backend.ts';
import { SandboxHosted } from '../sandbox/sandbox-hosted.ts';
import type { PodSandboxSpec } from '../sandbox/pod-sandbox.ts';
import { CONTAINER_TYPE_ANNOTATION, ConmonBackend, SANDBOX_ID_ANNOTATION, versionLine } from '../conmon-backend.ts';
import type { OciSpec } from '../../oci/spec.ts';
import { guestAssetsCurrent, loadGuestAssets } from '../../vm/assets.ts';
import { detectAccel } from '../../vm/accel.ts';
import { VIRTIOFSD } from '../../vm/share.ts';
import { TRUST_LEVEL_ANNOTATION, VOLUMES_ANNOTATION } from '../../vm/annotations.ts';
import { hostKsm, parseTemplateSharing, TEMPLATE_SHARING, type TemplateSharing } from '../../vm/template-sharing.ts';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { FailedPreconditionError, InternalError, InvalidArgumentError } from '../../errors.ts';
import { readCgroupStats } from '../../cgroup/stats.ts';
import type { ConmonDriverOptions, InProcessRuntime, RuntimeLimits } from '../conmon/driver.ts';
import { badBootTimeout, bootTimeout, GLOBAL_FLAGS } from '../../vm/cmd/global.ts';
import { podVmReadyMs, SUPERVISOR_READY_MS } from '../../vm/limits.ts';
import { parseRuntimeFlags } from '../../vm/cmd/flags.ts';
import { AbortedError, DeadlineExceededError } from '../../errors.ts';
import { VmPoolAdoption } from './pool-adoption.ts';
import { trimIdleMs } from '../../vm/tb-trim.ts';

export const BULKHEAD_VM_BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/bulkhead-vm');

export interface MicrovmBackendOptions extends BackendOptions {
  /**
   * Root holding `vm/` (kernel, initramfs, images). Default: `--assets DIR` among the handler's
   * runtimeArgs, else the config setting `[vm] assets`, else $BULKHEAD_VM_ASSETS, else the node's
   * installed assets (/var/lib/bulkhead, where scripts/setup.sh builds them). Never the daemon's
   * `root`: a second daemon with a private root still finds the node's guest kernel.
   */
  assetsRoot?: string;
}

/** The node's installed VM assets root (scripts/setup.sh: `bulkhead-vm --assets /var/lib/bulkhead setup`). */
export const DEFAULT_VM_ASSETS = '/var/lib/bulkhead';

/** The `[vm]` table, its keys checked; InvalidArgument naming the setting. */
function vmSection(section: unknown): Record<string, unknown> | undefined {
  if (section === undefined) return undefined;
  if (typeof section !== 'object' || section === null || Array.isArray(section)) throw new InvalidArgumentError('config: vm must be a table');
  const t = section as Record<string, unknown>;
  for (const k of Object.keys(t)) if (k !== 'assets' && k !== 'template_sharing' && k !== 'volumes') throw new InvalidArgumentError(`config: unknown key vm.${k} (allowed: assets, template_sharing, volumes)`);
  return t;
}

/**
 * `[vm] template_sharing = "level" | "node" | "none"`: which pods' VMs may be clones of one template
 * (and so share its memory pages): pods of one trust level (default), every pod of the node, or
 * none (every pod VM boots). See src/vm/template.ts.
 */
export function vmTemplateSharingSetting(section: unknown): TemplateSharing | undefined {
  const v = vmSection(section)?.template_sharing;
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new InvalidArgumentError(`config: vm.template_sharing must be one of ${TEMPLATE_SHARING.join(', ')}`);
  return parseTemplateSharing(v, 'config: vm.template_sharing');
}

/**
 * `[vm] volumes = "copy" | "share"`: the volume mode of a microVM pod that names none (annotation
 * io.bulkhead.vm.volumes): `copy` = its volumes are copied into a VM without a virtio-fs share
 * (src/vm/copy-volumes.ts; such a VM may be a template clone), `share` (default) = virtio-fs.
 */
export function vmVolumesSetting(section: unknown): 'copy' | undefined {
  const v = vmSection(section)?.volumes;
  if (v === undefined || v === 'share') return undefined;
  if (v !== 'copy') throw new InvalidArgumentError('config: vm.volumes must be "copy" or "share"');
  return 'copy';
}

/** `[vm] assets = "/abs/dir"` from the raw config section; InvalidArgument naming the setting. */
export function vmAssetsSetting(section: unknown): string | undefined {
  const t = vmSection(section);
  if (t === undefined) return undefined;
  const v = t.assets;
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0')) throw new InvalidArgumentError('config: vm.assets must be an absolute directory path');
  return v;
}

/** The value of `--NAME VALUE` / `--NAME=VALUE` in runtime flags (the last one wins, as in bulkhead-vm). */
function runtimeFlag(args: readonly string[] | undefined, name: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < (args?.length ?? 0); i++) {
    const a = args![i]!;
    if (a === `--${name}` && i + 1 < args!.length) v = args![++i];
    else if (a.startsWith(`--${name}=`)) v = a.slice(`--${name}=`.length);
  }
  return v;
}
const assetsFlag = (args: readonly string[] | undefined): string | undefined => runtimeFlag(args, 'assets');

/**
 * A pod VM has its own kernel: it cannot share the node's network, IPC or PID namespace (as Kata
 * refuses them). Refused at RunPodSandbox, before a VM boots, naming the field and what to do;
 * never run with a private namespace in place of the host's.
 */
export function refuseHostNamespaces(pod: Pick<PodSandboxSpec, 'hostNetwork' | 'ipc' | 'pid'>): void {
  const asked = [pod.hostNetwork ? 'network (hostNetwork)' : '', pod.ipc === 'NODE' ? 'IPC (hostIPC)' : '', pod.pid === 'NODE' ? 'PID (hostPID)' : ''].filter(Boolean);
  if (!asked.length) return;
  throw new FailedPreconditionError(`microvm: the pod asks for the node's ${asked.join(', ')} namespace, which a microVM cannot share (the guest has its own kernel); run it with a runc RuntimeClass or drop the host namespace`);
}

export class MicrovmBackend extends ConmonBackend {
  readonly name: string = 'microvm';
  readonly isolation = 'vm' as const;
  /**
   * One VM per pod. An app container names no network (the VM's); it shares the pod's IPC and
   * UTS namespaces in the guest (the sandbox's), and its own PID namespace unless the pod shares
   * one (PID POD: the sandbox's) or it names a target (TARGET); the guest agent makes and joins
   * them. Port-forward connects from inside the VM.
   */
  readonly podSandbox = new SandboxHosted(this, {
    // 'sandbox' = no entry in the spec = the pod's namespace in the guest (bulkhead-vm: spec.ts
    // namespaceKv); TARGET names the target's pid as bulkhead-vm reports it
    namespaces: (req) => ({
      network: 'sandbox', ipc: 'sandbox', uts: 'sandbox',
      pid: req.pid === 'POD' ? 'sandbox' : req.pid === 'TARGET' && req.target ? { path: `/proc/${req.target.pid}/ns/pid` } : 'private',
    }),
    dialVia: () => 'sandbox',
    check: refuseHostNamespaces,
    // warm pools (./pool-adoption.ts)
    setHostname: (id, hostname, signal) => this.#pool.setHostname(id, hostname, signal),
    armHostname: (id) => this.#pool.arm(id),
    setCgroupsPath: async (id, path) => {
      const old = await this.driver.cgroupsPath(id);
      const done = await Promise.allSettled([this.#pool.movedTo(id, old, path), this.driver.setCgroupsPath(id, path)]);
      for (const r of done) if (r.status === 'rejected') throw r.reason;
    },
  });
  readonly #pool = new VmPoolAdoption(() => this.stateDir, this.log);
  readonly #assetsRoot: string;
  readonly #templateSharing: TemplateSharing | undefined;
  /** The volume mode of a pod that names none: `--volumes` in runtime_args, else `[vm] volumes`. */
  readonly #volumesDefault: 'copy' | undefined;
  /** prepareCreate ran: pod supervisors may be waiting in standby (src/vm/cmd/create.ts). */
  #standbys = false;
  readonly #limits: RuntimeLimits;

  constructor(opts: MicrovmBackendOptions) {
    super(opts);
    this.#assetsRoot = opts.assetsRoot ?? assetsFlag(opts.runtimeArgs) ?? vmAssetsSetting(opts.vm) ?? (process.env.BULKHEAD_VM_ASSETS || undefined) ?? DEFAULT_VM_ASSETS;
    this.#templateSharing = vmTemplateSharingSetting(opts.vm);
    const flag = runtimeFlag(opts.runtimeArgs, 'volumes');
    if (flag !== undefined && flag !== 'copy' && flag !== 'share') throw new InvalidArgumentError('microvm handler: --volumes must be copy or share (the handler\'s runtime_args)');
    this.#volumesDefault = flag !== undefined ? (flag === 'copy' ? 'copy' : undefined) : vmVolumesSetting(opts.vm);
    this.#limits = vmRuntimeLimits(this.runtimeCommand().globalArgs);
  }

  /** Derived from bulkhead-vm's boot timeout (vmRuntimeLimits), as bulkhead-vm itself reads it. */
  override runtimeLimits(): RuntimeLimits { return this.#limits; }

  runtimeCommand(): RuntimeCommand {
    const extra = this.opts.runtimeArgs ?? [];
    const assets = assetsFlag(extra) !== undefined ? [] : ['--assets', this.#assetsRoot];
    // --log-format json: a failure's class and reason reach runtime/errors.ts as bulkhead-vm threw them
    const sharing = this.#templateSharing && runtimeFlag(extra, 'template-sharing') === undefined ? ['--template-sharing', this.#templateSharing] : [];
    // the sandbox spec carries the pod's mode (adjustSpec); --volumes in runtime_args reaches bulkhead-vm as it is
    return { path: this.opts.binary ?? BULKHEAD_VM_BIN, globalArgs: ['--root', this.stateDir, ...assets, ...sharing, ...extra, '--log-format', 'json'] };
  }

  /**
   * start, state, kill and delete run in the daemon's process, the same code `bulkhead-vm` runs
   * (src/vm/cmd/): each spawned `bulkhead-vm` is a Node.js start (~100-250 ms under load) and a
   * templated `run --rm` made four of them. create stays a process (conmon runs it and waits on
   * the container supervisor it starts), done in the daemon up to that start (prepareCreate). Off when the handler names another runtime binary, or
   * with BULKHEAD_VM_IN_PROCESS=0 (=1 forces it on, for measuring with a wrapper binary).
   */
  protected override inProcessRuntime(): InProcessRuntime | undefined {
    const env = process.env.BULKHEAD_VM_IN_PROCESS;
    if (env === '0' || (this.opts.binary !== undefined && env !== '1')) return undefined;
    const root = this.stateDir;
    return (args, { signal, timeoutMs }) => {
      const [sub, ...rest] = args;
      let op: (() => Promise<string>) | undefined;
      if (sub === 'start' && rest.length === 1) op = async () => { await (await import('../../vm/cmd/start.ts')).startContainer(root, rest[0]!, timeoutMs); return ''; };
      else if (sub === 'state' && rest.length === 1) op = async () => (await import('../../vm/cmd/state.ts')).containerState(root, rest[0]!);
      else if (sub === 'kill' && (rest.length === 1 || rest.length === 2)) op = async () => { await (await import('../../vm/cmd/kill.ts')).killContainer(root, rest[0]!, rest[1] ?? 'SIGTERM', false, timeoutMs); return ''; };
      else if (sub === 'delete' && rest.length === 2 && rest[0] === '--force') op = async () => { await (await import('../../vm/cmd/delete.ts')).deleteContainer(root, rest[1]!, true); return ''; };
      // the operation's own limits (the socket waits it is given) end it first, with their cause
      return op ? bounded(op(), `bulkhead-vm ${sub}`, timeoutMs + IN_PROCESS_GRACE_MS, signal) : undefined;
    };
  }

  /**
   * A container's create up to starting its supervisor (the C shim) runs in the daemon's process
   * too (src/vm/cmd/create.ts prepareCreate: the record, the rootfs image, a sandbox's pod VM): the
   * `bulkhead-vm create` conmon runs then finds the `front` file and only starts the shim, in POSIX
   * sh (bin/bulkhead-vm), without a Node.js start (~60-100 ms each, two per `run`). Where
   * start/state/kill/delete run in process; not for a terminal container (conmon makes its console socket).
   * A sandbox's supervisor comes from a standby started ahead (create.ts standbys). Off with
   * BULKHEAD_VM_PREPARE=0 (for measuring against the Node.js create).
   */
  protected override prepareCreate(): ConmonDriverOptions['prepareCreate'] {
    if (!this.inProcessRuntime() || process.env.BULKHEAD_VM_PREPARE === '0') return undefined;
    const globalArgs = this.runtimeCommand().globalArgs;
    return async (id, bundle, spec, signal) => {
      if (spec.process?.terminal) return undefined;
      const [{ prepareCreate, recordCreated, undoCreate, writeFront }, { GLOBAL_FLAGS, checkGlobal, globalOptions }, { parseRuntimeFlags }] = await Promise.all([
        import('../../vm/cmd/create.ts'), import('../../vm/cmd/global.ts'), import('../../vm/cmd/flags.ts'),
      ]);
      const g = globalOptions(parseRuntimeFlags(globalArgs, GLOBAL_FLAGS).flags, process.env);
      checkGlobal(g);
      await mkdir(g.root, { recursive: true, mode: 0o700 });
      this.#standbys = true;
      const p = await prepareCreate(g, id, bundle, undefined, { ...(signal ? { signal } : {}), standby: true });
      try { await writeFront(g, p); } catch (e) { await undoCreate(g, p); throw e; }
      return { created: (pid) => recordCreated(g, p, pid), abandon: () => undoCreate(g, p) };
    };
  }

  protected override adjustSpec(spec: OciSpec, opts: CreateContainerOptions): OciSpec {
    if (opts.pod.role === 'container' && !opts.pod.sandboxContainerId) throw new InvalidArgumentError('microvm: an app container needs pod.sandboxContainerId (it runs inside the pod\'s VM)');
    spec.annotations = spec.annotations ?? {};
    spec.annotations[CONTAINER_TYPE_ANNOTATION] = opts.pod.role;
    spec.annotations[SANDBOX_ID_ANNOTATION] = opts.pod.role === 'sandbox' ? opts.id : opts.pod.sandboxContainerId ?? opts.id;
    // VM templates (src/vm/template.ts): the pod's trust level groups the clones that may share a
    // template's memory; a pod that says it binds no volumes may be a clone. Set here only, from the
    // pod's record: whatever a spec brought under these keys is dropped first.
    delete spec.annotations[TRUST_LEVEL_ANNOTATION];
    delete spec.annotations[VOLUMES_ANNOTATION];
    if (opts.pod.role === 'sandbox') {
      if (opts.pod.trustLevel !== undefined) spec.annotations[TRUST_LEVEL_ANNOTATION] = opts.pod.trustLevel;
      const mode = this.podVolumes(opts.pod.podAnnotations);
      if (mode) spec.annotations[VOLUMES_ANNOTATION] = mode;
    }
    // the namespaces are the pod strategy's (podSandbox): the sandbox's spec names the pod netns
    // (bulkhead-vm puts the VM's tap there), an app container's names none
    return spec;
  }

  /**
   * A pod's volume mode: `none`, `copy` or `share` as its annotation says, else the handler's default
   * (`copy`, or undefined: a virtio-fs share). Both named modes only narrow what the pod's VM has
   * (no share): a pod's annotation never widens anything.
   */
  podVolumes(podAnnotations: Record<string, string> | undefined): 'none' | 'copy' | 'share' | undefined {
    const v = podAnnotations?.[VOLUMES_ANNOTATION];
    if (v === 'none' || v === 'copy') return v;
    // `share` opts a pod out of a copying handler's default (its VM boots with virtio-fs)
    return v === 'share' && this.#volumesDefault ? 'share' : this.#volumesDefault;
  }

  /** Armed pooled VMs' hostname sessions end (their shells are killed in the guests); the VMs keep running. */
  override async close(): Promise<void> {
    this.#pool.close();
    if (this.#standbys) await (await import('../../vm/cmd/create.ts')).endStandbys();
    // the node-wide VM supervisor this daemon's pods used leaves now rather than idle for a next pod
    if (existsSync(join(this.stateDir, 'vmhost.sock'))) await (await import('../../vm/cmd/vmhost-client.ts')).leaveIdleHost(this.stateDir);
    await super.close();
  }

  /**
   * From the guest (the host cgroup of a container's supervisor says nothing about the guest). In
   * the daemon's process as start/state/kill/delete are (inProcessRuntime): the kubelet polls it.
   */
  override async stats(id: string, signal?: AbortSignal): Promise<ContainerStats> {
    let s: Record<string, number>;
    if (this.inProcessRuntime()) {
      const root = this.stateDir;
      s = await bounded((async () => (await import('../../vm/cmd/stats.ts')).containerStats(root, id, 20_000))(), 'bulkhead-vm stats', 20_000, signal);
    } else {
      const c = this.runtimeCommand();
      const r = await run(c.path, [...c.globalArgs, 'stats', id], { timeoutMs: 20_000, ...(signal ? { signal } : {}) });
      if (r.code !== 0) throw new InternalError(`bulkhead-vm stats ${id}: ${r.stderr.trim()}`);
      s = JSON.parse(r.stdout) as Record<string, number>;
    }
    return {
      cpuUsageNs: (s.cpu_usec ?? 0) * 1000, memoryWorkingSetBytes: s.memory_bytes ?? 0, memoryUsageBytes: s.memory_bytes ?? 0,
      pids: s.pids ?? 0, oomKills: s.oom_kills ?? 0, timestamp: new Date(),
    };
  }

  /**
   * The VM's own usage: the host cgroup bulkhead-vm moved QEMU into (the sandbox container's
   * cgroupsPath), so CPU is every vCPU and emulation thread and memory is what the guest's RAM
   * and QEMU really take on the host.
   */
  async podStats(sandboxId: string, _signal?: AbortSignal): Promise<ContainerStats> {
    return await readCgroupStats(await this.driver.cgroupsPath(sandboxId));
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
      return {
        available: false,
        reason: `${(e as Error).message} (looked in ${join(this.#assetsRoot, 'vm')}: setting [vm] assets, default ${DEFAULT_VM_ASSETS})`,
        details: { ...details, kernel: 'not set up', assets: join(this.#assetsRoot, 'vm') },
      };
    }
    details.kernel = assets.kernelRelease;
    // pod VMs that bind no volumes start as clones of a template shared as this says (src/vm/template.ts)
    // who supervises the pod VMs: one process per node (default) or per pod (--supervisor, BULKHEAD_VM_SUPERVISOR)
    details.supervisor = runtimeFlag(this.opts.runtimeArgs, 'supervisor') ?? (process.env.BULKHEAD_VM_SUPERVISOR || 'node');
    details.templates = runtimeFlag(this.opts.runtimeArgs, 'template-sharing') ?? this.#templateSharing ?? process.env.BULKHEAD_VM_TEMPLATE_SHARING ?? 'level';
    // the host's page merging: it takes only clones of a node-wide template (template_sharing node; ~5 MiB per idle pod measured)
    const ksm = hostKsm();
    if (ksm) details.ksm = ksm;
    // an idle TCG pod VM gives back its translation buffer (src/vm/tb-trim.ts; the daemon's environment reaches the VM host)
    const trim = trimIdleMs();
    details.idleTrim = trim ? `after ${trim / 1000} s quiet (TCG, one vCPU)` : 'off (BULKHEAD_VM_TB_TRIM_IDLE_MS=0)';
    details.assets = join(this.#assetsRoot, 'vm');
    // host paths and kubelet volumes reach the guest over virtio-fs; without the server they are refused at CreateContainer
    details.volumes = existsSync(VIRTIOFSD) ? `virtio-fs (${VIRTIOFSD})` : `none: ${VIRTIOFSD} missing (apt-get install qemu-system-common); containers with volumes are refused unless copied`;
    // a pod that names no mode (annotation io.bulkhead.vm.volumes) gets this one
    details.volumesDefault = this.#volumesDefault ?? 'share';
    // An agent built from older guest sources would be refused at every pod start (or, older
    // still, run containers without the guest's namespaces, capabilities and seccomp).
    if (!await guestAssetsCurrent(this.#assetsRoot)) {
      return {
        available: false,
        reason: `the guest agent in ${details.assets} was built from other guest/ sources than this Bulkhead's; rebuild it: bin/bulkhead-vm --assets ${this.#assetsRoot} setup`,
        details: { ...details, agent: 'stale' },
      };
    }
    const a = await detectAccel(assets, { ...opt });
    details.accel = a.accel;
    details.accelReason = a.reason;
    return { available: true, details };
  }
}

/** What an in-process runtime call is given beyond the limit its operation was told (see inProcessRuntime). */
const IN_PROCESS_GRACE_MS = 2000;

/**
 * The conmon driver's limits for bulkhead-vm, from its boot timeout as bulkhead-vm reads it (its
 * global flags, then BULKHEAD_VM_BOOT_TIMEOUT_MS, then its default): a call (start, kill) may take a
 * boot's time (the guest runs under the same emulation), a create a pod VM's start (vm/limits.ts
 * podVmReadyMs: a boot, or a template build and a clone's start) and then its container
 * supervisor's (SUPERVISOR_READY_MS), each with a margin of a quarter of the boot timeout (1-30 s), so
 * bulkhead-vm's own error, which names its cause, comes first.
 */
export function vmRuntimeLimits(globalArgs: readonly string[], env: NodeJS.ProcessEnv = process.env): RuntimeLimits {
  const boot = bootTimeout(parseRuntimeFlags(globalArgs, GLOBAL_FLAGS).flags, env);
  const bad = badBootTimeout(boot);
  if (bad) throw new InvalidArgumentError(`microvm handler: ${bad} (the handler's runtime_args or the environment)`);
  const margin = Math.min(30_000, Math.max(1000, Math.round(boot / 4)));
  return {
    callMs: boot + margin,
    createMs: podVmReadyMs(boot, true) + SUPERVISOR_READY_MS + margin,
    setting: `the microvm handler's runtime-call limits follow its VM boot timeout, now ${boot} ms: raise it with --boot-timeout MS in the handler's runtime_args or BULKHEAD_VM_BOOT_TIMEOUT_MS`,
  };
}

/**
 * `p` within `timeoutMs` and until `signal` aborts, as a spawned runtime call would be (each
 * in-process operation bounds its own socket waits too, so nothing is left waiting for ever).
 */
function bounded<T>(p: Promise<T>, what: string, timeoutMs: number, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = (): void => { clearTimeout(t); signal?.removeEventListener('abort', onAbort); };
    const onAbort = (): void => { done(); reject(new AbortedError(`${what} aborted`)); };
    const t = setTimeout(() => { done(); reject(new DeadlineExceededError(`${what} did not finish within ${timeoutMs} ms`)); }, timeoutMs);
    if (signal?.aborted) { onAbort(); return; }
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { done(); resolve(v); }, (e: unknown) => { done(); reject(e instanceof Error ? e : new Error(String(e))); });
  });
}
