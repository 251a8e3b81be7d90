/**
 * Streaming sessions for stream/ and ExecSync for cri/: exec (captured or interactive), attach,
 * and port-forward into a pod's network namespace or sandbox.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
import { FailedPreconditionError, InvalidArgumentError } from '../errors.ts';
import type { Backend, InteractiveProcess } from '../runtime/backend.ts';
import type * as cri from '../api/cri.ts';
import type { PodRecord, ContainerRecord } from './store.ts';
import type { EngineStreamIO } from './options.ts';
import type { EngineContext } from './context.ts';
import { sandboxSpecOf, sandboxStateOf } from './sandbox-spec.ts';

const EXEC_OUTPUT_CAP = 16 * 1024 * 1024;
const MAX_EXEC_TIMEOUT_MS = 2 ** 31 - 1;

function runningContainer(ctx: EngineContext, idOrPrefix: string): { c: ContainerRecord; backend: Backend; p: PodRecord } {
  const c = ctx.resolveContainer(idOrPrefix);
  if (c.phase !== 'running') throw new FailedPreconditionError(`container ${c.id} is not running`, { reason: 'BH_CONTAINER_NOT_RUNNING' });
  const p = ctx.podOfContainer(c);
  return { c, p, backend: ctx.backendOf(p) };
}

/**
 * CRI ExecSync: runs `cmd` in a running container; stdout/stderr capped at 16 MiB each.
 * `timeoutSec` 0 = no limit. On timeout the command is killed and DeadlineExceededError thrown.
 */
export async function execSync(ctx: EngineContext, idOrPrefix: string, cmd: string[], timeoutSec: number, signal?: AbortSignal): Promise<cri.ExecSyncResponse> {
  if (cmd.length === 0) throw new InvalidArgumentError('exec: command must not be empty');
  const { c, backend } = runningContainer(ctx, idOrPrefix);
  const timeoutMs = timeoutSec > 0 ? Math.min(timeoutSec * 1000, MAX_EXEC_TIMEOUT_MS) : MAX_EXEC_TIMEOUT_MS;
  const r = await backend.exec(c.id, { args: cmd, timeoutMs, ...(signal ? { signal } : {}) });
  return {
    stdout: r.stdout.subarray(0, EXEC_OUTPUT_CAP),
    stderr: r.stderr.subarray(0, EXEC_OUTPUT_CAP),
    exitCode: r.exitCode,
  };
}

/** Streaming exec (for stream/): resolves with the exit code. */
export async function exec(ctx: EngineContext, containerId: string, cmd: string[], io: EngineStreamIO, signal: AbortSignal): Promise<number> {
  if (cmd.length === 0) throw new InvalidArgumentError('exec: command must not be empty');
  const { c, backend } = runningContainer(ctx, containerId);
  const proc = await backend.execInteractive(c.id, { args: cmd, tty: io.tty, stdin: !!io.stdin, signal });
  return await pumpSession(proc, io, signal, true);
}

/** Streaming attach (for stream/): until the container exits or `signal` aborts. */
export async function attach(ctx: EngineContext, containerId: string, io: EngineStreamIO, signal: AbortSignal): Promise<void> {
  // A created container can be attached too (conmon's attach socket exists from create on), so a
  // client can attach before StartContainer and miss no output, as `docker run -i` does.
  const c = ctx.resolveContainer(containerId);
  if (c.phase !== 'running' && c.phase !== 'created') throw new FailedPreconditionError(`container ${c.id} is not running`, { reason: 'BH_CONTAINER_NOT_RUNNING' });
  const backend = ctx.backendOf(ctx.podOfContainer(c));
  const proc = await backend.attach(c.id, { stdin: !!io.stdin, stdout: !!io.stdout, stderr: !!io.stderr, signal });
  if (io.tty && io.resize) void (async () => { for await (const s of io.resize!) await backend.resize(c.id, s.width, s.height).catch(() => undefined); })();
  await pumpSession(proc, { ...io, resize: undefined as never }, signal, false);
}

/**
 * Port-forward (for stream/): copies bytes between `conn` and 127.0.0.1:`port` inside the
 * pod's network namespace until both sides are done.
 */
export async function portForward(ctx: EngineContext, podIdOrPrefix: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`invalid port ${port}`);
  const p = ctx.resolvePod(podIdOrPrefix);
  if (p.phase !== 'ready') throw new FailedPreconditionError(`pod sandbox ${p.id} is not ready`);
  // how the pod is reached (its netns, the host's loopback, or from inside its sandbox) is the
  // backend's pod strategy's
  const c = await ctx.backendOf(p).podSandbox.dial(sandboxSpecOf(ctx.opts, p), sandboxStateOf(p), port, signal);
  await pipeBoth(conn, c.readable, c.writable, () => c.close(), signal);
  await c.done;
}

/** Copies a session's streams both ways; resolves with its exit code (exec) once output is drained. */
async function pumpSession(proc: InteractiveProcess, io: EngineStreamIO, signal: AbortSignal, isExec: boolean): Promise<number> {
  const onAbort = (): void => proc.close();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    if (io.stdin && proc.stdin) io.stdin.pipe(proc.stdin);
    else proc.stdin?.end();
    if (io.tty && io.resize) void (async () => { for await (const s of io.resize!) await proc.resize(s.width, s.height).catch(() => undefined); })();
    const drains: Promise<void>[] = [];
    const forward = (from: Readable | null, to: Writable | undefined): void => {
      if (!from) return;
      drains.push(new Promise<void>((resolve) => {
        from.on('end', resolve).on('close', resolve).on('error', () => resolve());
      }));
      if (to) from.pipe(to, { end: false });
      else from.resume();
    };
    forward(proc.stdout, io.stdout);
    forward(proc.stderr, io.stderr);
    const code = await proc.wait();
    await Promise.race([Promise.all(drains), new Promise((r) => setTimeout(r, 2000).unref())]);
    if (signal.aborted && !isExec) return -1;
    return code;
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (io.stdin && proc.stdin) io.stdin.unpipe(proc.stdin);
  }
}

/** Pipes `conn` → `toRemote` and `fromRemote` → `conn` until both are done or `signal` aborts. */
async function pipeBoth(conn: Duplex, fromRemote: Readable, toRemote: Writable, kill: () => void, signal: AbortSignal): Promise<void> {
  const onAbort = (): void => { kill(); conn.destroy(); };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve) => {
      let open = 2;
      const one = (): void => { if (--open === 0) resolve(); };
      let upDone = false;
      let downDone = false;
      const up = (): void => { if (!upDone) { upDone = true; toRemote.end(); one(); } };
      const down = (): void => { if (!downDone) { downDone = true; conn.end(); one(); } };
      conn.pipe(toRemote, { end: false });
      conn.on('end', up).on('close', up).on('error', () => { up(); down(); kill(); });
      fromRemote.pipe(conn, { end: false });
      fromRemote.on('end', down).on('close', down).on('error', () => { down(); up(); });
      toRemote.on('error', () => { up(); });
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
