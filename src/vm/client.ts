/**
 * A client of a pod's VM supervisor (vmd.ts): JSON requests, and the data frames of the
 * sessions this connection owns (stdout `O`, stderr `R`, exit `X`, started `B`, VM gone `V`).
 */
import { connect, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { DeadlineExceededError, fromWire, UnavailableError } from '../errors.ts';
import { encodeFrame, FrameDecoder, type Frame } from './protocol.ts';

export class VmdClient extends EventEmitter<{ frame: [Frame]; gone: [string] }> {
  readonly #sock: Socket;
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #goneReason: string | undefined;

  private constructor(sock: Socket) {
    super();
    this.#sock = sock;
    const dec = new FrameDecoder('vm supervisor');
    sock.on('data', (b: Buffer) => {
      let frames: Frame[];
      try { frames = dec.push(b); } catch (e) { this.#gone(`vm supervisor protocol violation: ${(e as Error).message}`); sock.destroy(); return; }
      for (const f of frames) {
        if (f.type === 'A' || f.type === 'F') {
          const w = this.#waiting.get(f.id);
          this.#waiting.delete(f.id);
          if (!w) continue;
          if (f.type === 'A') w.resolve(JSON.parse(f.payload.toString('utf8') || '{}'));
          else w.reject(failure(f.payload));
        } else if (f.type === 'V') {
          const v = JSON.parse(f.payload.toString('utf8')) as { reason: string };
          this.#gone(v.reason);
        } else {
          this.emit('frame', f);
        }
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => this.#gone('the VM supervisor went away (its process is gone)'));
  }

  /** Connects to a supervisor's socket; `timeoutMs` bounds the wait (a wedged supervisor may never accept). */
  static async connect(path: string, signal?: AbortSignal, timeoutMs = 30_000): Promise<VmdClient> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      const fail = (e: Error): void => { clearTimeout(t); s.destroy(); reject(e); };
      const t = setTimeout(() => fail(new DeadlineExceededError(`the pod VM supervisor did not accept a connection within ${timeoutMs} ms (${path})`)), timeoutMs);
      s.once('connect', () => { clearTimeout(t); s.removeAllListeners('error'); resolve(s); });
      s.once('error', (e: NodeJS.ErrnoException) => fail(new UnavailableError(`the pod VM is not running (${path}: ${e.code ?? e.message})`, { cause: e })));
      signal?.addEventListener('abort', () => fail(new UnavailableError(`connecting to ${path} was aborted`)), { once: true });
    });
    return new VmdClient(sock);
  }

  #gone(reason: string): void {
    if (this.#goneReason !== undefined) return;
    this.#goneReason = reason;
    for (const w of this.#waiting.values()) w.reject(new UnavailableError(`pod VM gone: ${reason}`, { reason: 'BH_VM_GONE' }));
    this.#waiting.clear();
    this.emit('gone', reason);
  }

  get goneReason(): string | undefined { return this.#goneReason; }

  /** One request; `timeoutMs` (optional) bounds the wait for the answer (DeadlineExceeded). */
  request<T = Record<string, unknown>>(op: string, args: Record<string, unknown> = {}, timeoutMs?: number): Promise<T> {
    if (this.#goneReason !== undefined) return Promise.reject(new UnavailableError(`pod VM gone: ${this.#goneReason}`, { reason: 'BH_VM_GONE' }));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const t = timeoutMs === undefined ? undefined : setTimeout(() => {
        this.#waiting.delete(id);
        reject(new DeadlineExceededError(`the pod VM supervisor did not answer "${op}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(id, {
        resolve: (v) => { clearTimeout(t); (resolve as (v: unknown) => void)(v); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
      this.#sock.write(encodeFrame('Q', id, JSON.stringify({ op, ...args })));
    });
  }

  send(type: 'I' | 'W', gid: number, payload: Buffer | string = Buffer.alloc(0)): void {
    if (!this.#sock.destroyed) this.#sock.write(encodeFrame(type, gid, payload));
  }

  close(): void { this.#sock.end(); }
}

/** An `F` frame: the supervisor sends {code, reason, message} (vmd.ts); anything else is Internal. */
function failure(payload: Buffer): Error {
  const text = payload.toString('utf8');
  let v: unknown;
  try { v = JSON.parse(text); } catch { v = undefined; }
  return fromWire(v, `the VM supervisor failed the request: ${text.slice(0, 500) || 'no reason given'}`);
}
