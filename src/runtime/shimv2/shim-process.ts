/**
 * Starting a containerd shim v2 and the FIFOs it talks through, from the public shim protocol:
 *
 * - `<shim> -namespace <ns> -address <addr> -publish-binary <bin> -id <id> start`, run with the
 *   bundle (config.json + rootfs) as its working directory and `TTRPC_ADDRESS` in its
 *   environment, forks the long-lived shim and prints the address of its ttrpc socket
 *   (`unix:///…`, or a JSON bootstrap `{"address": …}` from newer shims) and exits. A shim may
 *   return the address of one already running (containerd-shim-runc-v2 groups a pod's containers
 *   under the shim of the `io.kubernetes.cri.sandbox-id` annotation).
 * - The shim writes its own log to the FIFO `log` in the bundle and fails to start without one:
 *   `startShim` makes it and drains it into `shim.log` (bounded) beside it.
 * - A task's stdio are FIFO paths handed in Create/Exec: `openFifo` makes one and opens it
 *   read-write, so neither side blocks on open and the shim may reopen it after a daemon restart.
 * - `<shim> … -bundle <dir> delete` cleans up a task when its shim is gone.
 *
 * Lifecycle: startShim returns once the shim is serving; the shim outlives the daemon (that is
 * the point: a restarted daemon reconnects to the address it persisted).
 */
import { constants, openSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { FailedPreconditionError, UnavailableError } from '../../errors.ts';
import { run, runChecked } from '../../util/exec.ts';

export interface ShimStartOptions {
  /** Absolute path of the shim binary. */
  binary: string;
  /** The task id (a container id; the sandbox's id for its own task). */
  id: string;
  namespace: string;
  /** The bundle directory (config.json, rootfs): the shim's working directory. */
  bundle: string;
  /** What the shim is told is containerd's address (a path under the daemon's state dir). */
  address: string;
  /** Where the shim would publish events over ttrpc (TTRPC_ADDRESS). */
  ttrpcAddress: string;
  /** The program the shim runs to publish events. */
  publishBinary: string;
  timeoutMs?: number;
}

/** The largest shim log kept per bundle; beyond it lines are dropped. */
export const SHIM_LOG_LIMIT = 1 << 20;

function shimArgs(o: ShimStartOptions): string[] {
  return ['-namespace', o.namespace, '-address', o.address, '-publish-binary', o.publishBinary, '-id', o.id];
}

/** The socket path in what `start` printed: `unix:///path`, a bare path, or a JSON bootstrap. */
export function parseShimAddress(out: string): string {
  let text = out.trim();
  if (text.startsWith('{')) {
    try {
      const j = JSON.parse(text) as { address?: unknown; protocol?: unknown };
      if (typeof j.address !== 'string') throw new Error('no address');
      if (j.protocol !== undefined && j.protocol !== 'ttrpc') throw new FailedPreconditionError(`the shim speaks ${String(j.protocol)}, only ttrpc is supported: use a shim v2 that serves ttrpc`);
      text = j.address;
    } catch (err) {
      if (err instanceof FailedPreconditionError) throw err;
      throw new FailedPreconditionError('the shim printed a bootstrap that is not JSON with an address: check the handler\'s shim binary');
    }
  }
  if (text.startsWith('unix://')) text = text.slice('unix://'.length);
  if (!text.startsWith('/') || text.includes('\n') || text.length > 4096) throw new FailedPreconditionError('the shim printed no unix socket address on start: check the handler\'s shim binary');
  return text;
}

/**
 * Makes a FIFO at `path` (unless one is there) and opens it read-write and non-blocking as a
 * socket-like stream (libuv polls it; no thread-pool thread waits on it). `unref` it to let the
 * process exit while it is open.
 */
export async function openFifo(path: string, side: 'read' | 'write' = 'read'): Promise<Socket> {
  const st = await stat(path).catch(() => null);
  if (!st) await runChecked('mkfifo', ['-m', '0600', path], { timeoutMs: 10_000 });
  else if (!st.isFIFO()) throw new FailedPreconditionError(`${path} exists and is not a FIFO: remove it`);
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  return new Socket({ fd, readable: side === 'read', writable: side === 'write' });
}

/** Drains the bundle's `log` FIFO into `shim.log`, keeping at most SHIM_LOG_LIMIT bytes. */
async function drainShimLog(bundle: string): Promise<void> {
  const fifo = await openFifo(join(bundle, 'log'));
  const out = await open(join(bundle, 'shim.log'), 'a', 0o600);
  let written = (await out.stat()).size;
  fifo.on('data', (chunk: Buffer) => {
    if (written >= SHIM_LOG_LIMIT) return;
    const part = chunk.subarray(0, SHIM_LOG_LIMIT - written);
    written += part.length;
    void out.write(part).catch(() => {});
  });
  fifo.on('close', () => { void out.close().catch(() => {}); });
  fifo.on('error', () => {});
  fifo.unref(); // the daemon must be able to exit while a shim runs
}

/** Starts the shim (or finds the one serving this task's group) and returns its socket path. */
export async function startShim(o: ShimStartOptions): Promise<string> {
  await drainShimLog(o.bundle);
  const res = await run(o.binary, [...shimArgs(o), 'start'], {
    cwd: o.bundle, timeoutMs: o.timeoutMs ?? 30_000,
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', TTRPC_ADDRESS: o.ttrpcAddress, GOMAXPROCS: '2' },
  });
  if (res.code !== 0) {
    const why = res.stderr.trim().split('\n').pop()?.slice(0, 300) ?? '';
    throw new UnavailableError(`shim ${o.binary} did not start for ${o.id} (exit ${res.code}): ${why}; see ${join(o.bundle, 'shim.log')}`);
  }
  return parseShimAddress(res.stdout);
}

/** `<shim> … -bundle <dir> delete`: the shim's cleanup of a task whose shim is gone. Best effort. */
export async function shimDelete(o: ShimStartOptions): Promise<void> {
  await run(o.binary, [...shimArgs(o), '-bundle', o.bundle, 'delete'], {
    cwd: o.bundle, timeoutMs: o.timeoutMs ?? 30_000,
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', TTRPC_ADDRESS: o.ttrpcAddress },
  }).catch(() => undefined);
}
