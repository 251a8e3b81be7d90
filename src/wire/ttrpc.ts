/**
 * A ttrpc client (the gRPC-like protocol containerd speaks to its shims) on a unix socket, for
 * unary calls carrying already-encoded messages. Written from the public protocol description.
 *
 * Protocol: every message is a frame of a 10-byte header — payload length (uint32, big-endian),
 * stream id (uint32, big-endian), type (1 = request, 2 = response, 3 = data), flags (1 byte) —
 * followed by the payload. A call is one request frame on a fresh odd stream id (a client counts
 * 1, 3, 5, …) carrying a `Request{service, method, payload, timeout_nano, metadata}`, answered by
 * one response frame on the same id carrying `Response{status, payload}` where `status` is a
 * google.rpc.Status (`code` is a gRPC status code, 0 = OK). Calls are multiplexed on one
 * connection; responses may come in any order. Frames are at most 4 MiB (the protocol's limit).
 *
 * Both envelopes go through proto-codec.ts with a small descriptor below, not a second codec.
 *
 * Lifecycle: a `TtrpcClient` connects on first call and keeps that connection; when the peer
 * closes it every call in flight fails with UNAVAILABLE and the next call reconnects. `close()`
 * ends the connection now (calls in flight fail). Every call has a deadline (default 30 s): past it
 * the call fails with DEADLINE_EXCEEDED and its late response is dropped.
 */
import { rm } from 'node:fs/promises';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { Codec } from './proto-codec.ts';
import { Schema, type MessageType } from './proto-schema.ts';
import { GrpcStatus, statusName } from './grpc-status.ts';

export const TTRPC_HEADER_LENGTH = 10;
/** The protocol's largest frame payload. */
export const TTRPC_MAX_MESSAGE = 4 << 20;
export const TTRPC_TYPE_REQUEST = 1;
export const TTRPC_TYPE_RESPONSE = 2;
export const TTRPC_TYPE_DATA = 3;

const ENVELOPE = new Schema({
  nested: {
    ttrpc: {
      nested: {
        KeyValue: { fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
        Request: {
          fields: {
            service: { type: 'string', id: 1 }, method: { type: 'string', id: 2 }, payload: { type: 'bytes', id: 3 },
            timeoutNano: { type: 'int64', id: 4 }, metadata: { rule: 'repeated', type: 'KeyValue', id: 5 },
          },
        },
        Status: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 } } },
        Response: { fields: { status: { type: 'Status', id: 1 }, payload: { type: 'bytes', id: 2 } } },
      },
    },
  },
});
const CODEC = new Codec(ENVELOPE);
const REQUEST = ENVELOPE.message('ttrpc.Request');
const RESPONSE = ENVELOPE.message('ttrpc.Response');

/** The envelope codec and types, for a test server. */
export const ttrpcEnvelope = { codec: CODEC, request: REQUEST, response: RESPONSE };

/** A failed call: a status other than OK from the peer, or a local failure given a status code. */
export class TtrpcCallError extends Error {
  readonly code: number;
  readonly details: string;
  constructor(code: number, details: string) {
    super(`${code} ${statusName(code)}: ${details}`);
    this.name = 'TtrpcCallError';
    this.code = code;
    this.details = details;
  }
}

/** One frame: header + payload. */
export function ttrpcFrame(streamId: number, type: number, payload: Uint8Array, flags = 0): Buffer {
  if (payload.length > TTRPC_MAX_MESSAGE) throw new TtrpcCallError(GrpcStatus.RESOURCE_EXHAUSTED, `ttrpc message of ${payload.length} bytes is over the ${TTRPC_MAX_MESSAGE}-byte limit`);
  const b = Buffer.allocUnsafe(TTRPC_HEADER_LENGTH + payload.length);
  b.writeUInt32BE(payload.length, 0);
  b.writeUInt32BE(streamId >>> 0, 4);
  b.writeUInt8(type, 8);
  b.writeUInt8(flags, 9);
  b.set(payload, TTRPC_HEADER_LENGTH);
  return b;
}

export interface TtrpcFrame { streamId: number; type: number; flags: number; payload: Buffer }

