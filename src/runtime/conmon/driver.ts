/**
 * The shared driver: runs containers of any backend under Debian's conmon (2.1.x, API version 1)
 * with the backend's OCI runtime CLI — create, start, state, wait, kill, delete, update, stats,
 * list; exec (exec.ts) and attach (attach.ts) are given a context of it. Containers outlive the
 * daemon: conmon double-forks and is nobody's child we wait on; everything needed to find a
 * container again lives under `<runDir>/containers/<id>/` (bundle, meta.json, conmon's pid file,
 * ctl fifo, attach socket, oom marker) and `<runDir>/exits/<id>` (exit code, written by conmon).
 */
import { spawn } from 'node:child_process';
import { createReadStream, watch } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AbortedError, AlreadyExistsError, DeadlineExceededError, errorReason, InternalError, InvalidArgumentError, NotFoundError, UnavailableError } from '../../errors.ts';
import { run } from '../../util/exec.ts';
import { runShort } from '../../util/shell-runner.ts';
import type { Logger } from '../../util/log.ts';
import { liveStartTime } from '../../util/proc.ts';
import type {
  AttachOptions, ContainerRecord, ContainerState, ContainerStats, CreateContainerOptions, ExecOptions, ExecResult,
  InteractiveExecOptions, InteractiveProcess, RuntimeCommand,
} from '../backend.ts';
import { readCgroupStats, readOomKills } from '../../cgroup/stats.ts';
import { classifyRuntimeFailure } from '../errors.ts';
import type { OciLinuxResources, OciSpec } from '../../oci/spec.ts';
import { attachContainer, resizeTerminal } from './attach.ts';
import { execInteractive, execSync } from './exec.ts';
import {
  DEFAULT_RUNTIME_LIMITS, exists, ID_RE, identityAlive, MONITOR_DIED, namingLimit, pidAlive, readInt, resolveBinary, sleep, validateId, writeCtl,
  type ConmonContext, type Meta, type ProcessIdentity, type RuntimeLimits,
} from './shared.ts';
import { readSyncPipe } from './sync-pipe.ts';

/** For callers that resolve a runtime binary the way the driver does (gVisor's backend, the benches). */
export { resolveBinary } from './shared.ts';
export type { RuntimeLimits } from './shared.ts';

export interface ConmonDriverOptions {
  runDir: string;
  conmon: string;
  runtime: RuntimeCommand;
  logger: Logger;
  /**
   * Kills a timed-out exec'd process given the pid its runtime wrote to `pidFile` (a runtime
   * may write more beside it, e.g. `<pidFile>.internal`); default: kill(pid, SIGKILL).
   */
  killExecProcess?: (containerId: string, pid: number, pidFile: string) => Promise<void>;
  /**
   * Runtime path for `exec` (run directly, and by conmon for exec sessions); default runtime.path.
   * For runtimes whose `exec` differs from runc's in a flag conmon passes (runsc: no `--tty`).
   */
  execRuntimePath?: string;
  /**
   * Runs a runtime subcommand in this process instead of spawning the runtime (its stdout, or
   * undefined when it is not one it runs; see InProcessRuntime): the microvm backend's runtime is
   * Bulkhead's own code, and each `bulkhead-vm` process costs a Node.js start; runc's and runsc's
   * delete of an ended container is a few rmdirs.
   */
  inProcess?: InProcessRuntime;
  /**
   * Does a container's create in this process up to starting its process, before conmon runs the
   * runtime's `create` (which then only starts that process); undefined = the runtime does it all.
   * `created` gets the pid conmon reported; `abandon` undoes it when the create fails.
   */
  prepareCreate?: (id: string, bundle: string, spec: OciSpec, signal?: AbortSignal) => Promise<PreparedCreate | undefined>;
  /** How long a runtime call may take (see RuntimeLimits); default DEFAULT_RUNTIME_LIMITS. */
  limits?: RuntimeLimits;
}

/** See ConmonDriverOptions.prepareCreate. */
export interface PreparedCreate {
  created(pid: number): Promise<void>;
  abandon(): Promise<void>;
}

/**
 * See ConmonDriverOptions.inProcess; `timeoutMs` bounds the call as the spawned runtime's would be.
 * undefined: not done here, the runtime runs; a promise of undefined: tried here and left to the
 * runtime after all (its state still in place), which then runs.
 */
