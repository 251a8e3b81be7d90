/**
 * The CLI's side of exec / attach streaming: connects to the URL the Exec or Attach RPC returned with
 * the WebSocket channel protocol (`v5.channel.k8s.io`, falling back to `v4.channel.k8s.io`), as kubectl
 * does. Each binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (a v1
 * Status JSON carrying the exit code), 4 resize ({"Width","Height"}); v5 adds 255 = close a stream.
 */
export interface StreamSession {
  /** Exit code from the error channel: 0 on Success, N for NonZeroExitCode, 1 for other failures. */
  exitCode: number;
  /** Failure message from the error channel, if any. */
  message?: string;
}

export interface StreamClientOptions {
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: NodeJS.WritableStream & { columns?: number; rows?: number; isTTY?: boolean; on?: (ev: 'resize', fn: () => void) => unknown; off?: (ev: 'resize', fn: () => void) => unknown };
  stderr: NodeJS.WritableStream;
  tty: boolean;
  signal?: AbortSignal;
  /** Called once the connection is open (e.g. to start the container after attaching). */
  onOpen?: () => void;
}

/** Parses the error channel's Status JSON into an exit code. */
export function exitCodeFromStatus(text: string): { exitCode: number; message?: string } {
  if (text.trim() === '') return { exitCode: 0 };
  let st: { status?: string; message?: string; reason?: string; details?: { causes?: { reason?: string; message?: string }[] } };
  try { st = JSON.parse(text) as typeof st; } catch { return { exitCode: 1, message: text }; }
  if (st.status === 'Success') return { exitCode: 0 };
  const cause = st.details?.causes?.find((c) => c.reason === 'ExitCode');
  const n = cause?.message !== undefined ? Number.parseInt(cause.message, 10) : NaN;
  if (st.reason === 'NonZeroExitCode' && Number.isInteger(n)) return { exitCode: n };
  return { exitCode: 1, message: st.message ?? text };
}

export async function runStream(url: string, opts: StreamClientOptions): Promise<StreamSession> {
  const wsUrl = url.replace(/^http/, 'ws');
  const ws = new WebSocket(wsUrl, ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
  ws.binaryType = 'arraybuffer';
  let errorText = '';
  const stdin = opts.stdin;
  const rawTty = opts.tty && stdin?.isTTY && typeof stdin.setRawMode === 'function';
  const send = (channel: number, data: Uint8Array | string): void => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    const msg = Buffer.alloc(body.length + 1);
    msg[0] = channel;
    msg.set(body, 1);
    ws.send(msg);
  };
  const sendResize = (): void => {
    const cols = opts.stdout.columns;
    const rows = opts.stdout.rows;
    if (cols && rows) send(4, JSON.stringify({ Width: cols, Height: rows }));
  };

  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error(`cannot connect to the streaming server at ${url}`)), { once: true });
  });
  opts.onOpen?.();

  const onData = (chunk: Buffer | string): void => { send(0, typeof chunk === 'string' ? Buffer.from(chunk) : chunk); };
  const onEnd = (): void => {
    if (ws.protocol === 'v5.channel.k8s.io') send(255, Uint8Array.of(0));
  };
  if (stdin) {
    if (rawTty) stdin.setRawMode!(true);
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.resume?.();
  }
  const resizeHandler = (): void => sendResize();
  if (opts.tty) {
    sendResize();
    opts.stdout.on?.('resize', resizeHandler);
  }
  const onAbort = (): void => ws.close();
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    await new Promise<void>((resolve) => {
      ws.addEventListener('message', (ev: MessageEvent) => {
        const buf = Buffer.from(ev.data as ArrayBuffer);
        if (buf.length === 0) return;
        const ch = buf[0];
        const data = buf.subarray(1);
        if (ch === 1) opts.stdout.write(data);
        else if (ch === 2) opts.stderr.write(data);
        else if (ch === 3) errorText += data.toString('utf8');
      });
      ws.addEventListener('close', () => resolve(), { once: true });
    });
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    opts.stdout.off?.('resize', resizeHandler);
    if (stdin) {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      if (rawTty) stdin.setRawMode!(false);
      stdin.pause?.();
    }
  }
  const r = exitCodeFromStatus(errorText);
  return r.message !== undefined ? { exitCode: r.exitCode, message: r.message } : { exitCode: r.exitCode };
}
