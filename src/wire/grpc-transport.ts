/**
 * gRPC over HTTP/2 on a unix socket, for the client side only (the daemon serves with grpc-js):
 * unary and server-streaming calls carrying already-encoded messages. HTTP/2 is wire/h2.ts, not
 * node:http2, whose import alone costs the CLI ~30-50 ms (it loads tls, crypto, http, readline).
 *
 * Protocol (gRPC over HTTP/2): a call is one POST stream to `/<package>.<Service>/<Method>` with
 * `content-type: application/grpc`, `te: trailers` and, with a deadline, `grpc-timeout`; each
 * message is framed as 1 byte compression flag + 4 bytes big-endian length + bytes. The status
 * comes as `grpc-status`/`grpc-message` (percent-encoded) in the trailers, or in the headers of a
 * trailers-only response. A cancelled call resets its stream with CANCEL. `:authority` is
 * `localhost` (a socket path is not a valid authority; see src/wire/authority-relay.ts).
 *
 * Lifecycle: a `GrpcChannel` opens one HTTP/2 connection on first use and reuses it for every call;
 * when that connection goes away (daemon restarted) the next call opens a new one. It keeps
 * the process alive only while calls are in flight. `close()` lets calls in flight finish and
 * refuses new ones. Failures are `GrpcCallError`s with a gRPC status code, as grpc-js reports them.
 */
import { connect as netConnect } from 'node:net';
import {
  H2_CANCEL, H2_ENHANCE_YOUR_CALM, H2_INADEQUATE_SECURITY, H2_INTERNAL_ERROR, H2_NO_ERROR, H2_REFUSED_STREAM,
  H2Connection, type H2Stream, type Headers,
} from './h2.ts';
import { GrpcStatus, statusName } from './grpc-status.ts';
import { REASON_METADATA_KEY } from '../errors.ts';

/** A call cut short by the connection's end carries a reason, so the CLI need not match the text. */
const DROPPED: Record<string, string> = { [REASON_METADATA_KEY]: 'BH_CONNECTION_DROPPED' };

/** A failed call: a gRPC status other than OK (same fields as grpc-js's ServiceError). */
export class GrpcCallError extends Error {
  readonly code: number;
  readonly details: string;
  /** Trailers (or headers) the server sent with the status, if any. */
  readonly metadata: Record<string, string>;
  constructor(code: number, details: string, metadata: Record<string, string> = {}) {
    super(`${code} ${statusName(code)}: ${details}`);
    this.name = 'GrpcCallError';
    this.code = code;
    this.details = details;
    this.metadata = metadata;
  }
}

export interface ChannelOptions {
  /** Largest response message accepted; default 32 MiB (RESOURCE_EXHAUSTED beyond). */
  maxReceiveMessageLength?: number;
}

export interface CallOptions {
  /** Milliseconds since the epoch; DEADLINE_EXCEEDED after it. */
  deadline?: number;
  /** Cancels the call: CANCELLED "Cancelled on client". */
  signal?: AbortSignal;
}

interface Sink {
  message(buf: Buffer): void;
  /** Called exactly once: null for OK. */
  end(err: GrpcCallError | null): void;
}

interface CallHandle {
  cancel(): void;
  pause(): void;
  resume(): void;
}

const USER_AGENT = 'bulkhead-cri-client/1';
/** The details of a call this side ended at its deadline (grpc-js says the same). */
export const LOCAL_DEADLINE = 'Deadline exceeded';
/** A server stream's queue pauses the HTTP/2 stream at this many unread messages. */
const HIGH_WATER = 32;

export class GrpcChannel {
  readonly socketPath: string;
  readonly #maxReceive: number;
  #conn: H2Connection | null = null;
  #active = 0;
  #closed = false;

  constructor(socketPath: string, opts: ChannelOptions = {}) {
    this.socketPath = socketPath;
    this.#maxReceive = opts.maxReceiveMessageLength ?? 32 * 1024 * 1024;
  }

