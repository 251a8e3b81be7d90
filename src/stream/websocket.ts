/**
 * A minimal RFC 6455 WebSocket server endpoint (written here, no dependency): the opening
 * handshake answer, frame parsing with unmasking and fragmentation, ping/pong, the close
 * handshake, and size limits. No extensions (permessage-deflate is never negotiated).
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from '../util/log.ts';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** A key is 16 random bytes, base64-encoded. */
export function isValidKey(key: string | undefined): key is string {
  return typeof key === 'string' && /^[A-Za-z0-9+/]{22}==$/.test(key);
}

export const Opcode = { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const;
export const CloseCode = { Normal: 1000, GoingAway: 1001, ProtocolError: 1002, InvalidData: 1007, TooBig: 1009, Internal: 1011 } as const;

/** Encodes one unmasked (server to client) frame. */
export function encodeFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 0x10000 ? 2 : 8;
  const out = Buffer.allocUnsafe(2 + ext + len);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (ext === 0) out[1] = len;
  else if (ext === 2) { out[1] = 126; out.writeUInt16BE(len, 2); }
  else { out[1] = 127; out.writeBigUInt64BE(BigInt(len), 2); }
  payload.copy(out, 2 + ext);
  return out;
}

export interface WebSocketOptions {
  logger: Logger;
  /** Largest message accepted (after reassembly); default 1 MiB. */
  maxMessage?: number;
  /**
   * Called with each complete data message. Return false when the consumer cannot take more for
   * now; reading from the socket then pauses until `resume()`.
   */
  onMessage: (data: Buffer, binary: boolean) => boolean;
}

export class WebSocketConnection {
  readonly #socket: Socket;
  readonly #log: Logger;
  readonly #maxMessage: number;
  readonly #onMessage: WebSocketOptions['onMessage'];
  readonly #closeListeners: Array<() => void> = [];
  readonly #utf8 = new TextDecoder('utf-8', { fatal: true });
  #buf: Buffer = Buffer.alloc(0);
  #fragments: Buffer[] = [];
  #fragmentSize = 0;
  #fragmentOpcode = -1;
  #closeSent = false;
  #closed = false;
  #paused = false;