export type InProcessRuntime = (args: string[], opts: { signal?: AbortSignal; timeoutMs: number }) => Promise<string | undefined> | undefined;

export class ConmonDriver {
  readonly runDir: string;
  readonly runtime: RuntimeCommand;
  private readonly conmon: string;
  private readonly log: Logger;
  private readonly killExecProcess: (id: string, pid: number, pidFile: string) => Promise<void>;
  private readonly execRuntimePath: string;
  readonly #inProcess: InProcessRuntime | undefined;
  readonly #prepareCreate: ConmonDriverOptions['prepareCreate'];
  readonly #ctx: ConmonContext;
  readonly limits: RuntimeLimits;

  constructor(opts: ConmonDriverOptions) {
    this.runDir = opts.runDir;
    this.conmon = opts.conmon;
    // conmon wants an absolute runtime path
    this.runtime = { ...opts.runtime, path: resolveBinary(opts.runtime.path) };
    this.log = opts.logger;
    this.execRuntimePath = opts.execRuntimePath ?? this.runtime.path;
    this.#inProcess = opts.inProcess;
    this.#prepareCreate = opts.prepareCreate;
    this.limits = opts.limits ?? DEFAULT_RUNTIME_LIMITS;
    this.killExecProcess = opts.killExecProcess ?? (async (_id, pid) => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } });
    this.#ctx = {
      runDir: this.runDir, runtime: this.runtime, conmon: this.conmon, execRuntimePath: this.execRuntimePath, log: this.log, limits: this.limits,
      killExecProcess: (id, pid, pidFile) => this.killExecProcess(id, pid, pidFile),
      bundleDir: (id) => this.bundleDir(id),
      meta: (id) => this.meta(id),
      spec: (id) => this.spec(id),
      state: (id) => this.state(id),
    };
  }

  bundleDir(id: string): string { return join(this.runDir, 'containers', id); }
  exitFile(id: string): string { return join(this.runDir, 'exits', id); }
  private get exitDir(): string { return join(this.runDir, 'exits'); }

  /** Runs `<runtime> <globalArgs> ...args` (in the daemon's process where ConmonDriverOptions.inProcess does it), classifying a failure. */
  async runtimeCmd(args: string[], opts: { signal?: AbortSignal; input?: string; timeoutMs?: number } = {}): Promise<string> {
    const direct = opts.input === undefined ? this.#inProcess?.(args, { timeoutMs: opts.timeoutMs ?? this.limits.callMs, ...(opts.signal ? { signal: opts.signal } : {}) }) : undefined;
    // a spawned runtime's limit is named by spawnRuntime; an in-process call's here
    const done = direct === undefined ? undefined : await direct.catch((err: unknown) => { throw namingLimit(err, this.limits); });
    return done ?? await this.spawnRuntime(this.runtime, args, opts);
  }

  /**
   * Spawns `<runtime.path> <runtime.globalArgs> ...args` (never in-process), classifying a failure.
   * `viaShell`: through the shell runner (util/shell-runner.ts: no fork of the daemon; stdout and
   * stderr come joined, so only for a command whose stdout nobody reads, e.g. `start`).
   */
  async spawnRuntime(runtime: RuntimeCommand, args: string[], opts: { signal?: AbortSignal; input?: string; timeoutMs?: number; viaShell?: boolean } = {}): Promise<string> {
    const how = opts.viaShell && opts.input === undefined ? runShort : run;
    const r = await how(runtime.path, [...runtime.globalArgs, ...args], {
      timeoutMs: opts.timeoutMs ?? this.limits.callMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.input !== undefined ? { input: opts.input } : {}),
    }).catch((err: unknown) => { throw namingLimit(err, this.limits); });
    if (r.code !== 0) throw classifyRuntimeFailure({ what: `${runtime.path} ${args[0] ?? ''} ${args[args.length - 1] ?? ''}`, stderr: r.stderr, stdout: r.stdout, code: r.code });
    return r.stdout;
  }

  private async meta(id: string): Promise<Meta> {
    validateId(id);
    try {
      return JSON.parse(await readFile(join(this.bundleDir(id), 'meta.json'), 'utf8')) as Meta;
    } catch {
      throw new NotFoundError(`container ${id} not found`, { reason: 'BH_CONTAINER_NOT_FOUND' });
    }
  }

  async spec(id: string): Promise<OciSpec> {
    await this.meta(id);
    return JSON.parse(await readFile(join(this.bundleDir(id), 'config.json'), 'utf8')) as OciSpec;
  }

  async createContainer(opts: CreateContainerOptions): Promise<{ pid: number }> {
    validateId(opts.id);
    const bundle = this.bundleDir(opts.id);
    if (await exists(join(bundle, 'meta.json'))) throw new AlreadyExistsError(`container ${opts.id} already exists`);
    if (!opts.spec.root?.path?.startsWith('/')) throw new InvalidArgumentError('spec.root.path must be an absolute path');
    const tty = opts.tty ?? opts.spec.process?.terminal ?? false;
    if (opts.spec.process) opts.spec.process.terminal = tty;
    await mkdir(bundle, { recursive: true, mode: 0o700 });
    await mkdir(this.exitDir, { recursive: true, mode: 0o700 });
    await rm(this.exitFile(opts.id), { force: true });
    const meta: Meta = {
      id: opts.id, podId: opts.pod.podId, role: opts.pod.role, logPath: opts.logPath, tty, stdin: opts.stdin === true,
      createdAt: new Date().toISOString(), cgroupsPath: opts.spec.linux?.cgroupsPath ?? '',
    };
    await writeFile(join(bundle, 'config.json'), JSON.stringify(opts.spec), { mode: 0o600 });
    await writeFile(join(bundle, 'meta.json'), JSON.stringify(meta), { mode: 0o600 });
    const args = [
      '--api-version', '1', '-c', opts.id, '-u', opts.id, '-n', opts.name ?? opts.id,
      '-r', this.runtime.path, '-b', bundle, '-p', join(bundle, 'pidfile'), '-P', join(bundle, 'conmon.pid'),
      '-l', `k8s-file:${opts.logPath}`, '--exit-dir', this.exitDir, '--persist-dir', bundle,
      '--socket-dir-path', bundle, '--full-attach', '--log-level', 'info', '--syslog',
      ...this.runtime.globalArgs.flatMap((a) => ['--runtime-arg', a]),
    ];
    if (opts.stdin) args.push('-i');
    if (opts.stdin && !opts.stdinOnce) args.push('--leave-stdin-open');
    if (tty) args.push('-t');
    let prepared: PreparedCreate | undefined;
    try {
      prepared = await this.#prepareCreate?.(opts.id, bundle, opts.spec, opts.signal);
      const pid = await this.spawnConmon(args, bundle, opts.signal);
      await prepared?.created(pid);
      // the process conmon waits on, by pid and start time: watched directly should conmon die
      const startTime = liveStartTime(pid);
      if (startTime !== undefined) await writeFile(join(bundle, 'workload.json'), JSON.stringify({ pid, startTime } satisfies ProcessIdentity), { mode: 0o600 });
      return { pid };
    } catch (err) {
      await this.killConmon(opts.id);
      await prepared?.abandon().catch(() => {});
      await this.runtimeCmd(['delete', '--force', opts.id], { timeoutMs: 20_000 }).catch(() => {});
      await rm(bundle, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /** SIGKILLs a container's conmon (by its pid file) and the processes of its group (a runtime still creating). */
  private async killConmon(id: string): Promise<void> {
    const pid = await readInt(join(this.bundleDir(id), 'conmon.pid'));
    if (pid === undefined || !pidAlive(pid)) return;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmd.includes(id)) return; // the pid was reused
    try { process.kill(-pid, 'SIGKILL'); } catch { /* not a group leader */ }
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }

  /** What the container's workload process was when created (see createContainer). */
  private async workload(id: string): Promise<ProcessIdentity | undefined> {
    try {
      const w = JSON.parse(await readFile(join(this.bundleDir(id), 'workload.json'), 'utf8')) as Partial<ProcessIdentity>;
      return typeof w.pid === 'number' && typeof w.startTime === 'string' ? { pid: w.pid, startTime: w.startTime } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Spawns conmon with a sync pipe on fd 3 and returns the pid it reports. */
  private spawnConmon(args: string[], cwd: string, signal?: AbortSignal, timeoutMs = this.limits.createMs): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const child = spawn(this.conmon, args, {
        stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
        env: { ...process.env, _OCI_SYNCPIPE: '3' },
        detached: true,
        // conmon writes files (e.g. an `oom` marker) into its working directory: keep them in the bundle.
        cwd,
      });
      let stderr = '';
      let done = false;
      const finish = (err: Error | null, pid?: number): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        (child.stdio[3] as Readable | null)?.destroy();
        child.stderr?.destroy();
        // a timeout or abort must not leave what was started running (the caller then kills the
        // daemonized conmon by its pid file and deletes the runtime's container)
        if (err && child.pid !== undefined) { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }
        if (err) reject(err); else resolve(pid!);
      };
      const timer = setTimeout(() => finish(new DeadlineExceededError(`${this.runtime.path} create (under conmon) did not report the container pid within ${timeoutMs} ms (${this.limits.setting})`)), timeoutMs);
      const onAbort = (): void => finish(new AbortedError('create aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      child.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ENOENT' ? new UnavailableError(`${this.conmon} is not installed; install the conmon package`) : e));
      child.stderr!.on('data', (b: Buffer) => { if (stderr.length < 65536) stderr += b.toString(); });
      child.stderr!.on('error', () => {});
      // the first message decides: the container's pid, or the runtime's failure
      readSyncPipe(child.stdio[3] as Readable, (f) => {
        if (f.kind === 'malformed') { finish(new InternalError(`conmon's sync pipe sent a malformed message (${f.reason}): ${JSON.stringify(f.excerpt)}`)); return; }
        if (f.msg.data > 0) finish(null, f.msg.data);
        else finish(classifyRuntimeFailure({ what: `${this.runtime.path} create`, stderr: f.msg.message ?? stderr, code: f.msg.data }));
      }, () => {
        // give stderr a moment to arrive, then report conmon's own failure
        setTimeout(() => finish(classifyRuntimeFailure({ what: 'conmon', stderr: stderr || 'conmon exited without reporting a pid', code: null })), 50);
      });
      child.unref();
    });
  }

  async start(id: string, signal?: AbortSignal): Promise<void> {
    await this.meta(id);
    await this.runtimeCmd(['start', id], signal ? { signal } : {});
  }

  private async conmonPid(id: string): Promise<number | undefined> {
    const pid = await readInt(join(this.bundleDir(id), 'conmon.pid'));
    return pid !== undefined && pidAlive(pid) ? pid : undefined;
  }

  async state(id: string, signal?: AbortSignal): Promise<ContainerState> {
    await this.meta(id);
    const bundle = this.bundleDir(id);
    const conmonPid = await this.conmonPid(id);
    const exitCode = await readInt(this.exitFile(id));
    if (exitCode !== undefined) {
      const st = await stat(this.exitFile(id));
      return {
        id, status: 'stopped', pid: 0, exitCode, exitedAt: st.mtime,
        oomKilled: await this.oomKilled(id, bundle),
      };
    }
    let rs: { status?: string; pid?: number } | undefined;
    try {
      rs = JSON.parse(await this.runtimeCmd(['state', id], { ...(signal ? { signal } : {}), timeoutMs: 20_000 })) as { status?: string; pid?: number };
    } catch (err) {
      if (!(err instanceof NotFoundError)) this.log.warn('runtime state failed', { id, err });
    }
    const base = conmonPid !== undefined ? { conmonPid } : {};
    switch (rs?.status) {
      case 'created': return { id, status: 'created', pid: rs.pid ?? 0, ...base };
      case 'running': case 'paused': case 'pausing': return { id, status: 'running', pid: rs.pid ?? 0, ...base };
      case 'stopped':
        // exited; conmon is about to write the exit file
        if (conmonPid !== undefined) return { id, status: 'stopped', pid: 0, ...base, oomKilled: await this.oomKilled(id, bundle) };
        // conmon died before the container: nobody collected its exit status
        return { id, status: 'stopped', pid: 0, oomKilled: await this.oomKilled(id, bundle), exitUnknownReason: MONITOR_DIED };
      default:
        if (conmonPid !== undefined) return { id, status: 'unknown', pid: 0, ...base };
        return { id, status: 'stopped', pid: 0, exitUnknownReason: MONITOR_DIED };
    }
  }

  /**
   * Whether the container was OOM-killed: conmon's `oom` marker, else the kills its memory cgroup
   * counted (still there until delete). conmon sends the container's pid (the create returns, the
   * start may follow at once) before it watches the cgroup v1 OOM event: a container that hits
   * its limit within that window (a loaded host) leaves no marker.
   */
  private async oomKilled(id: string, bundle: string): Promise<boolean> {
    if (await exists(join(bundle, 'oom'))) return true;
    const meta = await this.meta(id).catch(() => undefined);
    return meta?.cgroupsPath ? (await readOomKills(meta.cgroupsPath)) > 0 : false;
  }

  async wait(id: string, signal?: AbortSignal): Promise<ContainerState> {
    await this.meta(id);
    const file = this.exitFile(id);
    let watcher: ReturnType<typeof watch> | undefined;
    let wake: (() => void) | undefined;
    // an event between the check and the sleep must not be lost (it cost up to 250 ms per wait)
    let changed = false;
    try {
      try { watcher = watch(this.exitDir, () => { changed = true; wake?.(); }); } catch { /* poll only */ }
      let missingConmon = 0;
      for (;;) {
        signal?.throwIfAborted();
        changed = false;
        if (await exists(file)) {
          // conmon writes the exit file with a rename; the content is complete once visible
          return await this.state(id, signal);
        }
        if ((await this.conmonPid(id)) === undefined) {
          // conmon gone without an exit file: it may have written it just before exiting (look
          // once more), else it died (killed) and the workload may well still run
          if (++missingConmon > 1) return await this.waitUnmonitored(id, signal);
        }
        if (changed) continue;
        await new Promise<void>((resolve, reject) => {
          const done = (): void => { clearTimeout(t); wake = undefined; signal?.removeEventListener('abort', onAbort); };
          const onAbort = (): void => { done(); reject(new AbortedError('wait aborted')); };
          const t = setTimeout(() => { done(); resolve(); }, 250);
          wake = () => { done(); resolve(); };
          signal?.addEventListener('abort', onAbort, { once: true });
        });
      }
    } finally {
      watcher?.close();
    }
  }

  /**
   * wait() for a container whose conmon died: a container is not declared exited while its runtime
   * says it runs. Watches the workload process conmon waited on (pid + start time, so a reused pid
   * is not mistaken for it) and asks the runtime once it is gone (every second while the runtime
   * still says running). The exit code is unknown then, and said so (exitUnknownReason).
   */
  private async waitUnmonitored(id: string, signal?: AbortSignal): Promise<ContainerState> {
    const w = await this.workload(id);
    let warned = false;
    for (;;) {
      signal?.throwIfAborted();
      if (await exists(this.exitFile(id))) return await this.state(id, signal);
      if (w && identityAlive(w)) {
        if (!warned) { warned = true; this.log.warn('conmon of a running container died; watching its process directly', { id, pid: w.pid }); }
        await sleep(250, signal);
        continue;
      }
      const st = await this.state(id, signal);
      if (st.status === 'stopped') return st;
      if (!warned) { warned = true; this.log.warn('conmon of a running container died; asking the runtime until it ends', { id, status: st.status }); }
      await sleep(1000, signal);
    }
  }

  async kill(id: string, sig: NodeJS.Signals | number, abort?: AbortSignal): Promise<void> {
    await this.meta(id);
    const name = typeof sig === 'number' ? String(sig) : sig.replace(/^SIG/, '');
    try {
      await this.runtimeCmd(['kill', id, name], abort ? { signal: abort } : {});
    } catch (err) {
      const st = await this.state(id).catch(() => undefined);
      if (st && (st.status === 'stopped' || st.status === 'unknown')) return;
      throw err;
    }
  }

  async delete(id: string, signal?: AbortSignal): Promise<void> {
    validateId(id);
    const bundle = this.bundleDir(id);
    try {
      await this.runtimeCmd(['delete', '--force', id], { ...(signal ? { signal } : {}), timeoutMs: 30_000 });
    } catch (err) {
      // already gone is what delete wants (runtime/errors.ts classifies each runtime's words for it)
      if (errorReason(err) !== 'BH_CONTAINER_NOT_FOUND') this.log.warn('runtime delete failed', { id, err });
    }
    // conmon exits once the container is gone; do not leave it behind
    // (polled often at first: it usually goes within a few ms of the runtime's delete)
    const started = Date.now();
    let killed = false;
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      const pid = await this.conmonPid(id);
      if (pid === undefined) break;
      const waited = Date.now() - started;
      if (waited >= 4000) break;
      if (waited >= 2000 && !killed) { killed = true; try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      await sleep(delay);
    }
    await rm(bundle, { recursive: true, force: true });
    await rm(this.exitFile(id), { force: true });
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    return await execSync(this.#ctx, id, opts);
  }

  async execInteractive(id: string, opts: InteractiveExecOptions): Promise<InteractiveProcess> {
    return await execInteractive(this.#ctx, id, opts);
  }

  async attach(id: string, opts: AttachOptions = {}): Promise<InteractiveProcess> {
    return await attachContainer(this.#ctx, id, opts);
  }

  async resize(id: string, width: number, height: number): Promise<void> {
    await resizeTerminal(this.#ctx, id, width, height);
  }

  /**
   * Asks conmon to reopen its log file. conmon does it asynchronously (it reads the ctl fifo in
   * its own loop), but callers rotate the log and then expect the file back at logPath when this
   * returns (the kubelet's rotation, critest): when the file was moved away, wait (bounded) until
   * conmon has created the new one.
   */
  async reopenLog(id: string, timeoutMs = 5000): Promise<void> {
    const meta = await this.meta(id);
    await writeCtl(this.bundleDir(id), '2 0 0\n');
    const deadline = Date.now() + timeoutMs;
    while ((await stat(meta.logPath).catch(() => undefined)) === undefined) {
      if (Date.now() > deadline) throw new DeadlineExceededError(`conmon did not reopen the log of ${id} (${meta.logPath}) within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  async updateResources(id: string, resources: OciLinuxResources, signal?: AbortSignal): Promise<void> {
    await this.meta(id);
    await this.runtimeCmd(['update', '--resources', '-', id], { input: JSON.stringify(resources), ...(signal ? { signal } : {}) });
    await this.recordResources(id, resources);
  }

  /** Keeps config.json in step with resources now in force, so a restarted daemon reports them. */
  async recordResources(id: string, resources: OciLinuxResources): Promise<void> {
    const spec = await this.spec(id);
    spec.linux = spec.linux ?? {};
    spec.linux.resources = { ...spec.linux.resources, ...resources };
    await writeFile(join(this.bundleDir(id), 'config.json'), JSON.stringify(spec), { mode: 0o600 });
  }

  /** The container's processes were moved to cgroup `path` (warm pools): its bundle says so from now on. */
  async setCgroupsPath(id: string, path: string): Promise<void> {
    const meta = await this.meta(id);
    const spec = await this.spec(id);
    spec.linux = { ...spec.linux, cgroupsPath: path };
    await writeFile(join(this.bundleDir(id), 'config.json'), JSON.stringify(spec), { mode: 0o600 });
    await writeFile(join(this.bundleDir(id), 'meta.json'), JSON.stringify({ ...meta, cgroupsPath: path }), { mode: 0o600 });
  }

  async stats(id: string): Promise<ContainerStats> {
    const meta = await this.meta(id);
    return await readCgroupStats(meta.cgroupsPath);
  }

  async list(): Promise<ContainerRecord[]> {
    let names: string[];
    try {
      names = await readdir(join(this.runDir, 'containers'));
    } catch {
      return [];
    }
    const out: ContainerRecord[] = [];
    for (const n of names) {
      if (!ID_RE.test(n)) continue;
      try {
        const m = await this.meta(n);
        out.push({ id: m.id, podId: m.podId, role: m.role, bundle: this.bundleDir(n), logPath: m.logPath, createdAt: new Date(m.createdAt) });
      } catch { /* half-written: the engine's recovery deletes it */ }
    }
    return out;
  }

  /** Path of a container's cgroup (from its spec), for backends that need it. */
  async cgroupsPath(id: string): Promise<string> {
    return (await this.meta(id)).cgroupsPath;
  }

  /** Log stream helper for tests and the CLI: the raw CRI log file. */
  openLog(path: string): Readable {
    return createReadStream(path);
  }
}

