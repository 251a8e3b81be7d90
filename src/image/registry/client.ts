/**
 * A client for the Distribution (OCI) registry API: manifests and blobs, with anonymous, basic
 * and bearer-token auth, mirrors tried before the host, plain HTTP only for loopback hosts or
 * hosts configured insecure, manual redirects (credentials stay with the registry's own origin),
 * a manifest size cap, timeouts, AbortSignal and retries for transient failures.
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RegistryConfig } from '../../daemon/config.ts';
import {
  AbortedError, BulkheadError, InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError, UnavailableError,
} from '../../errors.ts';
import type { Logger } from '../../util/log.ts';
import type { ImageReference } from '../reference.ts';
import { AuthFile, credentialsFromPullAuth, isLoopbackHost, parseChallenge, realmMayReceiveCredentials, type Credentials, type PullAuth } from './auth.ts';

export const MANIFEST_MAX = 4 * 1024 * 1024;

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

const ACCEPT = [MediaTypes.ociIndex, MediaTypes.ociManifest, MediaTypes.dockerList, MediaTypes.dockerManifest].join(', ');

export interface Endpoint {
  /** "https://host[:port]" or a mirror URL, no trailing slash, without "/v2". */
  base: string;
  /** True for the registry itself (pull credentials may go here); false for mirrors. */
  isOrigin: boolean;
}

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

export interface RegistryClientOptions {
  registries: RegistryConfig;
  logger: Logger;
  authFile?: AuthFile;
  /** Per-request timeout for headers/small bodies; default 30 s. */
  timeoutMs?: number;
  /** Attempts for transient failures; default 3. */
  attempts?: number;
}

interface Session {
  ref: ImageReference;
  auth: PullAuth | undefined;
  signal: AbortSignal | undefined;
}

/** Host part used on the wire for a reference's domain. */
export function registryHost(domain: string): string {
  return domain === 'docker.io' ? 'registry-1.docker.io' : domain;
}

