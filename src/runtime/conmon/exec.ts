/**
 * Exec in a running container: without a terminal the runtime's `exec` runs directly (output
 * collected, bounded); interactive sessions (and a terminal) run under a conmon of their own
 * (`--exec --exec-attach`) in `<runDir>/exec/<execId>/`, their stdio through its attach socket.
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AbortedError, DeadlineExceededError, FailedPreconditionError, InternalError, InvalidArgumentError } from '../../errors.ts';
import type { ExecOptions, ExecResult, InteractiveExecOptions, InteractiveProcess } from '../backend.ts';
import { classifyRuntimeFailure } from '../errors.ts';
import type { OciProcess } from '../../oci/spec.ts';
import { connectAttach } from './attach.ts';
import { existsSyncCheck, MAX_OUTPUT, readInt, signalsNumber, writeCtl, type ConmonContext } from './shared.ts';
import { readSyncPipe } from './sync-pipe.ts';

/** The process spec of an exec: the container's process with the request's args, env, cwd, user and terminal. */
async function execProcess(ctx: ConmonContext, id: string, o: { args: string[]; env?: string[]; cwd?: string; user?: ExecOptions['user']; tty?: boolean }): Promise<OciProcess> {
  if (o.args.length === 0) throw new InvalidArgumentError('exec needs a command');
  const spec = await ctx.spec(id);
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

async function requireRunning(ctx: ConmonContext, id: string): Promise<void> {
  const st = await ctx.state(id);
  if (st.status !== 'running') throw new FailedPreconditionError(`container ${id} is not running (${st.status})`);
}

/** Runs a command to completion in a running container, collecting its output. */
export async function execSync(ctx: ConmonContext, id: string, opts: ExecOptions): Promise<ExecResult> {
  await requireRunning(ctx, id);
  if (opts.tty) {
    // a terminal needs conmon (console socket); collect its output through the attach stream
    const p = await execInteractive(ctx, id, { ...opts, stdin: opts.stdin !== undefined });
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
  const proc = await execProcess(ctx, id, opts);
  const dir = join(ctx.bundleDir(id), 'exec');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tag = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const procFile = join(dir, `${tag}.json`);
  const pidFile = join(dir, `${tag}.pid`);
  await writeFile(procFile, JSON.stringify(proc), { mode: 0o600 });
  const timeoutMs = opts.timeoutMs ?? 60_000;
  try {
    return await new Promise<ExecResult>((resolve, reject) => {
      const child = spawn(ctx.execRuntimePath, [...ctx.runtime.globalArgs, 'exec', '--process', procFile, '--pid-file', pidFile, id], {
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
        if (pid !== undefined) await ctx.killExecProcess(id, pid, pidFile).catch(() => {});
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
          reject(classifyRuntimeFailure({ what: `${ctx.runtime.path} exec ${id}`, stderr: stderr.toString(), code }));
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

/** Starts an interactive exec session under its own conmon. */
export async function execInteractive(ctx: ConmonContext, id: string, opts: InteractiveExecOptions): Promise<InteractiveProcess> {
  await requireRunning(ctx, id);
  const proc = await execProcess(ctx, id, opts);
  const sessions = join(ctx.runDir, 'exec');
  await mkdir(sessions, { recursive: true, mode: 0o700 });
  const execId = `${id.slice(0, 40)}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const dir = join(sessions, execId);
  await mkdir(dir, { mode: 0o700 });
  const procFile = join(dir, 'process.json');
  await writeFile(procFile, JSON.stringify(proc), { mode: 0o600 });
  const args = [
    '--api-version', '1', '-c', id, '-u', execId, '-r', ctx.execRuntimePath, '-b', dir,
    '-p', join(dir, 'pid'), '-l', `k8s-file:${join(dir, 'log')}`, '--exit-dir', dir, '--persist-dir', dir,
    '--socket-dir-path', dir, '--full-attach', '--log-level', 'info', '--syslog',
    '-e', '--exec-process-spec', procFile, '--exec-attach',
    ...ctx.runtime.globalArgs.flatMap((a) => ['--runtime-arg', a]),
  ];
  if (opts.stdin) args.push('-i');
  if (opts.tty) args.push('-t');
  return await startExecSession(ctx, id, dir, args, opts);
}

/**
 * conmon --exec --exec-attach: fd 3 sync pipe (pid, then exit code), fd 4 start pipe (we write
 * once attached), fd 5 attach pipe (conmon says the socket is ready).
 */
function startExecSession(ctx: ConmonContext, id: string, dir: string, args: string[], opts: InteractiveExecOptions): Promise<InteractiveProcess> {
  return new Promise<InteractiveProcess>((resolve, reject) => {
    const child = spawn(ctx.conmon, args, {
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
    // a conmon that dies resets its ends of these socket pairs: an unhandled 'error' would take the
    // daemon down (the sync pipe's end says what happened)
    for (const s of [child.stderr!, attachPipe, startPipe as unknown as Readable]) s.on('error', () => {});
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
    const timer = setTimeout(() => fail(new DeadlineExceededError(`conmon exec session did not start within ${ctx.limits.callMs} ms (${ctx.limits.setting})`)), ctx.limits.callMs);
    child.on('error', (e) => fail(e));
    let exitResolve: (n: number) => void = () => {};
    const exited = new Promise<number>((r) => { exitResolve = r; });
    let gotPid = false;
    readSyncPipe(syncPipe, (f) => {
      if (f.kind === 'malformed') {
        // before the pid nothing else will come that could start the session: fail now, not at the timeout
        if (!gotPid) { gotPid = true; fail(new InternalError(`conmon's exec sync pipe sent a malformed message (${f.reason}); see conmon in the host's syslog`)); return; }
        ctx.log.warn('conmon sent a malformed sync message; ignored', { id, reason: f.reason });
        return;
      }
      const msg = f.msg;
      if (!gotPid) {
        gotPid = true;
        if (msg.data <= 0) {
          const e = classifyRuntimeFailure({ what: `${ctx.runtime.path} exec ${id}`, stderr: msg.message ?? stderr, code: null });
          if (!settled) fail(e); else exitResolve(-1);
        }
      } else {
        exitResolve(msg.data);
      }
    }, () => {
      // give stderr a moment to arrive, then report conmon's own failure
      if (!gotPid) setTimeout(() => fail(classifyRuntimeFailure({ what: `${ctx.runtime.path} exec ${id}`, stderr: stderr || 'conmon exited without reporting a pid', code: null })), 50);
      exitResolve(-1);
    });
    attachPipe.once('data', () => {
      // the attach socket exists: connect, then let conmon start the process
      const session = connectAttach(dir, { stdin: opts.stdin === true, tty: opts.tty === true }, ctx.log);
      session.helper.on('error', (e) => fail(e));
      // conmon starts the process once the helper is connected, or early output is lost (a fixed
      // 1 s wait for it lost the output of a short exec when perl started slowly on a loaded host)
      void (async () => {
        await session.connected;
        if (settled) return;
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
              if (pid !== undefined) await ctx.killExecProcess(id, pid, join(dir, 'pid')).catch(() => {});
              session.close();
            })();
          },
        });
      })();
    });
  });
}
