/**
 * The streaming server behind the CRI Exec, Attach and PortForward RPCs.
 *
 * Lifecycle of one stream:
 *   1. The CRI server calls `getExec` / `getAttach` / `getPortForward` with the validated request.
 *      The server stores it under a fresh single-use token (random, base64url) and answers a URL
 *      `http://<addr>/<exec|attach|portforward>/<token>`. Tokens expire (default 1 minute) and are
 *      bounded per container (exec/attach) or pod (port-forward), default 16, and in all, default
 *      1024; beyond either, get* throws ResourceExhausted (for that target only, in the first case)
 *      until tokens are used or expire.
 *   2. The client (kubelet's proxy, kubectl, crictl) connects to that URL and upgrades the HTTP
 *      connection, either to SPDY/3.1 (`Upgrade: SPDY/3.1`, remotecommand v1–v4 or
 *      `portforward.k8s.io`) or to a WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`, ...).
 *      The token is consumed by the first request that names it, whatever happens next.
 *   3. The server calls the engine through `StreamRuntime` with plain Node streams. The engine never
 *      sees a protocol; the server never sees a container.
 *   4. When the runtime's promise settles the server reports the result (exit code or error) to the
 *      client and closes the connection. When the client goes away first, the `signal` passed to the
 *      runtime aborts; the runtime must then stop the exec'd process / detach / close the port.
 *
 * Backpressure: every Writable handed to the runtime applies backpressure (write() returns false
 * when the client is not reading); a runtime must honour it (pipe() or wait for 'drain'), so that a
 * client that stops reading pauses the source instead of growing memory.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { InvalidArgumentError, UnavailableError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { TokenCache } from './token-cache.ts';
import type { AttachRequest, ExecRequest, PortForwardRequest, StreamRuntime } from './types.ts';

export type { AttachRequest, ExecRequest, PortForwardRequest, StreamIO, StreamRuntime, TerminalSize } from './types.ts';
import { SPDY_COMMAND_PROTOCOLS, WS_COMMAND_PROTOCOLS, serveSpdyCommand, serveWebSocketCommand, type CommandTarget } from './remotecommand.ts';
import { SPDY_PORTFORWARD_PROTOCOLS, WS_PORTFORWARD_PROTOCOLS, parsePort, serveSpdyPortForward, serveWebSocketPortForward } from './portforward.ts';
import { WebSocketAcceptor, WebSocketConnection } from './websocket.ts';

export interface StreamServerOptions {
  runtime: StreamRuntime;
  logger: Logger;
  /** Lifetime of an unused token; default 60 000 ms. */
  tokenTtlMs?: number;
  /** Bound on outstanding (unused, unexpired) tokens in all; default 1024 (beyond it get* throws ResourceExhausted). */
  maxTokens?: number;
  /** Bound on outstanding tokens per container (exec/attach) or pod (port-forward); default 16. */
  maxTokensPerTarget?: number;
  /** Time a client has to finish the upgrade and open its streams; default 30 000 ms. */
  streamCreationTimeoutMs?: number;
  /** A connection with no frames in either direction for this long is closed; default 4 h. */
  idleTimeoutMs?: number;
  /** Base URL for the answered URLs (e.g. behind a proxy); default http://<bound address>. */
  baseUrl?: string;
  /** Largest WebSocket message / SPDY frame accepted from a client; default 1 MiB. */
  maxMessageBytes?: number;
  /** Clock for token expiry (tests). */
  now?: () => number;
}

type Pending =
  | { kind: 'exec'; req: ExecRequest }
  | { kind: 'attach'; req: AttachRequest }
  | { kind: 'portforward'; req: PortForwardRequest };

function validateStdio(req: AttachRequest): void {
  if (!req.containerId) throw new InvalidArgumentError('missing required container_id');
  if (req.tty && req.stderr) throw new InvalidArgumentError('tty and stderr cannot both be true');
  if (!req.stdin && !req.stdout && !req.stderr) throw new InvalidArgumentError('one of stdin, stdout, or stderr must be set');
}

/** Splits comma-separated header values into a list, in order. */
function headerList(v: string | string[] | undefined): string[] {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return all.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x.length > 0);
}