  constructor(socket: Socket, opts: WebSocketOptions) {
    this.#socket = socket;
    this.#log = opts.logger;
    this.#maxMessage = opts.maxMessage ?? 1024 * 1024;
    this.#onMessage = opts.onMessage;
    socket.setNoDelay(true);
    socket.on('data', (b: Buffer) => this.#onData(b));
    socket.on('error', (e) => this.#log.debug('websocket socket error', { err: e.message }));
    socket.on('close', () => this.#teardown());
    socket.on('end', () => this.#teardown());
  }

  get closed(): boolean {
    return this.#closed;
  }

  onClose(fn: () => void): void {
    if (this.#closed) fn();
    else this.#closeListeners.push(fn);
  }

  /** Feeds bytes read past the HTTP upgrade. */
  feed(head: Buffer): void {
    if (head.length > 0) this.#onData(head);
  }

  /** Sends one data message; returns false when the socket buffer is full (wait for onDrain). */
  send(data: Buffer, binary = true): boolean {
    if (this.#closed || this.#closeSent) return true;
    return this.#socket.write(encodeFrame(binary ? Opcode.Binary : Opcode.Text, data));
  }

  onDrain(fn: () => void): void {
    if (this.#closed) { fn(); return; }
    const done = (): void => { this.#socket.off('drain', done); this.#socket.off('close', done); fn(); };
    this.#socket.on('drain', done);
    this.#socket.on('close', done);
  }

  /** Starts the close handshake; the socket is closed when the peer answers (or after 5 s). */
  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.#closed) return;
    if (!this.#closeSent) {
      this.#closeSent = true;
      const r = Buffer.from(reason.slice(0, 100), 'utf8');
      const p = Buffer.allocUnsafe(2 + r.length);
      p.writeUInt16BE(code, 0);
      r.copy(p, 2);
      this.#socket.write(encodeFrame(Opcode.Close, p));
    }
    setTimeout(() => this.#socket.destroy(), 5_000).unref();
  }

  /** Fails the connection: close frame with `code`, then drop the socket. */
  fail(code: number, why: string): void {
    this.#log.warn('closing websocket', { reason: why, code });
    this.close(code, why);
    this.#socket.end();
    this.#teardown();
  }

  destroy(): void {
    this.#socket.destroy();
    this.#teardown();
  }

  pause(): void {
    this.#paused = true;
    this.#socket.pause();
  }

  resume(): void {
    if (!this.#paused || this.#closed) return;
    this.#paused = false;
    this.#socket.resume();
    this.#parse();
  }

  #teardown(): void {
    if (this.#closed) return;
    this.#closed = true;
    setTimeout(() => this.#socket.destroy(), 1_000).unref();
    for (const fn of this.#closeListeners.splice(0)) fn();
  }

  #onData(b: Buffer): void {
    if (this.#closed) return;
    this.#buf = this.#buf.length === 0 ? b : Buffer.concat([this.#buf, b]);
    this.#parse();
  }

  #parse(): void {
    while (!this.#paused && !this.#closed) {
      const buf = this.#buf;
      if (buf.length < 2) return;
      const b0 = buf[0]!;
      const b1 = buf[1]!;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      if (b0 & 0x70) { this.fail(CloseCode.ProtocolError, 'reserved bits set'); return; }
      if (!(b1 & 0x80)) { this.fail(CloseCode.ProtocolError, 'client frame not masked'); return; }
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        const big = buf.readBigUInt64BE(2);
        if (big > BigInt(this.#maxMessage)) { this.fail(CloseCode.TooBig, 'frame too large'); return; }
        len = Number(big);
        off = 10;
      }
      const control = opcode >= 8;
      if (control && (len > 125 || !fin)) { this.fail(CloseCode.ProtocolError, 'bad control frame'); return; }
      if (!control && len + this.#fragmentSize > this.#maxMessage) { this.fail(CloseCode.TooBig, 'message too large'); return; }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      this.#buf = buf.subarray(off + 4 + len);
      this.#frame(fin, opcode, payload);
    }
  }

  #frame(fin: boolean, opcode: number, payload: Buffer): void {
    switch (opcode) {
      case Opcode.Ping:
        if (!this.#closeSent) this.#socket.write(encodeFrame(Opcode.Pong, payload));
        return;
      case Opcode.Pong:
        return;
      case Opcode.Close: {
        if (payload.length === 1) { this.fail(CloseCode.ProtocolError, 'bad close payload'); return; }
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : CloseCode.Normal;
        if (!this.#closeSent) {
          this.#closeSent = true;
          const echo = Buffer.allocUnsafe(2);
          echo.writeUInt16BE(code === 1005 || code < 1000 ? CloseCode.Normal : code, 0);
          this.#socket.write(encodeFrame(Opcode.Close, echo));
        }
        this.#socket.end();
        this.#teardown();
        return;
      }
      case Opcode.Text:
      case Opcode.Binary:
        if (this.#fragmentOpcode !== -1) { this.fail(CloseCode.ProtocolError, 'new message inside a fragmented one'); return; }
        if (fin) { this.#deliver(opcode, payload); return; }
        this.#fragmentOpcode = opcode;
        this.#fragments = [payload];
        this.#fragmentSize = payload.length;
        return;
      case Opcode.Continuation:
        if (this.#fragmentOpcode === -1) { this.fail(CloseCode.ProtocolError, 'continuation without a message'); return; }
        this.#fragments.push(payload);
        this.#fragmentSize += payload.length;
        if (fin) {
          const op = this.#fragmentOpcode;
          const all = Buffer.concat(this.#fragments);
          this.#fragmentOpcode = -1;
          this.#fragments = [];
          this.#fragmentSize = 0;
          this.#deliver(op, all);
        }
        return;
      default:
        this.fail(CloseCode.ProtocolError, `unknown opcode ${opcode}`);
    }
  }

  #deliver(opcode: number, data: Buffer): void {
    if (opcode === Opcode.Text) {
      try { this.#utf8.decode(data); } catch { this.fail(CloseCode.InvalidData, 'text message is not UTF-8'); return; }
    }
    if (!this.#onMessage(data, opcode === Opcode.Binary)) this.pause();
  }
}
