/**
 * A small structured logger: one line per event on stderr, `level=… msg=… key=value`.
 * Constructed by main() and passed down; no global instance. Never log credentials.
 *
 * Logging never throws and never takes the process down: a line that cannot be written (the log's
 * filesystem is full, ENOSPC) is dropped and counted, and the count is written once lines get
 * through again. process.stderr.write would not do: on a file it fails later with an 'error'
 * event that ends the process, so the default writer writes fd 2 synchronously.
 */
import { writeSync } from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function fmt(v: unknown): string {
  const s = typeof v === 'string' ? v : v instanceof Error ? v.message : JSON.stringify(v);
  return /[\s="]/.test(s ?? '') ? JSON.stringify(s) : String(s);
}

/**
 * Writes one line to fd 2 synchronously; throws what write(2) reports (ENOSPC, EAGAIN on a full
 * non-blocking pipe), for `guardWrite` to count. Use it instead of process.stderr.write.
 */
export function writeStderrLine(line: string): void {
  const buf = Buffer.from(line + '\n');
  let waits = 0;
  for (let off = 0; off < buf.length;) {
    try {
      off += writeSync(2, buf, off);
    } catch (err) {
      // a non-blocking pipe whose reader is slow: wait a little (bounded), then give the line up
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || ++waits > 100) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}

/** What a guarded writer could not write since it started. */
export interface DropCounter { dropped: number; lastError: string }

/**
 * Wraps `write` so that it never throws: a failing line is dropped and counted; the next line that
 * gets through is preceded by one line saying how many were dropped and why.
 */
export function guardWrite(write: (line: string) => void, counter: DropCounter = { dropped: 0, lastError: '' }): (line: string) => void {
  let pending = 0;
  return (line: string) => {
    try {
      if (pending > 0) {
        write(`time=${new Date().toISOString()} level=warn msg="log lines dropped" count=${pending} reason=${counter.lastError || 'unknown'}`);
        pending = 0;
      }
      write(line);
    } catch (err) {
      pending++;
      counter.dropped++;
      counter.lastError = (err as NodeJS.ErrnoException).code ?? 'error';
    }
  };
}

export function createLogger(opts: { level?: LogLevel; write?: (line: string) => void; fields?: Record<string, unknown> } = {}): Logger {
  const min = order[opts.level ?? 'info'];
  // child loggers share the parent's guarded writer (and its drop count)
  const write = (opts.write as GuardedWrite | undefined)?.[GUARDED] ? opts.write! : markGuarded(guardWrite(opts.write ?? writeStderrLine));
  const base = opts.fields ?? {};
  const emit = (level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void => {
    if (order[level] < min) return;
    const all = { ...base, ...fields };
    const kv = Object.entries(all).map(([k, v]) => `${k}=${fmt(v)}`).join(' ');
    write(`time=${new Date().toISOString()} level=${level} msg=${fmt(msg)}${kv ? ' ' + kv : ''}`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger({ level: opts.level ?? 'info', write, fields: { ...base, ...f } }),
  };
}

const GUARDED = Symbol('guarded');
type GuardedWrite = ((line: string) => void) & { [GUARDED]?: true };
function markGuarded(w: (line: string) => void): GuardedWrite {
  return Object.assign(w, { [GUARDED]: true as const });
}

/** A logger that drops everything, for tests that do not look at logs. */
export const silentLogger: Logger = createLogger({ write: () => {} });
