/**
 * Reads container logs in the CRI log format that conmon writes
 * (`<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`), as crictl and the kubelet do: the log file
 * path comes from ContainerStatus, the file itself is read directly. Partial lines (P) are joined until the
 * full-line tag (F). Supports tail, since, timestamps and follow (the file is polled; a rotated file —
 * a new inode at the same path — is reopened from its start).
 */
import { open, stat, type FileHandle } from 'node:fs/promises';

export interface LogLine {
  time: string;
  stream: 'stdout' | 'stderr';
  /** Content including the trailing newline for full lines. */
  content: string;
}

export function parseLogLine(line: string): { time: string; stream: 'stdout' | 'stderr'; partial: boolean; content: string } | undefined {
  const a = line.indexOf(' ');
  const b = line.indexOf(' ', a + 1);
  const c = line.indexOf(' ', b + 1);
  if (a < 0 || b < 0) return undefined;
  const stream = line.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = c < 0 ? line.slice(b + 1) : line.slice(b + 1, c);
  const content = c < 0 ? '' : line.slice(c + 1);
  const partial = tag.split(':').includes('P');
  return { time: line.slice(0, a), stream, partial, content };
}

export interface ReadLogsOptions {
  tail?: number;
  /** Only lines at or after this time. */
  since?: Date;
  follow?: boolean;
  /** While following: resolves true once the container has exited (then the rest of the file is read and reading stops). */
  exited?: () => Promise<boolean>;
  signal?: AbortSignal;
  pollMs?: number;
  /** While following: settles when the container is known to have exited; cuts the poll wait short. */
  wake?: Promise<unknown>;
}

const READ_MAX_BYTES = 4 * 1024 * 1024;

/** Yields joined log lines in file order. */
export async function* readLogs(path: string, opts: ReadLogsOptions = {}): AsyncGenerator<LogLine> {
  const pending: Record<'stdout' | 'stderr', { time: string; parts: string[] } | undefined> = { stdout: undefined, stderr: undefined };
  const sinceMs = opts.since?.getTime();
  const join = (raw: string): LogLine | undefined => {
    const p = parseLogLine(raw);
    if (!p) return undefined;
    const acc = pending[p.stream] ?? { time: p.time, parts: [] };
    acc.parts.push(p.content);
    if (p.partial) { pending[p.stream] = acc; return undefined; }
    pending[p.stream] = undefined;
    return { time: acc.time, stream: p.stream, content: acc.parts.join('') + '\n' };
  };
  const keep = (l: LogLine): boolean => sinceMs === undefined || Date.parse(l.time) >= sinceMs;
  // what is left of a line the workload never ended (its last output without a newline: conmon
  // wrote it P, and no F follows) is part of the output, as docker prints it: given as it is, at the end
  const unfinished = (): LogLine[] => {
    const out: LogLine[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      const acc = pending[stream];
      pending[stream] = undefined;
      if (acc) out.push({ time: acc.time, stream, content: acc.parts.join('') });
    }
    return out.filter(keep);
  };

  let fh: FileHandle | undefined;
  let ino = 0;
  let pos = 0;
  let carry = '';
  const reopen = async (): Promise<boolean> => {
    try {
      const nfh = await open(path, 'r');
      const st = await nfh.stat();
      await fh?.close();
      fh = nfh; ino = st.ino; pos = 0; carry = '';
      return true;
    } catch { return false; }
  };
  // at most READ_MAX_BYTES per read: a backlog of hundreds of MiB (a chatty workload's log, read
  // at once) made one string longer than V8 allows
  const readMore = async (): Promise<{ lines: string[]; more: boolean }> => {
    if (!fh) return { lines: [], more: false };
    const chunks: Buffer[] = [];
    let got = 0;
    let more = false;
    for (;;) {
      if (got >= READ_MAX_BYTES) { more = true; break; }
      const buf = Buffer.alloc(64 * 1024);
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      got += bytesRead;
      chunks.push(buf.subarray(0, bytesRead));
    }
    if (chunks.length === 0) return { lines: [], more: false };
    const text = carry + Buffer.concat(chunks).toString('utf8');
    const lines = text.split('\n');
    carry = lines.pop() ?? '';
    return { lines, more };
  };
  /** Every complete line written so far, READ_MAX_BYTES at a time. */
  const readAll = async function* (): AsyncGenerator<string> {
    for (;;) {
      const { lines, more } = await readMore();
      yield* lines;
      if (!more) return;
    }
  };

  try {
    if (!(await reopen()) && !opts.follow) return;
    // First pass: everything present now, honouring tail.
    const initial: LogLine[] = [];
    for await (const raw of readAll()) { const l = join(raw); if (l && keep(l)) initial.push(l); }
    if (!opts.follow) initial.push(...unfinished());
    const start = opts.tail !== undefined && opts.tail >= 0 ? Math.max(0, initial.length - opts.tail) : 0;
    for (const l of initial.slice(start)) yield l;
    if (!opts.follow) return;
    const pollMs = opts.pollMs ?? 100;
    for (;;) {
      if (opts.signal?.aborted) return;
      const done = opts.exited ? await opts.exited() : false;
      for await (const raw of readAll()) { const l = join(raw); if (l && keep(l)) yield l; }
      // Rotation: a new file at the path (ReopenContainerLog) — finish the old one, then switch.
      const st = await stat(path).catch(() => undefined);
      if (st && st.ino !== ino) {
        await reopen();
        continue;
      }
      if (done) {
        yield* unfinished();
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise((r) => { timer = setTimeout(r, pollMs); }), ...(opts.wake ? [opts.wake] : [])]);
      clearTimeout(timer);
    }
  } finally {
    await fh?.close();
  }
}
