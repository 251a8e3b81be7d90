/**
 * The server side of one SPDY/3.1 session on an upgraded connection: the client opens streams
 * (SYN_STREAM, odd ids), the server accepts or refuses each and exchanges DATA on it as a Node
 * Duplex. The server never opens streams itself.
 *
 * Flow control: the server advertises the default 64 KiB windows and sends WINDOW_UPDATE as the
 * application consumes data. Go's spdystream (kubectl, crictl, kubelet's proxy) neither sends nor
 * honours WINDOW_UPDATE, so the server enforces the client's receive window only once the client
 * has shown it does flow control (it sent WINDOW_UPDATE or SETTINGS_INITIAL_WINDOW_SIZE). In every
 * case backpressure holds: a stream's write completes only when the socket has drained, and the
 * socket stops being read while a stream's inbound buffer is full.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from '../util/log.ts';
import { InvalidArgumentError, UnavailableError } from '../errors.ts';
import {
  DEFAULT_WINDOW, FLAG_FIN, FLAG_UNIDIRECTIONAL, FrameType, GoAwayStatus, HeaderDecoder, HeaderEncoder, RstStatus,
  SETTINGS_INITIAL_WINDOW_SIZE, encodeControl, encodeData, encodeGoAway, encodeRst, encodeWindowUpdate, header,
  parseFrame, type Frame, type HeaderBlock,
} from './spdy-frame.ts';

export interface SpdySessionOptions {
  logger: Logger;
  /** Largest frame payload accepted; default 1 MiB (bigger frames close the session). */
  maxFramePayload?: number;
  /** Most streams open at once; more are refused. Default 100. */
  maxStreams?: number;
  /**
   * Called for every new stream once its headers are decoded. Return an error message to refuse it
   * (RST_STREAM), or null to accept it (SYN_REPLY is then sent).
   */
  onStream: (stream: SpdyStream) => string | null;
}

const MAX_DATA_CHUNK = 32 * 1024;

export class SpdyStream extends Duplex {
  readonly id: number;
  readonly headers: HeaderBlock;
  readonly #session: SpdySession;
  /** Bytes the peer may still send before we owe it a WINDOW_UPDATE. */
  #recvUnacked = 0;
  sendWindow: number;
  #localClosed = false;
  remoteClosed = false;
  #pendingWrite: { chunk: Buffer; cb: (err?: Error | null) => void } | null = null;

  constructor(session: SpdySession, id: number, headers: HeaderBlock, sendWindow: number, unidirectional: boolean) {
    super({ allowHalfOpen: true, highWaterMark: 64 * 1024 });
    this.id = id;
    this.headers = headers;
    this.#session = session;
    this.sendWindow = sendWindow;
    if (unidirectional) this.#localClosed = true;
    // Errors on a stream only ever mean the stream or connection is gone; the session reports that
    // (onClose, the runtime's AbortSignal), so an unobserved stream error must not crash the daemon.
    this.on('error', () => {});
  }

  /** First value of a stream header (names are case-insensitive). */
  header(name: string): string | undefined {
    return header(this.headers, name);
  }

  override _read(): void {
    if (this.#recvUnacked > 0) {
      this.#session.sendWindowUpdate(this.id, this.#recvUnacked);
      this.#recvUnacked = 0;
    }
    this.#session.unblockReader(this);
  }

  /** Called by the session for each inbound DATA payload. Returns false when the buffer is full. */
  deliver(data: Buffer, fin: boolean): boolean {
    let room = true;
    if (data.length > 0) {
      this.#recvUnacked += data.length;
      room = this.push(data);
    }
    if (fin) {
      this.remoteClosed = true;
      this.push(null);
      this.#session.maybeForget(this);
    }
    return room;
  }

  get localClosed(): boolean {
    return this.#localClosed;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#localClosed) { cb(new UnavailableError(`stream ${this.id} is closed for writing`)); return; }
    this.#pendingWrite = { chunk, cb };
    this.pump();
  }

