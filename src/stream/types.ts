/** What the streaming server asks of the engine (`StreamRuntime`) and the decoded CRI requests it serves. */
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

