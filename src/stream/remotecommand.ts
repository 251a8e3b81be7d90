/**
 * The Kubernetes remotecommand protocols (exec and attach) over SPDY/3.1 and WebSocket.
 *
 * SPDY: the client opens one stream per standard stream, named by the `streamType` header
 * (error, stdin, stdout, stderr, resize). The session starts once all expected streams exist.
 * WebSocket: fixed channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds the close
 * signal `[255, channel]` (the client half-closes stdin with `[255, 0]`).
 * v4 and later report the outcome on the error stream as a JSON meta/v1 Status; earlier versions
 * write only a failure's message as text.
 */
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../util/log.ts';
import { errorCode } from '../errors.ts';
import { SpdySession, type SpdyStream } from './spdy-session.ts';
import { ChannelReader, ChannelWriter, ResizeQueue, decodeChannelMessage, encodeChannelMessage, type ChannelCodec } from './channels.ts';
import type { WebSocketConnection } from './websocket.ts';
import type { AttachRequest, ExecRequest, StreamIO, StreamRuntime } from './types.ts';

/** SPDY remotecommand protocols, most preferred first. */
export const SPDY_COMMAND_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'] as const;

/** WebSocket remotecommand subprotocols ('' = the client named none). */
export const WS_COMMAND_PROTOCOLS: Record<string, { codec: ChannelCodec; jsonStatus: boolean; closeSignal: boolean }> = {
  'v5.channel.k8s.io': { codec: 'binary', jsonStatus: true, closeSignal: true },
  'v4.channel.k8s.io': { codec: 'binary', jsonStatus: true, closeSignal: false },
  'v4.base64.channel.k8s.io': { codec: 'base64', jsonStatus: true, closeSignal: false },
  'channel.k8s.io': { codec: 'binary', jsonStatus: false, closeSignal: false },
  'base64.channel.k8s.io': { codec: 'base64', jsonStatus: false, closeSignal: false },
  '': { codec: 'binary', jsonStatus: false, closeSignal: false },
};

const KNOWN_STREAM_TYPES = new Set(['error', 'stdin', 'stdout', 'stderr', 'resize']);

export const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4, close: 255 } as const;

/** A meta/v1 Status as remotecommand v4 puts it on the error stream. */
export interface Status {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes: Array<{ reason?: string; message: string }> };
  code?: number;
}

export function successStatus(): Status {
  return { metadata: {}, status: 'Success' };
}

