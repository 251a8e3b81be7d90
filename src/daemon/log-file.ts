/**
 * The daemon's log file, capped in size: when a line would take it past `maxBytes`, the file is
 * rotated (`daemon.log` → `daemon.log.1` → … → `daemon.log.<keep>`, the oldest dropped) and
 * written on from empty. A node that runs for months keeps at most (keep + 1) × maxBytes of log.
 *
 * Rotation copies and then truncates the file rather than renaming it: the daemon's stdout and
 * stderr (where Node writes a crash's stack trace) are the same file, opened with O_APPEND by
 * whoever started the daemon, and they must keep pointing at `daemon.log`, not at the rotated copy.
 *
 * Writing never throws: a full disk (ENOSPC) or any other failure drops the line, the daemon
 * keeps serving.
 */
import { closeSync, copyFileSync, fstatSync, ftruncateSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';

export interface LogFileOptions {
  path: string;
  /** Size at which the file is rotated. */
  maxBytes: number;
  /** Rotated files kept beside it (0: the file is only truncated). */
  keep: number;
}

export class RotatingLogFile {
  readonly #opts: LogFileOptions;
  #fd: number;
  #size: number;
  /** Lines dropped because a write failed (e.g. ENOSPC); counted, reported with the next line that gets through. */
  #dropped = 0;

  private constructor(opts: LogFileOptions, fd: number) {
    this.#opts = opts;
    this.#fd = fd;
    this.#size = fstatSync(fd).size;
  }

  static open(opts: LogFileOptions): RotatingLogFile {
    return new RotatingLogFile(opts, openSync(opts.path, 'a', 0o600));
  }

  /** Appends one line (a newline is added). */
  write(line: string): void {
    if (this.#fd < 0) return;
    let text = line + '\n';
    if (this.#dropped > 0) text = `time=${new Date().toISOString()} level=warn msg="log lines dropped: writing the log failed" dropped=${this.#dropped}\n` + text;
    const buf = Buffer.from(text);
    try {
      if (this.#size + buf.length > this.#opts.maxBytes) {
        // others (a crash trace on stderr) append to the same file: count them too
        this.#size = fstatSync(this.#fd).size;
        if (this.#size > 0 && this.#size + buf.length > this.#opts.maxBytes) this.#rotate();
      }
      writeSync(this.#fd, buf);
      this.#size += buf.length;
      this.#dropped = 0;
    } catch {
      this.#dropped++;
    }
  }

  #rotate(): void {
    const { path, keep } = this.#opts;
    if (keep > 0) {
      try { unlinkSync(`${path}.${keep}`); } catch { /* absent */ }
      for (let i = keep - 1; i >= 1; i--) {
        try { renameSync(`${path}.${i}`, `${path}.${i + 1}`); } catch { /* absent */ }
      }
      // a copy that fails (no space) loses the old lines, but the cap holds
      try { copyFileSync(path, `${path}.1`); } catch { try { unlinkSync(`${path}.1`); } catch { /* absent */ } }
    }
    ftruncateSync(this.#fd, 0);
    this.#size = 0;
  }

  close(): void {
    if (this.#fd < 0) return;
    try { closeSync(this.#fd); } catch { /* already gone */ }
    this.#fd = -1;
  }
}
