/**
 * The streaming server behind the CRI Exec, Attach and PortForward RPCs.
 *
 * Lifecycle of one stream:
 *   1. The CRI server calls `getExec` / `getAttach` / `getPortForward` with the validated request.
 *      The server stores it under a fresh single-use token (random, base64url) and answers a URL
 *      `http://<addr>/<exec|attach|portforward>/<token>`. Tokens expire (default 1 minute) and the
 *      cache is bounded; when full, the oldest token is dropped.
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
import type { Duplex, Readable, Writable } from 'node:stream';

/** Size of a terminal, in character cells. */
export interface TerminalSize {
  width: number;
  height: number;
}

/** The standard streams of one exec or attach session, as the client asked for them. */
export interface StreamIO {
  /**
   * Bytes the client sends. Present only when the request asked for stdin. Ends when the client
   * half-closes stdin (SPDY FIN, v5 close-channel, or the connection going away).
   */
  stdin?: Readable;
  /** Present only when the request asked for stdout. The server ends it after the runtime returns. */
  stdout?: Writable;
  /** Present only when the request asked for stderr (never with a tty: a tty merges both). */
  stderr?: Writable;
  /** Whether the process runs on a terminal (the runtime provides the pty). */
  tty: boolean;
  /**
   * Terminal size changes from the client, only with `tty`. The iterator finishes when the session
   * ends; a runtime that cannot resize may ignore it.
   */
  resize?: AsyncIterable<TerminalSize>;
}

/**
 * What the streaming server needs from the engine. Implemented by engine/; every method resolves
 * when the session is over and rejects with a BulkheadError (NotFound for an unknown container,
 * FailedPrecondition for one that is not running, ...), whose message is reported to the client.
 */
export interface StreamRuntime {
  /** Runs `cmd` in a running container; resolves with its exit code (128+n when killed by signal n). */
  exec(containerId: string, cmd: string[], io: StreamIO, signal: AbortSignal): Promise<number>;
  /** Attaches to the main process of a running container until `signal` aborts or the process exits. */
  attach(containerId: string, io: StreamIO, signal: AbortSignal): Promise<void>;
  /**
   * Connects `conn` to `port` on 127.0.0.1 inside the pod's network namespace and copies bytes both
   * ways until either side closes. `conn` ends (readable side) when the client closes its side; the
   * runtime ends `conn` when the pod side closes. Resolves when both directions are done.
   */
  portForward(podSandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void>;
}

/** CRI ExecRequest, already decoded. */
export interface ExecRequest {
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** CRI AttachRequest, already decoded. */
export interface AttachRequest {
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** CRI PortForwardRequest. `port` lists the ports a WebSocket client may forward when it names none. */
export interface PortForwardRequest {
  podSandboxId: string;
  port?: number[];
}

export interface StreamServerOptions {
  runtime: StreamRuntime;
  logger: import('../util/log.ts').Logger;
  /** Lifetime of an unused token; default 60 000 ms. */
  tokenTtlMs?: number;
  /** Bound on outstanding tokens; default 1000 (the oldest is dropped beyond it). */
  maxTokens?: number;
  /** Time a client has to finish the upgrade and open its streams; default 30 000 ms. */
  streamCreationTimeoutMs?: number;
  /** A connection with no frames in either direction for this long is closed; default 4 h. */
  idleTimeoutMs?: number;
  /** Base URL for the answered URLs (e.g. behind a proxy); default http://<bound address>. */
  baseUrl?: string;
}