/** Cuts a byte stream into frames; throws on a frame over the limit (the connection is then unusable). */
export class TtrpcFrameReader {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): TtrpcFrame[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: TtrpcFrame[] = [];
    while (this.#buf.length >= TTRPC_HEADER_LENGTH) {
      const len = this.#buf.readUInt32BE(0);
      if (len > TTRPC_MAX_MESSAGE) throw new TtrpcCallError(GrpcStatus.RESOURCE_EXHAUSTED, `ttrpc peer sent a ${len}-byte frame, over the ${TTRPC_MAX_MESSAGE}-byte limit`);
      if (this.#buf.length < TTRPC_HEADER_LENGTH + len) break;
      out.push({
        streamId: this.#buf.readUInt32BE(4), type: this.#buf.readUInt8(8), flags: this.#buf.readUInt8(9),
        payload: Buffer.from(this.#buf.subarray(TTRPC_HEADER_LENGTH, TTRPC_HEADER_LENGTH + len)),
      });
      this.#buf = this.#buf.subarray(TTRPC_HEADER_LENGTH + len);
    }
    return out;
  }
}

interface Pending { resolve: (b: Buffer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; background: boolean }

export interface TtrpcCallOptions {
  /** Deadline in ms (sent to the peer as timeout_nano as well). Default 30 000. */
  timeoutMs?: number;
  metadata?: Record<string, string>;
  /** The call does not keep the process alive (a long Wait a daemon keeps open in the background). */
  background?: boolean;
}

export class TtrpcClient {
  readonly path: string;
  #sock: Socket | null = null;
  #connecting: Promise<Socket> | null = null;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #closed = false;

  constructor(path: string) {
    this.path = path;
  }

  /** Calls `service`/`method` with an encoded request; resolves to the encoded response payload. */
  async call(service: string, method: string, payload: Uint8Array, opts: TtrpcCallOptions = {}): Promise<Buffer> {
    if (this.#closed) throw new TtrpcCallError(GrpcStatus.UNAVAILABLE, `ttrpc client for ${this.path} is closed`);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const sock = await this.#connect(timeoutMs);
    const id = this.#nextId;
    this.#nextId = this.#nextId + 2 > 0x7fffffff ? 1 : this.#nextId + 2;
    const req = CODEC.encode(REQUEST, {
      service, method, payload: Buffer.from(payload), timeoutNano: timeoutMs * 1_000_000,
      metadata: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
    });
    const frame = ttrpcFrame(id, TTRPC_TYPE_REQUEST, req);
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        this.#unrefIfIdle();
        reject(new TtrpcCallError(GrpcStatus.DEADLINE_EXCEEDED, `${service}/${method} on ${this.path} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      if (opts.background) timer.unref();
      this.#pending.set(id, { resolve, reject, timer, background: opts.background === true });
      this.#unrefIfIdle();
      sock.write(frame);
    });
  }

  /** Encodes `req` as `reqType`, calls, decodes the answer as `resType`. */
  async callTyped(codec: Codec, service: string, method: string, reqType: MessageType, resType: MessageType, req: unknown, opts: TtrpcCallOptions = {}): Promise<Record<string, unknown>> {
    const out = await this.call(service, method, codec.encode(reqType, req), opts);
    return codec.decode(resType, out);
  }

  /** Ends the connection; calls in flight fail with UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    this.#drop(new TtrpcCallError(GrpcStatus.UNAVAILABLE, `ttrpc client for ${this.path} closed`));
  }

  #connect(timeoutMs: number): Promise<Socket> {
    if (this.#sock) return Promise.resolve(this.#sock);
    if (this.#connecting) return this.#connecting;
    this.#connecting = new Promise<Socket>((resolve, reject) => {
      const sock = netConnect(this.path);
      const timer = setTimeout(() => { sock.destroy(); reject(new TtrpcCallError(GrpcStatus.DEADLINE_EXCEEDED, `connect to ${this.path} timed out after ${timeoutMs} ms`)); }, timeoutMs);
      const reader = new TtrpcFrameReader();
      sock.once('connect', () => {
        clearTimeout(timer);
        this.#sock = sock;
        this.#connecting = null;
        resolve(sock);
      });
      sock.on('data', (chunk: Buffer) => {
        let frames: TtrpcFrame[];
        try {
          frames = reader.push(chunk);
        } catch (err) {
          this.#drop(err as Error);
          return;
        }
        for (const f of frames) this.#onFrame(f);
      });
      sock.on('error', (err) => {
        clearTimeout(timer);
        if (this.#connecting) { this.#connecting = null; reject(new TtrpcCallError(GrpcStatus.UNAVAILABLE, `cannot connect to ${this.path}: ${err.message}`)); }
        this.#drop(new TtrpcCallError(GrpcStatus.UNAVAILABLE, `ttrpc connection to ${this.path} failed: ${err.message}`));
      });
      sock.on('close', () => {
        clearTimeout(timer);
        if (this.#connecting) { this.#connecting = null; reject(new TtrpcCallError(GrpcStatus.UNAVAILABLE, `ttrpc connection to ${this.path} closed while connecting`)); }
        if (this.#sock === sock) this.#drop(new TtrpcCallError(GrpcStatus.UNAVAILABLE, `ttrpc peer at ${this.path} closed the connection`));
      });
    });
    return this.#connecting;
  }

  #onFrame(f: TtrpcFrame): void {
    if (f.type !== TTRPC_TYPE_RESPONSE) return; // no streams are opened by this client: ignore others
    const p = this.#pending.get(f.streamId);
    if (!p) return; // a late answer to a call that timed out
    this.#pending.delete(f.streamId);
    clearTimeout(p.timer);
    this.#unrefIfIdle();
    let res: Record<string, unknown>;
    try {
      res = CODEC.decode(RESPONSE, f.payload);
    } catch (err) {
      p.reject(new TtrpcCallError(GrpcStatus.INTERNAL, `bad ttrpc response from ${this.path}: ${(err as Error).message}`));
      return;
    }
    const status = res.status as { code: number; message: string } | null;
    if (status && status.code !== GrpcStatus.OK) p.reject(new TtrpcCallError(status.code, status.message));
    else p.resolve(res.payload as Buffer);
  }

  /** The socket keeps the process alive while a foreground call is in flight. */
  #unrefIfIdle(): void {
    if ([...this.#pending.values()].some((p) => !p.background)) this.#sock?.ref();
    else this.#sock?.unref();
  }

  #drop(err: Error): void {
    const sock = this.#sock;
    this.#sock = null;
    sock?.destroy();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) { clearTimeout(p.timer); p.reject(err); }
  }
}

/** A unary handler: the request payload in, the response payload out; a TtrpcCallError sets the status. */
export type TtrpcHandler = (payload: Buffer) => Promise<Uint8Array> | Uint8Array;

/**
 * A ttrpc server on a unix socket for unary calls (what a shim calls back: the events service).
 * `handlers` is keyed `<service>/<method>`; anything else is answered UNIMPLEMENTED. A connection
 * sending a frame over the limit, or something that is not a request, is closed.
 */
export class TtrpcServer {
  readonly #handlers: Map<string, TtrpcHandler>;
  readonly #server: import('node:net').Server;
  readonly #conns = new Set<Socket>();

  constructor(handlers: Record<string, TtrpcHandler>) {
    this.#handlers = new Map(Object.entries(handlers));
    this.#server = createServer((sock) => this.#serve(sock));
  }

  /** Listens on `path` (a stale socket file there is replaced). The server does not keep the process alive. */
  async listen(path: string): Promise<void> {
    await rm(path, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(path, () => { this.#server.off('error', reject); resolve(); });
    });
    this.#server.unref();
  }

  async close(): Promise<void> {
    for (const c of this.#conns) c.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  #serve(sock: Socket): void {
    this.#conns.add(sock);
    sock.unref();
    sock.on('close', () => this.#conns.delete(sock));
    sock.on('error', () => {});
    const reader = new TtrpcFrameReader();
    sock.on('data', (chunk: Buffer) => {
      let frames: TtrpcFrame[];
      try { frames = reader.push(chunk); } catch { sock.destroy(); return; }
      for (const f of frames) {
        if (f.type !== TTRPC_TYPE_REQUEST) { sock.destroy(); return; }
        void this.#answer(sock, f);
      }
    });
  }

  async #answer(sock: Socket, f: TtrpcFrame): Promise<void> {
    let status: { code: number; message: string } | null = null;
    let payload: Uint8Array = Buffer.alloc(0);
    try {
      const req = CODEC.decode(REQUEST, f.payload);
      const h = this.#handlers.get(`${String(req.service)}/${String(req.method)}`);
      if (!h) status = { code: GrpcStatus.UNIMPLEMENTED, message: `${String(req.service)}/${String(req.method)} is not served here` };
      else payload = await h(req.payload as Buffer);
    } catch (err) {
      status = err instanceof TtrpcCallError ? { code: err.code, message: err.details } : { code: GrpcStatus.INTERNAL, message: (err as Error).message };
    }
    if (!sock.destroyed) sock.write(ttrpcFrame(f.streamId, TTRPC_TYPE_RESPONSE, CODEC.encode(RESPONSE, { status, payload: Buffer.from(payload) })));
  }
}