  /**
   * Resolves once an HTTP/2 connection is up (the server's SETTINGS arrived); rejects after
   * `deadline`. Failed attempts are retried with backoff, unless `failFast`: then the first
   * failure (e.g. ENOENT, ECONNREFUSED: nothing listens) rejects at once.
   */
  async waitForReady(deadline: number, opts: { failFast?: boolean } = {}): Promise<void> {
    let backoff = 50;
    for (;;) {
      const conn = this.#connection();
      if (conn.isReady) return;
      let timer: NodeJS.Timeout | undefined;
      const err = await Promise.race([
        conn.ready.then(() => null, (e: unknown) => (e instanceof Error ? e : new Error(String(e)))),
        new Promise<Error>((resolve) => { timer = setTimeout(() => resolve(new Error('Failed to connect before the deadline')), Math.max(0, deadline - Date.now())); }),
      ]);
      clearTimeout(timer);
      if (err === null) return;
      if (opts.failFast) throw err;
      const left = deadline - Date.now();
      if (left <= 0) throw err;
      await new Promise((r) => setTimeout(r, Math.min(backoff, left)));
      backoff = Math.min(backoff * 2, 1000);
    }
  }

  /** Stops new calls; calls in flight finish, then the connection closes. */
  close(): void {
    this.#closed = true;
    const conn = this.#conn;
    this.#conn = null;
    conn?.close();
  }

