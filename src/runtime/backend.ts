/**
 * The runtime layer's public seam: one `Backend` per RuntimeClass handler (runc, gvisor, crun,
 * microvm, ...). The engine (src/engine/) owns pods and containers and calls only this interface;
 * the OCI spec comes from `buildSpec` in ./spec.ts.
 *
 * Every backend runs its containers the same way: an OCI bundle under the run dir and Debian's
 * `conmon` as a detached monitor (double-forked, not a child of the daemon), which drives the
 * backend's OCI runtime binary, writes the CRI log, records the exit code in a file, serves the
 * attach socket and resizes the terminal. So containers outlive the daemon, and a fresh Backend
 * instance built over the same run dir finds them again (`list()`, `state()`).
 *
 * ## Pods
 * `podSandbox` is the backend's pod-sandbox strategy (./sandbox/pod-sandbox.ts): how the pod is
 * held (pinned namespace files or a pause container for runc/crun, whose containers join
 * namespaces by path — ./sandbox/namespaces-joined.ts; one sandbox per pod that the containers
 * run in for gVisor and microvm — ./sandbox/sandbox-hosted.ts), which namespaces a container's
 * spec names, how port-forward reaches the pod, and the order of removal. The engine passes
 * `pod` with every createContainer (role 'sandbox' for the sandbox container, 'container' for
 * app containers, with `sandboxContainerId` = the sandbox container's id when there is one).
 * The backend applies its own spec adjustments (annotations, capability filtering) inside
 * createContainer.
 *
 * ## Container lifecycle
 *   createContainer → (status 'created', pid known) → start → 'running' → process exits →
 *   'stopped' (exitCode, exitedAt, oomKilled from conmon's files) → delete.
 * `kill` only sends a signal; stopping with a grace period is the engine's policy
 * (kill SIGTERM, wait, kill SIGKILL). `delete` is idempotent and removes the runtime state,
 * conmon's files and the bundle dir; it kills a still-running container.
 *
 * ## Errors
 * Methods throw the classes of src/errors.ts: NotFoundError for an unknown id,
 * FailedPreconditionError for a wrong state (e.g. exec into a stopped container),
 * UnavailableError when the runtime is not usable, DeadlineExceededError on timeouts.
 * A failed runtime command is classified by its stderr (classifyRuntimeFailure in ./errors.ts).
 *
 * All methods accept an AbortSignal; every child process has a timeout.
 */
import type { Readable, Writable } from 'node:stream';
import type { CgroupStats } from '../cgroup/stats.ts';
import type { OciLinuxResources, OciSpec } from '../oci/spec.ts';
import type { PodSandbox } from './sandbox/pod-sandbox.ts';

export type { OciLinuxResources, OciSpec } from '../oci/spec.ts';

/**
 * How strongly a backend separates a workload from the host kernel: 'strict' is the process class
 * with a per-image system call allow-list (src/runtime/strict/), ranked between process and user-kernel.
 */
export type Isolation = 'process' | 'strict' | 'user-kernel' | 'vm';

export interface ProbeResult {
  available: boolean;
  /** When unavailable: what to install or change, in one sentence. */
  reason?: string;
  /** Facts for status/diagnostics, e.g. {runtimeVersion, platform, network, cgroups}. */
  details: Record<string, string>;
}

/** The OCI runtime binary and global flags conmon is told to use (`-r PATH --runtime-arg ...`); conmon-based backends only, not part of Backend. */
export interface RuntimeCommand {
  path: string;
  /** Global flags placed before the subcommand, e.g. ['--root', dir, '--platform=ptrace']. */
  globalArgs: string[];
}

/** Where a container sits in its pod. */
export interface PodRef {
  podId: string;
  role: 'sandbox' | 'container';
  /** Id of the pod's sandbox container; required for role 'container' where the containers live in it (sandbox-hosted pods). */
  sandboxContainerId?: string;
  /** Path of the pod's network namespace (e.g. /run/netns/NAME); absent = the host network. */
  netnsPath?: string;
  /** Role 'sandbox': the pod's trust level (its stored policy decision), for backends that group pods by it (microvm templates). */
  trustLevel?: string;
  /** Role 'sandbox': the pod's own annotations (hostile input: a backend reads only the keys it documents). */
  podAnnotations?: Record<string, string>;
}

