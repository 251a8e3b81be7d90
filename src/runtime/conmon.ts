/**
 * The shared driver: runs containers of any backend under Debian's conmon (2.1.x, API version 1)
 * with the backend's OCI runtime CLI. Containers outlive the daemon: conmon double-forks and
 * is nobody's child we wait on; everything needed to find a container again lives under
 * `<runDir>/containers/<id>/` (bundle, meta.json, conmon's pid file, ctl fifo, attach socket,
 * oom marker) and `<runDir>/exits/<id>` (exit code, written by conmon).
 */
import { spawn } from 'node:child_process';
import { constants, createReadStream, statSync, watch } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { liveStartTime, procStat } from '../util/proc.ts';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { AbortedError, AlreadyExistsError, DeadlineExceededError, FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError, UnavailableError } from '../errors.ts';
import { run } from '../util/exec.ts';
import type { Logger } from '../util/log.ts';
import type {
  AttachOptions, ContainerRecord, ContainerState, ContainerStats, CreateContainerOptions, ExecOptions, ExecResult,
  InteractiveExecOptions, InteractiveProcess, RuntimeCommand,
} from './backend.ts';
import { readCgroupStats } from './cgroup-stats.ts';
import { classifyRuntimeFailure } from './errors.ts';
import type { OciLinuxResources, OciProcess, OciSpec } from '../oci/spec.ts';

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const MAX_OUTPUT = 16 * 1024 * 1024;
const RUNTIME_TIMEOUT = 60_000;

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
}

/** What meta.json records about a container, enough to find it again after a restart. */
interface Meta {
  id: string;
  podId: string;
  role: 'sandbox' | 'container';
  logPath: string;
  tty: boolean;
  stdin: boolean;
  createdAt: string;
  cgroupsPath: string;
}

/** A process named by pid and start time (field 22 of /proc/<pid>/stat), so a reused pid is not mistaken for it. */
export interface ProcessIdentity { pid: number; startTime: string }


/** The process still runs (not a zombie) and is the one recorded (same start time). */
export function identityAlive(p: ProcessIdentity): boolean {
  return liveStartTime(p.pid) === p.startTime;
}

/** Why a container's exit code is unknown when conmon died before recording it. */
export const MONITOR_DIED = 'monitor (conmon) died';

export function validateId(id: string): void {
  if (!ID_RE.test(id)) throw new InvalidArgumentError(`invalid container id ${JSON.stringify(id)}`);
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie has exited. conmon is reparented to whatever reaps orphans (pid 1 or a subreaper),
  // which may take seconds to do so; waiting for the pid to vanish cost delete ~1.5 s here.
  const st = procStat(pid);
  return st !== undefined && st.state !== 'Z';
}

async function readInt(path: string): Promise<number | undefined> {
  try {
    const t = (await readFile(path, 'utf8')).trim();
    if (!/^-?\d+$/.test(t)) return undefined;
    return Number(t);
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve, reject) => {
  const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
  const onAbort = (): void => { clearTimeout(t); reject(new AbortedError('aborted')); };
  signal?.addEventListener('abort', onAbort, { once: true });
});

/**
 * Perl (perl-base is Essential on Debian) bridges conmon's SOCK_SEQPACKET attach socket, which
 * Node cannot open, to stdio: packets out as [type:1][len:4 BE][data], stdin bytes in raw.
 */
const ATTACH_HELPER = String.raw`
use strict; use Socket; use IO::Select;
my ($dir, $name) = @ARGV; chdir($dir) or die "chdir: $!\n";
socket(my $s, AF_UNIX, SOCK_SEQPACKET, 0) or die "socket: $!\n";
connect($s, pack_sockaddr_un($name)) or die "connect: $!\n";
binmode(STDOUT); binmode(STDIN); $| = 1;
my $sel = IO::Select->new($s, \*STDIN); my $in_open = 1;
while (1) {
  for my $fh ($sel->can_read()) {
    if ($fh == $s) {
      my $buf = ''; my $r = sysread($s, $buf, 65536);
      exit 0 if !defined($r) || $r == 0;
      my $t = substr($buf, 0, 1); my $d = substr($buf, 1);
      syswrite(STDOUT, $t . pack('N', length($d)) . $d);
    } else {
      my $buf = ''; my $r = sysread(STDIN, $buf, 32768);
      if (!defined($r) || $r == 0) { $sel->remove(\*STDIN); shutdown($s, 1); $in_open = 0; next; }
      send($s, $buf, 0);
    }
  }
}`;

