// `bulkhead daemon`: runs the Bulkhead daemon in the foreground. Also `ensureDaemon`, which the
// other commands use to reach a daemon, starting one in the background when none answers.
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command, GlobalOptions } from './command.ts';
import { connect, type CriClient } from '../cri/client.ts';
import { socketAnswers } from '../util/socket.ts';
import type { ForegroundOptions } from '../daemon/run.ts';
import { UnavailableError } from '../errors.ts';
import { DAEMON_START_WAIT_MS } from '../daemon/limits.ts';

// Loaded when first needed, not at every call (src/cli/startup.test.ts): what starts or waits for a
// daemon (child_process, the run dir lock) and the daemon's own log writer are off the path of a
// command that finds its daemon answering.
async function lockHolder(path: string): Promise<number | undefined> {
  return (await import('../daemon/lock.ts')).lockHolder(path);
}

const command: Command = {
  name: 'daemon',
  synopsis: 'bulkhead daemon [--config FILE] [--root DIR] [--run-dir DIR] [--socket PATH] [--log-level LEVEL] [--log-file FILE]',
  summary: 'Run the Bulkhead CRI daemon in the foreground',
  flags: {
    config: { type: 'string' },
    root: { type: 'string' },
    'run-dir': { type: 'string' },
    socket: { type: 'string' },
    'log-level': { type: 'string' },
    'log-file': { type: 'string' },
  },
  async run(ctx) {
    const f = ctx.flags as Record<string, string | undefined>;
    const opts: ForegroundOptions = {
      root: f.root ?? ctx.global.root,
      runDir: f['run-dir'] ?? ctx.global.runDir,
      socket: f.socket ?? ctx.global.socket,
      config: f.config ?? ctx.global.config,
    };
    const level = f['log-level'] ?? (ctx.global.debug ? 'debug' : undefined);
    if (level !== undefined) opts.logLevel = level;
    if (f['log-file'] !== undefined) opts.logFile = f['log-file'];
    // loaded only here, dynamically: daemon/run.ts brings the whole daemon (engine, grpc-js,
    // protobuf.js, yaml, prom-client, ~470 modules, ~150 ms) that the commands which merely
    // connect (every `bulkhead run`) must not pay for; src/cli/startup.test.ts holds this
    const { runDaemonForeground } = await import('../daemon/run.ts');
    const { writeStderrLine } = await import('../util/log.ts');
    await runDaemonForeground(opts, { signal: ctx.signal, write: ctx.stderr === process.stderr ? writeStderrLine : (line) => { ctx.stderr.write(line + '\n'); } });
    return 0;
  },
};
export default command;

export interface EnsureDaemonResult {
  client: CriClient;
  /** Set when no daemon answered and this call started one in the background. */
  started: { pid: number; log: string } | null;
}

export interface EnsureDaemonOptions {
  /** How long a daemon this call starts may take to answer (default DAEMON_START_WAIT_MS: the daemon's own start-up limit and its process start). */
  timeoutMs?: number;
  /** How long to wait for a daemon that holds the run dir but does not answer yet (default DAEMON_START_WAIT_MS: it may be starting). */
  waitMs?: number;
  signal?: AbortSignal;
  /** One line for the user while waiting for another daemon (the CLI writes it to stderr). */
  onWait?: (line: string) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Where the daemon's gRPC server listens behind its public socket `socket` (src/cri/server.ts names it). */
export function directSocket(socket: string): string {
  return `${socket}.grpc`;
}

/** The log a daemon started by the CLI writes to. */
export function daemonLogPath(global: GlobalOptions): string {
  return join(global.root, 'daemon.log');
}

/**
 * Waits up to `ms` for the daemon `pid` (which holds the run dir lock) to answer on the socket.
 * Returns a client, or null when that daemon died meanwhile (the caller may start one).
 */
async function waitForHolder(global: GlobalOptions, pid: number, ms: number, opts: EnsureDaemonOptions): Promise<CriClient | null> {
  const lockPath = join(global.runDir, 'bulkhead.pid');
  opts.onWait?.(`bulkhead: waiting up to ${Math.round(ms / 1000)} s for the Bulkhead daemon (pid ${pid}) to finish starting on ${global.socket}`);
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    opts.signal?.throwIfAborted();
    if (await socketAnswers(global.socket, 500)) return await connect(global.socket);
    if ((await lockHolder(lockPath)) !== pid) return null;
    await sleep(100);
  }
  throw new UnavailableError(`the Bulkhead daemon (pid ${pid}) holds ${global.runDir} but did not answer on ${global.socket} within ${Math.round(ms / 1000)} s: see its log (${daemonLogPath(global)} when the CLI started it); stop it (kill ${pid}) and run the command again`);
}

