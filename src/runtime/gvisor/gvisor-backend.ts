// Over 500 lines on purpose: runsc's many host-specific workarounds (platform probe, network mode, cgroups, the subcontainer shim) sit beside the one conmon driver they adjust.
/**
 * gVisor (runsc): a user-space kernel between the workload and the host ('user-kernel').
 * One sandbox per pod: the infra container is the sandbox (runsc root container), app containers
 * are sub-containers inside it (CRI annotations), each under its own conmon through the shim in
 * ./subcontainer-shim.ts, which conmon and the driver run in place of runsc. Platform detection
 * tries systrap, kvm, ptrace by really running a tiny sandbox with each and remembers the first
 * that works in `<runDir>/platform.json` (the flags this daemon's sandboxes run with) and, for
 * every later daemon on this boot of the node, in `<cacheDir>/runsc-probe.v2.json`. On a host whose
 * /dev/kvm exists but cannot run guests (a nested PVM host), `runsc do --platform=kvm` never
 * returns; its probe has a short deadline of its own and is killed with its sandbox and gofer.
 *
 * Network: `--network=sandbox`, gVisor's own netstack, which takes over the pod netns's
 * interfaces and addresses when the sandbox starts; the workload's network syscalls never reach
 * the host kernel. Debian's 2022 runsc refuses it in every netns of a recent kernel ("cannot run
 * with network enabled in root network namespace"): the probe tries it plain, then with the
 * workaround of ./runsc-launch.ts (the runsc that starts a sandbox sees no /proc/sys/net), and
 * records which (`launch`). A host-network pod runs `--network=host` (never netstack over the
 * node's interfaces). Only when neither works does every sandbox run `--network=host` *inside the
 * pod's network namespace* (network syscalls passed to the host kernel within that netns). The
 * probe reports which mode is in force and why (`details.network`, `details.networkNote`).
 *
 * What a pod gets: one Sentry for all its containers. 127.0.0.1, the pod IP and ports are shared
 * (netstack's, or the pod netns's with --network=host); port-forward execs `nc` in the sandbox
 * container (with --network=host it enters the pod netns). With --network=host the Sentry makes
 * the socket calls with the pause spec's capabilities, which therefore hold CAP_NET_BIND_SERVICE
 * (a container's own drop of it is not enforced there). PID POD (`shareProcessNamespace`) puts a
 * container in the sandbox's root PID namespace, the pause's; TARGET joins the target's
 * namespace (`podNamespaces`, this backend's part of ../sandbox/sandbox-hosted.ts). In one sandbox the pod's PID namespace is the parent of each container's
 * own, so a pod mixing PID POD and private namespaces is refused (Kubernetes sets
 * shareProcessNamespace per pod). Resource limits are pod-level: the sub-containers' processes
 * run in the Sentry, in the sandbox's cgroup, bounded by the sum of their limits (going over it
 * ends the whole sandbox).
 *
 * A one-shot pod (SINGLE_CONTAINER_ANNOTATION, `bulkhead run --rm`) with no sysctls and no host
 * namespaces, on the loopback-only network ('none') or on the pod network while netstack is in
 * force, has no pause: its one container is the runsc root container, one sandbox as podman makes
 * it (the pause's create, start and removal and a sub-container's gofer and waiter are not paid).
 * On 'none' that sandbox runs `--network=none` (gVisor's own loopback; the shim rewrites the flag
 * for it: ROOT_APP_ANNOTATION 'true'), on the pod network `--network=sandbox` in the pod netns
 * ('netstack'). Either way the Sentry is in a user namespace of its own; with --network=host it
 * would hold the root container's capabilities as host capabilities (measured: CapEff = the app's
 * set + SYS_PTRACE), which for a pause are CAP_NET_BIND_SERVICE alone: such pods take the pause
 * way. The sandbox cgroup gets the limits a pod of that one container would (podLimits). The pod
 * holds one container at a time (`<podDir>/gvisor-root-app` names it); port-forward does not reach
 * it (published ports do).
 */
import { ownedTempDir, sweepTempDirs } from '../../util/temp-dir.ts';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, type RunResult } from '../../util/exec.ts';
import { procStat } from '../../util/proc.ts';
import type { BackendOptions, ContainerStats, CreateContainerOptions, ProbeResult, RuntimeCommand } from '../backend.ts';
import { SandboxHosted } from '../sandbox/sandbox-hosted.ts';
import type { ContainerNamespaceRequest } from '../sandbox/pod-sandbox.ts';
import type { NamespaceChoice } from '../spec.ts';
import { CONTAINER_TYPE_ANNOTATION, ConmonBackend, SANDBOX_ID_ANNOTATION, versionLine } from '../conmon-backend.ts';
import { resolveBinary, type ConmonDriverOptions, type InProcessRuntime } from '../conmon/driver.ts';
import type { OciLinuxResources, OciNamespace, OciSpec } from '../../oci/spec.ts';
import { writeCgroupResources } from '../../cgroup/limits.ts';
import { writeProbeBundle } from '../pause.ts';
import { classifyRuntimeFailure, runtimeMessage } from '../errors.ts';
import { FailedPreconditionError, InvalidArgumentError, UnavailableError } from '../../errors.ts';
import { readCgroupStats } from '../../cgroup/stats.ts';
import { KIND_FILE, ROOT_APP_ANNOTATION, shellQuote, shimKindOf, writeSubcontainerShim } from './subcontainer-shim.ts';
import { SINGLE_CONTAINER_ANNOTATION, type PodSandboxSpec } from '../sandbox/pod-sandbox.ts';
import { launchArgv, SANDBOX_NETWORK_ANNOTATION, sandboxNetworkOf, type SandboxLaunch } from './runsc-launch.ts';
import { endedSandbox, removeEndedSandbox } from './runsc-delete.ts';

/** Scratch dirs of platform detection: `<tmp>/<this><pid>-XXXXXX`. */
const RUNSC_PROBE_DIR = 'bulkhead-runsc-probe-';

const PLATFORMS = ['systrap', 'kvm', 'ptrace'] as const;
/**
 * How long a platform probe may take. A working platform answers `runsc do … exit 7` in ~0.5 s
 * (ptrace here, on a quiet host); kvm on a host that cannot run guests spins until killed, and
 * every fresh daemon paid the whole deadline before ptrace was tried.
 */
const PROBE_TIMEOUT_MS: Record<(typeof PLATFORMS)[number], number> = { systrap: 10_000, kvm: 8_000, ptrace: 20_000 };
/** Where probe results are shared by every daemon of this node (overridden by BackendOptions.cacheDir). */
const DEFAULT_CACHE_DIR = '/var/cache/bulkhead';
/**
 * Names a sub-container's own PID namespace in its spec. runsc only compares these strings between
 * containers of one sandbox (it opens nothing), so any unique absolute path would do.
 */