export interface CreateContainerOptions {
  /** Container id: [A-Za-z0-9][A-Za-z0-9_.-]{0,127}; also the runtime's id. */
  id: string;
  /** Human name for conmon's logs; defaults to id. */
  name?: string;
  /** Spec from buildSpec(); root.path must be an absolute path to the prepared rootfs. */
  spec: OciSpec;
  pod: PodRef;
  /** Host path of the CRI-format log file (created by conmon; parent dir must exist). */
  logPath: string;
  /** Keep a stdin pipe open to the container (CRI `stdin`); written through attach(). */
  stdin?: boolean;
  /** Close the container's stdin when the first attach client disconnects (CRI `stdinOnce`). */
  stdinOnce?: boolean;
  /** Allocate a terminal (spec.process.terminal must agree; buildSpec sets it). */
  tty?: boolean;
  signal?: AbortSignal;
}

export type ContainerStatus = 'created' | 'running' | 'stopped' | 'unknown';

export interface ContainerState {
  id: string;
  status: ContainerStatus;
  /** Host pid of the container's init process (0 when unknown or stopped). */
  pid: number;
  /** Set when status is 'stopped' and conmon recorded the exit. 128+N for death by signal N. */
  exitCode?: number;
  exitedAt?: Date;
  /** The container's memory cgroup recorded an OOM kill. */
  oomKilled?: boolean;
  /** Present while conmon is alive. */
  conmonPid?: number;
  /**
   * Set when status is 'stopped' without an exit code: why the code is unknown (e.g. "monitor
   * died": conmon was gone before the container ended, so nobody collected its status).
   */
  exitUnknownReason?: string;
}

export interface ExecOptions {
  args: string[];
  /** KEY=VALUE entries added to (and overriding) the container's environment. */
  env?: string[];
  cwd?: string;
  /** uid[:gid] numbers; default the container's user. */
  user?: { uid: number; gid: number; additionalGids?: number[] };
  tty?: boolean;
  /** Kill the exec'd process after this many ms (DeadlineExceededError); default 60 s. */
  timeoutMs?: number;
  stdin?: string | Buffer;
  signal?: AbortSignal;
}

export interface ExecResult {
  exitCode: number;
  /** Captured output, each capped at 16 MiB (the rest is dropped). With tty, all output is stdout. */
  stdout: Buffer;
  stderr: Buffer;
}

/** A running interactive process (exec or attach) for the streaming server. */
export interface InteractiveProcess {
  /** null when stdin was not requested. end() closes the process's stdin. */
  stdin: Writable | null;
  stdout: Readable;
  /** null with tty (the terminal merges stderr into stdout). */
  stderr: Readable | null;
  /** Resize the terminal (tty only; a no-op otherwise). */
  resize(width: number, height: number): Promise<void>;
  /** Resolves with the exit code (exec) or when the session ends (attach: the container's exit code, or -1 when detached). */
  wait(): Promise<number>;
  /** Ends the session: exec — kills the exec'd process; attach — detaches (container keeps running). */
  close(): void;
}

export interface InteractiveExecOptions extends Omit<ExecOptions, 'stdin' | 'timeoutMs'> {
  /** Open a stdin stream to the process. */
  stdin?: boolean;
}

export interface AttachOptions {
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  signal?: AbortSignal;
}

/** A container's resource figures: what its cgroup says (a VM or sandbox backend reports its guest's view in the same shape). */
export type ContainerStats = CgroupStats;

/** What a fresh Backend finds on disk for a container (after a daemon restart). */
export interface ContainerRecord {
  id: string;
  podId: string;
  role: 'sandbox' | 'container';
  bundle: string;
  logPath: string;
  createdAt: Date;
}

