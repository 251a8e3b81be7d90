// Unix-socket probe shared by the server (stale socket check) and the client (is a daemon there?).
import { connect } from 'node:net';

/** True when something accepts connections on the unix socket at `path` within `timeoutMs`. */
export async function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const s = connect(path);
    const done = (ok: boolean): void => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