  /** A unary call: one request, exactly one response message. */
  unary(path: string, request: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      let response: Buffer | null = null;
      let count = 0;
      let handle: CallHandle | null = null;
      handle = this.#start(path, request, opts, {
        message: (buf) => {
          count++;
          response = buf;
          if (count > 1) handle?.cancel();
        },
        end: (err) => {
          if (count > 1) reject(new GrpcCallError(GrpcStatus.UNIMPLEMENTED, 'Too many responses received'));
          else if (err) reject(err);
          else if (response === null) reject(new GrpcCallError(GrpcStatus.UNIMPLEMENTED, 'No message received'));
          else resolve(response);
        },
      });
    });
  }

  /** A server-streaming call: the response messages in order; throws GrpcCallError for a failed status. */
  async *serverStream(path: string, request: Buffer, opts: CallOptions = {}): AsyncGenerator<Buffer> {
    const queue: Buffer[] = [];
    let ended: GrpcCallError | null | undefined;
    let wake: (() => void) | null = null;
    let paused = false;
    let handle: CallHandle | null = null;
    handle = this.#start(path, request, opts, {
      message: (buf) => {
        queue.push(buf);
        if (queue.length >= HIGH_WATER && !paused) { paused = true; handle?.pause(); }
        wake?.();
      },
      end: (err) => { ended = err; wake?.(); },
    });
    try {
      for (;;) {
        const next = queue.shift();
        if (next !== undefined) {
          if (paused && queue.length < HIGH_WATER / 2) { paused = false; handle.resume(); }
          yield next;
          continue;
        }
        if (ended !== undefined) {
          if (ended) throw ended;
          return;
        }
        await new Promise<void>((r) => { wake = r; });
        wake = null;
      }
    } finally {
      handle.cancel();
    }
  }

  #connection(): H2Connection {
    if (this.#closed) throw new GrpcCallError(GrpcStatus.UNAVAILABLE, 'Channel has been shut down');
    const cur = this.#conn;
    if (cur && cur.acceptsStreams) return cur;
    const conn = new H2Connection(netConnect(this.socketPath));
    if (this.#active === 0) conn.unref();
    this.#conn = conn;
    return conn;
  }

  #start(path: string, request: Buffer, opts: CallOptions, sink: Sink): CallHandle {
    let finished = false;
    let stream: H2Stream | null = null;
    let conn: H2Connection | null = null;
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => { cancelWith(GrpcStatus.CANCELLED, 'Cancelled on client'); };
    const finish = (err: GrpcCallError | null): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (conn) {
        this.#active--;
        if (this.#active === 0) conn.unref();
      }
      sink.end(err);
    };
    const cancelWith = (code: number, details: string): void => {
      finish(new GrpcCallError(code, details));
      stream?.cancel(H2_CANCEL);
    };
    const handle: CallHandle = {
      cancel: () => { if (!finished) cancelWith(GrpcStatus.CANCELLED, 'Cancelled on client'); else stream?.cancel(H2_CANCEL); },
      pause: () => { stream?.pause(); },
      resume: () => { stream?.resume(); },
    };

    if (opts.signal?.aborted) { finish(new GrpcCallError(GrpcStatus.CANCELLED, 'Cancelled on client')); return handle; }
    const headers: [string, string][] = [
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', path],
      [':authority', 'localhost'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ['user-agent', USER_AGENT],
      ['grpc-accept-encoding', 'identity'],
    ];
    if (opts.deadline !== undefined) {
      const ms = opts.deadline - Date.now();
      if (ms <= 0) { finish(new GrpcCallError(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded')); return handle; }
      headers.push(['grpc-timeout', timeoutHeader(ms)]);
      // setTimeout's limit is ~24.8 days; a later deadline is left to the server.
      if (ms < 2 ** 31) timer = setTimeout(() => cancelWith(GrpcStatus.DEADLINE_EXCEEDED, LOCAL_DEADLINE), ms);
    }

    let status: GrpcCallError | null | undefined;
    let httpStatus = 0;
    // Frames: 1 byte flag, 4 bytes length, then the message; data chunks split them anywhere.
    let pending: Buffer[] = [];
    let pendingLen = 0;
    let frameLen = -1; // 5 + message length, once the frame's header is in
    const onData = (chunk: Buffer): void => {
      if (finished) return;
      pending.push(chunk);
      pendingLen += chunk.length;
      for (;;) {
        if (frameLen < 0) {
          if (pendingLen < 5) return;
          if (pending[0]!.length < 5) pending = [Buffer.concat(pending, pendingLen)];
          const head = pending[0]!;
          const len = head.readUInt32BE(1);
          if (head[0] !== 0) { cancelWith(GrpcStatus.INTERNAL, 'Received a compressed message, but compression was not negotiated'); return; }
          if (len > this.#maxReceive) { cancelWith(GrpcStatus.RESOURCE_EXHAUSTED, `Received message larger than max (${len} vs. ${this.#maxReceive})`); return; }
          frameLen = 5 + len;
        }
        if (pendingLen < frameLen) return;
        const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingLen);
        const msg = all.subarray(5, frameLen);
        const rest = all.subarray(frameLen);
        pending = rest.length ? [rest] : [];
        pendingLen = rest.length;
        frameLen = -1;
        sink.message(msg);
        if (finished) return;
      }
    };

    let c: H2Connection;
    try {
      c = this.#connection();
      stream = c.request(headers, frame(request), {
        headers: (h) => {
          httpStatus = Number(h[':status']);
          if (h['grpc-status'] !== undefined) { status = statusFrom(h); return; }
          if (httpStatus !== 200) { status = httpError(httpStatus, h); return; }
          const ct = h['content-type'] ?? '';
          if (!ct.startsWith('application/grpc')) status = new GrpcCallError(GrpcStatus.UNKNOWN, `Received invalid content-type ${ct || '(none)'}`, metadataOf(h));
        },
        data: onData,
        trailers: (t) => { status = statusFrom(t); },
        close: (rstCode, err) => {
          if (finished) return;
          if (status !== undefined) {
            if (status === null && pendingLen > 0) { finish(new GrpcCallError(GrpcStatus.INTERNAL, 'Received a partial message before the status')); return; }
            finish(status);
            return;
          }
          if (httpStatus !== 0 && httpStatus !== 200) { finish(httpError(httpStatus, {})); return; }
          finish(closedWithoutStatus(rstCode, err));
        },
      });
    } catch (err) {
      finish(err instanceof GrpcCallError ? err : new GrpcCallError(GrpcStatus.UNAVAILABLE, `Connection dropped: ${err instanceof Error ? err.message : String(err)}`, DROPPED));
      return handle;
    }
    conn = c;
    this.#active++;
    c.ref();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    return handle;
  }
}

function frame(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out[0] = 0;
  out.writeUInt32BE(msg.length, 1);
  msg.copy(out, 5);
  return out;
}

/** The grpc-timeout header: at most 8 digits and a unit, rounded up. */
export function timeoutHeader(ms: number): string {
  for (const [unit, factor] of [['m', 1], ['S', 1000], ['M', 60_000], ['H', 3_600_000]] as const) {
    const amount = Math.ceil(ms / factor);
    if (amount < 1e8) return `${amount}${unit}`;
  }
  return '99999999H';
}

/** grpc-message is percent-encoded UTF-8; a malformed escape is kept as it is. */
export function percentDecode(s: string): string {
  if (!s.includes('%')) return s;
  const parts: Buffer[] = [];
  let last = 0;
  for (const m of s.matchAll(/%([0-9a-fA-F]{2})/g)) {
    parts.push(Buffer.from(s.slice(last, m.index), 'utf8'), Buffer.of(parseInt(m[1]!, 16)));
    last = m.index + 3;
  }
  parts.push(Buffer.from(s.slice(last), 'utf8'));
  return Buffer.concat(parts).toString('utf8');
}

function metadataOf(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) out[k] = v;
  return out;
}

/** null for OK, else the error the status names. */
function statusFrom(h: Headers): GrpcCallError | null {
  const raw = h['grpc-status'];
  const code = raw === undefined || raw === '' ? NaN : Number(raw);
  if (!Number.isInteger(code)) return new GrpcCallError(GrpcStatus.UNKNOWN, 'No status received', metadataOf(h));
  if (code === GrpcStatus.OK) return null;
  const msg = h['grpc-message'];
  return new GrpcCallError(code, percentDecode(msg ?? ''), metadataOf(h));
}

/** A non-200 HTTP status as a gRPC status (gRPC's HTTP-to-gRPC mapping). */
function httpError(httpStatus: number, h: Headers): GrpcCallError {
  const byHttp: Record<number, number> = {
    400: GrpcStatus.INTERNAL, 401: GrpcStatus.UNAUTHENTICATED, 403: GrpcStatus.PERMISSION_DENIED, 404: GrpcStatus.UNIMPLEMENTED,
    429: GrpcStatus.UNAVAILABLE, 502: GrpcStatus.UNAVAILABLE, 503: GrpcStatus.UNAVAILABLE, 504: GrpcStatus.UNAVAILABLE,
  };
  return new GrpcCallError(byHttp[httpStatus] ?? GrpcStatus.UNKNOWN, `Received HTTP status code ${httpStatus}`, metadataOf(h));
}

/** The status of a stream that closed without one, as grpc-js reports it; `err`: the connection failed. */
function closedWithoutStatus(rstCode: number, err: Error | null): GrpcCallError {
  if (err) return new GrpcCallError(GrpcStatus.UNAVAILABLE, err.message === 'Connection dropped' ? err.message : `Connection dropped: ${err.message}`, DROPPED);
  switch (rstCode) {
    case H2_REFUSED_STREAM: return new GrpcCallError(GrpcStatus.UNAVAILABLE, 'Stream refused by server');
    case H2_CANCEL: return new GrpcCallError(GrpcStatus.CANCELLED, 'Call cancelled');
    case H2_ENHANCE_YOUR_CALM: return new GrpcCallError(GrpcStatus.RESOURCE_EXHAUSTED, 'Bandwidth exhausted or memory limit exceeded');
    case H2_INADEQUATE_SECURITY: return new GrpcCallError(GrpcStatus.PERMISSION_DENIED, 'Protocol not secure enough');
    case H2_INTERNAL_ERROR: return new GrpcCallError(GrpcStatus.INTERNAL, `Received RST_STREAM with code ${rstCode} (Internal server error)`);
    case H2_NO_ERROR: return new GrpcCallError(GrpcStatus.INTERNAL, `Received RST_STREAM with code ${rstCode} (Call ended without gRPC status)`);
    default: return new GrpcCallError(GrpcStatus.INTERNAL, `Received RST_STREAM with code ${rstCode}`);
  }
}
