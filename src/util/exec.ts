/**
 * Every external process Bulkhead starts goes through here: non-interactive (stdin closed unless
 * input is given), with a timeout and an AbortSignal, returning {stdout, stderr, code}. Callers
 * classify a failed run into a typed error by its stderr in one place per tool.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { procStat } from './proc.ts';
import { AbortedError, DeadlineExceededError, InternalError, UnavailableError } from '../errors.ts';


/** `pid` and every process below it, parents before children. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const p = Number(name);
    if (!Number.isInteger(p) || p <= 0) continue;
    const pp = procStat(p)?.ppid;
    if (pp === undefined) continue;
    const list = children.get(pp);
    if (list) list.push(p); else children.set(pp, [p]);
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.shift()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/**
 * SIGKILLs `pid` and everything it started that is still below it. A tool killed alone leaves its
 * helpers behind (runsc's sandbox and gofer under a hung `runsc do` span a session of their own,
 * so a process-group kill misses them); the tree is read first and children are killed before
 * they can be reparented.
 */
export function killTree(pid: number): void {
  for (const p of processTree(pid).reverse()) {
    try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ }
  }
}

export interface RunOptions {
  /** Milliseconds before the process is killed with SIGKILL; default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Written to the process's stdin, which is then closed; a promise: once it resolves (the process waits for it meanwhile). */
  input?: string | Buffer | Promise<string | Buffer>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Cap on captured stdout/stderr bytes each (the rest is dropped); default 16 MiB. */
  maxOutput?: number;
  /**
   * The command is SIGKILLed by the kernel if this process dies first (util-linux `setpriv
   * --pdeathsig`), for probes that may hang: a daemon killed mid-probe leaves nothing running.
   */
  dieWithParent?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const maxOutput = opts.maxOutput ?? 16 * 1024 * 1024;
  opts.signal?.throwIfAborted();
  return await new Promise<RunResult>((resolve, reject) => {
    const [file, argv] = opts.dieWithParent ? ['setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...args]] : [cmd, args];
    const child = spawn(file, argv, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    child.stdout!.on('data', (b: Buffer) => { if (outLen < maxOutput) { out.push(b); outLen += b.length; } });
    child.stderr!.on('data', (b: Buffer) => { if (errLen < maxOutput) { err.push(b); errLen += b.length; } });
    let timedOut = false;
    // A killed run also ends what it started; its output pipes may still be held by a process
    // that escaped the tree, so they are closed shortly after the child itself is gone — also when
    // the child had exited before the kill (a process it left holds the pipes: without this, 'close'
    // waited for that process however long it lived, and the timeout bounded nothing).
    let killed = false;
    const endPipes = (): void => { setTimeout(() => { child.stdout?.destroy(); child.stderr?.destroy(); }, 1000).unref(); };
    const kill = (): void => {
      killed = true;
      if (child.pid !== undefined) killTree(child.pid); else child.kill('SIGKILL');
      if (child.exitCode !== null || child.signalCode !== null) endPipes();
    };
    child.on('exit', () => {
      if (killed) endPipes();
    });
    const timer = setTimeout(() => { timedOut = true; kill(); }, timeoutMs);
    const onAbort = kill;
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.input !== undefined && child.stdin) {
      const stdin = child.stdin;
      stdin.on('error', () => { /* the child may exit before reading its input */ });
      void Promise.resolve(opts.input).then((data) => { if (!stdin.destroyed) stdin.end(data); }, () => stdin.destroy());
    }
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (e.code === 'ENOENT') reject(new UnavailableError(`${cmd} is not installed (not found on PATH); run scripts/setup.sh`, { cause: e }));
      else reject(e);
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (opts.signal?.aborted) { reject(new AbortedError(`${cmd} aborted`)); return; }
      if (timedOut) { reject(new DeadlineExceededError(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms`)); return; }
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code,
        signal: sig,
      });
    });
  });
}

/** Like run(), but a non-zero exit becomes an error carrying the command and its stderr. */
export async function runChecked(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new InternalError(`${cmd} ${args.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r;
}
