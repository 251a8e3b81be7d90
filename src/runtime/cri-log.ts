/**
 * A CRI log writer of Bulkhead's own, for backends whose output does not pass through conmon (a
 * containerd shim v2 hands the daemon the container's stdio as streams). It writes the kubelet's
 * CRI log format, one record per line:
 *
 *   <RFC3339Nano time> <stdout|stderr> <P|F> <content>\n
 *
 * A line is buffered per stream until its newline, then written as one F record; a line longer
 * than `maxLineBytes` is written in pieces as P records (cut on a UTF-8 character boundary when
 * there is one nearby) ending with an F record; what a stream leaves without a newline when it
 * ends is written as an F record. Bytes are written as they came (CR, NUL, invalid UTF-8 too):
 * the only byte a record's content never holds is the newline that ends it.
 *
 * The kubelet rotates a log by renaming the file and then calling ReopenContainerLog: `reopen()`
 * opens a new file at the path. A full disk (ENOSPC, EDQUOT) drops records and counts them, as
 * conmon does, and never throws into the caller: the container's output must not stop because
 * its log has no room. A record cut short by the full disk is ended by the next write's newline,
 * so the file stays line-framed.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Logger } from '../util/log.ts';

export type CriLogStream = 'stdout' | 'stderr';

export interface CriLogWriterOptions {
  /** Content bytes per record; a longer line is split into P records. Default 16 KiB (containerd's default). */
  maxLineBytes?: number;
  logger?: Logger;
  /** Time source (tests): nanoseconds since the epoch. Default the wall clock, never going back within one writer. */
  nowNs?: () => bigint;
}

export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;
const NL = 0x0a;
const FULL_DISK = new Set(['ENOSPC', 'EDQUOT']);

