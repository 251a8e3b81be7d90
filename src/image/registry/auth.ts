/**
 * Registry credentials and auth challenges: docker-style config.json (`auths` with base64 `auth`
 * or username/password), WWW-Authenticate parsing, and the rules for where credentials may go.
 * Never log what this file handles.
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../../errors.ts';

export interface Credentials {
  username: string;
  password: string;
}

/** Auth a caller passes with a pull (CRI AuthConfig shape, trimmed). */
export interface PullAuth {
  username?: string;
  password?: string;
  /** base64("user:password") */
  auth?: string;
  /** Bearer token to use directly. */
  registryToken?: string;
}

export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header (one challenge; the first when several). */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!)) !== null) {
    if (p[0] === '') break;
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme, params };
}

export function decodeAuth(auth: string, where: string): Credentials {
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError(`${where}: "auth" is not base64 of user:password`);
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}

export function credentialsFromPullAuth(a: PullAuth | undefined): Credentials | undefined {
  if (!a) return undefined;
  if (a.username !== undefined && a.username !== '') return { username: a.username, password: a.password ?? '' };
  if (a.auth) return decodeAuth(a.auth, 'pull auth');
  return undefined;
}

/** Key under which config.json stores a registry: bare host; docker.io has its legacy URL. */
function authKeys(host: string): string[] {
  if (host === 'docker.io' || host === 'registry-1.docker.io' || host === 'index.docker.io') {
    return ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];
  }
  return [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`, `https://${host}/v2/`];
}

/** Credentials per registry host from a docker-style config.json. */
export class AuthFile {
  private readonly entries: Map<string, Credentials>;
  private constructor(entries: Map<string, Credentials>) { this.entries = entries; }

  static empty(): AuthFile { return new AuthFile(new Map()); }

  static async load(path: string | undefined): Promise<AuthFile> {
    if (!path) return AuthFile.empty();
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return AuthFile.empty();
      throw err;
    }
    return AuthFile.parse(text, path);
  }

  static parse(text: string, where = 'auth file'): AuthFile {
    let doc: unknown;
    try { doc = JSON.parse(text); } catch { throw new InvalidArgumentError(`${where}: not valid JSON`); }
    const auths = (doc as { auths?: unknown }).auths;
    const entries = new Map<string, Credentials>();
    if (auths === undefined) return new AuthFile(entries);
    if (typeof auths !== 'object' || auths === null) throw new InvalidArgumentError(`${where}: "auths" must be an object`);
    for (const [key, v] of Object.entries(auths as Record<string, unknown>)) {
      if (typeof v !== 'object' || v === null) continue;
      const e = v as { auth?: unknown; username?: unknown; password?: unknown };
      if (typeof e.username === 'string' && e.username !== '') entries.set(key, { username: e.username, password: typeof e.password === 'string' ? e.password : '' });
      else if (typeof e.auth === 'string' && e.auth !== '') entries.set(key, decodeAuth(e.auth, `${where}: auths["${key}"]`));
    }
    return new AuthFile(entries);
  }

  /** Credentials stored for exactly this host (host[:port]); never a neighbour's. */
  lookup(host: string): Credentials | undefined {
    for (const k of authKeys(host)) {
      const c = this.entries.get(k);
      if (c) return c;
    }
    return undefined;
  }
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** May credentials for a registry reached at `registryHost` go to a token realm at `realm`? */
export function realmMayReceiveCredentials(registryHost: URL, realm: URL): boolean {
  if (realm.hostname === registryHost.hostname) return true;
  // Docker Hub's registry and its token service are different hosts by design.
  return registryHost.hostname === 'registry-1.docker.io' && realm.hostname === 'auth.docker.io';
}