function transient(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

export class RegistryClient {
  private readonly cfg: RegistryConfig;
  private readonly log: Logger;
  private readonly authFile: AuthFile;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  /** origin + scope → bearer token (never logged). */
  private readonly tokens = new Map<string, { value: string; expires: number }>();

  constructor(opts: RegistryClientOptions) {
    this.cfg = opts.registries;
    this.log = opts.logger;
    this.authFile = opts.authFile ?? AuthFile.empty();
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.attempts = opts.attempts ?? 3;
  }

  /** May this host be reached over plain HTTP? */
  plainHttpAllowed(host: string): boolean {
    const hostname = host.replace(/:\d+$/, '');
    return isLoopbackHost(hostname) || this.cfg.insecure.includes(host) || this.cfg.insecure.includes(hostname);
  }

  /** Mirrors first, then the registry itself. */
  endpoints(domain: string): Endpoint[] {
    const out: Endpoint[] = [];
    for (const m of this.cfg.mirrors[domain] ?? []) {
      let u: URL;
      try { u = new URL(m.includes('://') ? m : `https://${m}`); } catch { this.log.warn('ignoring invalid mirror URL', { registry: domain }); continue; }
      if (u.protocol === 'http:' && !this.plainHttpAllowed(u.host)) { this.log.warn('ignoring plain-HTTP mirror of a non-loopback, non-insecure host', { mirror: u.host }); continue; }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') continue;
      out.push({ base: (u.origin + u.pathname).replace(/\/+$/, '').replace(/\/v2$/, ''), isOrigin: false });
    }
    const host = registryHost(domain);
    out.push({ base: `${this.plainHttpAllowed(host) ? 'http' : 'https'}://${host}`, isOrigin: true });
    return out;
  }

  private credentialsFor(s: Session, ep: Endpoint): Credentials | undefined {
    const host = new URL(ep.base).host;
    if (ep.isOrigin) return credentialsFromPullAuth(s.auth) ?? this.authFile.lookup(s.ref.domain) ?? this.authFile.lookup(host);
    return this.authFile.lookup(host);
  }

  /** One HTTP exchange with auth and manual redirects. Returns the final response (any status). */
  private async exchange(s: Session, ep: Endpoint, path: string, headers: Record<string, string>, streaming: boolean): Promise<Response> {
    const origin = new URL(ep.base);
    const scope = `repository:${s.ref.path}:pull`;
    const tokenKey = `${origin.origin}|${scope}`;
    let authHeader: string | undefined = s.auth?.registryToken && ep.isOrigin ? `Bearer ${s.auth.registryToken}` : undefined;
    const cached = this.tokens.get(tokenKey);
    if (!authHeader && cached && cached.expires > Date.now()) authHeader = cached.value;
    for (let round = 0; round < 2; round++) {
      const res = await this.followRedirects(new URL(`${ep.base}/v2/${path}`), origin, headers, authHeader, s.signal, streaming);
      if (res.status !== 401 || round === 1) return res;
      const challenge = parseChallenge(res.headers.get('www-authenticate'));
      await res.body?.cancel().catch(() => {});
      if (!challenge) return res;
      const creds = this.credentialsFor(s, ep);
      if (challenge.scheme === 'basic') {
        if (!creds) throw new PermissionDeniedError(`registry ${origin.host} requires credentials for ${s.ref.path}`);
        authHeader = 'Basic ' + Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
      } else {
        const token = await this.fetchToken(s, origin, challenge.params, creds);
        authHeader = `Bearer ${token.value}`;
        this.tokens.set(tokenKey, { value: authHeader, expires: token.expires });
      }
    }
    throw new PermissionDeniedError(`registry ${origin.host} refused the credentials for ${s.ref.path}`);
  }

  private async followRedirects(url: URL, origin: URL, headers: Record<string, string>, authHeader: string | undefined, signal: AbortSignal | undefined, streaming: boolean): Promise<Response> {
    let current = url;
    for (let hop = 0; hop < 6; hop++) {
      const h: Record<string, string> = { ...headers, 'user-agent': 'bulkhead/0.1' };
      // Credentials only ever go to the registry's own origin (scheme, host and port).
      if (authHeader && current.origin === origin.origin) h.authorization = authHeader;
      // Streams run as long as data flows; only the headers are under the timeout.
      const ctl = new AbortController();
      const headerTimer = setTimeout(() => ctl.abort(new UnavailableError(`no answer from ${current.host} within ${this.timeoutMs} ms`)), this.timeoutMs);
      const onAbort = (): void => ctl.abort(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      let res: Response;
      try {
        res = await fetch(current, { headers: h, redirect: 'manual', signal: ctl.signal });
      } catch (err) {
        signal?.removeEventListener('abort', onAbort);
        if (signal?.aborted) throw new AbortedError('registry request aborted', { cause: err });
        throw new UnavailableError(`request to ${current.host} failed: ${(err as Error).message}`, { cause: err });
      } finally {
        clearTimeout(headerTimer);
      }
      if (!streaming) signal?.removeEventListener('abort', onAbort);
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        await res.body?.cancel().catch(() => {});
        signal?.removeEventListener('abort', onAbort);
        const next = new URL(res.headers.get('location')!, current);
        if (next.protocol === 'http:' && !this.plainHttpAllowed(next.host)) throw new PermissionDeniedError(`registry redirected to plain HTTP at ${next.host}, which is neither loopback nor configured insecure`);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new PermissionDeniedError(`registry redirected to unsupported scheme ${next.protocol}`);
        current = next;
        continue;
      }
      return res;
    }
    throw new UnavailableError(`too many redirects from ${url.host}`);
  }

  private async fetchToken(s: Session, origin: URL, params: Record<string, string>, creds: Credentials | undefined): Promise<{ value: string; expires: number }> {
    if (!params.realm) throw new UnavailableError(`registry ${origin.host} sent a bearer challenge without realm`);
    let realm: URL;
    try { realm = new URL(params.realm); } catch { throw new UnavailableError(`registry ${origin.host} sent an invalid token realm`); }
    if (realm.protocol === 'http:' && !this.plainHttpAllowed(realm.host)) throw new PermissionDeniedError(`token realm ${realm.host} is plain HTTP and neither loopback nor configured insecure`);
    if (realm.protocol !== 'http:' && realm.protocol !== 'https:') throw new PermissionDeniedError(`token realm has unsupported scheme ${realm.protocol}`);
    if (params.service) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', `repository:${s.ref.path}:pull`);
    const headers: Record<string, string> = { 'user-agent': 'bulkhead/0.1' };
    if (creds && realmMayReceiveCredentials(origin, realm)) {
      headers.authorization = 'Basic ' + Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
    } else if (creds) {
      this.log.warn('not sending registry credentials to a token realm on another host', { registry: origin.host, realm: realm.host });
    }
    const signals = [AbortSignal.timeout(this.timeoutMs)];
    if (s.signal) signals.push(s.signal);
    let res: Response;
    try {
      res = await fetch(realm, { headers, redirect: 'error', signal: AbortSignal.any(signals) });
    } catch (err) {
      if (s.signal?.aborted) throw new AbortedError('token request aborted', { cause: err });
      throw new UnavailableError(`token request to ${realm.host} failed: ${(err as Error).message}`, { cause: err });
    }
    const text = await readCapped(res, 1024 * 1024, 'token response');
    if (res.status === 401 || res.status === 403) throw new PermissionDeniedError(`token service ${realm.host} refused ${creds ? 'the credentials' : 'anonymous access'} for ${s.ref.path} (HTTP ${res.status})`);
    if (!res.ok) throw new UnavailableError(`token service ${realm.host} answered HTTP ${res.status}`);
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try { doc = JSON.parse(text.toString('utf8')) as typeof doc; } catch { throw new UnavailableError(`token service ${realm.host} sent invalid JSON`); }
    const value = typeof doc.token === 'string' ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : undefined;
    if (!value) throw new UnavailableError(`token service ${realm.host} sent no token`);
    const ttl = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60;
    return { value, expires: Date.now() + Math.max(ttl - 10, 5) * 1000 };
  }

  /** Runs `fn` per endpoint with retries; the first success wins. */
  private async withEndpoints<T>(s: Session, what: string, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    let lastErr: unknown;
    for (const ep of this.endpoints(s.ref.domain)) {
      for (let attempt = 0; attempt < this.attempts; attempt++) {
        if (s.signal?.aborted) throw new AbortedError(`${what} aborted`);
        try {
          return await fn(ep);
        } catch (err) {
          lastErr = err;
          const code = err instanceof BulkheadError ? err.code : 'Internal';
          if (code === 'Aborted' || code === 'InvalidArgument' || code === 'ResourceExhausted') throw err;
          if (code !== 'Unavailable') break; // NotFound / PermissionDenied: try the next endpoint
          this.log.debug('registry request failed; retrying', { what, endpoint: new URL(ep.base).host, attempt, err: (err as Error).message });
          await sleep(100 * 2 ** attempt, undefined, s.signal ? { signal: s.signal } : {}).catch(() => {});
        }
      }
      if (!ep.isOrigin) this.log.info('mirror could not serve; trying next endpoint', { what, mirror: new URL(ep.base).host });
    }
    throw lastErr instanceof Error ? lastErr : new UnavailableError(`${what} failed`);
  }

  /** Fetches a manifest or index by tag or digest (verifying the digest). */
  async getManifest(ref: ImageReference, reference: string, opts: { signal?: AbortSignal; auth?: PullAuth } = {}): Promise<FetchedManifest> {
    const s: Session = { ref, auth: opts.auth, signal: opts.signal };
    const what = `manifest ${ref.domain}/${ref.path}:${reference}`;
    return await this.withEndpoints(s, what, async (ep) => {
      const res = await this.exchange(s, ep, `${ref.path}/manifests/${reference}`, { accept: ACCEPT }, false);
      checkStatus(res, what, ep);
      const len = Number(res.headers.get('content-length') ?? '-1');
      if (len > MANIFEST_MAX) { await res.body?.cancel().catch(() => {}); throw new ResourceExhaustedError(`${what} is ${len} bytes, more than the ${MANIFEST_MAX} allowed`); }
      const bytes = await readCapped(res, MANIFEST_MAX, what);
      const { sha256Of } = await import('../digest.ts');
      const digest = sha256Of(bytes);
      if (reference.startsWith('sha256:') && digest !== reference) throw new InvalidArgumentError(`${what}: content digest mismatch (got ${digest})`);
      const header = res.headers.get('docker-content-digest');
      if (header && header.startsWith('sha256:') && header !== digest && ep.isOrigin) throw new InvalidArgumentError(`${what}: registry claims digest ${header} but the content hashes to ${digest}`);
      let mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
      try {
        const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
        if (typeof doc.mediaType === 'string' && doc.mediaType !== '') mediaType = doc.mediaType;
      } catch {
        throw new InvalidArgumentError(`${what}: not valid JSON`);
      }
      return { bytes, mediaType, digest };
    });
  }

  /** Opens a blob from `offset` (Range); `offset` in the answer is where the stream really starts. */
  async openBlob(ref: ImageReference, digest: string, offset: number, opts: { signal?: AbortSignal; auth?: PullAuth } = {}): Promise<{ stream: Readable; offset: number; size: number }> {
    const s: Session = { ref, auth: opts.auth, signal: opts.signal };
    const what = `blob ${digest} of ${ref.domain}/${ref.path}`;
    return await this.withEndpoints(s, what, async (ep) => {
      const headers: Record<string, string> = {};
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const res = await this.exchange(s, ep, `${ref.path}/blobs/${digest}`, headers, true);
      checkStatus(res, what, ep);
      if (!res.body) throw new UnavailableError(`${what}: empty answer`);
      const start = res.status === 206 ? offset : 0;
      const size = Number(res.headers.get('content-length') ?? '-1');
      const stream = Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>, { highWaterMark: 1024 * 1024 });
      return { stream, offset: start, size: size >= 0 ? start + size : -1 };
    });
  }
}

function checkStatus(res: Response, what: string, ep: Endpoint): void {
  if (res.ok) return;
  void res.body?.cancel().catch(() => {});
  const host = new URL(ep.base).host;
  if (res.status === 404) throw new NotFoundError(`${what}: not found at ${host}`);
  if (res.status === 401 || res.status === 403) throw new PermissionDeniedError(`${what}: access denied by ${host} (HTTP ${res.status})`);
  if (transient(res.status)) throw new UnavailableError(`${what}: ${host} answered HTTP ${res.status}`);
  throw new UnavailableError(`${what}: ${host} answered HTTP ${res.status}`);
}

async function readCapped(res: Response, max: number, what: string): Promise<Buffer> {
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
      total += c.length;
      if (total > max) throw new ResourceExhaustedError(`${what} is more than the ${max} bytes allowed`);
      chunks.push(Buffer.from(c));
    }
  } catch (err) {
    if (err instanceof BulkheadError) throw err;
    throw new UnavailableError(`${what}: connection failed while reading: ${(err as Error).message}`, { cause: err });
  }
  return Buffer.concat(chunks);
}
