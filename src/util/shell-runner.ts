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
 * command at a time per shell, up to a few shells (commands side by side never wait for each
 * other: past that, or with an argument holding a newline or NUL, a command is spawned directly as
 * before); a command that outlives its timeout or is aborted gets its shell's whole process tree
 * killed. Off with BULKHEAD_SHELL_RUNNER=0.
 *
 * Lifecycle: a shell starts when a command finds none idle and stays for the next ones; it holds
 * nothing open in this process (its pipes are unref'd) and ends when this process does (its stdin
 * closes: `read` fails, the loop ends).
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

/** One shell and the command it runs (at most one at a time). */
class Shell {
  readonly child: ChildProcess;
  readonly #marker = `@bulkhead-${randomBytes(12).toString('hex')}`;
  #out = '';
  #current: { job: Job; timer: NodeJS.Timeout; onAbort: () => void } | undefined;
  #dead = false;

  constructor() {
    const child = spawn('/bin/sh', ['-c', SCRIPT, 'bulkhead-shell-runner', this.#marker], { stdio: ['pipe', 'pipe', 'ignore'] });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => this.#onData(s));
    child.stdin!.on('error', () => { /* the shell died: 'close' reports it */ });
    child.on('error', () => { /* spawn failure: 'close' follows */ });
    child.on('close', () => {
      this.#dead = true;
      // the shell died under a command (killed from outside): whether it ran is unknown
      if (this.#current) this.#fail(new InternalError(`${this.#current.job.what}: the shell running it ended before it did; run it again`), false);
    });
    // nothing here keeps the daemon alive: a command in flight does (its timer)
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    this.child = child;
  }

  get idle(): boolean { return !this.#dead && this.#current === undefined; }
  get dead(): boolean { return this.#dead; }

  start(job: Job): void {
    const timeoutMs = job.opts.timeoutMs ?? 60_000;
    const timer = setTimeout(() => this.#fail(new DeadlineExceededError(`${job.what} did not finish within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = (): void => this.#fail(new AbortedError(`${job.what.split(' ')[0]} aborted`));
    job.opts.signal?.addEventListener('abort', onAbort, { once: true });
    this.#current = { job, timer, onAbort };
    this.child.stdin!.write(job.line);
  }

  kill(): void {
    this.#dead = true;
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) killTree(this.child.pid);
  }

  #onData(s: string): void {
    const cur = this.#current;
    this.#out += s;
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
  }

  #done(): void {
    const cur = this.#current;
    if (!cur) return;
    clearTimeout(cur.timer);
    cur.job.opts.signal?.removeEventListener('abort', cur.onAbort);
    this.#current = undefined;
  }

  /** The command in flight fails with `err`; the shell and what it runs are killed (unless gone already). */
  #fail(err: Error, kill = true): void {
    const cur = this.#current;
    if (kill) this.kill();
    this.#dead = true;
    this.#done();
    cur?.job.reject(err);
  }
}

export class ShellRunner {
  #shells: Shell[] = [];
  readonly #max: number;
  /** Shells started so far (for tests: one for many commands run one after another). */
  started = 0;

  /** `maxShells`: commands at once through shells; more are spawned directly. */
  constructor(maxShells = 4) {
    this.#max = maxShells;
  }

  /** Runs `cmd args...` (see the file comment); never throws for a non-zero exit. */
  run(cmd: string, args: readonly string[], opts: ShellRunOptions = {}): Promise<RunResult> {
    opts.signal?.throwIfAborted();
    const all = [cmd, ...args];
    this.#shells = this.#shells.filter((s) => !s.dead);
    let shell = this.#shells.find((s) => s.idle);
    if (!shell && this.#shells.length < this.#max && !all.some((a) => /[\n\0]/.test(a))) {
      shell = new Shell();
      this.#shells.push(shell);
      this.started++;
    }
    if (!shell || all.some((a) => /[\n\0]/.test(a))) return run(cmd, args, opts);
    const chosen = shell;
    return new Promise<RunResult>((resolve, reject) => {
      chosen.start({ line: all.map(quote).join(' ') + '\n', what: all.join(' '), opts, resolve, reject });
    });
  }

  /** Ends the shells (commands in flight fail). */
  close(): void {
    for (const s of this.#shells) s.kill();
    this.#shells = [];
  }
}

let shared: ShellRunner | undefined;

/** run() for short host commands, through the process-wide ShellRunner (see the file comment). */
export function runShort(cmd: string, args: readonly string[], opts: ShellRunOptions = {}): Promise<RunResult> {
  if (process.env.BULKHEAD_SHELL_RUNNER === '0') return run(cmd, args, opts);
  shared ??= new ShellRunner();
  return shared.run(cmd, args, opts);
}
