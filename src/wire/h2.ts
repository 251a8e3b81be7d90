/**
 * A small HTTP/2 client connection (RFC 9113) over one socket, for gRPC calls to the daemon on its
 * unix socket. It exists because `node:http2` loads http, tls, crypto, assert and readline at
 * import, ~30-50 ms of every CLI start; this needs only node:net.
 *
 * Scope: client streams that send one header block and a body, and receive a header block, data
 * and optional trailers (what gRPC unary and server-streaming calls need). Flow control both ways
 * (large receive windows, replenished as data arrives unless the stream is paused), SETTINGS,
 * PING, GOAWAY, RST_STREAM, CONTINUATION, padding. No server push (disabled in SETTINGS), no
 * priorities, no TLS.
 *
 * Lifecycle: `new H2Connection(socket)` sends the preface at once; `ready` resolves when the
 * server's SETTINGS arrive. `request()` opens a stream; its handlers' `close` runs exactly once.
 * After GOAWAY or `close()` the connection takes no new streams (`acceptsStreams` false); a failed
 * or closed socket ends every open stream with `close(CANCEL, err)`.
 */
import type { Socket } from 'node:net';
import {
  encodeFrame as frame, F_ACK, F_END_STREAM, FrameReader, goawayFrame, H2_CANCEL, H2_COMPRESSION_ERROR, H2_INTERNAL_ERROR,
  H2_NO_ERROR, H2_PROTOCOL_ERROR, H2_REFUSED_STREAM, H2ConnectionError, HeaderBlockCollector, headerBlockFrames, PREFACE,
  T_CONTINUATION, T_DATA, T_GOAWAY, T_HEADERS, T_PING, T_PUSH_PROMISE, T_RST_STREAM, T_SETTINGS, T_WINDOW_UPDATE, unpad,
  type Frame, type HeaderBlock,
} from './h2-frame.ts';
import { encodeHeaders, HpackDecoder } from './hpack.ts';

export {
  H2_CANCEL, H2_COMPRESSION_ERROR, H2_ENHANCE_YOUR_CALM, H2_INADEQUATE_SECURITY, H2_INTERNAL_ERROR, H2_NO_ERROR,
  H2_PROTOCOL_ERROR, H2_REFUSED_STREAM,
} from './h2-frame.ts';

const DEFAULT_WINDOW = 65535;
/** Receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE) and for the connection. */
const STREAM_WINDOW = 16 * 1024 * 1024;
const CONN_WINDOW = 1024 * 1024 * 1024;
/** Largest frame accepted (well above the 16 KiB a peer may send without our say-so). */
const MAX_FRAME_IN = 16 * 1024 * 1024;

export type Headers = Record<string, string>;

export interface StreamHandlers {
  /** The first header block; `endStream` when it is the whole response (trailers-only). */
  headers(h: Headers, endStream: boolean): void;
  data(chunk: Buffer): void;
  /** A header block after the first (gRPC's trailers). */
  trailers(h: Headers): void;
  /** Exactly once: `rstCode` 0 when the stream ended cleanly; `err` when the connection failed. */
  close(rstCode: number, err: Error | null): void;
}

export interface H2Stream {
  readonly id: number;
  /** Resets the stream (CANCEL by default) and closes it here. */
  cancel(code?: number): void;
  /** Stops replenishing the stream's receive window (the server stops once it is used up). */
  pause(): void;
  resume(): void;
}

interface StreamState {
  id: number;
  handlers: StreamHandlers;
  gotHeaders: boolean;
  /** Bytes we may still send (the peer's window for this stream). */
  sendWindow: number;
  /** Body not sent yet. */
  pending: Buffer;
  /** Received bytes not yet given back in a WINDOW_UPDATE. */
  unacked: number;
  paused: boolean;
  closed: boolean;
}

function u32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

function toHeaders(list: [string, string][]): Headers {
  const h: Headers = {};
  for (const [n, v] of list) h[n] = n in h && !n.startsWith(':') ? `${h[n]}, ${v}` : v;
  return h;
}

export class H2Connection {
  readonly #socket: Socket;
  readonly #streams = new Map<number, StreamState>();
  readonly #decoder = new HpackDecoder();
  #nextId = 1;
  #sendWindow = DEFAULT_WINDOW;
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = 16384;
  #connUnacked = 0;
  readonly #in = new FrameReader(MAX_FRAME_IN);
  readonly #blocks = new HeaderBlockCollector();
  #closing = false;
  #goaway = false;
  #dead: Error | null = null;
  #readyResolve!: () => void;
  #readyReject!: (err: Error) => void;
  /** Resolves when the server's first SETTINGS frame arrives; rejects if the connection fails first. */
  readonly ready: Promise<void>;
  #isReady = false;