/**
 * Connects to the daemon on `global.socket`. When nothing answers: a live daemon that holds the run
 * dir (one starting or restarting, e.g. after a crash) is waited for, up to `waitMs`; otherwise
 * `bulkhead daemon` is started detached in the background (output to `<root>/daemon.log`), and this
 * waits for its socket and connects. The caller prints "started a Bulkhead daemon in the background
 * (pid N, log ...)" when `started`.
 */
export async function ensureDaemon(global: GlobalOptions, opts: EnsureDaemonOptions = {}): Promise<EnsureDaemonResult> {
  // The gRPC server's own socket first: the public one is a relay that fixes `:authority` for older
  // Go clients (src/cri/server.ts, src/wire/authority-relay.ts), a hop this client does not need on
  // each call. Same directory, same mode (0600): nothing is reachable there that is not through the
  // public socket. Not there or not answering (an older daemon, no access): the public socket.
  try {
    return { client: await connect(directSocket(global.socket), { timeoutMs: 2000 }), started: null };
  } catch { /* the public socket */ }
  // one connection attempt; it fails at once when nothing listens on the socket
  try {
    return { client: await connect(global.socket, { timeoutMs: 2000 }), started: null };
  } catch (err) {
    if (!(err instanceof UnavailableError)) throw err;
  }
  // a daemon's start may take its whole start-up limit: giving up sooner (60 s, 10 s for one found
  // starting) left it coming up after the CLI had said it did not
  const waitMs = opts.waitMs ?? DAEMON_START_WAIT_MS;
  const lockPath = join(global.runDir, 'bulkhead.pid');
  // A daemon holds the run dir but does not listen (yet): it is starting or recovering. A zombie or
  // a reused pid does not count (lock.ts), so a daemon that was SIGKILLed is replaced at once.
  const holder = await lockHolder(lockPath);
  if (holder !== undefined) {
    const client = await waitForHolder(global, holder, waitMs, opts);
    if (client) return { client, started: null };
  }
  await mkdir(global.root, { recursive: true, mode: 0o700 });
  const log = daemonLogPath(global);
  const fh = await open(log, 'a', 0o600);
  // where this start's lines begin: a failure shows only them, not an older daemon's
  const offset = (await fh.stat()).size;
  const main = join(import.meta.dirname, 'main.ts');
  const args = [
    '--disable-warning=ExperimentalWarning', main,
    '--root', global.root, '--run-dir', global.runDir, '--socket', global.socket, '--config', global.config,
    ...(global.debug ? ['--debug'] : []), 'daemon', '--log-file', log,
  ];
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fh.fd, fh.fd], env: process.env });
  await fh.close();
  const pid = child.pid ?? 0;
  let exited: string | null = null;
  child.once('exit', (code, sig) => { exited = `exited with ${code ?? sig}`; });
  child.unref();
  const deadline = Date.now() + (opts.timeoutMs ?? DAEMON_START_WAIT_MS);
  while (Date.now() < deadline) {
    opts.signal?.throwIfAborted();
    if (await socketAnswers(global.socket, 500)) return { client: await connect(global.socket), started: { pid, log } };
    if (exited !== null) {
      // Another CLI (or a service manager) started a daemon at the same moment and took the lock:
      // use that one.
      const other = await lockHolder(lockPath);
      if (other !== undefined && other !== pid) {
        const client = await waitForHolder(global, other, waitMs, opts);
        if (client) return { client, started: null };
      }
      break;
    }
    await sleep(100);
  }
  const lines = (await readLogFrom(log, offset)).split('\n').filter((l) => l !== '');
  const tail = lines.slice(-15).join('\n');
  throw new UnavailableError(`started a Bulkhead daemon (pid ${pid}) but it ${exited ?? 'did not answer in time'} on ${global.socket}; log ${log}${tail ? ':\n' + tail : ' (nothing written)'}`);
}

/** The log's text from `offset` on (all of it when the file was rotated or truncated meanwhile). */
async function readLogFrom(path: string, offset: number): Promise<string> {
  const text = await readFile(path).catch(() => Buffer.alloc(0));
  return (text.length >= offset ? text.subarray(offset) : text).toString('utf8');
}