  /** Sends as much of the pending write as the windows allow; the session calls it on WINDOW_UPDATE. */
  pump(): void {
    const p = this.#pendingWrite;
    if (!p || this.destroyed) return;
    let drained = true;
    while (p.chunk.length > 0) {
      const allowed = this.#session.sendAllowance(this);
      if (allowed <= 0) return; // wait for WINDOW_UPDATE
      const n = Math.min(allowed, MAX_DATA_CHUNK, p.chunk.length);
      drained = this.#session.writeData(this, p.chunk.subarray(0, n), false);
      p.chunk = p.chunk.subarray(n);
    }
    this.#pendingWrite = null;
    if (drained) p.cb();
    else this.#session.onDrain(() => p.cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.#localClosed && !this.destroyed) {
      this.#localClosed = true;
      this.#session.writeData(this, Buffer.alloc(0), true);
      this.#session.maybeForget(this);
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    const p = this.#pendingWrite;
    this.#pendingWrite = null;
    if (p) p.cb(err ?? new UnavailableError(`stream ${this.id} reset`));
    if (!this.#localClosed || !this.remoteClosed) {
      this.#localClosed = true;
      this.remoteClosed = true;
      this.#session.resetStream(this, err ? RstStatus.InternalError : RstStatus.Cancel);
    }
    this.#session.forget(this);
    cb(err);
  }
}

/** One SPDY/3.1 server session. Emits 'close' once the connection is gone. */
export class SpdySession {
  readonly #socket: Socket;
  readonly #log: Logger;
  readonly #opts: Required<Omit<SpdySessionOptions, 'logger' | 'onStream'>>;
  readonly #onStream: SpdySessionOptions['onStream'];
  readonly #encoder = new HeaderEncoder();
  readonly #decoder = new HeaderDecoder();
  readonly #streams = new Map<number, SpdyStream>();
  readonly #blockedReaders = new Set<SpdyStream>();
  readonly #closeListeners: Array<() => void> = [];
  #buf: Buffer = Buffer.alloc(0);
  #queue: Frame[] = [];
  #processing = false;
  #lastRemoteId = 0;
  #peerFlowControl = false;
  #peerInitialWindow = DEFAULT_WINDOW;
  #sessionSendWindow = DEFAULT_WINDOW;
  #goingAway = false;
  #closed = false;

