/**
 * Short host commands (mount, umount) run by one long-lived /bin/sh instead of each spawned from
 * this process: a spawn forks the whole daemon (~100-150 MB: 3-6 ms of page-table copying per
 * spawn on this host, the event loop stopped meanwhile, on the path of every container create and
 * remove), while the shell forks a ~1 MB process. Same contract as exec.ts run(): {stdout, stderr,
 * code}, a timeout, an AbortSignal.
 *
 * Protocol: the shell reads one line per command (each argument single-quoted), runs it with
 * stdin from /dev/null and stderr joined to stdout, and ends its output with a line holding a
 * random marker (fixed when the shell starts, never in a command line) and the exit status. One
 * command at a time; a command that outlives its timeout or is aborted gets the shell's whole
 * process tree killed (the next command starts a new shell). When the shell is busy for more than
 * BUSY_MS (a slow mount), or an argument holds a newline or NUL, the command is spawned directly
 * as before. Off with BULKHEAD_SHELL_RUNNER=0.
 *
 * Lifecycle: the shell starts on first use and holds nothing open in this process (its pipes are
 * unref'd); it ends when this process does (its stdin closes: `read` fails, the loop ends).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { killTree, run, type RunResult } from './exec.ts';
import { AbortedError, DeadlineExceededError, InternalError } from '../errors.ts';

export interface ShellRunOptions {
  /** Milliseconds before the command (and the shell running it) is killed; default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A shell that has been busy this long with one command no longer takes new ones (they are spawned). */
const BUSY_MS = 1000;
/** Output kept per command (the rest is dropped): mount and umount print a line or two. */
const MAX_OUTPUT = 64 * 1024;

interface Job {
  line: string;
  what: string;
  opts: ShellRunOptions;
  resolve: (r: RunResult) => void;
  reject: (err: Error) => void;
}

const SCRIPT = 'm=$1; while IFS= read -r l; do eval "$l" </dev/null 2>&1; printf \'\\n%s %s\\n\' "$m" "$?"; done';

function quote(a: string): string {
  return `'${a.replace(/'/g, `'\\''`)}'`;
}

export class ShellRunner {
  #child: ChildProcess | undefined;
  #marker = '';
  #out = '';
  #queue: Job[] = [];
  #current: { job: Job; timer: NodeJS.Timeout; since: number; onAbort: () => void } | undefined;
  /** Shells started so far (for tests: one for many commands). */
  started = 0;

  /** Runs `cmd args...` (see the file comment); never throws for a non-zero exit. */
  run(cmd: string, args: readonly string[], opts: ShellRunOptions = {}): Promise<RunResult> {
    opts.signal?.throwIfAborted();
    const all = [cmd, ...args];
    const busy = this.#current !== undefined && Date.now() - this.#current.since > BUSY_MS;
    if (busy || all.some((a) => /[\n\0]/.test(a))) return run(cmd, args, opts);
    return new Promise<RunResult>((resolve, reject) => {
      this.#queue.push({ line: all.map(quote).join(' ') + '\n', what: all.join(' '), opts, resolve, reject });
      this.#next();
    });
  }

  /** Ends the shell (a command in flight fails). */
  close(): void {
    if (this.#child?.pid !== undefined) killTree(this.#child.pid);
    this.#child = undefined;
  }

  #shell(): ChildProcess {
    if (this.#child && this.#child.exitCode === null && this.#child.signalCode === null) return this.#child;
    this.#marker = `@bulkhead-${randomBytes(12).toString('hex')}`;
    this.#out = '';
    const child = spawn('/bin/sh', ['-c', SCRIPT, 'bulkhead-shell-runner', this.#marker], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.started++;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => this.#onData(child, s));
    child.stdin!.on('error', () => { /* the shell died: 'close' reports it */ });
    child.on('error', () => { /* spawn failure: 'close' follows */ });
    child.on('close', () => this.#onClose(child));
    // nothing here keeps the daemon alive: a command in flight does (its timer)
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    this.#child = child;
    return child;
  }

  #next(): void {
    if (this.#current || this.#queue.length === 0) return;
    const job = this.#queue.shift()!;
    const child = this.#shell();
    const timeoutMs = job.opts.timeoutMs ?? 60_000;
    const timer = setTimeout(() => this.#fail(child, new DeadlineExceededError(`${job.what} did not finish within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = (): void => this.#fail(child, new AbortedError(`${job.what.split(' ')[0]} aborted`));
    job.opts.signal?.addEventListener('abort', onAbort, { once: true });
    this.#current = { job, timer, since: Date.now(), onAbort };
    child.stdin!.write(job.line);
  }

  #onData(child: ChildProcess, s: string): void {
    if (child !== this.#child) return;
    this.#out += s;
    const cur = this.#current;
    const at = this.#out.indexOf(`\n${this.#marker} `);
    if (at < 0 || !cur) {
      if (this.#out.length > 2 * MAX_OUTPUT) this.#out = this.#out.slice(0, MAX_OUTPUT) + this.#out.slice(-MAX_OUTPUT);
      return;
    }
    const eol = this.#out.indexOf('\n', at + 1);
    if (eol < 0) return;
    const code = Number(this.#out.slice(at + this.#marker.length + 2, eol));
    const output = this.#out.slice(0, Math.min(at, MAX_OUTPUT));
    this.#out = this.#out.slice(eol + 1);
    this.#done();
    cur.job.resolve({ stdout: '', stderr: output, code: Number.isInteger(code) ? code : null, signal: null });
    this.#next();
  }

  #done(): void {
    const cur = this.#current;
    if (!cur) return;
    clearTimeout(cur.timer);
    cur.job.opts.signal?.removeEventListener('abort', cur.onAbort);
    this.#current = undefined;
  }

  /** The command in flight fails with `err`; the shell and what it runs are killed (unless it is gone already). */
  #fail(child: ChildProcess, err: Error, kill = true): void {
    const cur = this.#current;
    if (kill && child.pid !== undefined) killTree(child.pid);
    if (this.#child === child) this.#child = undefined;
    this.#done();
    cur?.job.reject(err);
    this.#next();
  }

  #onClose(child: ChildProcess): void {
    if (this.#child !== child) return;
    this.#child = undefined;
    // the shell died under a command (killed from outside): whether it ran is unknown
    if (this.#current) this.#fail(child, new InternalError(`${this.#current.job.what}: the shell running it ended before it did; run it again`), false);
  }
}

let shared: ShellRunner | undefined;

/** run() for short host commands, through the process-wide ShellRunner (see the file comment). */
export function runShort(cmd: string, args: readonly string[], opts: ShellRunOptions = {}): Promise<RunResult> {
  if (process.env.BULKHEAD_SHELL_RUNNER === '0') return run(cmd, args, opts);
  shared ??= new ShellRunner();
  return shared.run(cmd, args, opts);
}