const PIDNS_TAG = '/bulkhead-gvisor-pidns';
/** The host capability a pod sandbox's Sentry needs for its containers' sockets (see adjustSpec). */
const SANDBOX_HOST_CAP = 'CAP_NET_BIND_SERVICE';
/** How long a sandbox whose gofer was ended is given to end by itself before it is sent SIGTERM. */
const SANDBOX_END_MS = 150;
/** Capabilities runsc 2022 does not know and rejects. */
const UNSUPPORTED_CAPS = new Set(['CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE']);

interface Detected {
  platform: string;
  network: 'sandbox' | 'host';
  /** How the runsc that creates a sandbox is started for --network=sandbox (./runsc-launch.ts). */
  launch?: SandboxLaunch;
  networkNote?: string;
  version: string;
  /** runsc applies the spec's seccomp profile inside the sandbox (--oci-seccomp). */
  ociSeccomp?: boolean;
  tried: Record<string, string>;
  /** probeKey() of the detection (runsc binary, version, kernel, boot, DETECT_REVISION). */
  key?: string;
}
/**
 * The revision of detect()'s logic, part of every cached result's key: a Bulkhead that detects
 * differently (a new workaround, a new flag) does not keep an older Bulkhead's weaker result for
 * the rest of the boot. Raise it whenever detect() changes what it can find.
 */
const DETECT_REVISION = 3;

export class GvisorBackend extends ConmonBackend {
  readonly name: string = 'gvisor';
  readonly isolation = 'user-kernel' as const;
  /** One sandbox per pod; its containers are runsc sub-containers. */
  readonly podSandbox = new SandboxHosted(this, {
    namespaces: (req) => this.podNamespaces(req),
    // with --network=host the pod's sockets are host sockets in the pod netns
    dialVia: () => (this.hostNetwork() ? 'netns' : 'sandbox'),
    setHostname: (id, hostname, signal) => this.setSandboxHostname(id, hostname, signal),
    armHostname: (id) => { this.armHostname(id); },
    setCgroupsPath: (id, path) => this.setSandboxCgroup(id, path),
    rootApp: (pod) => rootAppFits(pod, this.sandboxLaunch() !== undefined),
    rootNamespaces: (req) => this.rootNamespaces(req),
  });
  /** Containers that rootNamespaces placed as their pod's sandbox, until adjustSpec makes them one. */
  private readonly rootApps = new Set<string>();
  /** Pooled sandboxes' waiting `sethostname` processes (armHostname), by sandbox id. */
  private readonly hostnameWaiters = new Map<string, { give: (line: string) => void; done: Promise<RunResult | Error> }>();
  private readonly closing = new AbortController();
  private detected: Detected | undefined;
  private readonly podLimitQueue = new Map<string, Promise<void>>();

  private get bin(): string { return this.opts.binary ?? 'runsc'; }

  constructor(opts: BackendOptions) {
    super(opts);
    // a fresh instance (after a daemon restart) drives existing sandboxes with the detected flags
    try {
      this.detected = JSON.parse(readFileSync(join(opts.runDir, 'platform.json'), 'utf8')) as Detected;
    } catch { /* probe() detects */ }
  }

  /**
   * conmon and the driver run runsc through the sub-container shim (./subcontainer-shim.ts), which
   * passes every call through except create/start/delete of an app container inside a sandbox.
   */
  runtimeCommand(): RuntimeCommand {
    const d = this.detected;
    mkdirSync(this.opts.runDir, { recursive: true, mode: 0o700 });
    const shim = join(this.opts.runDir, 'runsc-shim');
    const launch = this.sandboxLaunch();
    writeSubcontainerShim(shim, { runsc: resolveBinary(this.bin), runDir: this.opts.runDir, ...(launch ? { sandboxLaunch: launch } : {}) });
    const extra = this.opts.runtimeArgs ?? [];
    const hasPlatform = extra.some((a) => a.startsWith('--platform'));
    const hasNetwork = extra.some((a) => a.startsWith('--network'));
    return {
      path: shim,
      globalArgs: [
        '--root', this.stateDir,
        ...(hasPlatform ? [] : [`--platform=${d?.platform ?? 'ptrace'}`]),
        ...(hasNetwork ? [] : [this.networkFlag()]),
        ...(d?.ociSeccomp ? ['--oci-seccomp'] : []),
        ...extra,
      ],
    };
  }

  /**
   * The `runsc exec` used directly and by conmon's exec sessions. conmon runs `<runtime> exec ...
   * --tty --console-socket S` for a terminal exec; runsc takes the terminal from process.json and
   * rejects `--tty` ("flag provided but not defined"), so the wrapper drops that flag. It also adds
   * `--internal-pid-file <pidfile>.internal`, the exec'd process's pid inside the sandbox, which
   * killExecProcess needs. It ends by exec'ing runsc, so the pid is runsc's own.
   */
  protected override execRuntimePath(): string {
    const path = join(this.opts.runDir, 'runsc-exec');
    const script = [
      '#!/bin/sh',
      '# written by bulkhead for `runsc exec`: drop --tty (conmon passes it; runsc takes the terminal from',
      '# process.json), and after --pid-file P ask for the pid inside the sandbox in P.internal',
      'prev=',
      'for a; do',
      '  shift',
      '  [ "$a" = --tty ] || set -- "$@" "$a"',
      '  [ "$prev" = --pid-file ] && set -- "$@" --internal-pid-file "$a.internal"',
      '  prev=$a',
      'done',
      `exec ${shellQuote(resolveBinary(this.bin))} "$@"`,
      '',
    ].join('\n');
    writeFileSync(path, script, { mode: 0o700 });
    return path;
  }

  /** The shim's word for the container (./subcontainer-shim.ts KIND_FILE), next to the config.json it comes from. */
  protected override prepareCreate(): ConmonDriverOptions['prepareCreate'] {
    return async (_id, bundle, spec) => {
      await writeFile(join(bundle, KIND_FILE), `${shimKindOf(spec)}\n`, { mode: 0o600 });
      return undefined;
    };
  }

  /**
   * Two runtime calls skip a process (ConmonDriverOptions.inProcess); every other case, and every
   * other command, goes through the shim as before. Off with BULKHEAD_GVISOR_IN_PROCESS=0 (for
   * measuring against the shim and runsc's own delete).
   *  - `delete --force` of a sandbox (a pod's, or a one-shot pod's container) whose exit conmon
   *    recorded runs in the daemon's process (./runsc-delete.ts: what runsc would do there, without
   *    a Go binary's start);
   *  - `start` of a one-shot pod's container that is its sandbox (shim kind 'root-app') runs runsc
   *    directly with the network flag the shim would give it (`--network=none` where netstack is
   *    in force, else the global flags), without the shim's shell before it.
   */
  protected override inProcessRuntime(): InProcessRuntime | undefined {
    if (process.env.BULKHEAD_GVISOR_IN_PROCESS === '0') return undefined;
    return (args, { signal, timeoutMs }) => {
      if (args.length === 2 && args[0] === 'start') return this.startRootApp(args[1]!, timeoutMs, signal);
      const c = this.endedDeleteOf(args);
      const ended = c?.spec.annotations?.[CONTAINER_TYPE_ANNOTATION] === 'sandbox' ? endedSandbox(this.stateDir, c.id, c.spec.linux?.cgroupsPath) : undefined;
      if (!ended) return undefined;
      return removeEndedSandbox(ended).then((done) => {
        if (done) return '';
        this.log.debug('a cgroup of the ended sandbox stays; runsc deletes it', { id: ended.id });
        return undefined;
      });
    };
  }

