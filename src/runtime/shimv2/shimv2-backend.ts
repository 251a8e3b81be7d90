// Over 500 lines: the whole shim v2 backend (lifecycle, exec, attach, stats, reconnect) in one file, as written first; exec and attach could move out as conmon's did — not done yet.
/**
 * A containerd shim v2 as a backend (issue #15): Bulkhead plays containerd's part. A handler names
 * the shim (`binary = "io.containerd.runc.v2"` style, mapped to `containerd-shim-runc-v2` on PATH,
 * or a path); each container gets a bundle dir under runDir (config.json, stdio FIFOs, the shim's
 * log, `record.json` with the shim's socket address so a restarted daemon reconnects), the shim is
 * started with the start protocol (shim-process.ts) and driven over ttrpc (task-api.ts).
 *
 * Pods: the CRI annotations (`io.kubernetes.cri.container-type`, `…sandbox-id`) go into every
 * spec, so a shim that groups a pod (runc-v2, Kata) serves the pod's containers from the
 * sandbox's shim. runc under a shim holds a pod like conmon-runc does (namespaces joined); a VM
 * shim (Kata) hosts the pod (sandbox-hosted).
 *
 * Output: the shim writes a task's stdout/stderr into FIFOs Bulkhead made and reads into the CRI
 * log writer (cri-log.ts), as containerd's CRI plugin does, and fans it out to attached clients.
 * Exits: a background Wait call per container (a long-lived ttrpc call); the shim's events
 * (TaskExit) are taken on an events socket so it can exit at once after Shutdown, which is sent
 * when a shim's last task is deleted. A shim that is gone: calls fail at once; its containers are
 * 'stopped' with the reason and no exit code (a live but silent shim: 'unknown').
 *
 * A container's own terminal: the shim makes the pty (runc's console socket) and copies it to the
 * stdout FIFO; resize is the task's ResizePty.
 */
import { accessSync, constants, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Socket } from 'node:net';
import { probeSocket } from '../../util/socket.ts';
import { PassThrough, Writable } from 'node:stream';
import { constants as osConstants } from 'node:os';
import {
  DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError, UnimplementedError,
} from '../../errors.ts';
import type { Logger } from '../../util/log.ts';
import type {
  AttachOptions, Backend, BackendOptions, ContainerRecord, ContainerState, ContainerStats, CreateContainerOptions,
  ExecOptions, ExecResult, InteractiveExecOptions, InteractiveProcess, Isolation, ProbeOptions, ProbeResult,
} from '../backend.ts';
import type { OciLinuxResources, OciSpec } from '../../oci/spec.ts';
import { readCgroupStats } from '../../cgroup/stats.ts';
import { writeCgroupResources } from '../../cgroup/limits.ts';
import { CriLogWriter } from '../cri-log.ts';
import { NamespacesJoined } from '../sandbox/namespaces-joined.ts';
import { SandboxHosted } from '../sandbox/sandbox-hosted.ts';
import type { PodSandbox } from '../sandbox/pod-sandbox.ts';
import { CONTAINER_TYPE_ANNOTATION, SANDBOX_ID_ANNOTATION } from '../conmon-backend.ts';
import { TtrpcCallError, TtrpcServer } from '../../wire/ttrpc.ts';
import { GrpcStatus } from '../../wire/grpc-status.ts';
import { openFifo, shimDelete, startShim, type ShimStartOptions } from './shim-process.ts';
import { decodeForward, EVENTS_FORWARD, OCI_PROCESS_TYPE_URL, TaskClient, type StateResponse } from './task-api.ts';
import { findOnPath } from '../../util/which.ts';

/** The containerd namespace Bulkhead's shims run in (their runtime state is keyed by it). */
export const SHIM_NAMESPACE = 'bulkhead';
const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** `io.containerd.runc.v2` → `containerd-shim-runc-v2`; a path stays a path. */
export function shimBinaryName(runtimeType: string): string {
  const m = /^io\.containerd\.([a-z0-9]+(?:-[a-z0-9]+)*)\.(v[0-9]+)$/.exec(runtimeType);
  if (m) return `containerd-shim-${m[1]}-${m[2]}`;
  if (isAbsolute(runtimeType) || /^containerd-shim-[a-z0-9-]+$/.test(runtimeType)) return runtimeType;
  throw new InvalidArgumentError(`runtime.handlers.*.binary "${runtimeType}" is neither a runtime type (io.containerd.<name>.v<N>), a containerd-shim-* name, nor an absolute path`);
}

