/** Worker thread entry for fs-ops.ts: runs batches of operations in order, acks each batch. */
import { parentPort } from 'node:worker_threads';
import { FsOpRunner, type FsOp, type WorkerReply } from './fs-ops.ts';

const port = parentPort!;
const runner = new FsOpRunner();
let failed = false;
port.on('message', (msg: { seq: number; ops: FsOp[] }) => {
  if (failed) return;
  try {
    for (const op of msg.ops) runner.run(op);
    port.postMessage({ k: 'ack', seq: msg.seq } satisfies WorkerReply);
  } catch (err) {
    failed = true;
    runner.close();
    const e = err as NodeJS.ErrnoException;
    port.postMessage({ k: 'error', seq: msg.seq, message: e.message, code: e.code } satisfies WorkerReply);
  }
});
