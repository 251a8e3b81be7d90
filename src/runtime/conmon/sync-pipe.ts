/**
 * conmon's sync pipe (`_OCI_SYNCPIPE`, API version 1): one JSON object per line,
 * `{"data": <int>, "message"?: <string>}`. For a container conmon sends one (the pid, or a
 * negative number and the runtime's error); for an exec session two (the pid, then the exit code).
 * This is the one reader of those lines: the framing (a line may arrive in pieces, several in one
 * chunk, a UTF-8 character split across chunks) and what counts as malformed live here, the
 * callers decide what a message means.
 */
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

/** A line longer than this is not conmon's; it is reported malformed and skipped to its newline. */
export const MAX_SYNC_LINE = 64 * 1024;

export interface SyncMessage {
  /** A pid (> 0), an exit code, or a negative number when the runtime failed. */
  data: number;
  /** The runtime's error text, when conmon has one. */
  message?: string;
}

export type SyncFrame =
  | { kind: 'message'; msg: SyncMessage }
  | { kind: 'malformed'; reason: string; /** the start of the line, at most 200 characters */ excerpt: string };

/** Parses one line (without its newline) into a frame. */
export function parseSyncLine(line: string): SyncFrame {
  const bad = (reason: string): SyncFrame => ({ kind: 'malformed', reason, excerpt: line.slice(0, 200) });
  let v: unknown;
  try { v = JSON.parse(line); } catch { return bad('not JSON'); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad('not a JSON object');
  const o = v as Record<string, unknown>;
  if (typeof o.data !== 'number' || !Number.isSafeInteger(o.data)) return bad('"data" is not an integer');
  if (o.message !== undefined && typeof o.message !== 'string') return bad('"message" is not a string');
  return { kind: 'message', msg: { data: o.data, ...(typeof o.message === 'string' ? { message: o.message } : {}) } };
}

/** Incremental framing: feed chunks in, get complete lines' frames out. */
export class SyncPipeParser {
  #decoder = new StringDecoder('utf8');
  #buf = '';
  /** Discarding an over-long line until its newline. */
  #skipping = false;

  push(chunk: Buffer | string): SyncFrame[] {
    this.#buf += typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
    const out: SyncFrame[] = [];
    for (;;) {
      const nl = this.#buf.indexOf('\n');
      if (nl < 0) break;
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      if (this.#skipping) { this.#skipping = false; continue; }
      if (line.trim() === '') continue;
      out.push(line.length > MAX_SYNC_LINE ? { kind: 'malformed', reason: `line longer than ${MAX_SYNC_LINE} bytes`, excerpt: line.slice(0, 200) } : parseSyncLine(line));
    }
    if (!this.#skipping && this.#buf.length > MAX_SYNC_LINE) {
      out.push({ kind: 'malformed', reason: `line longer than ${MAX_SYNC_LINE} bytes`, excerpt: this.#buf.slice(0, 200) });
      this.#skipping = true;
    }
    if (this.#skipping) this.#buf = '';
    return out;
  }

  /** The pipe closed: a trailing line without its newline is malformed (conmon ends every message with one). */
  end(): SyncFrame[] {
    const rest = this.#buf + this.#decoder.end();
    this.#buf = '';
    if (this.#skipping || rest.trim() === '') return [];
    return [{ kind: 'malformed', reason: 'the pipe closed in the middle of a line', excerpt: rest.slice(0, 200) }];
  }
}

/** Reads a sync pipe stream, calling `onFrame` for each line and `onEnd` once when it closes. */
export function readSyncPipe(pipe: Readable, onFrame: (f: SyncFrame) => void, onEnd: () => void): void {
  const parser = new SyncPipeParser();
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    for (const f of parser.end()) onFrame(f);
    onEnd();
  };
  pipe.on('data', (b: Buffer) => { for (const f of parser.push(b)) onFrame(f); });
  pipe.on('end', end);
  pipe.on('close', end);
  pipe.on('error', () => {});
}
