// Unix-socket probe shared by the CRI server (stale socket check), the CLI (is a daemon there?) and
// the shim backend (is a dead shim's socket file stale?).
import { connect } from 'node:net';

/**
 * What a connect to the unix socket at `path` meets within `timeoutMs`: 'answers' (accepted),
 * 'refused' (ECONNREFUSED: a socket file nothing listens on), or 'other' (no file, not a socket,
 * a timeout, ...).
 */
export async function probeSocket(path: string, timeoutMs = 1000): Promise<'answers' | 'refused' | 'other'> {
  return await new Promise((resolve) => {
    const s = connect(path);
    const done = (r: 'answers' | 'refused' | 'other'): void => { clearTimeout(t); s.destroy(); resolve(r); };
    const t = setTimeout(() => done('other'), timeoutMs);
    s.once('connect', () => done('answers'));
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'other'));
  });
}

/** True when something accepts connections on the unix socket at `path` within `timeoutMs`. */
export async function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return (await probeSocket(path, timeoutMs)) === 'answers';
}