function rawResponse(socket: Socket, status: string, body: string, headers: Record<string, string | string[]> = {}): void {
  const lines = [`HTTP/1.1 ${status}`, 'Content-Type: text/plain; charset=utf-8', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close'];
  for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${x}`);
  socket.end(lines.join('\r\n') + '\r\n\r\n' + body);
}

/**
 * The streaming HTTP server. `start()` listens (127.0.0.1 on an ephemeral port unless told
 * otherwise); `get*()` register a request and return its single-use URL; `close()` stops
 * listening and drops every connection (running sessions see their AbortSignal fire).
 */
export class StreamServer {
  readonly #runtime: StreamRuntime;
  readonly #log: Logger;
  readonly #tokens: TokenCache<Pending>;
  readonly #creationTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #webSockets: WebSocketAcceptor;
  readonly #sockets = new Set<Socket>();
  #baseUrl: string | undefined;
  #server: Server | null = null;

  constructor(opts: StreamServerOptions) {
    this.#runtime = opts.runtime;
    this.#log = opts.logger.child({ component: 'stream' });
    const tokenOpts: { ttlMs: number; max: number; maxPerKey: number; now?: () => number } = {
      ttlMs: opts.tokenTtlMs ?? 60_000, max: opts.maxTokens ?? 1024, maxPerKey: opts.maxTokensPerTarget ?? 16,
    };
    if (opts.now) tokenOpts.now = opts.now;
    this.#tokens = new TokenCache<Pending>(tokenOpts);
    this.#creationTimeoutMs = opts.streamCreationTimeoutMs ?? 30_000;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? 4 * 60 * 60 * 1000;
    this.#webSockets = new WebSocketAcceptor(opts.maxMessageBytes ?? 1024 * 1024);
    this.#baseUrl = opts.baseUrl?.replace(/\/+$/, '');
  }

  /** Listens and returns the bound address and the base URL used in answered URLs. */
  async start(listen: { address?: string; port?: number } = {}): Promise<{ address: string; port: number; baseUrl: string }> {
    if (this.#server) throw new InvalidArgumentError('stream server already started');
    const server = createServer({ headersTimeout: this.#creationTimeoutMs, requestTimeout: this.#creationTimeoutMs });
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onPlainRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      try {
        this.#onUpgrade(req, socket, head);
      } catch (e) {
        this.#log.error('stream upgrade failed', { err: (e as Error).message });
        if (!socket.destroyed) rawResponse(socket, '500 Internal Server Error', 'internal error\n');
      }
    });
    server.on('clientError', (_e, socket: Socket) => { if (!socket.destroyed) rawResponse(socket, '400 Bad Request', 'bad request\n'); });
    this.#server = server;
    const address = listen.address ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port ?? 0, address, () => { server.off('error', reject); resolve(); });
    });
    const a = server.address();
    if (a === null || typeof a === 'string') throw new UnavailableError('stream server has no TCP address');
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    this.#baseUrl ??= `http://${host}:${a.port}`;
    this.#log.info('stream server listening', { address: a.address, port: a.port });
    return { address: a.address, port: a.port, baseUrl: this.#baseUrl };
  }

  getExec(req: ExecRequest): { url: string } {
    validateStdio(req);
    if (req.cmd.length === 0) throw new InvalidArgumentError('cmd must not be empty');
    const token = this.#tokens.insert({ kind: 'exec', req: { ...req, cmd: [...req.cmd] } }, `c:${req.containerId}`, `container ${req.containerId}`);
    return { url: this.#url('exec', token) };
  }

  getAttach(req: AttachRequest): { url: string } {
    validateStdio(req);
    return { url: this.#url('attach', this.#tokens.insert({ kind: 'attach', req: { ...req } }, `c:${req.containerId}`, `container ${req.containerId}`)) };
  }

  getPortForward(req: PortForwardRequest): { url: string } {
    if (!req.podSandboxId) throw new InvalidArgumentError('missing required pod_sandbox_id');
    for (const p of req.port ?? []) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InvalidArgumentError(`invalid port ${p}`);
    }
    const copy: PortForwardRequest = { podSandboxId: req.podSandboxId };
    if (req.port) copy.port = [...req.port];
    return { url: this.#url('portforward', this.#tokens.insert({ kind: 'portforward', req: copy }, `p:${req.podSandboxId}`, `pod sandbox ${req.podSandboxId}`)) };
  }

  /** Stops listening, forgets all tokens and drops every connection. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    this.#tokens.clear();
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await closed;
  }

  #url(kind: string, token: string): string {
    if (this.#baseUrl === undefined) throw new UnavailableError('stream server is not started');
    return `${this.#baseUrl}/${kind}/${token}`;
  }

  #route(req: IncomingMessage): { pending: Pending; query: URLSearchParams } | null {
    const u = new URL(req.url ?? '/', 'http://x');
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]{1,64})$/.exec(u.pathname);
    if (!m || (req.method !== 'GET' && req.method !== 'POST')) return null;
    const pending = this.#tokens.consume(m[2]!);
    if (!pending || pending.kind !== m[1]) return null;
    return { pending, query: u.searchParams };
  }

  #onPlainRequest(req: IncomingMessage, res: ServerResponse): void {
    const r = this.#route(req);
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    if (!r) { res.writeHead(404).end('404 page not found\n'); return; }
    res.writeHead(400).end('a streaming request must upgrade the connection (SPDY/3.1 or websocket)\n');
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.setTimeout(this.#idleTimeoutMs, () => socket.destroy());
    const r = this.#route(req);
    if (!r) { rawResponse(socket, '404 Not Found', '404 page not found\n'); return; }
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') this.#acceptWebSocket(req, socket, head, r.pending, r.query);
    else if (headerList(upgrade).includes('spdy/3.1')) this.#acceptSpdy(req, socket, head, r.pending);
    else rawResponse(socket, '400 Bad Request', `unsupported upgrade ${JSON.stringify(upgrade)}\n`);
  }

  #acceptSpdy(req: IncomingMessage, socket: Socket, head: Buffer, pending: Pending): void {
    const supported: readonly string[] = pending.kind === 'portforward' ? SPDY_PORTFORWARD_PROTOCOLS : SPDY_COMMAND_PROTOCOLS;
    const offered = headerList(req.headers['x-stream-protocol-version']);
    if (offered.length === 0) { rawResponse(socket, '400 Bad Request', 'unable to upgrade: X-Stream-Protocol-Version is required\n'); return; }
    const protocol = offered.find((p) => supported.includes(p));
    if (!protocol) {
      rawResponse(socket, '403 Forbidden', `unable to upgrade: unable to negotiate protocol: client supports ${offered.join(', ')}, server accepts ${supported.join(', ')}\n`,
        { 'X-Accepted-Stream-Protocol-Versions': [...supported] });
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`);
    const deps = { runtime: this.#runtime, logger: this.#log, streamCreationTimeoutMs: this.#creationTimeoutMs };
    if (pending.kind === 'portforward') serveSpdyPortForward(socket, head, pending.req, deps);
    else serveSpdyCommand(socket, head, protocol, pending as CommandTarget, deps);
  }

  #acceptWebSocket(req: IncomingMessage, socket: Socket, head: Buffer, pending: Pending, query: URLSearchParams): void {
    const table: Record<string, unknown> = pending.kind === 'portforward' ? WS_PORTFORWARD_PROTOCOLS : WS_COMMAND_PROTOCOLS;
    const offered = headerList(req.headers['sec-websocket-protocol']);
    const protocol = offered.length === 0 ? '' : offered.find((p) => p !== '' && p in table);
    if (protocol === undefined) {
      rawResponse(socket, '403 Forbidden', `requested protocol(s) are not supported: ${offered.join(', ')}; supports ${Object.keys(table).filter(Boolean).join(', ')}\n`);
      return;
    }
    let ports: number[] = [];
    if (pending.kind === 'portforward') {
      const fromRequest = pending.req.port ?? [];
      const fromQuery = query.getAll('port').flatMap((v) => v.split(','));
      if (fromRequest.length > 0) ports = [...fromRequest];
      else {
        const parsed = fromQuery.map((v) => parsePort(v));
        if (parsed.length === 0 || parsed.some((p) => p === null)) {
          rawResponse(socket, '400 Bad Request', 'query parameter "port" is required and must name ports 1-65535\n');
          return;
        }
        ports = parsed as number[];
      }
    }
    // The handshake itself (key, version, 101 answer) is ws's; a malformed one gets its 400.
    this.#webSockets.accept(req, socket, head, protocol, (ws) => {
      socket.setTimeout(this.#idleTimeoutMs); // ws clears the socket's timeout; the idle bound stays
      const makeConn = (onMessage: (data: Buffer, binary: boolean) => boolean): WebSocketConnection =>
        new WebSocketConnection(ws, socket, { logger: this.#log, onMessage });
      const deps = { runtime: this.#runtime, logger: this.#log, streamCreationTimeoutMs: this.#creationTimeoutMs };
      if (pending.kind === 'portforward') serveWebSocketPortForward(makeConn, protocol, ports, pending.req, deps);
      else serveWebSocketCommand(makeConn, protocol, pending as CommandTarget, deps);
    });
  }
}
