/**
 * Node streams over WebSocket channels (the k8s "channel.k8s.io" family: each message starts with
 * a channel byte, or with an ASCII digit and base64 data in the base64 variants), and the resize
 * queue shared by both transports.
 */
import { Duplex, Readable, Writable } from 'node:stream';
import type { WebSocketConnection } from './websocket.ts';
import type { TerminalSize } from './types.ts';

export type ChannelCodec = 'binary' | 'base64';

/** Encodes one outgoing channel message for `conn.send`. */
export function encodeChannelMessage(codec: ChannelCodec, channel: number, data: Buffer): { data: Buffer; binary: boolean } {
  if (codec === 'binary') return { data: Buffer.concat([Buffer.of(channel), data]), binary: true };
  return { data: Buffer.from(String.fromCharCode(48 + channel) + data.toString('base64'), 'latin1'), binary: false };
}

/** Decodes an incoming channel message; null for an empty or undecodable one. */
export function decodeChannelMessage(codec: ChannelCodec, msg: Buffer): { channel: number; data: Buffer } | null {
  if (msg.length === 0) return null;
  if (codec === 'binary') return { channel: msg[0]!, data: msg.subarray(1) };
  const text = msg.subarray(1).toString('latin1');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  return { channel: msg[0]! - 48, data: Buffer.from(text, 'base64') };
}

/** Writable side of one channel: each write becomes a message; completes when the socket drains. */
export class ChannelWriter extends Writable {
  readonly #conn: WebSocketConnection;
  readonly #codec: ChannelCodec;
  readonly #channel: number;

  constructor(conn: WebSocketConnection, codec: ChannelCodec, channel: number) {
    super({ highWaterMark: 64 * 1024 });
    this.on('error', () => { /* connection loss is reported by the connection */ });
    this.#conn = conn;
    this.#codec = codec;
    this.#channel = channel;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let ok = true;
    for (let off = 0; off === 0 || off < chunk.length; off += 32 * 1024) {
      const m = encodeChannelMessage(this.#codec, this.#channel, chunk.subarray(off, off + 32 * 1024));
      ok = this.#conn.send(m.data, m.binary);
    }
    if (ok) cb();
    else this.#conn.onDrain(() => cb());
  }
}

/** Readable side of one channel, fed by the connection; a full buffer pauses the socket. */
export class ChannelReader extends Readable {
  readonly #conn: WebSocketConnection;

  constructor(conn: WebSocketConnection) {
    super({ highWaterMark: 64 * 1024 });
    this.on('error', () => { /* connection loss is reported by the connection */ });
    this.#conn = conn;
  }

  /** Returns false when this reader is full (the caller pauses the connection). */
  deliver(data: Buffer): boolean {
    return data.length === 0 ? true : this.push(data);
  }

  override _read(): void {
    this.#conn.resume();
  }
}

/** A Duplex made of a reader and a writer (a forwarded port over a WebSocket channel). */
export class ChannelDuplex extends Duplex {
  readonly #writer: ChannelWriter;
  readonly #conn: WebSocketConnection;

  constructor(conn: WebSocketConnection, codec: ChannelCodec, channel: number) {
    super({ allowHalfOpen: true, highWaterMark: 64 * 1024 });
    this.on('error', () => { /* connection loss is reported by the connection */ });
    this.#conn = conn;
    this.#writer = new ChannelWriter(conn, codec, channel);
    this.#writer.on('error', (e) => this.destroy(e));
  }

  deliver(data: Buffer): boolean {
    return data.length === 0 ? true : this.push(data);
  }

  override _read(): void {
    this.#conn.resume();
  }

  override _write(chunk: Buffer, enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#writer.write(chunk, enc, (e) => cb(e ?? null));
  }

  override _final(cb: (err?: Error | null) => void): void {
    cb();
  }
}

/**
 * Terminal sizes parsed from a byte stream of concatenated JSON objects `{"Width":80,"Height":24}`.
 * The source is always drained (so an engine that ignores resizes never stalls the connection);
 * undelivered sizes are coalesced to the latest few.
 */
export class ResizeQueue implements AsyncIterable<TerminalSize> {
  #pending: TerminalSize[] = [];
  #waiter: ((r: IteratorResult<TerminalSize>) => void) | null = null;
  #done = false;
  #text = '';

  /** Feeds bytes; returns false (and stops) on garbage. */
  feed(data: Buffer): boolean {
    this.#text += data.toString('utf8');
    if (this.#text.length > 4096) { this.end(); return false; }
    for (;;) {
      this.#text = this.#text.trimStart();
      const end = jsonObjectEnd(this.#text);
      if (end === -2) { this.end(); return false; }
      if (end < 0) return true;
      let v: unknown;
      try { v = JSON.parse(this.#text.slice(0, end)); } catch { this.end(); return false; }
      this.#text = this.#text.slice(end);
      const o = v as { Width?: unknown; Height?: unknown };
      if (typeof o.Width !== 'number' || typeof o.Height !== 'number') continue;
      const size = { width: clamp16(o.Width), height: clamp16(o.Height) };
      if (this.#waiter) { const w = this.#waiter; this.#waiter = null; w({ value: size, done: false }); }
      else { this.#pending.push(size); if (this.#pending.length > 8) this.#pending.shift(); }
    }
  }

  end(): void {
    this.#done = true;
    if (this.#waiter) { const w = this.#waiter; this.#waiter = null; w({ value: undefined, done: true }); }
  }

  [Symbol.asyncIterator](): AsyncIterator<TerminalSize> {
    return {
      next: () => {
        const v = this.#pending.shift();
        if (v) return Promise.resolve({ value: v, done: false });
        if (this.#done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => { this.#waiter = resolve; });
      },
      return: () => { this.end(); return Promise.resolve({ value: undefined, done: true }); },
    };
  }
}

function clamp16(n: number): number {
  return Math.max(0, Math.min(0xffff, Math.trunc(n)));
}

/** Index just past the first complete JSON object at the start of `s`; -1 if incomplete, -2 if not an object. */
function jsonObjectEnd(s: string): number {
  if (s.length === 0) return -1;
  if (!s.startsWith('{')) return -2;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return -1;
}
