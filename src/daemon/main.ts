/**
 * Entry point that runs only the daemon: `node src/daemon/main.ts --config F --root D --run-dir D
 * --socket S [--log-level L] [--log-file F]`. `bulkhead daemon` does the same through the CLI; this entry loads
 * nothing but the daemon (test fixtures and service managers use it).
 */
import { parseArgs } from 'node:util';
import { runDaemonForeground } from './run.ts';
import { writeStderrLine } from '../util/log.ts';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    root: { type: 'string' },
    'run-dir': { type: 'string' },
    socket: { type: 'string' },
    'log-level': { type: 'string' },
    'log-file': { type: 'string' },
  },
  strict: true,
});
const ac = new AbortController();
process.once('SIGTERM', () => ac.abort());
process.once('SIGINT', () => ac.abort());
runDaemonForeground({
  ...(values.config !== undefined ? { config: values.config } : {}),
  ...(values.root !== undefined ? { root: values.root } : {}),
  ...(values['run-dir'] !== undefined ? { runDir: values['run-dir'] } : {}),
  ...(values.socket !== undefined ? { socket: values.socket } : {}),
  ...(values['log-level'] !== undefined ? { logLevel: values['log-level'] } : {}),
  ...(values['log-file'] !== undefined ? { logFile: values['log-file'] } : {}),
}, { signal: ac.signal, write: writeStderrLine }).then(
  () => { process.exitCode = 0; },
  (err: unknown) => {
    try { writeStderrLine(`bulkhead daemon: ${err instanceof Error ? err.message : String(err)}`); } catch { /* the log's disk is full */ }
    process.exitCode = 1;
  },
);