/** The shim's absolute path: a path as is, a name found on PATH (and /usr/local/bin, /usr/bin); null if none. */
export function resolveShim(runtimeType: string): string | null {
  const name = shimBinaryName(runtimeType);
  return findOnPath(name, ['/usr/local/bin', '/usr/bin', '/opt/kata/bin']) ?? null;
}

interface Record_ {
  id: string; podId: string; role: 'sandbox' | 'container'; sandboxId: string;
  address: string; logPath: string; createdAt: string; shimPid?: number; stdin?: boolean; stdinOnce?: boolean;
  /** The container has its own terminal: all output arrives on stdout. */
  tty?: boolean;
}

interface Live {
  rec: Record_;
  task: TaskClient;
  log: CriLogWriter | null;
  fifos: Socket[];
  /** The Wait call in flight, resolved with the final state. */
  exited: Promise<ContainerState> | null;
  /** Attached clients: each gets the container's output as it is logged. */
  listeners: Set<(s: 'stdout' | 'stderr', c: Buffer) => void>;
}

interface ExecSession {
  live: Live; execId: string; paths: { stdin: string; stdout: string; stderr: string };
  out: Socket; err: Socket | null; stdin: Socket | null; waiting: Promise<number>; cleanup: () => Promise<void>;
}

function signalNumber(s: NodeJS.Signals | number): number {
  if (typeof s === 'number') return s;
  const n = (osConstants.signals as Record<string, number>)[s];
  if (n === undefined) throw new InvalidArgumentError(`unknown signal ${s}`);
  return n;
}

function tsDate(t: { seconds: number; nanos: number } | null): Date | undefined {
  return t && t.seconds > 0 ? new Date(t.seconds * 1000 + Math.floor(t.nanos / 1e6)) : undefined;
}

function gone(err: unknown): boolean {
  return err instanceof TtrpcCallError && (err.code === GrpcStatus.UNAVAILABLE || err.code === GrpcStatus.DEADLINE_EXCEEDED);
}
function notFound(err: unknown): boolean {
  return err instanceof TtrpcCallError && err.code === GrpcStatus.NOT_FOUND;
}

/**
 * Unlinks a dead shim's socket file: only a unix socket at an absolute path that nothing answers on
 * (connection refused), so a live shim's socket, or any other file, is never touched.
 */
export async function removeStaleSocket(address: string): Promise<boolean> {
  const path = address.startsWith('unix://') ? address.slice('unix://'.length) : address;
  if (!isAbsolute(path)) return false;
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isSocket()) return false;
  if ((await probeSocket(path)) !== 'refused') return false;
  await unlink(path).catch(() => {});
  return true;
}

export interface ShimV2Flavor {
  /** The kind's name (handler backend). */
  name: string;
  isolation: Isolation;
  /** The runtime type or path when the handler names none. */
  defaultShim: string;
  /** The pod is hosted by the sandbox's shim (a VM), not joined by namespaces. */
  hosted: boolean;
  /** What else the host needs (Kata: /dev/kvm, its configuration). Returns what is missing. */
  hostChecks?: (root?: string) => string[];
}

export class ShimV2Backend implements Backend {
  readonly name: string;
  readonly isolation: Isolation;
  readonly podSandbox: PodSandbox;
  readonly #opts: BackendOptions;
  readonly #flavor: ShimV2Flavor;
  readonly #log: Logger;
  readonly #live = new Map<string, Live>();
  #probed: ProbeResult | undefined;
  #events: Promise<TtrpcServer | null> | null = null;

