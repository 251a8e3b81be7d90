// A StreamRuntime for tests that runs REAL host processes (no container): exec spawns the command
// with pipes, attach spawns `cat` (so stdin comes back on stdout), and port forwarding connects to
// 127.0.0.1:<port>. It records what the server handed it, for assertions.
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { NotFoundError } from '../../src/errors.ts';
import type { StreamIO, StreamRuntime, TerminalSize } from '../../src/stream/stream-server.ts';

export class ProcessRuntime implements StreamRuntime {
  /** Bytes read from exec'd processes' stdout, across all sessions. */
  stdoutBytes = 0;
  readonly resizes: TerminalSize[] = [];
  readonly calls: Array<{ kind: string; id: string; tty: boolean; has: string[] }> = [];
  readonly aborted: string[] = [];

  async exec(containerId: string, cmd: string[], io: StreamIO, signal: AbortSignal): Promise<number> {
    return await this.#run(containerId, cmd, io, signal);
  }

  async attach(containerId: string, io: StreamIO, signal: AbortSignal): Promise<void> {
    await this.#run(containerId, ['cat'], io, signal);
  }

  async #run(containerId: string, cmd: string[], io: StreamIO, signal: AbortSignal): Promise<number> {
    this.calls.push({ kind: 'run', id: containerId, tty: io.tty, has: (['stdin', 'stdout', 'stderr', 'resize'] as const).filter((k) => io[k] !== undefined) });
    if (containerId === 'missing') throw new NotFoundError(`container ${containerId} not found`);
    if (io.resize) void (async () => { for await (const s of io.resize!) this.resizes.push(s); })();
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const onAbort = (): void => { this.aborted.push(containerId); child.kill('SIGKILL'); };
    signal.addEventListener('abort', onAbort, { once: true });
    child.stdin.on('error', () => { /* the process may exit before reading */ });
    if (io.stdin) io.stdin.pipe(child.stdin);
    else child.stdin.end();
    child.stdout.on('data', (b: Buffer) => { this.stdoutBytes += b.length; });
    const outDone = pipeInto(child.stdout, io.stdout);
    const errDone = pipeInto(child.stderr, io.tty ? io.stdout : io.stderr);
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, sig) => resolve(c ?? 128 + (sig === 'SIGKILL' ? 9 : 15)));
    });
    await Promise.all([outDone, errDone]);
    signal.removeEventListener('abort', onAbort);
    io.stdin?.unpipe(child.stdin);
    return code;
  }

  async portForward(_pod: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const sock = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    const onAbort = (): void => { sock.destroy(); };
    signal.addEventListener('abort', onAbort, { once: true });
    await new Promise<void>((resolve) => {
      let open = 2;
      const one = (): void => { if (--open === 0) resolve(); };
      conn.pipe(sock).on('finish', one);
      sock.pipe(conn).on('finish', one);
      sock.once('close', () => { if (open > 0) { open = 0; resolve(); } });
      conn.once('close', () => { sock.destroy(); });
    });
    signal.removeEventListener('abort', onAbort);
  }
}

/** Pipes a child's output into the session's writable without ending it; resolves at EOF. */
function pipeInto(src: NodeJS.ReadableStream, dst: NodeJS.WritableStream | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!dst) { src.resume(); src.once('end', () => resolve()); return; }
    src.pipe(dst, { end: false });
    src.once('end', () => resolve());
    (dst as unknown as { once: (e: string, f: () => void) => void }).once('close', () => resolve());
  });
}

/** A TCP echo server on 127.0.0.1 (a free port): the far end for port-forward tests. */
export async function startEchoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((c) => c.pipe(c));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