  constructor(socket: Socket, opts: SpdySessionOptions) {
    this.#socket = socket;
    this.#log = opts.logger;
    this.#onStream = opts.onStream;
    this.#opts = { maxFramePayload: opts.maxFramePayload ?? 1024 * 1024, maxStreams: opts.maxStreams ?? 100 };
    socket.setNoDelay(true);
    socket.on('data', (b: Buffer) => this.#onData(b));
    socket.on('error', (e) => this.#log.debug('spdy socket error', { err: e.message }));
    socket.on('close', () => this.#teardown());
    socket.on('end', () => this.#teardown());
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Registers a callback for when the session is gone (socket closed, or destroyed). */
  onClose(fn: () => void): void {
    if (this.#closed) fn();
    else this.#closeListeners.push(fn);
  }

  /** Feeds bytes already read past the HTTP upgrade (the `head` buffer). */
  feed(head: Buffer): void {
    if (head.length > 0) this.#onData(head);
  }

  /** Sends GOAWAY and closes the connection once queued bytes are flushed. */
  close(): void {
    if (this.#closed) return;
    if (!this.#goingAway) {
      this.#goingAway = true;
      this.#write(encodeGoAway(this.#lastRemoteId, GoAwayStatus.Ok));
    }
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 5_000).unref();
  }

  /** Closes immediately (protocol error, server shutdown). */
  destroy(status: number = GoAwayStatus.InternalError, why?: string): void {
    if (this.#closed) return;
    if (why) this.#log.warn('closing spdy session', { reason: why });
    if (!this.#goingAway && this.#socket.writable) {
      this.#goingAway = true;
      this.#socket.write(encodeGoAway(this.#lastRemoteId, status));
    }
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1_000).unref();
    this.#teardown(false);
  }

  #teardown(destroySocket = true): void {
    if (this.#closed) return;
    this.#closed = true;
    if (destroySocket) this.#socket.destroy();
    this.#decoder.close();
    for (const s of [...this.#streams.values()]) {
      s.remoteClosed = true;
      s.destroy(new UnavailableError('connection closed'));
    }
    this.#streams.clear();
    for (const fn of this.#closeListeners.splice(0)) fn();
  }

  #write(frame: Buffer): boolean {
    if (this.#closed || !this.#socket.writable) return true;
    return this.#socket.write(frame);
  }

  onDrain(fn: () => void): void {
    if (this.#closed) { fn(); return; }
    const done = (): void => { this.#socket.off('drain', done); this.#socket.off('close', done); fn(); };
    this.#socket.on('drain', done);
    this.#socket.on('close', done);
  }

  sendAllowance(s: SpdyStream): number {
    if (!this.#peerFlowControl) return Number.MAX_SAFE_INTEGER;
    return Math.min(s.sendWindow, this.#sessionSendWindow);
  }

  writeData(s: SpdyStream, data: Buffer, fin: boolean): boolean {
    if (this.#peerFlowControl) {
      s.sendWindow -= data.length;
      this.#sessionSendWindow -= data.length;
    }
    return this.#write(encodeData(s.id, fin ? FLAG_FIN : 0, data));
  }

  sendWindowUpdate(streamId: number, delta: number): void {
    this.#write(encodeWindowUpdate(streamId, delta));
    this.#write(encodeWindowUpdate(0, delta));
  }

  resetStream(s: SpdyStream, status: number): void {
    this.#write(encodeRst(s.id, status));
  }

  unblockReader(s: SpdyStream): void {
    if (this.#blockedReaders.delete(s) && this.#blockedReaders.size === 0 && this.#queue.length < 64) this.#socket.resume();
  }

  maybeForget(s: SpdyStream): void {
    if (s.localClosed && s.remoteClosed) this.forget(s);
  }

  forget(s: SpdyStream): void {
    this.#streams.delete(s.id);
    this.unblockReader(s);
    if (this.#goingAway && this.#streams.size === 0) this.close();
  }

  #onData(b: Buffer): void {
    if (this.#closed) return;
    this.#buf = this.#buf.length === 0 ? b : Buffer.concat([this.#buf, b]);
    try {
      for (;;) {
        const r = parseFrame(this.#buf, this.#opts.maxFramePayload);
        if (!r) break;
        this.#buf = r.rest;
        this.#queue.push(r.frame);
      }
    } catch (e) {
      this.destroy(GoAwayStatus.ProtocolError, (e as Error).message);
      return;
    }
    if (this.#queue.length >= 64) this.#socket.pause();
    void this.#process();
  }

  async #process(): Promise<void> {
    if (this.#processing) return;
    this.#processing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const f = this.#queue.shift()!;
        await this.#handle(f);
      }
    } catch (e) {
      this.destroy(GoAwayStatus.ProtocolError, (e as Error).message);
    } finally {
      this.#processing = false;
    }
    if (!this.#closed && this.#blockedReaders.size === 0 && this.#socket.isPaused()) this.#socket.resume();
  }

  async #handle(f: Frame): Promise<void> {
    if (!f.control) { this.#handleData(f.streamId, f.flags, f.payload); return; }
    const p = f.payload;
    const need = (n: number): void => {
      if (p.length < n) throw new InvalidArgumentError(`control frame type ${f.type} too short (${p.length} bytes)`);
    };
    switch (f.type) {
      case FrameType.SynStream: {
        need(10);
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const headers = await this.#decoder.decode(p.subarray(10));
        this.#onSynStream(id, f.flags, headers);
        return;
      }
      case FrameType.SynReply:
        need(4);
        await this.#decoder.decode(p.subarray(4));
        this.#write(encodeRst(p.readUInt32BE(0) & 0x7fffffff, RstStatus.ProtocolError));
        return;
      case FrameType.Headers: {
        need(4);
        await this.#decoder.decode(p.subarray(4)); // keeps the zlib context in step; content unused
        const s = this.#streams.get(p.readUInt32BE(0) & 0x7fffffff);
        if (s && f.flags & FLAG_FIN) s.deliver(Buffer.alloc(0), true);
        return;
      }
      case FrameType.RstStream: {
        need(8);
        const s = this.#streams.get(p.readUInt32BE(0) & 0x7fffffff);
        if (s) {
          s.remoteClosed = true;
          this.#streams.delete(s.id);
          s.destroy(new UnavailableError(`stream ${s.id} reset by peer (status ${p.readUInt32BE(4)})`));
        }
        return;
      }
      case FrameType.Settings: {
        need(4);
        const n = p.readUInt32BE(0);
        need(4 + 8 * n);
        for (let i = 0; i < n; i++) {
          const id = p.readUInt32BE(4 + 8 * i) & 0xffffff;
          const value = p.readUInt32BE(8 + 8 * i);
          if (id === SETTINGS_INITIAL_WINDOW_SIZE) {
            if (value > 0x7fffffff) throw new InvalidArgumentError(`bad initial window ${value}`);
            const delta = value - this.#peerInitialWindow;
            this.#peerInitialWindow = value;
            this.#peerFlowControl = true;
            for (const s of this.#streams.values()) { s.sendWindow += delta; s.pump(); }
          }
        }
        return;
      }
      case FrameType.Ping:
        need(4);
        // Pings with odd ids come from the client and are echoed; the server sends none of its own.
        if (p.readUInt32BE(0) % 2 === 1) this.#write(encodeControl(FrameType.Ping, 0, p.subarray(0, 4)));
        return;
      case FrameType.GoAway:
        this.#goingAway = true;
        if (this.#streams.size === 0) this.close();
        return;
      case FrameType.WindowUpdate: {
        need(8);
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const delta = p.readUInt32BE(4) & 0x7fffffff;
        if (delta === 0) throw new InvalidArgumentError('WINDOW_UPDATE with zero delta');
        this.#peerFlowControl = true;
        if (id === 0) {
          this.#sessionSendWindow += delta;
          for (const s of this.#streams.values()) s.pump();
        } else {
          const s = this.#streams.get(id);
          if (s) { s.sendWindow += delta; s.pump(); }
        }
        return;
      }
      default:
        return; // unknown control frames are ignored, as the protocol requires
    }
  }

  #onSynStream(id: number, flags: number, headers: HeaderBlock): void {
    if (id === 0 || id % 2 === 0 || id <= this.#lastRemoteId) {
      throw new InvalidArgumentError(`invalid client stream id ${id} (last ${this.#lastRemoteId})`);
    }
    this.#lastRemoteId = id;
    if (this.#goingAway) { this.#write(encodeRst(id, RstStatus.RefusedStream)); return; }
    if (this.#streams.size >= this.#opts.maxStreams) { this.#write(encodeRst(id, RstStatus.RefusedStream)); return; }
    const s = new SpdyStream(this, id, headers, this.#peerInitialWindow, (flags & FLAG_UNIDIRECTIONAL) !== 0);
    this.#streams.set(id, s);
    const refusal = this.#onStream(s);
    if (refusal !== null) {
      this.#log.debug('refusing spdy stream', { id, reason: refusal });
      this.#streams.delete(id);
      s.remoteClosed = true;
      this.#write(encodeRst(id, RstStatus.RefusedStream));
      s.destroy();
      return;
    }
    const reply = Buffer.concat([Buffer.alloc(4), this.#encoder.encode(new Map())]);
    reply.writeUInt32BE(id, 0);
    this.#write(encodeControl(FrameType.SynReply, 0, reply));
    if (flags & FLAG_FIN) s.deliver(Buffer.alloc(0), true);
  }

  #handleData(id: number, flags: number, payload: Buffer): void {
    const s = this.#streams.get(id);
    if (!s) {
      if (id > this.#lastRemoteId || id % 2 === 0) throw new InvalidArgumentError(`DATA for unknown stream ${id}`);
      return; // late data for a stream already closed or reset
    }
    if (s.remoteClosed) { this.#write(encodeRst(id, RstStatus.StreamAlreadyClosed)); return; }
    if (!s.deliver(payload, (flags & FLAG_FIN) !== 0)) {
      this.#blockedReaders.add(s);
      this.#socket.pause();
    }
  }
}