  constructor(opts: BackendOptions, flavor: ShimV2Flavor) {
    this.#opts = opts;
    this.#flavor = flavor;
    this.name = flavor.name;
    this.isolation = flavor.isolation;
    this.#log = opts.logger;
    this.podSandbox = flavor.hosted
      ? new SandboxHosted(this, {
        // the VM is the pod: its agent puts each container in the pod's namespaces
        namespaces: (req) => ({ network: 'sandbox', ipc: 'sandbox', uts: 'sandbox', pid: req.pid === 'POD' ? 'sandbox' : 'private' }),
        dialVia: () => 'sandbox',
      })
      : new NamespacesJoined(this, this.#log);
  }

  get #shimSpec(): string { return this.#opts.binary ?? this.#flavor.defaultShim; }

  async probe(_signal?: AbortSignal, opts: ProbeOptions = {}): Promise<ProbeResult> {
    if (this.#probed?.available && !opts.fresh) return this.#probed;
    const missing: string[] = [];
    let bin: string | null = null;
    try {
      bin = resolveShim(this.#shimSpec);
      if (!bin) missing.push(`${shimBinaryName(this.#shimSpec)} (not found on PATH, /usr/local/bin, /usr/bin or /opt/kata/bin)`);
    } catch (err) {
      missing.push((err as Error).message);
    }
    missing.push(...(this.#flavor.hostChecks?.(this.#opts.root) ?? []));
    this.#probed = missing.length > 0
      ? { available: false, reason: `${this.name} needs: ${missing.join('; ')}`, details: { shim: this.#shimSpec } }
      : { available: true, details: { shim: bin! } };
    return this.#probed;
  }

  #dir(id: string): string {
    if (!ID_RE.test(id)) throw new InvalidArgumentError(`container id "${id.slice(0, 80)}" is not a valid id`);
    return join(this.#opts.runDir, id);
  }

  /**
   * Serves the events address the shims are given (runDir/bulkhead.sock.ttrpc): a shim whose
   * events nobody takes retries each for ~15 s before it can exit after Shutdown. Exits are
   * still read from Wait; events are logged. A second instance on the same runDir takes over the
   * socket (the shims keep the path they were started with).
   */
  #serveEvents(): Promise<TtrpcServer | null> {
    this.#events ??= (async () => {
      mkdirSync(this.#opts.runDir, { recursive: true, mode: 0o700 });
      const srv = new TtrpcServer({
        [EVENTS_FORWARD]: (payload) => {
          try {
            const ev = decodeForward(payload);
            this.#log.debug?.('shim event', { topic: ev.topic, ...(ev.taskExit ? { container: ev.taskExit.containerId, exitStatus: ev.taskExit.exitStatus } : {}) });
          } catch { /* an event we cannot read is still taken */ }
          return Buffer.alloc(0);
        },
      });
      try {
        await srv.listen(join(this.#opts.runDir, 'bulkhead.sock.ttrpc'));
        return srv;
      } catch (err) {
        this.#log.warn?.('shim events socket not served; shims linger ~15 s after Shutdown', { error: (err as Error).message });
        return null;
      }
    })();
    return this.#events;
  }

  #startOpts(id: string, bundle: string): ShimStartOptions {
    const bin = resolveShim(this.#shimSpec);
    if (!bin) throw new UnavailableError(`${this.name}: shim ${shimBinaryName(this.#shimSpec)} is not installed; run bulkhead doctor`);
    return {
      binary: bin, id, namespace: SHIM_NAMESPACE, bundle,
      address: join(this.#opts.runDir, 'bulkhead.sock'), ttrpcAddress: join(this.#opts.runDir, 'bulkhead.sock.ttrpc'),
      publishBinary: '/bin/true',
    };
  }

  async createContainer(opts: CreateContainerOptions): Promise<{ pid: number }> {
    const p = await this.probe();
    if (!p.available) throw new UnavailableError(`${this.name} is not available on this host: ${p.reason ?? 'unknown reason'}`);
    const bundle = this.#dir(opts.id);
    if (existsSync(bundle)) throw new FailedPreconditionError(`container ${opts.id} already exists in ${this.name}`);
    mkdirSync(this.#opts.runDir, { recursive: true, mode: 0o700 });
    await mkdir(bundle, { mode: 0o700 });
    const sandboxId = opts.pod.role === 'sandbox' ? opts.id : (opts.pod.sandboxContainerId ?? opts.pod.podId);
    const spec: OciSpec = structuredClone(opts.spec);
    spec.annotations = {
      ...(spec.annotations ?? {}),
      [CONTAINER_TYPE_ANNOTATION]: opts.pod.role === 'sandbox' ? 'sandbox' : 'container',
      [SANDBOX_ID_ANNOTATION]: sandboxId,
    };
    if (spec.process) spec.process.terminal = opts.tty === true;
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec), { mode: 0o600 });
    await this.#serveEvents();
    const so = this.#startOpts(opts.id, bundle);
    let address: string;
    try {
      address = await startShim(so);
    } catch (err) {
      await rm(bundle, { recursive: true, force: true });
      throw err;
    }
    const rec: Record_ = {
      id: opts.id, podId: opts.pod.podId, role: opts.pod.role, sandboxId, address, logPath: opts.logPath, createdAt: new Date().toISOString(),
      ...(opts.stdin ? { stdin: true, stdinOnce: opts.stdinOnce === true } : {}),
      ...(opts.tty ? { tty: true } : {}),
    };
    const probeClient = new TaskClient(address);
    try {
      rec.shimPid = (await probeClient.connect(opts.id, { timeoutMs: 10_000 })).shimPid;
    } catch { /* reported as unknown below if it is really gone */ } finally { probeClient.close(); }
    await writeFile(join(bundle, 'record.json'), JSON.stringify(rec), { mode: 0o600 });
    const live: Live = { rec, task: new TaskClient(address), log: null, fifos: [], exited: null, listeners: new Set() };
    this.#live.set(opts.id, live);
    await this.#attachLog(live, bundle);
    try {
      let stdinPath: string | undefined;
      if (opts.stdin) {
        // held open by us so the shim's open does not block; attach writes through its own handle.
        // Never a read side: a readable handle here would take the container's input before the shim
        // (attach lost stdin under load: "passes stdin through attach" hung in 2 runs of 5)
        stdinPath = join(bundle, 'stdin');
        const keep = await openFifo(stdinPath, 'write');
        keep.unref();
        live.fifos.push(keep);
      }
      // with a terminal the shim copies the pty to stdout alone
      const r = await live.task.create({
        id: opts.id, bundle, terminal: opts.tty === true, stdout: join(bundle, 'stdout'),
        ...(opts.tty ? {} : { stderr: join(bundle, 'stderr') }), ...(stdinPath ? { stdin: stdinPath } : {}),
      }, { timeoutMs: 60_000 });
      return { pid: r.pid };
    } catch (err) {
      await this.delete(opts.id).catch(() => {});
      throw new UnavailableError(`${this.name}: the shim could not create ${opts.id}: ${(err as Error).message}`, { cause: err });
    }
  }

  async #attachLog(live: Live, bundle: string): Promise<void> {
    if (live.log) return;
    live.log = await CriLogWriter.open(live.rec.logPath, { logger: this.#log });
    for (const s of ['stdout', 'stderr'] as const) {
      const f = await openFifo(join(bundle, s));
      f.unref();
      live.fifos.push(f);
      const log = live.log;
      f.on('data', (c: Buffer) => {
        void log.write(s, c);
        for (const l of live.listeners) l(s, c);
      });
      f.on('error', () => {});
    }
  }

  /** The FIFOs never see EOF (we hold both ends): after an exit, give the output a moment, then end. */
  async #detachLog(live: Live): Promise<void> {
    if (!live.log) return;
    const log = live.log;
    live.log = null;
    await new Promise((r) => setTimeout(r, 100));
    for (const f of live.fifos) f.destroy();
    live.fifos = [];
    // what a stream left without a newline is its last record, partial (as conmon writes it)
    await log.endStream('stdout', { partial: true }).catch(() => {});
    await log.endStream('stderr', { partial: true }).catch(() => {});
    await log.close().catch(() => {});
  }

  async #get(id: string): Promise<Live> {
    const have = this.#live.get(id);
    if (have) return have;
    const dir = this.#dir(id);
    let rec: Record_;
    try {
      rec = JSON.parse(await readFile(join(dir, 'record.json'), 'utf8')) as Record_;
    } catch {
      throw new NotFoundError(`container ${id} not found in ${this.name}`);
    }
    if (rec.id !== id || typeof rec.address !== 'string' || !isAbsolute(rec.address)) throw new NotFoundError(`container ${id}: its record in ${this.name} is damaged; remove it`);
    const live: Live = { rec, task: new TaskClient(rec.address), log: null, fifos: [], exited: null, listeners: new Set() };
    this.#live.set(id, live);
    await this.#serveEvents();
    // reconnect after a restart: if the task still runs, read its output again
    const st = await live.task.state(id, '', { timeoutMs: 10_000 }).catch(() => null);
    if (st && (st.status === 'RUNNING' || st.status === 'CREATED')) await this.#attachLog(live, dir);
    return live;
  }

  #toState(id: string, st: StateResponse, rec?: Record_): ContainerState {
    const status = st.status === 'RUNNING' || st.status === 'PAUSED' || st.status === 'PAUSING' ? 'running'
      : st.status === 'CREATED' ? 'created' : st.status === 'STOPPED' ? 'stopped' : 'unknown';
    const out: ContainerState = { id, status, pid: st.pid };
    if (rec?.shimPid) out.conmonPid = rec.shimPid;
    if (status === 'stopped') {
      out.exitCode = st.exitStatus;
      const at = tsDate(st.exitedAt);
      if (at) out.exitedAt = at;
    }
    return out;
  }

  /** A stopped state with oomKilled from the container's memory cgroup (still there until Delete). */
  async #stopped(live: Live, st: StateResponse): Promise<ContainerState> {
    const out = this.#toState(live.rec.id, st, live.rec);
    if (!this.#flavor.hosted && out.exitCode === 137) {
      const stats = await this.#cgroupsPath(live.rec.id).then(readCgroupStats).catch(() => null);
      if (stats && stats.oomKills > 0) out.oomKilled = true;
    }
    return out;
  }

  /**
   * The state of a container whose shim does not answer. A shim process still alive is 'unknown'
   * (it may be busy); a dead one is 'stopped' with the reason and no exit code, as a container
   * whose conmon died: the engine records the exit, and delete cleans up with the shim's own
   * `delete` command.
   */
  #unknown(live: Live, err: unknown): ContainerState {
    const id = live.rec.id;
    const pid = live.rec.shimPid;
    let alive = false;
    if (pid) { try { process.kill(pid, 0); alive = true; } catch { /* gone */ } }
    const why = `the shim of ${id} is gone (${(err as Error).message})`;
    return alive
      ? { id, status: 'unknown', pid: 0, exitUnknownReason: `the shim of ${id} (pid ${pid}) does not answer` }
      : { id, status: 'stopped', pid: 0, exitUnknownReason: why };
  }

  async start(id: string): Promise<void> {
    const live = await this.#get(id);
    this.#watch(live);
    await live.task.start(id, '', { timeoutMs: 60_000 });
  }

  /** One Wait call per container, made before Start so no exit is missed. */
  #watch(live: Live): Promise<ContainerState> {
    live.exited ??= (async () => {
      const id = live.rec.id;
      try {
        await live.task.wait(id, '', { timeoutMs: 0x7fffffff, background: true });
        const st = await this.#stopped(live, await live.task.state(id));
        await this.#detachLog(live);
        return st;
      } catch (err) {
        await this.#detachLog(live);
        if (gone(err)) return this.#unknown(live, err);
        throw err;
      }
    })();
    return live.exited;
  }

  async state(id: string): Promise<ContainerState> {
    const live = await this.#get(id);
    try {
      const st = await live.task.state(id, '', { timeoutMs: 10_000 });
      return st.status === 'STOPPED' ? await this.#stopped(live, st) : this.#toState(id, st, live.rec);
    } catch (err) {
      if (gone(err)) return this.#unknown(live, err);
      if (notFound(err)) throw new NotFoundError(`container ${id} not found in its shim`);
      throw err;
    }
  }

  async wait(id: string, signal?: AbortSignal): Promise<ContainerState> {
    const live = await this.#get(id);
    const p = this.#watch(live);
    if (!signal) return await p;
    signal.throwIfAborted();
    return await new Promise<ContainerState>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  async kill(id: string, signal: NodeJS.Signals | number): Promise<void> {
    const live = await this.#get(id);
    try {
      await live.task.kill(id, signalNumber(signal), { timeoutMs: 10_000 });
    } catch (err) {
      if (err instanceof TtrpcCallError && (err.code === GrpcStatus.NOT_FOUND || err.code === GrpcStatus.FAILED_PRECONDITION)) return; // stopped
      if (gone(err)) throw new UnavailableError(`${this.name}: the shim of ${id} is gone; delete the container`);
      throw err;
    }
  }

  async delete(id: string): Promise<void> {
    let live: Live;
    try {
      live = await this.#get(id);
    } catch (err) {
      if (err instanceof NotFoundError) { await rm(this.#dir(id), { recursive: true, force: true }); return; }
      throw err;
    }
    const dir = this.#dir(id);
    const st = await this.state(id).catch(() => null);
    if (st && st.exitUnknownReason !== undefined) {
      // the shim is gone: its own cleanup command removes the task (runc delete --force), and its
      // socket file, which a killed shim leaves behind, goes as containerd removes it
      await shimDelete(this.#startOpts(id, dir));
      const shared = [...this.#live.values()].some((l) => l !== live && l.rec.address === live.rec.address);
      if (!shared) await removeStaleSocket(live.rec.address);
    } else if (st) {
      if (st.status === 'running') {
        await live.task.kill(id, 9, { all: true, timeoutMs: 10_000 }).catch(() => {});
        await this.wait(id, AbortSignal.timeout(30_000)).catch(() => {});
      }
      await live.task.delete(id, '', { timeoutMs: 30_000 }).catch((err: unknown) => { if (!notFound(err) && !gone(err)) throw err; });
      // the shim's last task: let it go
      const others = [...this.#live.values()].some((l) => l !== live && l.rec.address === live.rec.address);
      if (!others) await live.task.shutdown(id, false, { timeoutMs: 5000 }).catch(() => {});
    }
    await this.#detachLog(live);
    live.task.close();
    this.#live.delete(id);
    await rm(dir, { recursive: true, force: true });
  }

  /** Starts a process in a running container with FIFOs for its stdio; the caller reads them. */
  async #startExec(id: string, opts: InteractiveExecOptions): Promise<ExecSession> {
    const live = await this.#get(id);
    const dir = this.#dir(id);
    const cur = await this.state(id);
    if (cur.status !== 'running') throw new FailedPreconditionError(`container ${id} is ${cur.status}, not running: exec needs a running container`);
    const spec = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as OciSpec;
    const proc = { ...(spec.process ?? {}), terminal: opts.tty === true, args: opts.args } as NonNullable<OciSpec['process']>;
    if (opts.env) proc.env = [...(proc.env ?? []), ...opts.env];
    if (opts.cwd) proc.cwd = opts.cwd;
    if (opts.user) proc.user = { uid: opts.user.uid, gid: opts.user.gid, ...(opts.user.additionalGids ? { additionalGids: opts.user.additionalGids } : {}) };
    const execId = `exec-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const paths = { stdin: join(dir, `${execId}.stdin`), stdout: join(dir, `${execId}.stdout`), stderr: join(dir, `${execId}.stderr`) };
    const out = await openFifo(paths.stdout);
    const err = opts.tty ? null : await openFifo(paths.stderr);
    const stdin = opts.stdin ? await openFifo(paths.stdin, 'write') : null;
    const cleanup = async (): Promise<void> => {
      out.destroy(); err?.destroy(); stdin?.destroy();
      await live.task.delete(id, execId, { timeoutMs: 10_000 }).catch(() => {});
      for (const p of Object.values(paths)) await rm(p, { force: true });
    };
    try {
      await live.task.exec({
        id, execId, terminal: opts.tty === true, stdout: paths.stdout, ...(err ? { stderr: paths.stderr } : {}), ...(stdin ? { stdin: paths.stdin } : {}),
        spec: { typeUrl: OCI_PROCESS_TYPE_URL, value: Buffer.from(JSON.stringify(proc)) },
      }, { timeoutMs: 30_000 });
      const waiting = live.task.wait(id, execId, { timeoutMs: 0x7fffffff }).then((w) => w.exitStatus);
      waiting.catch(() => {});
      await live.task.start(id, execId, { timeoutMs: 30_000 });
      return { live, execId, paths, out, err, stdin, waiting, cleanup };
    } catch (e) {
      await cleanup();
      if (gone(e)) throw new UnavailableError(`${this.name}: the shim of ${id} is gone; the exec did not run`);
      throw e;
    }
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    const x = await this.#startExec(id, { args: opts.args, ...(opts.env ? { env: opts.env } : {}), ...(opts.cwd ? { cwd: opts.cwd } : {}), ...(opts.user ? { user: opts.user } : {}), tty: opts.tty === true, stdin: opts.stdin !== undefined });
    const bufs: { stdout: Buffer[]; stderr: Buffer[] } = { stdout: [], stderr: [] };
    x.out.on('data', (c: Buffer) => bufs.stdout.push(c));
    x.err?.on('data', (c: Buffer) => bufs.stderr.push(c));
    let timer: NodeJS.Timeout | undefined;
    const killIt = (): void => { void x.live.task.kill(id, 9, { execId: x.execId }).catch(() => {}); };
    try {
      if (x.stdin) {
        // the shim holds the read side now: write through a second handle, close ours, and CloseIO
        await writeFile(x.paths.stdin, opts.stdin!, { flag: constants.O_WRONLY | constants.O_NONBLOCK }).catch(() => {});
        x.stdin.destroy();
        await x.live.task.closeIO(id, x.execId, { timeoutMs: 10_000 }).catch(() => {});
      }
      let timedOut = false;
      if (opts.timeoutMs) timer = setTimeout(() => { timedOut = true; killIt(); }, opts.timeoutMs);
      opts.signal?.addEventListener('abort', killIt, { once: true });
      const code = await x.waiting.finally(() => opts.signal?.removeEventListener('abort', killIt));
      await new Promise((r) => setTimeout(r, 50));
      if (timedOut) throw new DeadlineExceededError(`exec in ${id} ran past its ${opts.timeoutMs} ms timeout and was killed`);
      return { exitCode: code, stdout: Buffer.concat(bufs.stdout), stderr: Buffer.concat(bufs.stderr) };
    } catch (e) {
      if (gone(e)) throw new UnavailableError(`${this.name}: the shim of ${id} is gone; the exec did not finish`);
      throw e;
    } finally {
      clearTimeout(timer);
      await x.cleanup();
    }
  }

  async execInteractive(id: string, opts: InteractiveExecOptions): Promise<InteractiveProcess> {
    const x = await this.#startExec(id, opts);
    const stdout = new PassThrough();
    const stderr = x.err ? new PassThrough() : null;
    x.out.on('data', (c: Buffer) => stdout.write(c));
    x.err?.on('data', (c: Buffer) => stderr!.write(c));
    let stdinW: Writable | null = null;
    if (x.stdin) {
      const fifo = x.stdin;
      stdinW = new Writable({
        write: (chunk: Buffer, _enc, cb) => { fifo.write(chunk, (e) => cb(e ?? null)); },
        final: (cb) => { fifo.destroy(); void x.live.task.closeIO(id, x.execId, { timeoutMs: 10_000 }).catch(() => {}).finally(() => cb()); },
      });
      stdinW.on('error', () => {});
    }
    let finished = false;
    const done = x.waiting.then(async (code) => {
      await new Promise((r) => setTimeout(r, 50));
      return code;
    }).finally(async () => {
      finished = true;
      stdout.end(); stderr?.end();
      await x.cleanup();
    });
    done.catch(() => {});
    if (opts.signal) opts.signal.addEventListener('abort', () => { if (!finished) void x.live.task.kill(id, 9, { execId: x.execId }).catch(() => {}); }, { once: true });
    return {
      stdin: stdinW, stdout, stderr,
      resize: async (w: number, h: number) => { await x.live.task.resizePty(id, x.execId, w, h, { timeoutMs: 10_000 }); },
      wait: async () => await done,
      close: () => { if (!finished) void x.live.task.kill(id, 9, { execId: x.execId }).catch(() => {}); },
    };
  }

  async attach(id: string, opts: AttachOptions = {}): Promise<InteractiveProcess> {
    const live = await this.#get(id);
    const stdout = new PassThrough();
    const stderr = live.rec.tty ? null : new PassThrough();
    const listener = (s: 'stdout' | 'stderr', c: Buffer): void => {
      if (s === 'stdout' && opts.stdout !== false) stdout.write(c);
      if (s === 'stderr' && opts.stderr !== false) stderr?.write(c);
    };
    live.listeners.add(listener);
    let closed = false;
    const detach = (): void => {
      if (closed) return;
      closed = true;
      live.listeners.delete(listener);
      stdout.end(); stderr?.end();
    };
    let detached: () => void = () => {};
    const detachedP = new Promise<number>((r) => { detached = () => r(0); });
    let stdinW: Writable | null = null;
    if (opts.stdin) {
      if (!live.rec.stdin) throw new FailedPreconditionError(`container ${id} was created without stdin: attach cannot write to it`);
      const fifo = await openFifo(join(this.#dir(id), 'stdin'), 'write');
      fifo.unref();
      stdinW = new Writable({
        write: (chunk: Buffer, _enc, cb) => { fifo.write(chunk, (e) => cb(e ?? null)); },
        // the client ending its stdin ends the attach session (as conmon's attach does), after a
        // moment for the output it caused; stdinOnce also closes the container's stdin
        final: (cb) => {
          fifo.destroy();
          const end = (): void => { setTimeout(() => { detach(); detached(); }, 200); cb(); };
          if (live.rec.stdinOnce) void live.task.closeIO(id, '', { timeoutMs: 10_000 }).catch(() => {}).finally(end);
          else end();
        },
      });
      stdinW.on('error', () => {});
    }
    const exited = this.#watch(live).then((st) => { detach(); return st.exitCode ?? 255; });
    exited.catch(() => {});
    return {
      stdin: stdinW, stdout, stderr,
      resize: async (w: number, h: number) => { if (live.rec.tty) await live.task.resizePty(id, '', w, h, { timeoutMs: 10_000 }); },
      wait: async () => await Promise.race([exited, detachedP]),
      close: () => { detach(); detached(); },
    };
  }

  async resize(id: string, width: number, height: number): Promise<void> {
    const live = await this.#get(id);
    if (!live.rec.tty) throw new FailedPreconditionError(`container ${id} has no terminal to resize`);
    await live.task.resizePty(id, '', width, height, { timeoutMs: 10_000 });
  }

  async #cgroupsPath(id: string): Promise<string> {
    const spec = JSON.parse(await readFile(join(this.#dir(id), 'config.json'), 'utf8')) as OciSpec;
    const p = spec.linux?.cgroupsPath;
    if (!p) throw new FailedPreconditionError(`container ${id} has no cgroupsPath: its figures are the shim's to give`);
    return p;
  }

  async updateResources(id: string, resources: OciLinuxResources): Promise<void> {
    await this.#get(id);
    if (this.#flavor.hosted) throw new UnimplementedError(`${this.name}: resource updates inside a VM shim are not supported yet (#15)`);
    await writeCgroupResources(await this.#cgroupsPath(id), resources);
  }

  async stats(id: string): Promise<ContainerStats> {
    await this.#get(id);
    return await readCgroupStats(await this.#cgroupsPath(id));
  }

  async reopenLog(id: string): Promise<void> {
    const live = await this.#get(id);
    await live.log?.reopen();
  }

  async list(): Promise<ContainerRecord[]> {
    const out: ContainerRecord[] = [];
    let names: string[];
    try { names = await readdir(this.#opts.runDir); } catch { return out; }
    for (const n of names) {
      if (!ID_RE.test(n)) continue;
      try {
        const rec = JSON.parse(await readFile(join(this.#opts.runDir, n, 'record.json'), 'utf8')) as Record_;
        if (rec.id !== n) continue;
        out.push({ id: n, podId: rec.podId, role: rec.role, bundle: join(this.#opts.runDir, n), logPath: rec.logPath, createdAt: new Date(rec.createdAt) });
      } catch { /* not ours, or half made */ }
    }
    return out;
  }

  async close(): Promise<void> {
    const ev = await this.#events;
    this.#events = null;
    await ev?.close();
    for (const l of this.#live.values()) {
      for (const f of l.fifos) f.destroy();
      await l.log?.close().catch(() => {});
      l.task.close();
    }
    this.#live.clear();
  }
}

/** Kata's host needs, named exactly (the probe and `bulkhead doctor` print them). */
export function kataHostChecks(root = '/var/lib/bulkhead'): string[] {
  const missing: string[] = [];
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    // /dev/kvm may exist and still not run guests: the microvm handler's boot probe knows
    const accel = JSON.parse(readFileSync(join(root, 'vm', 'accel.json'), 'utf8')) as { accel?: unknown; reason?: unknown };
    if (accel.accel === 'tcg') missing.push(`a /dev/kvm that runs guests (the microvm probe found: ${String(accel.reason).slice(0, 200)})`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !existsSync('/dev/kvm')) {
      missing.push('/dev/kvm (readable and writable: KVM, so guests run; this host may be a VM without nested virtualisation)');
    }
  }
  const configs = ['/etc/kata-containers/configuration.toml', '/usr/share/defaults/kata-containers/configuration.toml', '/opt/kata/share/defaults/kata-containers/configuration.toml'];
  if (!configs.some((c) => existsSync(c))) missing.push(`a Kata configuration file (one of ${configs.join(', ')})`);
  return missing;
}

/** Everything the `kata` handler lacks on this host, in words a node admin acts on (doctor, docs/kata.md). */
export function kataMissing(): string[] {
  const missing: string[] = [];
  if (!resolveShim('io.containerd.kata.v2')) missing.push('containerd-shim-kata-v2 (not on PATH, /usr/local/bin, /usr/bin or /opt/kata/bin)');
  return [...missing, ...kataHostChecks()];
}