  /** `runsc start` of a root app without the shim (see inProcessRuntime); undefined for any other container. */
  private startRootApp(id: string, timeoutMs: number, signal?: AbortSignal): Promise<string> | undefined {
    let kind: string;
    try { kind = readFileSync(join(this.driver.bundleDir(id), KIND_FILE), 'utf8').trim(); } catch { return undefined; }
    if (kind !== 'root-app') return undefined;
    const globals = this.sandboxLaunch() ? withNetworkFlag(this.driver.runtime.globalArgs, 'none') : [...this.driver.runtime.globalArgs];
    // through the shell runner: the daemon is not forked for it (3-6 ms on the run's path)
    return this.driver.spawnRuntime({ path: resolveBinary(this.bin), globalArgs: globals }, ['start', id], { timeoutMs, viaShell: true, ...(signal ? { signal } : {}) });
  }

  /**
   * The driver takes runtimeCommand() once, when first used; a daemon's recovery (a first `list`)
   * may come before the probe, and its runsc calls would then keep the defaults (--network=host,
   * no --oci-seccomp) for the daemon's life. The detected flags are put in place here (the same
   * array conmon's exec sessions read).
   */
  private followDetection(): void {
    const args = this.driver.runtime.globalArgs;
    const fresh = this.runtimeCommand().globalArgs;
    if (args.join('\0') !== fresh.join('\0')) args.splice(0, args.length, ...fresh);
  }

  /** The --network flag runsc runs with: the configured one, else the detected mode. */
  private networkFlag(): string {
    const flag = [...(this.opts.runtimeArgs ?? [])].reverse().find((x) => x.startsWith('--network'));
    return flag ?? `--network=${this.detected?.network ?? 'host'}`;
  }

  /** runsc runs with --network=host (the pod's sockets are the Sentry's host sockets). */
  private hostNetwork(): boolean {
    return this.networkFlag() === '--network=host';
  }

  /** With --network=sandbox: how a sandbox's runsc create is started (the probe found out); else undefined. */
  private sandboxLaunch(): SandboxLaunch | undefined {
    return this.networkFlag() === '--network=sandbox' ? this.detected?.launch ?? 'plain' : undefined;
  }

  protected override adjustSpec(spec: OciSpec, opts: CreateContainerOptions): OciSpec {
    const rootApp = opts.pod.role === 'container' && !opts.pod.sandboxContainerId && this.rootApps.delete(opts.id);
    if (opts.pod.role === 'container' && !opts.pod.sandboxContainerId && !rootApp) throw new InvalidArgumentError('gvisor: an app container needs pod.sandboxContainerId (it runs inside the pod\'s sandbox)');
    spec.annotations = spec.annotations ?? {};
    // only this backend says which sandbox is a pod's one container (the shim reads it): 'true' runs
    // --network=none, 'netstack' gVisor's netstack in the pod netns (never --network=host: the
    // Sentry would hold the app's capabilities on the host)
    delete spec.annotations[ROOT_APP_ANNOTATION];
    const rootNetstack = rootApp && !!spec.linux?.namespaces?.some((n) => n.type === 'network' && n.path);
    if (rootNetstack && (!this.sandboxLaunch() || sandboxNetworkOf(spec) !== 'sandbox')) {
      throw new FailedPreconditionError('gvisor: a one-shot pod\'s container on the pod network runs only on gVisor\'s netstack (--network=sandbox), which is not in force for it; run it without --rm');
    }
    if (rootApp) spec.annotations[ROOT_APP_ANNOTATION] = rootNetstack ? 'netstack' : 'true';
    const sandboxId = opts.pod.role === 'sandbox' || rootApp ? opts.id : opts.pod.sandboxContainerId ?? opts.id;
    spec.annotations[CONTAINER_TYPE_ANNOTATION] = rootApp ? 'sandbox' : opts.pod.role;
    spec.annotations[SANDBOX_ID_ANNOTATION] = sandboxId;
    const caps = spec.process?.capabilities;
    if (caps) {
      for (const k of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const) {
        if (caps[k]) caps[k] = caps[k].filter((c) => !UNSUPPORTED_CAPS.has(c));
      }
    }
    // the shim reads this mark (only the backend sets it; a pod's own value is dropped)
    delete spec.annotations[SANDBOX_NETWORK_ANNOTATION];
    let hostNetwork = this.hostNetwork();
    if (rootNetstack) spec.annotations[SANDBOX_NETWORK_ANNOTATION] = 'sandbox';
    else if (opts.pod.role === 'sandbox' && this.sandboxLaunch()) {
      // netstack in the pod netns; a pod on the node's network gets --network=host (never netstack
      // over the node's own interfaces, see ./runsc-launch.ts)
      const mode = sandboxNetworkOf(spec);
      spec.annotations[SANDBOX_NETWORK_ANNOTATION] = mode;
      hostNetwork = mode === 'host';
    }
    if (opts.pod.role === 'sandbox' && hostNetwork && spec.process) {
      // With --network=host the Sentry makes every container's socket calls on the host, holding
      // the root (pause) container's capabilities as its own host capabilities (measured: with
      // none, a sub-container with CAP_NET_BIND_SERVICE gets EACCES binding port 80). The pod's
      // containers need to bind low ports in the pod netns; nothing else is added.
      const c = spec.process.capabilities ?? {};
      for (const k of ['bounding', 'effective', 'permitted'] as const) {
        if (!c[k]?.includes(SANDBOX_HOST_CAP)) c[k] = [...(c[k] ?? []), SANDBOX_HOST_CAP];
      }
      spec.process.capabilities = c;
    }
    return spec;
  }

