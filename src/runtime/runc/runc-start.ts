/**
 * `runc start` of a created container, done in the daemon's process. runc 1.x leaves a created
 * container's init (`runc init`) blocked opening `<root>/<id>/exec.fifo` for writing; `runc start`
 * loads the state, finds the container created (the fifo is there, the init process alive), opens
 * the fifo for reading, reads it to its end (init writes one byte, then execs the workload, which
 * closes its end: close-on-exec) and removes the fifo. No data means init is gone or has already
 * been started. That is an open and a read behind a Go binary's start and the daemon's fork
 * (~10-15 ms of every container start on this host, on the path of every `bulkhead run`).
 *
 * Done here only when every fact runc would check is known: the state is the container's own, its
 * init process is alive (pid and start time, as runc compares them), the fifo is a fifo (not a
 * symlink), and no NOTIFY_SOCKET asks runc to relay the workload's readiness. Anything else, and a
 * fifo that gives no data, leaves the work to runc itself with the fifo still in place (runc then
 * starts the container or says why not, as before).
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, readSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { AbortedError, DeadlineExceededError } from '../../errors.ts';
import { liveStartTime } from '../../util/proc.ts';
import { ID_RE } from '../conmon/shared.ts';

/** A created container `runc start` would start (createdContainer). */
export interface CreatedContainer {
  id: string;
  fifo: string;
  pid: number;
  startTime: string;
}

/**
 * What `runc --root <root> start <id>` would start, or undefined when the case is not the one in
 * the file comment (runc is run then). Reads one small file and /proc; never follows a symlink.
 */
export function createdContainer(root: string, id: string, env: NodeJS.ProcessEnv = process.env): CreatedContainer | undefined {
  if (!ID_RE.test(id) || env.NOTIFY_SOCKET) return undefined;
  const dir = join(root, id);
  let st: unknown;
  try { st = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')); } catch { return undefined; }
  if (typeof st !== 'object' || st === null) return undefined;
  const s = st as { id?: unknown; init_process_pid?: unknown; init_process_start?: unknown };
  if (s.id !== id || typeof s.init_process_pid !== 'number' || (typeof s.init_process_start !== 'number' && typeof s.init_process_start !== 'string')) return undefined;
  const startTime = String(s.init_process_start);
  if (liveStartTime(s.init_process_pid) !== startTime) return undefined;
  const fifo = join(dir, 'exec.fifo');
  try { if (!lstatSync(fifo).isFIFO()) return undefined; } catch { return undefined; }
  return { id, fifo, pid: s.init_process_pid, startTime };
}

/** How long a fifo with no writer (init not yet at its open, or gone) is retried before runc decides. */
const NO_WRITER_MS = 1000;

/**
 * Starts what createdContainer found: true once the fifo gave init's byte and its end (the
 * workload exec'd) and is removed; false, with the fifo in place, when it gave no data (runc is
 * run then). Throws DeadlineExceededError after `timeoutMs`, AbortedError when `signal` aborts.
 */
export async function startCreatedContainer(c: CreatedContainer, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  // non-blocking: an open for reading returns at once (a blocking one would hold a libuv thread
  // until init opens its end, forever if init died); init's blocked open for writing returns now
  let fd: number;
  try { fd = openSync(c.fifo, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW); } catch { return false; }
  const deadline = Date.now() + timeoutMs;
  let got = 0;
  let noWriterSince: number | undefined;
  let delay = 1;
  try {
    if (!fstatSync(fd).isFIFO()) return false;
    const buf = Buffer.alloc(64);
    for (;;) {
      let n: number | undefined;
      try { n = readSync(fd, buf, 0, buf.length, null); } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return false;
      }
      if (n !== undefined && n > 0) { got += n; continue; }
      if (n === 0) {
        // end of file: every writer closed. After init's byte that is the workload's exec
        if (got > 0) break;
        // no writer yet: init is between telling runc create it is ready and opening its end
        noWriterSince ??= Date.now();
        if (Date.now() - noWriterSince > NO_WRITER_MS || liveStartTime(c.pid) !== c.startTime) return false;
      } else {
        noWriterSince = undefined;
      }
      if (signal?.aborted) throw new AbortedError(`start of container ${c.id} aborted`);
      if (Date.now() > deadline) throw new DeadlineExceededError(`container ${c.id} did not start within ${timeoutMs} ms (its init process did not finish reading the start signal)`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10);
    }
  } finally {
    closeSync(fd);
  }
  try { unlinkSync(c.fifo); } catch { /* already gone */ }
  return true;
}