export function exitCodeStatus(code: number): Status {
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: exit status ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

export function errorStatus(err: unknown): Status {
  const message = err instanceof Error ? err.message : String(err);
  const notFound = errorCode(err) === 'NotFound';
  return {
    metadata: {},
    status: 'Failure',
    message: notFound ? message : `Internal error occurred: ${message}`,
    reason: notFound ? 'NotFound' : 'InternalError',
    details: { causes: [{ message }] },
    code: notFound ? 404 : 500,
  };
}

export type CommandTarget =
  | { kind: 'exec'; req: ExecRequest }
  | { kind: 'attach'; req: AttachRequest };

/** What a transport hands to the shared runner once its streams are set up. */
interface CommandStreams {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  resize?: ResizeQueue;
  /** Writes the outcome to the error stream and ends it. */
  writeStatus(status: Status): Promise<void>;
  close(): void;
  onClose(fn: () => void): void;
}

export interface CommandDeps {
  runtime: StreamRuntime;
  logger: Logger;
  streamCreationTimeoutMs: number;
}

async function finish(w: Writable | undefined): Promise<void> {
  if (!w || w.writableFinished || w.destroyed) return;
  await new Promise<void>((resolve) => {
    w.once('finish', resolve);
    w.once('close', resolve);
    w.once('error', () => resolve());
    w.end();
  });
}

async function runCommand(target: CommandTarget, s: CommandStreams, deps: CommandDeps): Promise<void> {
  const ac = new AbortController();
  s.onClose(() => ac.abort());
  const io: StreamIO = { tty: target.req.tty };
  if (s.stdin) io.stdin = s.stdin;
  if (s.stdout) io.stdout = s.stdout;
  if (s.stderr) io.stderr = s.stderr;
  if (s.resize && target.req.tty) io.resize = s.resize;
  let status: Status;
  try {
    if (target.kind === 'exec') {
      const code = await deps.runtime.exec(target.req.containerId, target.req.cmd, io, ac.signal);
      status = code === 0 ? successStatus() : exitCodeStatus(code);
    } else {
      await deps.runtime.attach(target.req.containerId, io, ac.signal);
      status = successStatus();
    }
  } catch (e) {
    if (ac.signal.aborted) { deps.logger.debug('client went away', { container: target.req.containerId }); s.close(); return; }
    deps.logger.warn(`${target.kind} failed`, { container: target.req.containerId, err: (e as Error).message });
    status = errorStatus(e);
  }
  s.resize?.end();
  await Promise.all([finish(s.stdout), finish(s.stderr)]);
  if (!ac.signal.aborted) await s.writeStatus(status);
  s.close();
}

/** Serves exec/attach on a connection already upgraded to SPDY with the negotiated `protocol`. */
export function serveSpdyCommand(socket: Socket, head: Buffer, protocol: string, target: CommandTarget, deps: CommandDeps): void {
  const { req } = target;
  const version = protocol === 'channel.k8s.io' ? 1 : Number(protocol[1]);
  const wanted = new Set<string>(['error']);
  if (req.stdin) wanted.add('stdin');
  if (req.stdout) wanted.add('stdout');
  if (req.stderr) wanted.add('stderr');
  if (req.tty && version >= 3) wanted.add('resize');
  const got = new Map<string, SpdyStream>();
  let started = false;
  const session: SpdySession = new SpdySession(socket, {
    logger: deps.logger,
    onStream: (stream) => {
      const type = stream.header('streamtype') ?? '';
      if (!KNOWN_STREAM_TYPES.has(type)) return `unexpected stream type ${JSON.stringify(type)}`;
      if (got.has(type)) return `duplicate ${type} stream`;
      if (!wanted.has(type)) {
        // Go clients open stdin/stderr whenever they have them, requested or not (and possibly
        // after the session started): accept such a stream, drain it, and close our side once
        // the SYN_REPLY is out.
        stream.resume();
        setImmediate(() => stream.end());
        return null;
      }
      got.set(type, stream);
      stream.on('error', () => { /* the session reports connection loss */ });
      if (got.size === wanted.size) { started = true; clearTimeout(timer); setImmediate(start); }
      return null;
    },
  });
  const timer = setTimeout(() => session.destroy(0, 'timed out waiting for the client to create streams'), deps.streamCreationTimeoutMs);
  timer.unref();
  session.onClose(() => clearTimeout(timer));

  const start = (): void => {
    const errorStream = got.get('error')!;
    const resizeStream = got.get('resize');
    let resize: ResizeQueue | undefined;
    if (resizeStream) {
      const q = new ResizeQueue();
      resize = q;
      resizeStream.on('data', (b: Buffer) => { if (!q.feed(b)) resizeStream.resume(); });
      resizeStream.on('end', () => q.end());
      resizeStream.on('close', () => q.end());
    }
    // The server never reads the error/stdout/stderr streams; drain them so a chatty client cannot stall the session.
    for (const t of ['error', 'stdout', 'stderr']) got.get(t)?.resume();
    const streams: CommandStreams = {
      writeStatus: async (status) => {
        const body = version >= 4 ? JSON.stringify(status) : status.status === 'Success' ? '' : (status.message ?? '');
        await new Promise<void>((resolve) => {
          if (body) errorStream.write(body);
          errorStream.end(() => resolve());
          errorStream.once('close', () => resolve());
        });
      },
      close: () => session.close(),
      onClose: (fn) => session.onClose(fn),
    };
    const stdin = got.get('stdin');
    const stdout = got.get('stdout');
    const stderr = got.get('stderr');
    if (stdin) streams.stdin = stdin;
    if (stdout) streams.stdout = stdout;
    if (stderr) streams.stderr = stderr;
    if (resize) streams.resize = resize;
    void runCommand(target, streams, deps).catch((e) => {
      deps.logger.error('remotecommand session failed', { err: (e as Error).message });
      session.destroy();
    });
  };
  session.feed(head);
}

/** Serves exec/attach on an accepted WebSocket with the negotiated subprotocol. */
export function serveWebSocketCommand(makeConn: (onMessage: (data: Buffer, binary: boolean) => boolean) => WebSocketConnection,
  protocol: string, target: CommandTarget, deps: CommandDeps): void {
  const p = WS_COMMAND_PROTOCOLS[protocol]!;
  const { req } = target;
  let stdin: ChannelReader | undefined;
  let resize: ResizeQueue | undefined;
  const conn = makeConn((msg) => {
    const m = decodeChannelMessage(p.codec, msg);
    if (!m) return true;
    if (p.closeSignal && m.channel === CHANNEL.close) {
      if (m.data[0] === CHANNEL.stdin) stdin?.push(null);
      if (m.data[0] === CHANNEL.resize) resize?.end();
      return true;
    }
    if (m.channel === CHANNEL.stdin && stdin && !stdin.readableEnded) return stdin.deliver(m.data);
    if (m.channel === CHANNEL.resize && resize) resize.feed(m.data);
    return true;
  });
  if (req.stdin) stdin = new ChannelReader(conn);
  if (req.tty) resize = new ResizeQueue();
  conn.onClose(() => { stdin?.push(null); resize?.end(); });
  const streams: CommandStreams = {
    writeStatus: async (status) => {
      const body = p.jsonStatus ? JSON.stringify(status) : status.status === 'Success' ? '' : (status.message ?? '');
      if (!body) return;
      const m = encodeChannelMessage(p.codec, CHANNEL.error, Buffer.from(body));
      if (!conn.send(m.data, m.binary)) await new Promise<void>((r) => conn.onDrain(r));
    },
    close: () => conn.close(),
    onClose: (fn) => conn.onClose(fn),
  };
  if (stdin) streams.stdin = stdin;
  if (req.stdout) streams.stdout = new ChannelWriter(conn, p.codec, CHANNEL.stdout);
  if (req.stderr) streams.stderr = new ChannelWriter(conn, p.codec, CHANNEL.stderr);
  if (resize) streams.resize = resize;
  // Tell the client the session is up: an empty message on the lowest writable channel.
  const first = req.stdout ? CHANNEL.stdout : req.stderr ? CHANNEL.stderr : CHANNEL.error;
  const hello = encodeChannelMessage(p.codec, first, Buffer.alloc(0));
  conn.send(hello.data, hello.binary);
  void runCommand(target, streams, deps).catch((e) => {
    deps.logger.error('remotecommand session failed', { err: (e as Error).message });
    conn.destroy();
  });
}
