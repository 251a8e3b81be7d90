// `bulkhead daemon`: runs the Bulkhead daemon in the foreground. Also `ensureDaemon`, which the
// other commands use to reach a daemon, starting one in the background when none answers.
import { spawn } from 'node:child_process';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command, GlobalOptions } from './command.ts';
import { connect, type CriClient } from '../cri/client.ts';
import { socketAnswers } from '../cri/socket.ts';
import type { ForegroundOptions } from '../daemon/run.ts';
import { UnavailableError } from '../errors.ts';
import { writeStderrLine } from '../util/log.ts';

const command: Command = {
  name: 'daemon',
  synopsis: 'bulkhead daemon [--config FILE] [--root DIR] [--run-dir DIR] [--socket PATH] [--log-level LEVEL]',
  summary: 'Run the Bulkhead CRI daemon in the foreground',
  flags: {
    config: { type: 'string' },
    root: { type: 'string' },
    'run-dir': { type: 'string' },
    socket: { type: 'string' },
    'log-level': { type: 'string' },
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
    // loaded only here: the config loader and logger are not needed by the commands that merely connect
    const { runDaemonForeground } = await import('../daemon/run.ts');
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

/**
 * Connects to the daemon on `global.socket`; when nothing answers, starts `bulkhead daemon` detached
 * in the background (output to `<root>/daemon.log`), waits for its socket and connects.
 * The caller prints "started a Bulkhead daemon in the background (pid N, log ...)" when `started`.
 */
export async function ensureDaemon(global: GlobalOptions, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<EnsureDaemonResult> {
  // one connection attempt; it fails at once when nothing listens on the socket
  try {
    return { client: await connect(global.socket, { timeoutMs: 2000 }), started: null };
  } catch (err) {
    if (!(err instanceof UnavailableError)) throw err;
  }
  await mkdir(global.root, { recursive: true, mode: 0o700 });
  const log = join(global.root, 'daemon.log');
  const fh = await open(log, 'a', 0o600);
  const main = join(import.meta.dirname, 'main.ts');
  const args = [
    '--disable-warning=ExperimentalWarning', main,
    '--root', global.root, '--run-dir', global.runDir, '--socket', global.socket, '--config', global.config,
    ...(global.debug ? ['--debug'] : []), 'daemon',
  ];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fh.fd, fh.fd], env: process.env });
  await fh.close();
  const pid = child.pid ?? 0;
  let exited: string | null = null;
  child.once('exit', (code, sig) => { exited = `exited with ${code ?? sig}`; });
  child.unref();
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    opts.signal?.throwIfAborted();
    if (await socketAnswers(global.socket, 500)) return { client: await connect(global.socket), started: { pid, log } };
    if (exited !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = (await readFile(log, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
  throw new UnavailableError(`started a Bulkhead daemon (pid ${pid}) but it ${exited ?? 'did not answer in time'} on ${global.socket}; log ${log}:\n${tail}`);
}