  /**
   * The namespaces of a sub-container. Its kernel is the sandbox's: the network is the sandbox's
   * (no entry). PID, as runsc (2022) does it: a sub-container whose spec has no pid namespace runs
   * in the sandbox's root PID namespace (the pause container's); one with a pid namespace gets a
   * new one, unless its `path` equals the path in the spec of a running sub-container, whose
   * namespace it then joins — runsc compares the strings only and opens nothing. So:
   *  - PID CONTAINER: a new namespace, named `<PIDNS_TAG>/<id>` so that a later TARGET container
   *    can name it;
   *  - PID POD: no entry, the root namespace;
   *  - PID TARGET: the target's own entry is copied (none, or its tag).
   * Unlike runc's, the pod's namespace here is the *parent* of every container's own (they are all
   * children of the sandbox's root namespace), so a container sharing the pod's would see and
   * could signal the processes of a container that asked for its own. Kubernetes never mixes the
   * two in a pod (shareProcessNamespace is per pod; ephemeral containers use TARGET); mixing is
   * refused here. IPC and UTS entries are passed as the pod asks (runsc keeps one of each per
   * sandbox).
   */
  private podNamespaces(req: ContainerNamespaceRequest): { network: NamespaceChoice; ipc: NamespaceChoice; uts: NamespaceChoice; pid: NamespaceChoice } {
    const sandboxId = req.state.sandboxId;
    let pid: NamespaceChoice;
    if (req.pid === 'CONTAINER') pid = { path: `${PIDNS_TAG}/${req.id}` };
    else if (req.pid === 'TARGET') {
      const target = req.target ? this.subcontainers(sandboxId).find((c) => c.id === req.target!.id)?.spec : undefined;
      if (!target) throw new InvalidArgumentError(`gvisor: a container can share the PID namespace of the pod or of a running container of the pod, not of ${req.target?.id ?? 'none'}`);
      const entry = target.linux?.namespaces?.find((t) => t.type === 'pid');
      pid = entry?.path ? { path: entry.path } : 'sandbox';
    } else pid = 'sandbox'; // POD, and NODE: the sandbox's root namespace is the nearest there is
    const inRoot = (list: OciNamespace[]): boolean => !list.some((n) => n.type === 'pid');
    const mine = typeof pid === 'string';
    const other = this.subcontainers(sandboxId).find((c) => inRoot(c.spec.linux?.namespaces ?? []) !== mine);
    if (other) {
      throw new InvalidArgumentError(`gvisor: the containers of a pod either all share the pod's PID namespace or none does (container ${other.id} ${mine ? 'has its own' : 'shares the pod\'s'}); in one sandbox the pod's namespace would see into every container's own`);
    }
    return {
      network: 'sandbox',
      ipc: req.pod.ipc === 'NODE' ? 'host' : 'private',
      uts: req.pod.hostNetwork && !req.pod.hostname ? 'host' : 'private',
      pid,
    };
  }

  /**
   * The namespaces of a one-shot pod's container that is its sandbox (see the file comment): all
   * its own, as a pod's are. The pod holds one at a time: `<podDir>/gvisor-root-app` names the
   * container; another is refused while that one's bundle exists.
   */
  private rootNamespaces(req: ContainerNamespaceRequest): { network: NamespaceChoice; ipc: NamespaceChoice; uts: NamespaceChoice; pid: NamespaceChoice } {
    const marker = join(req.pod.podDir, ROOT_APP_FILE);
    let held = '';
    try { held = readFileSync(marker, 'utf8').trim(); } catch { /* none yet */ }
    if (/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(held) && held !== req.id && existsSync(this.driver.bundleDir(held))) {
      throw new FailedPreconditionError(`gvisor: pod ${req.pod.podId} runs its one container ${held} as its sandbox (${SINGLE_CONTAINER_ANNOTATION}); remove it before creating another, or make the pod without that annotation`);
    }
    writeFileSync(marker, req.id, { mode: 0o600 });
    this.rootApps.add(req.id);
    // the pod network: netstack takes the pod netns's interfaces over (rootAppFits); none: its own loopback
    if (req.pod.networkMode === 'pod' && !req.pod.netnsPath) throw new FailedPreconditionError(`gvisor: pod ${req.pod.podId} has no network namespace for its one container to run in`);
    const network: NamespaceChoice = req.pod.networkMode === 'pod' ? { path: req.pod.netnsPath } : 'private';
    return { network, ipc: 'private', uts: 'private', pid: 'private' };
  }

  /**
   * runsc (2022) gives every container of a sandbox the root container's UTS namespace (a
   * sub-container's spec hostname is ignored: measured), so a pod's hostname is its sandbox's. A
   * pooled sandbox, started with none, gets the pod's here: `hostname` in the sandbox with
   * CAP_SYS_ADMIN for that one process (the pause keeps none). A one-shot `runsc exec` costs ~40 ms
   * on ptrace; an armed sandbox (armHostname) has the process already waiting for the name on its
   * stdin, which costs one pipe round trip. '' = no hostname: an armed waiter is just ended.
   */
  private async setSandboxHostname(id: string, hostname: string, signal: AbortSignal): Promise<void> {
    const w = this.hostnameWaiters.get(id);
    this.hostnameWaiters.delete(id);
    if (w) {
      w.give(`${hostname}\n`);
      const r = await Promise.race([w.done, new Promise<Error>((resolve) => setTimeout(() => resolve(new Error('timed out')), 10_000).unref())]);
      if (!(r instanceof Error) && r.code === 0) return;
      this.log.warn('armed hostname process failed; setting it with runsc exec', { id, err: r instanceof Error ? r.message : runtimeMessage(r.stderr) });
    }
    if (!hostname) return;
    const args = [...this.runtimeCommand().globalArgs, 'exec', '--cap', 'CAP_SYS_ADMIN', id, '/bin/busybox', 'hostname', hostname];
    const r = await run(resolveBinary(this.bin), args, { timeoutMs: 20_000, signal });
    if (r.code !== 0) throw classifyRuntimeFailure({ what: `runsc exec hostname in sandbox ${id}`, code: r.code, stderr: r.stderr, stdout: r.stdout });
  }

  /**
   * A pooled sandbox: a shell in it (CAP_SYS_ADMIN for it alone) waits on its stdin for the
   * hostname of the pod that adopts the sandbox, sets it and exits. It ends with the sandbox, with
   * this backend's close(), with the daemon (pdeathsig) or after a day (then adoption falls back
   * to a one-shot exec).
   */
  private armHostname(id: string): void {
    if (this.closing.signal.aborted || this.hostnameWaiters.has(id)) return;
    let give!: (line: string) => void;
    const input = new Promise<string>((resolve) => { give = resolve; });
    const args = [...this.runtimeCommand().globalArgs, 'exec', '--cap', 'CAP_SYS_ADMIN', id, '/bin/busybox', 'sh', '-c', 'read -r h || exit 3; [ -z "$h" ] || hostname "$h"'];
    const done = run(resolveBinary(this.bin), args, { input, timeoutMs: 24 * 3600_000, dieWithParent: true, signal: this.closing.signal }).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    const entry = { give, done };
    this.hostnameWaiters.set(id, entry);
    void done.then(() => { if (this.hostnameWaiters.get(id) === entry) this.hostnameWaiters.delete(id); });
  }

