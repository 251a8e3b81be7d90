/**
 * Every external process Bulkhead starts goes through here: non-interactive (stdin closed unless
 * input is given), with a timeout and an AbortSignal, returning {stdout, stderr, code}. Callers
 * classify a failed run into a typed error by its stderr in one place per tool.
 */
import { spawn } from 'node:child_process';
import { DeadlineExceededError, AbortedError, UnavailableError } from '../errors.ts';

export interface RunOptions {
  /** Milliseconds before the process is killed with SIGKILL; default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Cap on captured stdout/stderr bytes each (the rest is dropped); default 16 MiB. */
  maxOutput?: number;
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
    const child = spawn(cmd, args, {
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
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
    const onAbort = (): void => { child.kill('SIGKILL'); };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => { /* the child may exit before reading its input */ });
      child.stdin.end(opts.input);
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
    const { InternalError } = await import('../errors.ts');
    throw new InternalError(`${cmd} ${args.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r;
}