export class ConmonDriver {
  readonly runDir: string;
  readonly runtime: RuntimeCommand;
  private readonly conmon: string;
  private readonly log: Logger;
  private readonly killExecProcess: (id: string, pid: number, pidFile: string) => Promise<void>;
  private readonly execRuntimePath: string;

  constructor(opts: ConmonDriverOptions) {
    this.runDir = opts.runDir;
    this.conmon = opts.conmon;
    // conmon wants an absolute runtime path
    this.runtime = { ...opts.runtime, path: resolveBinary(opts.runtime.path) };
    this.log = opts.logger;
    this.execRuntimePath = opts.execRuntimePath ?? this.runtime.path;
    this.killExecProcess = opts.killExecProcess ?? (async (_id, pid) => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } });
  }

  bundleDir(id: string): string { return join(this.runDir, 'containers', id); }
  exitFile(id: string): string { return join(this.runDir, 'exits', id); }
  private get exitDir(): string { return join(this.runDir, 'exits'); }

  /** Runs `<runtime> <globalArgs> ...args`, classifying a failure. */
  async runtimeCmd(args: string[], opts: { signal?: AbortSignal; input?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await run(this.runtime.path, [...this.runtime.globalArgs, ...args], {
      timeoutMs: opts.timeoutMs ?? RUNTIME_TIMEOUT,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.input !== undefined ? { input: opts.input } : {}),
    });
    if (r.code !== 0) throw classifyRuntimeFailure({ what: `${this.runtime.path} ${args[0] ?? ''} ${args[args.length - 1] ?? ''}`, stderr: r.stderr, stdout: r.stdout, code: r.code });
    return r.stdout;
  }

  private async meta(id: string): Promise<Meta> {
    validateId(id);
    try {
      return JSON.parse(await readFile(join(this.bundleDir(id), 'meta.json'), 'utf8')) as Meta;
    } catch {
      throw new NotFoundError(`container ${id} not found`);
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
    try {
      const pid = await this.spawnConmon(args, bundle, opts.signal);
      // the process conmon waits on, by pid and start time: watched directly should conmon die
      const startTime = liveStartTime(pid);
      if (startTime !== undefined) await writeFile(join(bundle, 'workload.json'), JSON.stringify({ pid, startTime } satisfies ProcessIdentity), { mode: 0o600 });
      return { pid };
    } catch (err) {
      await this.killConmon(opts.id);
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
  private spawnConmon(args: string[], cwd: string, signal?: AbortSignal, timeoutMs = RUNTIME_TIMEOUT): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const child = spawn(this.conmon, args, {
        stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
        env: { ...process.env, _OCI_SYNCPIPE: '3' },
        detached: true,
        // conmon writes files (e.g. an `oom` marker) into its working directory: keep them in the bundle.
        cwd,
      });
      let stderr = '';
      let sync = '';
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
      const timer = setTimeout(() => finish(new DeadlineExceededError(`conmon did not report the container pid within ${timeoutMs} ms`)), timeoutMs);
      const onAbort = (): void => finish(new AbortedError('create aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      child.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ENOENT' ? new UnavailableError(`${this.conmon} is not installed; install the conmon package`) : e));
      child.stderr!.on('data', (b: Buffer) => { if (stderr.length < 65536) stderr += b.toString(); });
      const pipe = child.stdio[3] as Readable;
      pipe.on('data', (b: Buffer) => {
        sync += b.toString();
        const nl = sync.indexOf('\n');
        if (nl < 0) return;
        let msg: { data?: number; message?: string };
        try { msg = JSON.parse(sync.slice(0, nl)) as { data?: number; message?: string }; } catch { finish(new InternalError(`conmon sent ${JSON.stringify(sync.slice(0, 200))}`)); return; }
        if (typeof msg.data === 'number' && msg.data > 0) finish(null, msg.data);
        else finish(classifyRuntimeFailure({ what: `${this.runtime.path} create`, stderr: msg.message ?? stderr, code: msg.data ?? null }));
      });
      pipe.on('end', () => {
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
        oomKilled: await exists(join(bundle, 'oom')),
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
        if (conmonPid !== undefined) return { id, status: 'stopped', pid: 0, ...base, oomKilled: await exists(join(bundle, 'oom')) };
        // conmon died before the container: nobody collected its exit status
        return { id, status: 'stopped', pid: 0, oomKilled: await exists(join(bundle, 'oom')), exitUnknownReason: MONITOR_DIED };
      default:
        if (conmonPid !== undefined) return { id, status: 'unknown', pid: 0, ...base };
        return { id, status: 'stopped', pid: 0, exitUnknownReason: MONITOR_DIED };
    }
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
      if (!(err instanceof NotFoundError)) {
        const msg = (err as Error).message.toLowerCase();
        if (!/does not exist|not exist|no such/.test(msg)) this.log.warn('runtime delete failed', { id, err });
      }
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

  private async execProcess(id: string, o: { args: string[]; env?: string[]; cwd?: string; user?: ExecOptions['user']; tty?: boolean }): Promise<OciProcess> {
    if (o.args.length === 0) throw new InvalidArgumentError('exec needs a command');
    const spec = await this.spec(id);
    const base = spec.process;
    if (!base) throw new InternalError(`container ${id} has no process in its spec`);
    const env = new Map<string, string>();
    for (const e of [...(base.env ?? []), ...(o.env ?? [])]) {
      const i = e.indexOf('=');
      if (i > 0) env.set(e.slice(0, i), e.slice(i + 1));
    }
    const proc: OciProcess = {
      ...base,
      terminal: o.tty === true,
      args: o.args,
      env: [...env].map(([k, v]) => `${k}=${v}`),
      cwd: o.cwd ?? base.cwd,
      user: o.user ? { uid: o.user.uid, gid: o.user.gid, ...(o.user.additionalGids ? { additionalGids: o.user.additionalGids } : {}) } : base.user,
    };
    delete proc.consoleSize;
    if (proc.user.uid !== 0 && proc.capabilities) {
      // Same rule as buildSpec: a non-root user holds no effective/permitted/ambient capabilities.
      // runc reaches that through execve's rules for non-root; runsc starts the process with the
      // sets as written, so they must be written empty.
      proc.capabilities = { ...proc.capabilities, effective: [], permitted: [], ambient: [] };
    }
    return proc;
  }

  private async requireRunning(id: string): Promise<void> {
    const st = await this.state(id);
    if (st.status !== 'running') throw new FailedPreconditionError(`container ${id} is not running (${st.status})`);
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    await this.requireRunning(id);
    if (opts.tty) {
      // a terminal needs conmon (console socket); collect its output through the attach stream
      const p = await this.execInteractive(id, { ...opts, stdin: opts.stdin !== undefined });
      const chunks: Buffer[] = [];
      let len = 0;
      p.stdout.on('data', (b: Buffer) => { if (len < MAX_OUTPUT) { chunks.push(b); len += b.length; } });
      if (opts.stdin !== undefined) p.stdin?.end(opts.stdin);
      let timedOut = false;
      const timer = setTimeout(() => { timedOut = true; p.close(); }, opts.timeoutMs ?? 60_000);
      timer.unref();
      const code = await p.wait().finally(() => clearTimeout(timer));
      if (timedOut) throw new DeadlineExceededError('exec timed out');
      return { exitCode: code, stdout: Buffer.concat(chunks).subarray(0, MAX_OUTPUT), stderr: Buffer.alloc(0) };
    }
    const proc = await this.execProcess(id, opts);
    const dir = join(this.bundleDir(id), 'exec');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tag = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const procFile = join(dir, `${tag}.json`);
    const pidFile = join(dir, `${tag}.pid`);
    await writeFile(procFile, JSON.stringify(proc), { mode: 0o600 });
    const timeoutMs = opts.timeoutMs ?? 60_000;
    try {
      return await new Promise<ExecResult>((resolve, reject) => {
        const child = spawn(this.execRuntimePath, [...this.runtime.globalArgs, 'exec', '--process', procFile, '--pid-file', pidFile, id], {
          stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let outLen = 0;
        let errLen = 0;
        child.stdout!.on('data', (b: Buffer) => { if (outLen < MAX_OUTPUT) { out.push(b); outLen += b.length; } });
        child.stderr!.on('data', (b: Buffer) => { if (errLen < MAX_OUTPUT) { err.push(b); errLen += b.length; } });
        if (opts.stdin !== undefined && child.stdin) {
          child.stdin.on('error', () => {});
          child.stdin.end(opts.stdin);
        }
        let timedOut = false;
        const killInner = async (): Promise<void> => {
          const pid = await readInt(pidFile);
          if (pid !== undefined) await this.killExecProcess(id, pid, pidFile).catch(() => {});
          setTimeout(() => child.kill('SIGKILL'), 2000);
        };
        const timer = setTimeout(() => { timedOut = true; void killInner(); }, timeoutMs);
        const onAbort = (): void => { void killInner(); };
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        child.on('error', (e) => { clearTimeout(timer); reject(e); });
        // runsc hands our pipes into the sandbox, so they may stay open after the runtime exits:
        // settle on 'exit', leaving a moment for the last output
        let finished = false;
        child.on('exit', () => { setTimeout(() => { if (!finished) { child.stdout?.destroy(); child.stderr?.destroy(); child.emit('close', child.exitCode, child.signalCode); } }, 1000).unref(); });
        child.on('close', (code, sig) => {
          if (finished) return;
          finished = true;
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          if (opts.signal?.aborted) { reject(new AbortedError('exec aborted')); return; }
          if (timedOut) { reject(new DeadlineExceededError(`exec in ${id} did not finish within ${timeoutMs} ms; killed`)); return; }
          const stderr = Buffer.concat(err);
          if (code !== 0 && !(existsSyncCheck(pidFile))) {
            // the runtime failed before starting the process
            reject(classifyRuntimeFailure({ what: `${this.runtime.path} exec ${id}`, stderr: stderr.toString(), code }));
            return;
          }
          resolve({ exitCode: code ?? 128 + (sig ? (signalsNumber(sig)) : 9), stdout: Buffer.concat(out), stderr });
        });
      });
    } finally {
      await rm(procFile, { force: true });
      await rm(pidFile, { force: true });
      await rm(`${pidFile}.internal`, { force: true });
    }
  }

  async execInteractive(id: string, opts: InteractiveExecOptions): Promise<InteractiveProcess> {
    await this.requireRunning(id);
    const proc = await this.execProcess(id, opts);
    const sessions = join(this.runDir, 'exec');
    await mkdir(sessions, { recursive: true, mode: 0o700 });
    const execId = `${id.slice(0, 40)}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const dir = join(sessions, execId);
    await mkdir(dir, { mode: 0o700 });
    const procFile = join(dir, 'process.json');
    await writeFile(procFile, JSON.stringify(proc), { mode: 0o600 });
    const args = [
      '--api-version', '1', '-c', id, '-u', execId, '-r', this.execRuntimePath, '-b', dir,
      '-p', join(dir, 'pid'), '-l', `k8s-file:${join(dir, 'log')}`, '--exit-dir', dir, '--persist-dir', dir,
      '--socket-dir-path', dir, '--full-attach', '--log-level', 'info', '--syslog',
      '-e', '--exec-process-spec', procFile, '--exec-attach',
      ...this.runtime.globalArgs.flatMap((a) => ['--runtime-arg', a]),
    ];
    if (opts.stdin) args.push('-i');
    if (opts.tty) args.push('-t');
    return await this.startExecSession(id, dir, args, opts);
  }

  /**
   * conmon --exec --exec-attach: fd 3 sync pipe (pid, then exit code), fd 4 start pipe (we write
   * once attached), fd 5 attach pipe (conmon says the socket is ready).
   */
  private startExecSession(id: string, dir: string, args: string[], opts: InteractiveExecOptions): Promise<InteractiveProcess> {
    return new Promise<InteractiveProcess>((resolve, reject) => {
      const child = spawn(this.conmon, args, {
        stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
        env: { ...process.env, _OCI_SYNCPIPE: '3', _OCI_STARTPIPE: '4', _OCI_ATTACHPIPE: '5' },
        detached: true,
        // conmon writes files (e.g. an `oom` marker) into its working directory: keep them in the session dir.
        cwd: dir,
      });
      child.unref();
      const syncPipe = child.stdio[3] as Readable;
      const startPipe = child.stdio[4] as unknown as NodeJS.WritableStream & { destroy(): void };
      const attachPipe = (child.stdio as unknown as Readable[])[5]!;
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => { if (stderr.length < 65536) stderr += b.toString(); });
      // conmon reads the start pipe once before forking (cgroup placement), and with --exec-attach
      // once more before it lets the runtime exec the process
      startPipe.write('0');
      let settled = false;
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try { startPipe.destroy(); } catch { /* */ }
        syncPipe.destroy(); attachPipe.destroy();
        void rm(dir, { recursive: true, force: true }).catch(() => {});
        reject(e);
      };
      const timer = setTimeout(() => fail(new DeadlineExceededError('conmon exec session did not start within 60 s')), RUNTIME_TIMEOUT);
      child.on('error', (e) => fail(e));
      let exitResolve: (n: number) => void = () => {};
      const exited = new Promise<number>((r) => { exitResolve = r; });
      let syncBuf = '';
      let gotPid = false;
      syncPipe.on('data', (b: Buffer) => {
        syncBuf += b.toString();
        let nl;
        while ((nl = syncBuf.indexOf('\n')) >= 0) {
          const line = syncBuf.slice(0, nl);
          syncBuf = syncBuf.slice(nl + 1);
          let msg: { data?: number; message?: string };
          try { msg = JSON.parse(line) as { data?: number; message?: string }; } catch { continue; }
          if (!gotPid) {
            gotPid = true;
            if (typeof msg.data !== 'number' || msg.data <= 0) {
              const e = classifyRuntimeFailure({ what: `${this.runtime.path} exec ${id}`, stderr: msg.message ?? stderr, code: null });
              if (!settled) fail(e); else exitResolve(-1);
              return;
            }
          } else {
            exitResolve(typeof msg.data === 'number' ? msg.data : -1);
          }
        }
      });
      syncPipe.on('close', () => { exitResolve(-1); });
      attachPipe.once('data', () => {
        // the attach socket exists: connect, then let conmon start the process
        const helper = spawn('perl', ['-e', ATTACH_HELPER, dir, 'attach'], { stdio: ['pipe', 'pipe', 'pipe'] });
        const session = this.wrapAttach(helper, { stdin: opts.stdin === true, tty: opts.tty === true, dir });
        helper.on('error', (e) => fail(e));
        // give the helper time to connect before conmon starts the process, or early output is lost
        void (async () => {
          for (let i = 0; i < 100 && !session.connected(); i++) await sleep(10);
          startPipe.write('0');
          startPipe.destroy();
          settled = true;
          clearTimeout(timer);
          resolve({
            stdin: session.stdin, stdout: session.stdout, stderr: session.stderr,
            resize: async (w, h) => { await writeCtl(dir, `1 ${h} ${w}\n`); },
            wait: async () => {
              const code = await exited;
              await session.ended;
              void rm(dir, { recursive: true, force: true }).catch(() => {});
              return code;
            },
            close: () => {
              void (async () => {
                const pid = await readInt(join(dir, 'pid'));
                if (pid !== undefined) await this.killExecProcess(id, pid, join(dir, 'pid')).catch(() => {});
                session.close();
              })();
            },
          });
        })();
      });
    });
  }

  /** Turns the perl helper's framed stdout into stdout/stderr streams. */
  private wrapAttach(helper: ReturnType<typeof spawn>, o: { stdin: boolean; tty: boolean; dir: string }): {
    stdin: NodeJS.WritableStream & import('node:stream').Writable | null; stdout: PassThrough; stderr: PassThrough | null;
    ended: Promise<void>; close: () => void; connected: () => boolean;
  } {
    const stdout = new PassThrough();
    const stderr = o.tty ? null : new PassThrough();
    let buf: Buffer = Buffer.alloc(0);
    let connected = false;
    let helperErr = '';
    helper.stderr!.on('data', (b: Buffer) => { helperErr += b.toString(); });
    helper.stdout!.on('data', (b: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, b]) : b;
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (buf.length < 5 + len) break;
        const type = buf[0]!;
        const data = buf.subarray(5, 5 + len);
        buf = buf.subarray(5 + len);
        if (type === 3 && stderr) stderr.write(data); else stdout.write(data);
      }
    });
    // perl connects synchronously at start; treat "alive for a moment without error" as connected
    setTimeout(() => { if (helper.exitCode === null) connected = true; }, 30);
    const ended = new Promise<void>((resolve) => {
      helper.on('close', () => {
        if (helperErr.trim()) this.log.debug('attach helper', { err: helperErr.trim() });
        stdout.end();
        stderr?.end();
        resolve();
      });
    });
    let stdin = null;
    if (o.stdin) {
      stdin = helper.stdin!;
      stdin.on('error', () => {});
    } else {
      helper.stdin!.on('error', () => {});
    }
    return {
      stdin, stdout, stderr, ended, connected: () => connected,
      close: () => { helper.kill('SIGTERM'); },
    };
  }

  async attach(id: string, opts: AttachOptions = {}): Promise<InteractiveProcess> {
    const meta = await this.meta(id);
    const dir = this.bundleDir(id);
    if (!(await exists(join(dir, 'attach')))) throw new FailedPreconditionError(`container ${id} has no attach socket (not running under conmon)`);
    const helper = spawn('perl', ['-e', ATTACH_HELPER, dir, 'attach'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const session = this.wrapAttach(helper, { stdin: opts.stdin === true && meta.stdin, tty: meta.tty, dir });
    await new Promise<void>((resolve, reject) => {
      helper.once('error', reject);
      setTimeout(resolve, 50);
    });
    if (helper.exitCode !== null) throw new FailedPreconditionError(`cannot attach to ${id}: conmon is not serving it`);
    return {
      stdin: session.stdin,
      stdout: session.stdout,
      stderr: session.stderr,
      resize: async (w, h) => { await this.resize(id, w, h); },
      wait: async () => {
        await session.ended;
        const st = await this.state(id).catch(() => undefined);
        return st?.status === 'stopped' ? (st.exitCode ?? -1) : -1;
      },
      close: () => session.close(),
    };
  }

  async resize(id: string, width: number, height: number): Promise<void> {
    await this.meta(id);
    await writeCtl(this.bundleDir(id), `1 ${Math.max(1, Math.floor(height))} ${Math.max(1, Math.floor(width))}\n`);
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

/** Absolute path of a binary named without a slash, looked up on PATH (as the shell would). */
export function resolveBinary(bin: string): string {
  if (bin.includes('/')) return bin;
  for (const dir of (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    const p = join(dir, bin);
    try {
      if (statSync(p).isFile()) return p;
    } catch { /* next */ }
  }
  return bin;
}

function existsSyncCheck(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function signalsNumber(sig: NodeJS.Signals): number {
  return osConstants.signals[sig] ?? 9;
}

/** Writes one control line to conmon's ctl fifo (non-blocking: no reader means conmon is gone). */
async function writeCtl(dir: string, line: string): Promise<void> {
  let fh;
  try {
    fh = await open(join(dir, 'ctl'), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENXIO' || code === 'ENOENT') throw new FailedPreconditionError('conmon is not running for this container');
    throw err;
  }
  try {
    await fh.write(line);
  } finally {
    await fh.close();
  }
}