  /**
   * A pooled sandbox moved to the adopting pod's cgroup (by the engine): the bundle and runsc's own
   * state say so from now on. runsc (2022) keeps the sandbox's cgroup path in its state file and
   * joins it when it starts a sub-container (and removes it at delete), so the path there is
   * replaced too, written whole and renamed into place.
   */
  private async setSandboxCgroup(id: string, path: string): Promise<void> {
    const old = (await this.driver.spec(id)).linux?.cgroupsPath ?? '';
    if (!old) throw new FailedPreconditionError(`gvisor: sandbox ${id} has no cgroup to move from`);
    const file = join(this.stateDir, `${id}_sandbox:${id}.state`);
    const state = JSON.parse(await readFile(file, 'utf8')) as unknown;
    let replaced = 0;
    const swap = (v: unknown): unknown => {
      if (typeof v === 'string') { if (v === old) { replaced++; return path; } return v; }
      if (Array.isArray(v)) return v.map(swap);
      if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, swap(x)]));
      return v;
    };
    const next = swap(state);
    if (replaced === 0) throw new FailedPreconditionError(`gvisor: runsc's state of sandbox ${id} does not name its cgroup; it cannot be moved`);
    await writeAtomic(file, JSON.stringify(next));
    await this.driver.setCgroupsPath(id, path);
  }

  override async close(): Promise<void> {
    this.closing.abort();
    await super.close();
  }

  private readBundleFile(id: string, name: string): string | undefined {
    try { return readFileSync(join(this.opts.runDir, 'containers', id, name), 'utf8').trim(); } catch { return undefined; }
  }

  /** The app containers of `sandboxId` on disk: id, spec and the pid conmon reported (the shim's waiter). */
  private subcontainers(sandboxId: string): { id: string; spec: OciSpec; pid: string | undefined }[] {
    let names: string[];
    try { names = readdirSync(join(this.opts.runDir, 'containers')); } catch { return []; }
    const out: { id: string; spec: OciSpec; pid: string | undefined }[] = [];
    for (const id of names) {
      try {
        const spec = JSON.parse(readFileSync(join(this.opts.runDir, 'containers', id, 'config.json'), 'utf8')) as OciSpec;
        if (spec.annotations?.[SANDBOX_ID_ANNOTATION] === sandboxId && spec.annotations[CONTAINER_TYPE_ANNOTATION] === 'container') {
          out.push({ id, spec, pid: this.readBundleFile(id, 'pidfile') });
        }
      } catch { /* no or half-written spec */ }
    }
    return out;
  }

  override async createContainer(opts: CreateContainerOptions): Promise<{ pid: number }> {
    const rootApp = opts.pod.role === 'container' && !opts.pod.sandboxContainerId;
    const r = await super.createContainer(opts);
    try {
      if (opts.pod.role === 'container' && opts.pod.sandboxContainerId) await this.applyPodLimits(opts.pod.sandboxContainerId);
      // a pod's one container as its sandbox: the limits a pod sandbox holding it would have
      else if (rootApp && opts.spec.linux?.cgroupsPath) await writeCgroupResources(opts.spec.linux.cgroupsPath, podLimits({}, [opts.spec.linux.resources ?? {}]));
    } catch (err) {
      await this.delete(opts.id).catch(() => {});
      throw err;
    }
    return r;
  }

  /**
   * SIGKILL to a sandbox (the engine stopping a pod) goes through stopSandboxGently first; a sandbox
   * that ended there (its exit file written) is not sent a `runsc kill` it would refuse as not running.
   */
  override async kill(id: string, sig: NodeJS.Signals | number, abort?: AbortSignal): Promise<void> {
    if (sig === 'SIGKILL' || sig === 9) {
      const spec = await this.driver.spec(id).catch(() => undefined);
      if (spec?.annotations?.[CONTAINER_TYPE_ANNOTATION] === 'sandbox') {
        await this.stopSandboxGently(id, abort);
        if (existsSync(this.driver.exitFile(id))) return;
      }
    }
    await super.kill(id, sig, abort);
  }

  override async delete(id: string, signal?: AbortSignal): Promise<void> {
    const spec = await this.driver.spec(id).catch(() => undefined);
    if (spec?.annotations?.[CONTAINER_TYPE_ANNOTATION] === 'sandbox') await this.stopSandboxGently(id, signal);
    if (spec?.annotations?.[ROOT_APP_ANNOTATION]) await this.forgetOrphanGofer(id);
    await super.delete(id, signal);
    const sandboxId = spec?.annotations?.[SANDBOX_ID_ANNOTATION];
    if (spec?.annotations?.[CONTAINER_TYPE_ANNOTATION] === 'container' && sandboxId) {
      await this.applyPodLimits(sandboxId).catch((err: unknown) => this.log.debug('pod limits not updated after delete', { id, err }));
    }
  }

  /**
   * Ends a running sandbox by asking its init (the pause, which exits on SIGTERM) before `runsc
   * delete --force` would SIGKILL it. `runsc delete` waits until the sandbox's gofer is gone, and
   * a gofer that outlives the pause's conmon is reaped by whatever init the host has (1.4-1.7 s on
   * this one, found with strace). So the gofer is ended first, while conmon (its subreaper
   * parent) is there to reap it at once, then the pause gets SIGTERM: ~90 ms in all, and
   * `runsc delete` finds nothing left to wait for. Falls through to the forced delete after a
   * short wait.
   */
  private async stopSandboxGently(id: string, signal?: AbortSignal): Promise<void> {
    // A pause that ended has its exit file (conmon wrote it). Otherwise it is taken as running
    // without asking `runsc state` (~25 ms, a Go binary's start, on every pod removal): a sandbox
    // only created, or already dead, makes the kill below fail, which falls through to the forced
    // delete as a not-running one always did.
    if (existsSync(this.driver.exitFile(id)) || !existsSync(this.driver.bundleDir(id))) return;
    try {
      await this.endGofers(id);
      // The Sentry ends with its gofer (runsc 2022: a `runsc kill` sent now answers "sandbox is not
      // running", a Go binary's start, ~25 ms, for nothing): when conmon records the pause's exit
      // within a short while, no kill is sent.
      const ended = await this.driver.wait(id, AbortSignal.any([AbortSignal.timeout(SANDBOX_END_MS), ...(signal ? [signal] : [])])).then(() => true, () => false);
      if (ended) return;
      await this.driver.kill(id, 'SIGTERM', signal);
      await this.driver.wait(id, AbortSignal.any([AbortSignal.timeout(2000), ...(signal ? [signal] : [])]));
    } catch (err) {
      this.log.debug('sandbox did not stop on SIGTERM; deleting by force', { id, err });
    }
  }

  /**
   * A sandbox that ended by itself (a one-shot pod's container exited) may leave its gofer behind
   * conmon, which exits with the sandbox: the gofer, ending a moment later, is then the host init's
   * to reap, and `runsc delete` polls (kill 0) until it is reaped, 1.1-1.7 s on this host, found
   * in the pod removal's figures. The gofer serves that sandbox only: one still running is ended;
   * one that stays a zombie is dropped from runsc's state (`goferPid`), so that the delete does
   * not wait for a reaping that is not runsc's. Only after the sandbox's exit was recorded.
   */
  private async forgetOrphanGofer(id: string): Promise<void> {
    if (!existsSync(this.driver.exitFile(id))) return;
    const file = join(this.stateDir, `${id}_sandbox:${id}.state`);
    const state = await readFile(file, 'utf8').then((t) => JSON.parse(t) as Record<string, unknown>, () => undefined);
    const pid = state?.goferPid;
    if (!state || typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return;
    const procState = (): string | undefined => procStat(pid)?.state;
    let st = procState();
    if (st === undefined) return;
    if (st !== 'Z') {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
      if (argv[0] !== 'runsc-gofer' || !argv.includes(this.driver.bundleDir(id))) return;
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      for (let i = 0; i < 40 && (st = procState()) !== undefined && st !== 'Z'; i++) await new Promise((r) => setTimeout(r, 5));
      if (st === undefined) return;
    }
    state.goferPid = 0;
    await writeAtomic(file, JSON.stringify(state));
  }

  /** SIGKILLs the gofer of sandbox `id` (found by its bundle path) and waits briefly until it is reaped. */
  private async endGofers(id: string): Promise<void> {
    const bundle = this.driver.bundleDir(id);
    const gofers = async (names: readonly string[]): Promise<number[]> => {
      const out: number[] = [];
      for (const name of names) {
        if (!/^\d+$/.test(name)) continue;
        const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
        if (argv[0] === 'runsc-gofer' && argv.includes(bundle)) out.push(Number(name));
      }
      return out;
    };
    // While the pause's conmon lives the gofer is its child (conmon is the subreaper runsc's
    // processes are left to): its few children are read, not every process of the node (a scan
    // that grows with the node, 6-25 ms at ~110 processes). Not found there: the whole scan.
    let pids = await gofers(await conmonChildren(join(bundle, 'conmon.pid')));
    if (pids.length === 0) pids = await gofers(await readdir('/proc').catch(() => [] as string[]));
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    for (let i = 0; i < 100 && pids.some((pid) => existsSync(`/proc/${pid}`)); i++) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * runsc 2022 has no `update` command, and limits are written to cgroups directly. The whole
   * sandbox (Sentry, gofers, their threads) runs in the cgroup of the sandbox (pause) container's
   * spec: a sandbox container's update goes there. An app container has no host cgroup of its own
   * that holds anything (runsc makes the directory, but its gofer joins the sandbox's), so its
   * limits are recorded in its spec and enforced for the pod as a whole (see applyPodLimits).
   */
  override async updateResources(id: string, resources: OciLinuxResources, _signal?: AbortSignal): Promise<void> {
    const spec = await this.driver.spec(id);
    const sandboxId = spec.annotations?.[SANDBOX_ID_ANNOTATION];
    if (spec.annotations?.[CONTAINER_TYPE_ANNOTATION] === 'container' && sandboxId) {
      await this.driver.recordResources(id, resources);
      await this.applyPodLimits(sandboxId);
      return;
    }
    const path = spec.linux?.cgroupsPath;
    if (!path) throw new FailedPreconditionError(`container ${id} has no cgroup to update`);
    await writeCgroupResources(path, spec.annotations?.[ROOT_APP_ANNOTATION] ? podLimits({}, [resources]) : resources);
    await this.driver.recordResources(id, resources);
  }

  /**
   * Bounds the sandbox by its app containers' limits, the way the kubelet bounds a pod cgroup:
   * memory = the sum of their memory limits plus sandboxHeadroom(n) for the Sentry and the gofers,
   * CPU quota = the sum of their quotas; either is unlimited as soon as one container has none.
   * With no app container left the sandbox's own spec limits apply again. Serialised per sandbox:
   * the set of containers is read from their bundles at each call.
   */
  private applyPodLimits(sandboxId: string): Promise<void> {
    const prev = this.podLimitQueue.get(sandboxId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => this.writePodLimits(sandboxId));
    this.podLimitQueue.set(sandboxId, next);
    void next.finally(() => { if (this.podLimitQueue.get(sandboxId) === next) this.podLimitQueue.delete(sandboxId); }).catch(() => {});
    return next;
  }

  private async writePodLimits(sandboxId: string): Promise<void> {
    const sandbox = await this.driver.spec(sandboxId);
    const path = sandbox.linux?.cgroupsPath;
    if (!path) return;
    const members: OciLinuxResources[] = [];
    for (const rec of await this.driver.list()) {
      if (rec.role !== 'container') continue;
      const spec = await this.driver.spec(rec.id).catch(() => undefined);
      if (spec?.annotations?.[SANDBOX_ID_ANNOTATION] === sandboxId) members.push(spec.linux?.resources ?? {});
    }
    await writeCgroupResources(path, podLimits(sandbox.linux?.resources ?? {}, members));
  }


  /**
   * An app container's processes run in the sandbox's Sentry, not in its own host cgroup (which
   * holds at most its gofer), so its figures come from the Sentry (`runsc events --stats`): CPU
   * time of the container's tasks and their count; memory is the whole sandbox's, as runsc 2022
   * accounts memory per sandbox only. OOM kills are the sandbox cgroup's.
   */
  override async stats(id: string, signal?: AbortSignal): Promise<ContainerStats> {
    const spec = await this.driver.spec(id);
    if (spec.annotations?.[CONTAINER_TYPE_ANNOTATION] !== 'container') return await super.stats(id, signal);
    const out = await this.driver.runtimeCmd(['events', '--stats', id], { timeoutMs: 20_000, ...(signal ? { signal } : {}) });
    const ev = parseStatsEvent(out);
    if (!ev) throw new UnavailableError(`runsc events --stats ${id} gave no stats`);
    const sandboxId = spec.annotations[SANDBOX_ID_ANNOTATION];
    const sandboxCgroup = sandboxId ? (await this.driver.spec(sandboxId).catch(() => undefined))?.linux?.cgroupsPath : undefined;
    const oomKills = sandboxCgroup ? (await readCgroupStats(sandboxCgroup).catch(() => undefined))?.oomKills ?? 0 : 0;
    const mem = ev.memory?.usage?.usage ?? 0;
    return {
      cpuUsageNs: ev.cpu?.usage?.total ?? 0,
      memoryUsageBytes: mem,
      memoryWorkingSetBytes: mem,
      pids: ev.pids?.current ?? 0,
      oomKills,
      timestamp: new Date(),
    };
  }

  /** The sandbox's host cgroup (the Sentry and its gofer): the pod's memory once, not once per container. */
  async podStats(sandboxId: string, signal?: AbortSignal): Promise<ContainerStats> {
    return await super.stats(sandboxId, signal);
  }

  protected override async killExecProcess(id: string, hostPid: number, pidFile: string): Promise<void> {
    // the host pid is `runsc exec`'s own, which does not forward SIGKILL into the sandbox; the
    // exec wrapper asked runsc for the process's pid inside the sandbox (--internal-pid-file)
    const inner = Number((await readFile(`${pidFile}.internal`, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(inner) && inner > 0) {
      const r = await run(this.bin, [...this.runtimeCommand().globalArgs, 'kill', `--pid=${inner}`, id, 'KILL'], { timeoutMs: 10_000 }).catch(() => undefined);
      if (r && r.code !== 0) this.log.warn('runsc kill --pid failed', { id, pid: inner, stderr: r.stderr.trim() });
    } else {
      this.log.warn('no sandbox pid recorded for a timed-out exec; killing only runsc exec', { id });
    }
    try { process.kill(hostPid, 'SIGKILL'); } catch { /* gone */ }
  }

  protected async probeHost(signal?: AbortSignal): Promise<ProbeResult> {
    const opt = signal ? { signal } : {};
    let version: string;
    try {
      const v = await run(this.bin, ['--version'], { timeoutMs: 10_000, ...opt });
      if (v.code !== 0) return { available: false, reason: `${this.bin} --version failed: ${v.stderr.trim()}`, details: {} };
      version = versionLine(v.stdout);
    } catch {
      return { available: false, reason: 'runsc is not installed; install gVisor (Debian package runsc)', details: {} };
    }
    // a detection killed mid-run left its scratch dir; the next detection may come only after a reboot
    await sweepTempDirs(RUNSC_PROBE_DIR);
    const cacheFile = join(this.opts.runDir, 'platform.json');
    const key = await this.probeKey(version);
    // what this daemon (or its predecessor on this boot) detected counts only with this key: the
    // constructor's copy may come from another runsc or an older Bulkhead's detection
    const usable = (d: Detected | undefined): d is Detected => d?.key === key && d.version === version && d.ociSeccomp !== undefined && d.launch !== undefined;
    if (!usable(this.detected)) this.detected = undefined;
    if (!this.detected) {
      const cached = await readFile(cacheFile, 'utf8').then((t) => JSON.parse(t) as Detected, () => undefined);
      if (usable(cached)) this.detected = cached;
    }
    if (!this.detected) {
      // .v2: results with `launch` (daemons of older versions share the node and rewrite runsc-probe.json)
      const nodeCache = join(this.opts.cacheDir ?? DEFAULT_CACHE_DIR, 'runsc-probe.v2.json');
      const shared = await readFile(nodeCache, 'utf8').then((t) => JSON.parse(t) as { key?: string; detected?: Detected }, () => undefined);
      let det: Detected | { reason: string; tried: Record<string, string> };
      if (shared?.key === key && shared.detected?.version === version && shared.detected.ociSeccomp !== undefined && shared.detected.launch !== undefined) {
        det = shared.detected;
      } else {
        det = await this.detect(version, signal);
        if (!('reason' in det)) await writeAtomic(nodeCache, JSON.stringify({ key, detected: det })).catch(() => { /* a cache only */ });
      }
      if ('reason' in det) return { available: false, reason: det.reason, details: { runtimeVersion: version, ...det.tried } };
      det = { ...det, key };
      this.detected = det;
      await mkdir(this.opts.runDir, { recursive: true, mode: 0o700 });
      await writeFile(cacheFile, JSON.stringify(det));
    }
    this.followDetection();
    const d = this.detected;
    return {
      available: true,
      details: {
        runtimeVersion: version,
        platform: d.platform,
        network: d.network === 'sandbox'
          ? `sandbox (gVisor netstack in the pod netns${d.launch === 'hide-proc-sys-net' ? '; runsc started with /proc/sys/net hidden, see networkNote' : ''}; host-network pods: --network=host)`
          : 'host inside the pod netns (weaker: network syscalls reach the host kernel)',
        ...(d.networkNote ? { networkNote: d.networkNote } : {}),
        // measured with runsc 0.0~20221219 on ptrace: ~26 host tasks at rest; 200 guest `sleep`s hit a
        // 120 limit after ~27 and the sandbox ended with exit 2 (the Sentry could not create threads)
        pidsLimit: 'counts the sandbox\'s own host tasks (~25 at rest, several per guest process on ptrace); reaching it ends the sandbox rather than failing one fork',
        // runsc 2022 installs the OCI filter on the container's init task only (not on `runsc exec`)
        seccomp: d.ociSeccomp ? 'OCI profile enforced inside the sandbox on container processes (--oci-seccomp); not on exec\'d processes' : 'OCI profile not applied (runsc lacks --oci-seccomp)',
      },
    };
  }

  /**
   * What a shared probe result depends on: the runsc binary, the kernel and this boot (a module
   * loaded or /dev/kvm made usable after a reboot is probed again).
   */
  private async probeKey(version: string): Promise<string> {
    const bin = resolveBinary(this.bin);
    const st = await stat(bin).catch(() => undefined);
    const boot = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '');
    return JSON.stringify([DETECT_REVISION, bin, st?.size ?? 0, st?.mtimeMs ?? 0, version, release(), boot.trim()]);
  }

  private async detect(version: string, signal?: AbortSignal): Promise<Detected | { reason: string; tried: Record<string, string> }> {
    const tried: Record<string, string> = {};
    const work = await ownedTempDir(RUNSC_PROBE_DIR);
    try {
      let platform: string | undefined;
      for (const p of PLATFORMS) {
        // `runsc do` makes its bundle in $TMPDIR (runsc-do<n>) and leaves it when the platform fails
        // (kvm, systrap here; one per probe and daemon start): inside `work`, which goes. (Its sandbox
        // cannot start when a directory above `work`'s parent is closed to others: /tmp is not.)
        const r = await run(this.bin, ['--root', join(work, 'state-' + p), `--platform=${p}`, '--network=none', 'do', '/bin/sh', '-c', 'exit 7'], {
          timeoutMs: PROBE_TIMEOUT_MS[p], dieWithParent: true, env: { ...process.env, TMPDIR: work }, ...(signal ? { signal } : {}),
        }).catch((e: Error) => ({ code: null, stderr: e.message, stdout: '', signal: null }));
        if (r.code === 7) { platform = p; tried[`probe.${p}`] = 'works'; break; }
        tried[`probe.${p}`] = runtimeMessage(r.stderr) || `exit ${r.code}`;
      }
      if (!platform) return { reason: `no gVisor platform works here (${Object.entries(tried).map(([k, v]) => `${k}: ${v}`).join('; ')})`, tried };
      const net = await this.detectNetwork(work, platform, signal);
      const flags = await run(this.bin, ['flags'], { timeoutMs: 10_000 }).catch(() => undefined);
      const ociSeccomp = /oci-seccomp/.test(`${flags?.stdout ?? ''}${flags?.stderr ?? ''}`);
      return { platform, version, tried, ociSeccomp, ...net };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** Tries a real sandbox with --network=sandbox in a throwaway netns. */
  private async detectNetwork(work: string, platform: string, signal?: AbortSignal): Promise<{ network: 'sandbox' | 'host'; launch: SandboxLaunch; networkNote?: string }> {
    await removeStaleProbeNetns();
    const ns = `${PROBE_NETNS_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`;
    const add = await run('ip', ['netns', 'add', ns], { timeoutMs: 10_000 }).catch(() => undefined);
    if (!add || add.code !== 0) return { network: 'host', launch: 'plain', networkNote: 'could not create a network namespace to test --network=sandbox' };
    const id = `bh-gvprobe-${randomBytes(4).toString('hex')}`;
    const state = join(work, 'state-net');
    try {
      await writeProbeBundle(work, { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network', path: `/var/run/netns/${ns}` }] });
      // plain first; a runsc that takes every netns for the root one (see ./runsc-launch.ts) is
      // tried again with /proc/sys/net hidden from it
      let refused = '';
      for (const launch of ['plain', 'hide-proc-sys-net'] as const) {
        const { cmd, args } = launchArgv(launch, resolveBinary(this.bin), ['--root', state, `--platform=${platform}`, '--network=sandbox', 'run', '--bundle', work, id]);
        const r = await run(cmd, args, { timeoutMs: 30_000, dieWithParent: true, ...(signal ? { signal } : {}) });
        if (r.code === 0) {
          return launch === 'plain'
            ? { network: 'sandbox', launch }
            : { network: 'sandbox', launch, networkNote: `runsc refused --network=sandbox as started (${refused}); it runs with /proc/sys/net hidden from the runsc that creates a sandbox, as its root-netns test misreads this kernel's per-netns sysctls` };
        }
        await run(this.bin, ['--root', state, 'delete', '--force', id], { timeoutMs: 10_000 }).catch(() => {});
        const msg = runtimeMessage(r.stderr) || `exit ${r.code}`;
        if (launch === 'plain') {
          refused = msg;
          if (!/root network namespace/.test(msg)) break;
        } else refused += `; with /proc/sys/net hidden: ${msg}`;
      }
      return { network: 'host', launch: 'plain', networkNote: `--network=sandbox refused: ${refused}` };
    } catch (err) {
      return { network: 'host', launch: 'plain', networkNote: `--network=sandbox test failed: ${(err as Error).message}` };
    } finally {
      await run(this.bin, ['--root', state, 'delete', '--force', id], { timeoutMs: 10_000 }).catch(() => {});
      await run('ip', ['netns', 'delete', ns], { timeoutMs: 10_000 }).catch(() => {});
    }
  }
}

/**
 * Global runsc flags with every `--network=...` replaced by `--network=<mode>` (added in front when
 * there is none), as the shim's set_network does.
 */
export function withNetworkFlag(globals: readonly string[], mode: string): string[] {
  const out = globals.map((a) => (a.startsWith('--network=') ? `--network=${mode}` : a));
  return out.some((a) => a.startsWith('--network=')) ? out : [`--network=${mode}`, ...out];
}

/** In a one-shot pod's dir: the id of its container that is its sandbox. */
const ROOT_APP_FILE = 'gvisor-root-app';

/**
 * Whether a pod's one container may be its sandbox (see the file comment): it asked
 * (SINGLE_CONTAINER_ANNOTATION); its network is loopback only (the sandbox then runs with
 * --network=none) or the pod network with gVisor's netstack in force (`netstack`: runsc runs
 * --network=sandbox) — either way the Sentry is in a user namespace of its own and holds no host
 * capabilities, which with --network=host it would (the app's); and it sets nothing a pause
 * carries for it (sysctls, host IPC/PID namespaces).
 */
export function rootAppFits(pod: PodSandboxSpec, netstack: boolean): boolean {
  // (decided before the pod's network exists: its netns path is checked at container creation)
  const network = pod.networkMode === 'none' || (netstack && pod.networkMode === 'pod');
  return pod.annotations?.[SINGLE_CONTAINER_ANNOTATION] === 'true' && network && !pod.hostNetwork
    && Object.keys(pod.sysctls).length === 0 && pod.ipc !== 'NODE' && pod.pid !== 'NODE';
}

/** Probe netns are named for the daemon that made them: `bh-gvprobe-<pid>-<random>`. */
const PROBE_NETNS_PREFIX = 'bh-gvprobe-';

/**
 * Deletes probe network namespaces whose daemon is gone (killed mid-probe, its `finally` never
 * ran). Other tenants share /run/netns: only names of this form are touched, and only when the pid
 * they carry is not a live process.
 */
export async function removeStaleProbeNetns(netnsDir = '/run/netns'): Promise<string[]> {
  const names = await readdir(netnsDir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const m = new RegExp(`^${PROBE_NETNS_PREFIX}(\\d+)-[0-9a-f]{8}$`).exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (existsSync(`/proc/${pid}`)) continue;
    const r = await run('ip', ['netns', 'delete', name], { timeoutMs: 10_000 }).catch(() => undefined);
    if (r?.code === 0) removed.push(name);
  }
  return removed;
}

async function writeAtomic(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, path);
}

interface StatsEventData {
  cpu?: { usage?: { total?: number } };
  memory?: { usage?: { usage?: number } };
  pids?: { current?: number };
}

/** The data of `runsc events --stats` output (one JSON object `{"type":"stats","data":{...}}`). */
export function parseStatsEvent(stdout: string): StatsEventData | undefined {
  for (const line of stdout.split('\n')) {
    if (!line.trim()) continue;
    try {
      const ev = JSON.parse(line) as { type?: string; data?: StatsEventData };
      if (ev.type === 'stats' && ev.data) return ev.data;
    } catch { /* not JSON */ }
  }
  return undefined;
}

/**
 * Memory the Sentry and gofers of a sandbox with `n` app containers may use beyond their limits.
 * Measured (runsc 2022, ptrace, idle busybox containers): the sandbox cgroup holds ~12 MiB with
 * the pause alone and ~7.5 MiB more per sub-container (its gofer, its Sentry state); twice that.
 */
export function sandboxHeadroom(n: number): number {
  return (32 + 16 * n) * 1024 * 1024;
}
const CPU_PERIOD = 100_000;

/**
 * The limits of a sandbox cgroup for app containers with `members` resources (see
 * GvisorBackend.applyPodLimits); `own` = the sandbox container's spec resources, used when
 * there are no members. Memory swap is set equal to the limit (no swap beyond it).
 */
export function podLimits(own: OciLinuxResources, members: OciLinuxResources[]): OciLinuxResources {
  if (members.length === 0) {
    const limit = own.memory?.limit && own.memory.limit > 0 ? own.memory.limit : -1;
    const quota = own.cpu?.quota && own.cpu.quota > 0 ? own.cpu.quota : -1;
    return { memory: { limit, swap: limit }, cpu: { quota, period: own.cpu?.period && own.cpu.period > 0 ? own.cpu.period : CPU_PERIOD } };
  }
  const mems = members.map((m) => m.memory?.limit ?? 0);
  const limit = mems.every((m) => m > 0) ? mems.reduce((a, b) => a + b, 0) + sandboxHeadroom(members.length) : -1;
  const cpus = members.map((m) => (m.cpu?.quota && m.cpu.quota > 0 ? m.cpu.quota / (m.cpu.period && m.cpu.period > 0 ? m.cpu.period : CPU_PERIOD) : 0));
  const quota = cpus.every((c) => c > 0) ? Math.ceil(cpus.reduce((a, b) => a + b, 0) * CPU_PERIOD) : -1;
  return { memory: { limit, swap: limit }, cpu: { quota, period: CPU_PERIOD } };
}

/** The children of the conmon whose pid is in `pidFile` (every thread's), or [] when it cannot be read. */
async function conmonChildren(pidFile: string): Promise<string[]> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return [];
  const out: string[] = [];
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    out.push(...(await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '')).split(' ').filter(Boolean));
  }
  return out;
}
