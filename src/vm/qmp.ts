/**
 * A minimal QMP client (QEMU's JSON control protocol over a unix socket): connect, negotiate
 * capabilities, run one command at a time. Events are skipped. Used for VM templates only (save a
 * template's state, feed a clone its state): the pod VMs' own control path is the agent channel.
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineExceededError, InternalError } from '../errors.ts';

/** A reply line bigger than this is a broken peer (QMP replies here are a few hundred bytes). */
const MAX_LINE = 1 << 20;

export class Qmp {
  readonly #sock: Socket;
  #buf = '';
  #waiters: ((v: Record<string, unknown> | Error) => void)[] = [];
  #closed: Error | undefined;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.#data(d));
    const end = (e?: Error): void => {
      this.#closed ??= e ?? new InternalError('QMP connection closed by QEMU');
      for (const w of this.#waiters.splice(0)) w(this.#closed);
    };
    sock.on('error', end);
    sock.on('close', () => end());
  }

  /** Connects to `path` (waiting up to `timeoutMs` for QEMU to create it) and negotiates capabilities. */
  static async connect(path: string, timeoutMs: number): Promise<Qmp> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const sock = await new Promise<Socket | undefined>((resolve) => {
        const s = connect(path);
        s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
        s.once('error', () => { s.destroy(); resolve(undefined); });
      });
      if (sock) {
        const q = new Qmp(sock);
        await q.#next(Math.max(1000, until - Date.now())); // greeting
        await q.cmd('qmp_capabilities', undefined, Math.max(1000, until - Date.now()));
        return q;
      }
      if (Date.now() > until) throw new DeadlineExceededError(`QEMU's control socket ${path} did not answer within ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  #data(d: string): void {
    this.#buf += d;
    if (this.#buf.length > MAX_LINE) { this.#sock.destroy(new InternalError('QMP protocol violation: oversized reply')); return; }
    for (let i = this.#buf.indexOf('\n'); i >= 0; i = this.#buf.indexOf('\n')) {
      const line = this.#buf.slice(0, i).trim();
      this.#buf = this.#buf.slice(i + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try { msg = JSON.parse(line) as Record<string, unknown>; } catch { this.#sock.destroy(new InternalError('QMP protocol violation: a reply is not JSON')); return; }
      if ('event' in msg) continue;
      this.#waiters.shift()?.(msg);
    }
  }

  #next(timeoutMs: number): Promise<Record<string, unknown>> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.#sock.destroy(); reject(new DeadlineExceededError(`QEMU did not answer on QMP within ${timeoutMs} ms`)); }, timeoutMs);
      this.#waiters.push((v) => { clearTimeout(t); if (v instanceof Error) reject(v); else resolve(v); });
    });
  }

  /** Runs a command; its `return` value, or an error with QEMU's description. */
  async cmd(execute: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
    const reply = this.#next(timeoutMs);
    this.#sock.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\n');
    const r = await reply;
    if ('error' in r) {
      const e = r.error as { desc?: string } | undefined;
      throw new InternalError(`QEMU refused ${execute}: ${e?.desc ?? 'unknown error'}`);
    }
    return r.return;
  }

  close(): void { this.#sock.destroy(); }
}
