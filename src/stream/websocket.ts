/**
 * The streaming server's WebSocket endpoint on `ws` (RFC 6455: handshake, masking, fragmentation,
 * UTF-8 checks, ping/pong, the close handshake), with the channel layer's small interface on top:
 * one message in (with backpressure: the consumer says when it is full), one message out (with
 * the socket's backpressure), close listeners.
 *
 * Bounds and failure: a message (after reassembly) past `maxMessage` closes with 1009, an unmasked
 * client frame, a reserved bit, an unknown opcode or a bad control frame with 1002, invalid UTF-8
 * in a text message with 1007; the socket is then ended at once (the close frame flushed first),
 * without waiting for the peer's answer. No extension is ever negotiated (permessage-deflate off).
 * A close we start waits at most 5 s for the peer's close frame.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer, type ServerOptions, type WebSocket } from 'ws';
import type { Logger } from '../util/log.ts';

export const CloseCode = { Normal: 1000, GoingAway: 1001, ProtocolError: 1002, InvalidData: 1007, TooBig: 1009, Internal: 1011 } as const;

/** How long a close we start waits for the peer's close frame before the socket is dropped. */
const CLOSE_TIMEOUT_MS = 5_000;

export interface WebSocketOptions {
  logger: Logger;
  /**
   * Called with each complete data message. Return false when the consumer cannot take more for
   * now; reading from the socket then pauses until `resume()` (messages already read from the
   * socket's last chunk may still arrive).
   */
  onMessage: (data: Buffer, binary: boolean) => boolean;
}

/** Accepts WebSocket upgrades for the stream server; one per server. */
export class WebSocketAcceptor {
  readonly #wss: WebSocketServer;
  /** The subprotocol chosen for each request being upgraded (ws asks through handleProtocols). */
  readonly #chosen = new WeakMap<IncomingMessage, string>();

  /** `maxMessage`: largest message accepted from a client (after reassembly). */
  constructor(maxMessage: number) {
    // closeTimeout exists in ws 8.18+ but not in @types/ws yet.
    const opts: ServerOptions & { closeTimeout: number } = {
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: maxMessage,
      closeTimeout: CLOSE_TIMEOUT_MS,
      handleProtocols: (_offered, req) => this.#chosen.get(req) || false,
    };
    this.#wss = new WebSocketServer(opts);
  }

  /**
   * Completes the handshake with `protocol` ('' for none; the caller negotiated it) and hands the
   * connection to `ready`. A malformed handshake is answered by ws (400 / 405) and `ready` never runs.
   */
  accept(req: IncomingMessage, socket: Socket, head: Buffer, protocol: string, ready: (ws: WebSocket) => void): void {
    this.#chosen.set(req, protocol);
    this.#wss.handleUpgrade(req, socket, head, ready);
  }
}

export class WebSocketConnection {
  readonly #ws: WebSocket;
  readonly #socket: Socket;
  readonly #log: Logger;
  readonly #onMessage: WebSocketOptions['onMessage'];
  readonly #closeListeners: Array<() => void> = [];
  #closed = false;
  #paused = false;

  /** `socket`: the socket `ws` runs on (for its write backpressure). */
  constructor(ws: WebSocket, socket: Socket, opts: WebSocketOptions) {
    this.#ws = ws;
    this.#socket = socket;
    this.#log = opts.logger;
    this.#onMessage = opts.onMessage;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (this.#closed) return;
      if (!this.#onMessage(data, binary)) this.pause();
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // A protocol violation or a bound: ws has sent its close frame and ends the socket at once.
      this.#log.warn('closing websocket', { reason: err.message, code: err.code });
      this.#teardown();
    });
    ws.on('close', () => this.#teardown());
  }

  get closed(): boolean {
    return this.#closed;
  }

  onClose(fn: () => void): void {
    if (this.#closed) fn();
    else this.#closeListeners.push(fn);
  }

  /** Sends one data message; returns false when the socket buffer is full (wait for onDrain). */
  send(data: Buffer, binary = true): boolean {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return true;
    this.#ws.send(data, { binary });
    return !this.#socket.writableNeedDrain;
  }

  onDrain(fn: () => void): void {
    if (this.#closed || !this.#socket.writableNeedDrain) { fn(); return; }
    const done = (): void => { this.#socket.off('drain', done); this.#socket.off('close', done); fn(); };
    this.#socket.on('drain', done);
    this.#socket.on('close', done);
  }

  /** Starts the close handshake; the socket is closed when the peer answers (or after 5 s). */
  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.#closed) return;
    this.#ws.close(code, reason.slice(0, 100));
  }

  destroy(): void {
    this.#ws.terminate();
    this.#teardown();
  }

  pause(): void {
    this.#paused = true;
    this.#ws.pause();
  }

  resume(): void {
    if (!this.#paused || this.#closed) return;
    this.#paused = false;
    this.#ws.resume();
  }

  #teardown(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fn of this.#closeListeners.splice(0)) fn();
  }
}