  constructor(socket: Socket) {
    this.#socket = socket;
    this.ready = new Promise<void>((resolve, reject) => { this.#readyResolve = resolve; this.#readyReject = reject; });
    this.ready.catch(() => { /* also reported to whoever waits */ });
    socket.on('data', (b: Buffer) => this.#onData(b));
    socket.on('error', (err: Error) => this.#fail(err));
    socket.on('close', () => this.#fail(new Error('Connection dropped')));
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(STREAM_WINDOW, 8);
    socket.write(Buffer.concat([PREFACE, frame(T_SETTINGS, 0, 0, settings), frame(T_WINDOW_UPDATE, 0, 0, u32(CONN_WINDOW - DEFAULT_WINDOW))]));
  }

  get isReady(): boolean { return this.#isReady; }
  /** Why the connection ended, once it has. */
  get failure(): Error | null { return this.#dead; }
  /** False after GOAWAY, close() or a failure: open a new connection for new calls. */
  get acceptsStreams(): boolean { return !this.#dead && !this.#goaway && !this.#closing; }

  ref(): void { this.#socket.ref(); }
  unref(): void { this.#socket.unref(); }

  /** Stops taking streams; the connection closes once the open ones end. */
  close(): void {
    this.#closing = true;
    if (this.#streams.size === 0) this.#shutdown();
  }

  /** Opens a stream with a header block and a body (ending our side). Throws if the connection takes no streams. */
  request(headers: readonly (readonly [string, string])[], body: Buffer, handlers: StreamHandlers): H2Stream {
    if (!this.acceptsStreams) throw this.#dead ?? new Error('connection is closing');
    const id = this.#nextId;
    this.#nextId += 2;
    const s: StreamState = { id, handlers, gotHeaders: false, sendWindow: this.#peerInitialWindow, pending: body, unacked: 0, paused: false, closed: false };
    this.#streams.set(id, s);
    this.#socket.write(headerBlockFrames(id, body.length === 0 ? F_END_STREAM : 0, Buffer.alloc(0), encodeHeaders(headers), this.#peerMaxFrame));
    this.#flush();
    return {
      id,
      cancel: (code = H2_CANCEL) => {
        if (s.closed) return;
        if (!this.#dead) this.#socket.write(frame(T_RST_STREAM, 0, id, u32(code)));
        this.#end(s, code, null);
      },
      pause: () => { s.paused = true; },
      resume: () => { s.paused = false; this.#ack(s); },
    };
  }

  /** Sends what stream bodies the windows allow. */
  #flush(): void {
    if (this.#dead) return;
    const out: Buffer[] = [];
    for (const s of this.#streams.values()) {
      while (s.pending.length > 0) {
        const n = Math.min(s.pending.length, this.#peerMaxFrame, s.sendWindow, this.#sendWindow);
        if (n <= 0) break;
        const part = s.pending.subarray(0, n);
        s.pending = s.pending.subarray(n);
        s.sendWindow -= n;
        this.#sendWindow -= n;
        out.push(frame(T_DATA, s.pending.length === 0 ? F_END_STREAM : 0, s.id, part));
      }
    }
    if (out.length) this.#socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  /** Gives received bytes back to the server once half a window is used (not while paused). */
  #ack(s: StreamState | null): void {
    if (this.#dead) return;
    const out: Buffer[] = [];
    if (this.#connUnacked >= CONN_WINDOW / 2) { out.push(frame(T_WINDOW_UPDATE, 0, 0, u32(this.#connUnacked))); this.#connUnacked = 0; }
    if (s && !s.closed && !s.paused && s.unacked >= STREAM_WINDOW / 2) { out.push(frame(T_WINDOW_UPDATE, 0, s.id, u32(s.unacked))); s.unacked = 0; }
    if (out.length) this.#socket.write(Buffer.concat(out));
  }

  #end(s: StreamState, code: number, err: Error | null): void {
    if (s.closed) return;
    s.closed = true;
    this.#streams.delete(s.id);
    try {
      s.handlers.close(code, err);
    } finally {
      if (this.#closing && this.#streams.size === 0) this.#shutdown();
    }
  }

  #shutdown(): void {
    if (this.#dead) return;
    this.#socket.end(goawayFrame(Math.max(0, this.#nextId - 2), H2_NO_ERROR));
    this.#dead = new Error('connection closed');
    this.#readyReject(this.#dead);
  }

  #fail(err: Error): void {
    if (this.#dead && this.#streams.size === 0) return;
    this.#dead ??= err;
    this.#readyReject(err);
    for (const s of [...this.#streams.values()]) this.#end(s, H2_CANCEL, err);
    this.#socket.destroy();
  }

  /** A connection error: GOAWAY with `code`, then every stream fails. */
  #protocolError(code: number, why: string): void {
    if (!this.#dead) this.#socket.write(goawayFrame(0, code));
    this.#fail(new Error(`HTTP/2 protocol error: ${why}`));
  }

  #onData(chunk: Buffer): void {
    this.#in.push(chunk);
    while (!this.#dead) {
      try {
        const f = this.#in.next();
        if (!f) return;
        this.#onFrame(f);
      } catch (err) {
        // A broken frame, or a handler threw: fail the connection rather than the process.
        this.#protocolError(err instanceof H2ConnectionError ? err.h2Code : H2_INTERNAL_ERROR, err instanceof Error ? err.message : String(err));
        return;
      }
    }
  }

  #onFrame(f: Frame): void {
    const { type, flags, stream, payload } = f;
    if (this.#blocks.pending && !this.#blocks.continues(f)) { this.#protocolError(H2_PROTOCOL_ERROR, 'header block not continued'); return; }
    switch (type) {
      case T_DATA: {
        this.#connUnacked += payload.length;
        const s = this.#streams.get(stream);
        const data = unpad(flags, payload);
        if (s) {
          s.unacked += payload.length;
          if (data.length) s.handlers.data(data);
        }
        this.#ack(s ?? null);
        if (s && flags & F_END_STREAM) this.#end(s, H2_NO_ERROR, null);
        return;
      }
      case T_HEADERS: {
        const block = this.#blocks.headers(f);
        if (block) this.#onHeaderBlock(block);
        return;
      }
      case T_CONTINUATION: {
        const block = this.#blocks.continuation(f);
        if (block) this.#onHeaderBlock(block);
        return;
      }
      case T_RST_STREAM: {
        const s = this.#streams.get(stream);
        if (s) this.#end(s, payload.length >= 4 ? payload.readUInt32BE(0) : H2_PROTOCOL_ERROR, null);
        return;
      }
      case T_SETTINGS: {
        if (flags & F_ACK) return;
        for (let i = 0; i + 6 <= payload.length; i += 6) {
          const id = payload.readUInt16BE(i);
          const v = payload.readUInt32BE(i + 2);
          if (id === 0x4) {
            const delta = v - this.#peerInitialWindow;
            this.#peerInitialWindow = v;
            for (const s of this.#streams.values()) s.sendWindow += delta;
          } else if (id === 0x5) {
            this.#peerMaxFrame = v;
          }
        }
        this.#socket.write(frame(T_SETTINGS, F_ACK, 0));
        if (!this.#isReady) { this.#isReady = true; this.#readyResolve(); }
        this.#flush();
        return;
      }
      case T_PING:
        if (!(flags & F_ACK)) this.#socket.write(frame(T_PING, F_ACK, 0, Buffer.from(payload)));
        return;
      case T_GOAWAY: {
        this.#goaway = true;
        const last = payload.length >= 4 ? payload.readUInt32BE(0) & 0x7fffffff : 0;
        for (const s of [...this.#streams.values()]) if (s.id > last) this.#end(s, H2_REFUSED_STREAM, null);
        return;
      }
      case T_WINDOW_UPDATE: {
        const inc = payload.length >= 4 ? payload.readUInt32BE(0) & 0x7fffffff : 0;
        if (stream === 0) this.#sendWindow += inc;
        else { const s = this.#streams.get(stream); if (s) s.sendWindow += inc; }
        this.#flush();
        return;
      }
      case T_PUSH_PROMISE:
        this.#protocolError(H2_PROTOCOL_ERROR, 'PUSH_PROMISE although push is disabled');
        return;
      default:
        return; // PRIORITY and unknown frame types are ignored
    }
  }

  #onHeaderBlock(hb: HeaderBlock): void {
    // Every block goes through the decoder, even for streams already gone: HPACK state is shared.
    const block = { stream: hb.stream, endStream: (hb.flags & F_END_STREAM) !== 0 };
    let list: [string, string][];
    try {
      list = this.#decoder.decode(hb.block);
    } catch (err) {
      this.#protocolError(H2_COMPRESSION_ERROR, err instanceof Error ? err.message : String(err));
      return;
    }
    const s = this.#streams.get(block.stream);
    if (!s) return;
    const h = toHeaders(list);
    if (!s.gotHeaders) {
      s.gotHeaders = true;
      if (h[':status']?.startsWith('1') && !block.endStream) { s.gotHeaders = false; return; } // 1xx: informational
      s.handlers.headers(h, block.endStream);
    } else {
      s.handlers.trailers(h);
    }
    if (block.endStream) this.#end(s, H2_NO_ERROR, null);
  }
}