/** RFC3339 with nine fractional digits in UTC, as the kubelet's parser (time.RFC3339Nano) reads it. */
export function formatCriTime(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${iso.slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

/** The wall clock in ns, monotonic for one writer (hrtime since a wall-clock base). */
function wallClockNs(): () => bigint {
  const base = BigInt(Date.now()) * 1_000_000n;
  const hr0 = process.hrtime.bigint();
  return () => base + (process.hrtime.bigint() - hr0);
}

/**
 * Where to cut `buf` so that the first piece holds at most `max` bytes without splitting a UTF-8
 * character: before the lead byte of a character that would straddle `max`; `max` itself when no
 * lead byte is near (the bytes are not UTF-8).
 */
export function utf8Cut(buf: Buffer, max: number): number {
  if (buf.length <= max) return buf.length;
  for (let i = max; i > 0 && i > max - 4; i--) {
    if ((buf[i]! & 0xc0) !== 0x80) return i;
  }
  return max;
}

export class CriLogWriter {
  readonly path: string;
  readonly #max: number;
  readonly #log: Logger | undefined;
  readonly #now: () => bigint;
  #fh: FileHandle;
  #pending: Record<CriLogStream, Buffer> = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  /** Every file operation in order: records, reopen, close. */
  #queue: Promise<void> = Promise.resolve();
  #dropped = 0;
  #droppingSince = 0;
  /** A record was cut short by a full disk: the next write starts with a newline. */
  #broken = false;
  #closed = false;

  private constructor(path: string, fh: FileHandle, opts: CriLogWriterOptions) {
    this.path = path;
    this.#fh = fh;
    this.#max = Math.max(16, opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
    this.#log = opts.logger;
    this.#now = opts.nowNs ?? wallClockNs();
  }

  /** Opens (creates, appends to) the log file at `path`; a symlink there is refused. */
  static async open(path: string, opts: CriLogWriterOptions = {}): Promise<CriLogWriter> {
    return new CriLogWriter(path, await openLog(path), opts);
  }

  /** Records dropped because the disk was full, since the writer was opened. */
  get dropped(): number { return this.#dropped; }

  /** Writes a chunk of one stream's output; resolves once its complete lines are written (or dropped). */
  write(stream: CriLogStream, chunk: Buffer | string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let pending = this.#pending[stream].length ? Buffer.concat([this.#pending[stream], b]) : b;
    const records: Buffer[] = [];
    for (let nl = pending.indexOf(NL); nl >= 0; nl = pending.indexOf(NL)) {
      this.#line(records, stream, pending.subarray(0, nl));
      pending = pending.subarray(nl + 1);
    }
    // a line without its newline yet: whole pieces of it go out as P records, at most max bytes stay
    while (pending.length >= this.#max) {
      const cut = utf8Cut(pending, this.#max);
      records.push(this.#record(stream, 'P', pending.subarray(0, cut)));
      pending = pending.subarray(cut);
    }
    this.#pending[stream] = Buffer.from(pending); // a copy: the caller may reuse its buffer
    return records.length ? this.#enqueue(() => this.#writeRecords(records)) : this.#queue;
  }

  /**
   * The stream ended: what it left without a newline is written as a full line, or with
   * `partial` as a P record (as conmon marks a container's unterminated last line).
   */
  endStream(stream: CriLogStream, opts: { partial?: boolean } = {}): Promise<void> {
    const rest = this.#pending[stream];
    this.#pending[stream] = Buffer.alloc(0);
    if (rest.length === 0 || this.#closed) return this.#queue;
    const records: Buffer[] = [];
    if (opts.partial) records.push(this.#record(stream, 'P', rest));
    else this.#line(records, stream, rest);
    return this.#enqueue(() => this.#writeRecords(records));
  }

  /** Copies a readable's output into the log as `stream` until it ends (with backpressure). */
  async pipeFrom(readable: Readable, stream: CriLogStream): Promise<void> {
    try {
      for await (const chunk of readable) await this.write(stream, chunk as Buffer | string);
    } finally {
      await this.endStream(stream);
    }
  }

  /**
   * The kubelet moved the file away (rotation): open a new one at the path. Records written before
   * this call are in the old file, later ones in the new. The old file stays open until the new one
   * is, so a failed reopen loses nothing.
   */
  reopen(): Promise<void> {
    return this.#enqueue(async () => {
      if (this.#closed) return;
      const fh = await openLog(this.path);
      const old = this.#fh;
      this.#fh = fh;
      this.#broken = false;
      await old.close().catch(() => {});
    });
  }

  /** Ends both streams (writing what they left) and closes the file. */
  async close(): Promise<void> {
    await this.endStream('stdout');
    await this.endStream('stderr');
    await this.#enqueue(async () => {
      if (this.#closed) return;
      this.#closed = true;
      await this.#fh.close().catch(() => {});
    });
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(op);
    // one failed operation (a reopen) must not stop the ones after it
    this.#queue = next.catch(() => {});
    return next;
  }

  /** A complete line: P records while it is longer than max, then an F record. */
  #line(out: Buffer[], stream: CriLogStream, line: Buffer): void {
    while (line.length > this.#max) {
      const cut = utf8Cut(line, this.#max);
      out.push(this.#record(stream, 'P', line.subarray(0, cut)));
      line = line.subarray(cut);
    }
    out.push(this.#record(stream, 'F', line));
  }

  #record(stream: CriLogStream, tag: 'P' | 'F', content: Buffer): Buffer {
    return Buffer.concat([Buffer.from(`${formatCriTime(this.#now())} ${stream} ${tag} `), content, Buffer.from('\n')]);
  }

  async #writeRecords(records: Buffer[]): Promise<void> {
    if (this.#closed) return;
    for (const r of records) {
      const data = this.#broken ? Buffer.concat([Buffer.from('\n'), r]) : r;
      let off = 0;
      try {
        while (off < data.length) {
          const { bytesWritten } = await this.#fh.write(data, off, data.length - off);
          if (bytesWritten === 0) throw Object.assign(new Error('no bytes written'), { code: 'ENOSPC' });
          off += bytesWritten;
        }
        this.#broken = false;
        if (this.#droppingSince) {
          this.#log?.warn('CRI log writable again', { path: this.path, dropped: this.#dropped - this.#droppingSince + 1 });
          this.#droppingSince = 0;
        }
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        // bytes of this record reached the file: end it with the next write's newline
        if (off > 0) this.#broken = true;
        this.#dropped++;
        if (!this.#droppingSince) {
          this.#droppingSince = this.#dropped;
          if (FULL_DISK.has(code)) this.#log?.warn('CRI log dropped: no room on its filesystem; dropping records until there is', { path: this.path, code });
          else this.#log?.warn('CRI log dropped: cannot write the log file; dropping records', { path: this.path, code, err: (err as Error).message });
        }
      }
    }
  }
}

async function openLog(path: string): Promise<FileHandle> {
  return await open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o640);
}
