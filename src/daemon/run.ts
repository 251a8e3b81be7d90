/**
 * Runs the daemon in the foreground until `signal` aborts (SIGTERM/SIGINT in the callers), then
 * shuts it down; containers keep running under conmon. Shared by `bulkhead daemon` and
 * src/daemon/main.ts.
 */
import { defaultPaths, loadConfig, type Paths } from './config.ts';
import { InvalidArgumentError } from '../errors.ts';
import { createLogger, guardWrite, type LogLevel } from '../util/log.ts';
import { RotatingLogFile } from './log-file.ts';
import { startDaemon } from './daemon.ts';

export interface ForegroundOptions {
  config?: string;
  root?: string;
  runDir?: string;
  socket?: string;
  logLevel?: string;
  /** Log to this file (rotated at the config's log.max_bytes) instead of `io.write`. */
  logFile?: string;
}

export async function runDaemonForeground(opts: ForegroundOptions, io: { signal: AbortSignal; write: (line: string) => void }): Promise<void> {
  const env = defaultPaths(process.env);
  const paths: Paths = {
    root: opts.root ?? env.root,
    runDir: opts.runDir ?? env.runDir,
    socket: opts.socket ?? env.socket,
    config: opts.config ?? env.config,
  };
  const config = await loadConfig(paths);
  // Paths given explicitly (flag or environment) win over the file's; built-in defaults do not.
  const builtIn = defaultPaths({});
  for (const k of ['root', 'runDir', 'socket'] as const) if (paths[k] !== builtIn[k]) config[k] = paths[k];
  if (opts.socket === undefined && opts.runDir !== undefined && config.socket === builtIn.socket) config.socket = defaultPaths({ BULKHEAD_RUN_DIR: config.runDir }).socket;
  const level = opts.logLevel ?? config.logLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new InvalidArgumentError('log level must be debug, info, warn or error');
  // a full disk must not end the daemon through its log (see util/log.ts): lines are dropped and
  // counted, and a stray write to process.stderr/stdout that fails is ignored rather than fatal
  for (const s of [process.stderr, process.stdout]) if (s.listenerCount('error') === 0) s.on('error', () => {});
  // with a log file (the CLI's auto-start), lines go there, rotated at [log] max_bytes
  const logFile = opts.logFile ?? config.log.file;
  const file = logFile ? RotatingLogFile.open({ path: logFile, maxBytes: config.log.maxBytes, keep: config.log.keep }) : undefined;
  const write = guardWrite(file ? (line: string): void => file.write(line) : io.write);
  try {
    const logger = createLogger({ level: level as LogLevel, write });
    const daemon = await startDaemon(config, logger);
    write(`bulkhead daemon: serving CRI on ${daemon.socket} (pid ${process.pid})`);
    if (!io.signal.aborted) await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve(), { once: true }));
    logger.info('shutting down (containers keep running under conmon)');
    await daemon.close();
  } finally {
    file?.close();
  }
}