/** The container operations, driven through conmon + the backend's OCI runtime. */
export interface ContainerRuntime {
  createContainer(opts: CreateContainerOptions): Promise<{ pid: number }>;
  start(id: string, signal?: AbortSignal): Promise<void>;
  state(id: string, signal?: AbortSignal): Promise<ContainerState>;
  /** Resolves when the container has stopped (from conmon's exit file); rejects on abort. */
  wait(id: string, signal?: AbortSignal): Promise<ContainerState>;
  /** Sends a signal (name like 'SIGTERM' or number) to the container's init. Stopped container: no-op. */
  kill(id: string, signal: NodeJS.Signals | number, abort?: AbortSignal): Promise<void>;
  /** Idempotent: unknown ids are fine. Kills a running container first. */
  delete(id: string, signal?: AbortSignal): Promise<void>;
  exec(id: string, opts: ExecOptions): Promise<ExecResult>;
  execInteractive(id: string, opts: InteractiveExecOptions): Promise<InteractiveProcess>;
  /** Connects to conmon's attach socket (stdout/stderr of the container; stdin if created with stdin). */
  attach(id: string, opts?: AttachOptions): Promise<InteractiveProcess>;
  /** Terminal resize of the container's own tty (through conmon's control fifo). */
  resize(id: string, width: number, height: number): Promise<void>;
  updateResources(id: string, resources: OciLinuxResources, signal?: AbortSignal): Promise<void>;
  stats(id: string, signal?: AbortSignal): Promise<ContainerStats>;
  /**
   * The pod's own usage on the host, read through its sandbox container: the microVM's host cgroup
   * (QEMU: guest memory, vCPU threads, device emulation), a gVisor sandbox's cgroup (the Sentry).
   * What the pod costs the node, which its containers' figures (from the guest, from the Sentry)
   * do not show. Absent = the pod's figures are the sum of its containers'.
   */
  podStats?(sandboxId: string, signal?: AbortSignal): Promise<ContainerStats>;
  /**
   * microvm: the volume mode a pod with these annotations gets ('none', 'copy', or undefined: a
   * virtio-fs share), its annotation else the handler's default. Warm pools match members by it.
   */
  podVolumes?(podAnnotations: Record<string, string> | undefined): string | undefined;
  /** Asks conmon to reopen the log file (after the kubelet rotated it). */
  reopenLog(id: string): Promise<void>;
  /** Containers of this backend found on disk under its run dir. */
  list(): Promise<ContainerRecord[]>;
}

export interface Backend extends ContainerRuntime {
  /** Handler kind: 'runc' | 'gvisor' | 'crun' | 'microvm' | ... */
  readonly name: string;
  readonly isolation: Isolation;
  /** How this backend holds a pod (./sandbox/pod-sandbox.ts). */
  readonly podSandbox: PodSandbox;
  /**
   * Is this backend usable here, and if not, why. Cached after the first success (and, where a
   * backend knows its refusal cannot change until the host does, that refusal); `fresh` probes
   * again whatever was cached (`bulkhead doctor`).
   */
  probe(signal?: AbortSignal, opts?: ProbeOptions): Promise<ProbeResult>;
  /** Releases in-process resources; running containers are left running. */
  close(): Promise<void>;
}

export interface ProbeOptions { fresh?: boolean }

/** Options shared by the backend constructors (factories in ./backends.ts). */
export interface BackendOptions {
  /** Directory for this backend's bundles, conmon files and runtime state (created if missing). */
  runDir: string;
  /** Path of conmon; default 'conmon'. */
  conmon?: string;
  /** Path of the OCI runtime binary; default by backend. */
  binary?: string;
  /** Extra global runtime flags from config. */
  runtimeArgs?: string[];
  /** Bulkhead's state root (config.root). */
  root?: string;
  /** Node-wide cache shared by every daemon (probe results); default /var/cache/bulkhead. */
  cacheDir?: string;
  /** The raw `[vm]` config section (validated by the microvm backend: `assets`). */
  vm?: unknown;
  logger: import('../util/log.ts').Logger;
}
