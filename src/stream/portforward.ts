/**
 * Port forwarding (`portforward.k8s.io`) over SPDY and WebSocket.
 *
 * SPDY: for every forwarded connection the client opens a pair of streams that share a
 * `requestID` header and name the `port`: `streamType: error` and `streamType: data`. Once both
 * exist the server connects the data stream to the port in the pod; on failure it writes a JSON
 * `{"closeConnection":…,"message":…}` on the error stream. The session carries any number of pairs
 * until the client closes it.
 * WebSocket: one forwarded connection per port listed in the request (or `?port=` query), on
 * channels 2i (data) and 2i+1 (error); the server first sends each port as a little-endian uint16
 * on both channels.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../util/log.ts';
import { SpdySession, type SpdyStream } from './spdy-session.ts';
import { ChannelDuplex, ChannelWriter, decodeChannelMessage, encodeChannelMessage, type ChannelCodec } from './channels.ts';
import type { WebSocketConnection } from './websocket.ts';
import type { PortForwardRequest, StreamRuntime } from './types.ts';

export const SPDY_PORTFORWARD_PROTOCOLS = ['portforward.k8s.io'] as const;
export const WS_PORTFORWARD_PROTOCOLS: Record<string, ChannelCodec> = {
  'v4.channel.k8s.io': 'binary',
  'v4.base64.channel.k8s.io': 'base64',
  '': 'binary',
};

export interface PortForwardDeps {
  runtime: StreamRuntime;
  logger: Logger;
  streamCreationTimeoutMs: number;
}

/** Parses a port header / query value: a decimal 1..65535. */
export function parsePort(s: string | undefined): number | null {
  if (s === undefined || !/^[0-9]{1,5}$/.test(s)) return null;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : null;
}

function allowed(req: PortForwardRequest, port: number): boolean {
  return !req.port || req.port.length === 0 || req.port.includes(port);
}

function errorBody(port: number, req: PortForwardRequest, err: unknown): string {
  const message = `error forwarding port ${port} to pod ${req.podSandboxId}: ${err instanceof Error ? err.message : String(err)}`;
  return JSON.stringify({ closeConnection: false, message }) + '\n';
}

interface Pair { data?: SpdyStream; error?: SpdyStream; port: number; timer: NodeJS.Timeout }

export function serveSpdyPortForward(socket: Socket, head: Buffer, req: PortForwardRequest, deps: PortForwardDeps): void {
  const pairs = new Map<string, Pair>();
  const ac = new AbortController();
  const run = (id: string, p: Pair): void => {
    pairs.delete(id);
    clearTimeout(p.timer);
    const data = p.data!;
    const error = p.error!;
    error.resume();
    data.on('error', () => { /* reported through the runtime's promise */ });
    deps.runtime.portForward(req.podSandboxId, p.port, data, ac.signal).then(
      () => { if (!data.writableEnded) data.end(); error.end(); },
      (e: unknown) => {
        deps.logger.warn('port forward failed', { pod: req.podSandboxId, port: p.port, err: (e as Error).message });
        if (!data.destroyed && !data.writableEnded) data.end();
        if (!error.destroyed) error.end(errorBody(p.port, req, e));
      },
    );
  };
  const session = new SpdySession(socket, {
    logger: deps.logger,
    onStream: (stream) => {
      const port = parsePort(stream.header('port'));
      if (port === null) return `bad or missing port header ${JSON.stringify(stream.header('port'))}`;
      if (!allowed(req, port)) return `port ${port} was not requested`;
      const type = stream.header('streamtype');
      if (type !== 'data' && type !== 'error') return `invalid stream type ${JSON.stringify(type)}`;
      const id = stream.header('requestid') ?? String(type === 'error' ? stream.id : stream.id - 2);
      let p = pairs.get(id);
      if (!p) {
        const timer = setTimeout(() => {
          pairs.delete(id);
          p!.error?.end(JSON.stringify({ closeConnection: false, message: `timed out waiting for the streams of request ${id}` }));
          p!.data?.destroy();
        }, deps.streamCreationTimeoutMs);
        timer.unref();
        p = { port, timer };
        pairs.set(id, p);
      }
      if (p[type]) return `${type} stream already assigned for request ${id}`;
      if (p.port !== port) return `request ${id} names two ports`;
      p[type] = stream;
      if (p.data && p.error) { const done = p; setImmediate(() => run(id, done)); }
      return null;
    },
  });
  session.onClose(() => {
    ac.abort();
    for (const p of pairs.values()) clearTimeout(p.timer);
    pairs.clear();
  });
  session.feed(head);
}

export function serveWebSocketPortForward(makeConn: (onMessage: (data: Buffer, binary: boolean) => boolean) => WebSocketConnection,
  protocol: string, ports: number[], req: PortForwardRequest, deps: PortForwardDeps): void {
  const codec = WS_PORTFORWARD_PROTOCOLS[protocol]!;
  const data: ChannelDuplex[] = [];
  const conn = makeConn((msg) => {
    const m = decodeChannelMessage(codec, msg);
    if (!m || m.channel % 2 !== 0) return true;
    const d = data[m.channel / 2];
    return d && !d.readableEnded ? d.deliver(m.data) : true;
  });
  const ac = new AbortController();
  conn.onClose(() => { ac.abort(); for (const d of data) d.push(null); });
  const jobs = ports.map(async (port, i) => {
    const d = new ChannelDuplex(conn, codec, 2 * i);
    data.push(d);
    const err = new ChannelWriter(conn, codec, 2 * i + 1);
    const portBytes = Buffer.alloc(2);
    portBytes.writeUInt16LE(port, 0);
    for (const ch of [2 * i, 2 * i + 1]) {
      const m = encodeChannelMessage(codec, ch, portBytes);
      conn.send(m.data, m.binary);
    }
    d.on('error', () => { /* reported through the runtime's promise */ });
    try {
      await deps.runtime.portForward(req.podSandboxId, port, d, ac.signal);
    } catch (e) {
      deps.logger.warn('port forward failed', { pod: req.podSandboxId, port, err: (e as Error).message });
      if (!ac.signal.aborted) err.write(errorBody(port, req, e));
    }
  });
  void Promise.all(jobs).then(() => conn.close());
}
