/**
 * A small structured logger: one line per event on stderr, `level=… msg=… key=value`.
 * Constructed by main() and passed down; no global instance. Never log credentials.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function fmt(v: unknown): string {
  const s = typeof v === 'string' ? v : v instanceof Error ? v.message : JSON.stringify(v);
  return /[\s="]/.test(s ?? '') ? JSON.stringify(s) : String(s);
}

export function createLogger(opts: { level?: LogLevel; write?: (line: string) => void; fields?: Record<string, unknown> } = {}): Logger {
  const min = order[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => { process.stderr.write(line + '\n'); });
  const base = opts.fields ?? {};
  const emit = (level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void => {
    if (order[level] < min) return;
    const all = { ...base, ...fields };
    const kv = Object.entries(all).map(([k, v]) => `${k}=${fmt(v)}`).join(' ');
    write(`time=${new Date().toISOString()} level=${level} msg=${fmt(msg)}${kv ? ' ' + kv : ''}`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger({ level: opts.level ?? 'info', write, fields: { ...base, ...f } }),
  };
}

/** A logger that drops everything, for tests that do not look at logs. */
export const silentLogger: Logger = createLogger({ write: () => {} });
