/**
 * Main-thread side of fs-ops.ts: an ordered queue of filesystem operations executed by a worker
 * thread, with backpressure, barriers and the first failure surfaced on the next call.
 *
 * Lifecycle: `FsWorkers` (one per image service; `close()` ends its threads) lends a worker to one
 * layer apply at a time via `acquire()`; the apply queues operations, `drain()`s before it reads
 * what it wrote, and `release(ok)`s it: a worker that failed or was interrupted is terminated
 * (awaited, so nothing more is written once apply returns), a clean one is kept for the next layer.
 */
import { Worker } from 'node:worker_threads';
import type { FsOp, WorkerReply } from './fs-ops.ts';

const BATCH_OPS = 256;
const BATCH_BYTES = 4 * 1024 * 1024;
/** Posted but not yet performed: bytes of file data plus a nominal 512 per operation. */
const MAX_PENDING = 64 * 1024 * 1024;

export class FsQueue {
  private readonly worker: Worker;
  private batch: FsOp[] = [];
  private transfer: ArrayBuffer[] = [];
  private batchWeight = 0;
  private seq = 0;
  private acked = 0;
  private pending = 0;
  private readonly weights = new Map<number, number>();
  private waiters: { seq: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  /** The first failure (a worker error names the syscall and path). */
  error: (Error & { code?: string }) | undefined;
  private readonly onMessage = (m: WorkerReply): void => {
    if (m.k === 'ack') {
      this.acked = m.seq;
      this.pending -= this.weights.get(m.seq) ?? 0;
      this.weights.delete(m.seq);
      this.wake();
    } else {
      this.fail(Object.assign(new Error(m.message), { code: m.code }));
    }
  };
  private readonly onError = (e: Error): void => this.fail(e);
  private readonly onExit = (code: number): void => this.fail(new Error(`unpack worker exited (code ${code})`));

  constructor(worker: Worker) {
    this.worker = worker;
    worker.on('message', this.onMessage);
    worker.on('error', this.onError);
    worker.on('exit', this.onExit);
  }

  private fail(e: Error): void {
    this.error ??= e;
    this.wake();
  }

  private wake(): void {
    const keep: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (this.error) w.reject(this.error);
      else if (this.acked >= w.seq) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
  }

  private waitFor(seq: number): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.acked >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  /** Queues `op`; `data` (owned, not a view of a shared buffer) is moved to the worker. */
  push(op: FsOp, data?: Uint8Array): void {
    if (this.error) throw this.error;
    this.batch.push(op);
    this.batchWeight += 512;
    if (data) { this.transfer.push(data.buffer as ArrayBuffer); this.batchWeight += data.length; }
    if (this.batch.length >= BATCH_OPS || this.batchWeight >= BATCH_BYTES) this.post();
  }

  private post(): void {
    if (this.batch.length === 0) return;
    const seq = ++this.seq;
    this.worker.postMessage({ seq, ops: this.batch }, this.transfer);
    this.weights.set(seq, this.batchWeight);
    this.pending += this.batchWeight;
    this.batch = [];
    this.transfer = [];
    this.batchWeight = 0;
  }

  /** Resolves when the worker has room (call between entries). */
  async room(): Promise<void> {
    if (this.error) throw this.error;
    while (this.pending > MAX_PENDING) await this.waitFor(this.acked + 1);
  }

  /** Resolves once every queued operation is done; rejects with the first failure. */
  async drain(): Promise<void> {
    this.post();
    await this.waitFor(this.seq);
  }

  detach(): Worker {
    this.worker.off('message', this.onMessage);
    this.worker.off('error', this.onError);
    this.worker.off('exit', this.onExit);
    return this.worker;
  }
}

export class FsWorkers {
  private idle: Worker | undefined;
  private closed = false;

  private spawn(): Worker {
    const w = new Worker(new URL('./fs-worker.ts', import.meta.url));
    w.unref();
    // While idle nobody else listens: a crash must not become an uncaught error.
    w.on('error', () => {});
    w.on('exit', () => { if (this.idle === w) this.idle = undefined; });
    return w;
  }

  /** Starts a worker ahead of need (its start-up costs a few hundred ms on a busy machine). */
  warm(): void {
    if (!this.idle && !this.closed) this.idle = this.spawn();
  }

  acquire(): FsQueue {
    const w = this.idle ?? this.spawn();
    this.idle = undefined;
    return new FsQueue(w);
  }

  async release(q: FsQueue, ok: boolean): Promise<void> {
    const w = q.detach();
    if (ok && !q.error && !this.idle && !this.closed) { this.idle = w; return; }
    await w.terminate();
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.idle;
    this.idle = undefined;
    await w?.terminate();
  }
}
