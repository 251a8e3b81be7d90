/**
 * A client for the Distribution (OCI) registry API: manifests and blobs, with anonymous, basic
 * and bearer-token auth, mirrors tried before the host, plain HTTP only for loopback hosts or
 * hosts configured insecure, manual redirects (credentials stay with the registry's own origin),
 * a manifest size cap, timeouts, AbortSignal and retries for transient failures.
 */
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RegistryConfig } from './config.ts';
import {
  AbortedError, BulkheadError, DeadlineExceededError, InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError, UnavailableError, wrapError,
} from '../../errors.ts';
import type { Logger } from '../../util/log.ts';
import type { ImageReference } from '../reference.ts';
import { SETTING } from '../config.ts';
import { AuthFile, credentialsFromPullAuth, isLoopbackHost, parseChallenge, realmMayReceiveCredentials, type Credentials, type PullAuth } from './auth.ts';
import { sha256Of } from '../digest.ts';

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
  /**
   * The registry timeout ([images] registry_timeout_ms; default 30 s): one request to one endpoint,
   * retries included, must answer within it (a manifest's body too), and a blob body may not stall longer.
   */
  timeoutMs?: number;
  /** Attempts for transient failures; default 3. */
  attempts?: number;
}

interface Session {
  ref: ImageReference;
  auth: PullAuth | undefined;
  signal: AbortSignal | undefined;
  /** Aborts when the registry timeout for the current endpoint is over (set by withEndpoints). */
  deadline?: AbortSignal;
}

/** A failed connection (fetch's "fetch failed") → what happened at which host:port and what to check. */
function connectError(host: string, err: unknown): UnavailableError {
  let code: string | undefined;
  for (let e: unknown = err, depth = 0; e && depth < 5 && !code; e = (e as { cause?: unknown }).cause, depth++) {
    code = (e as NodeJS.ErrnoException).code;
    if (code !== undefined && !/^E[A-Z]+$/.test(code)) code = undefined;
  }
  const hostPort = /:\d+$/.test(host) ? host : `${host} (port 443 or 80)`;
  switch (code) {
    case 'ECONNREFUSED':
      return new UnavailableError(`registry refused the connection at ${hostPort}: nothing listens there; check the registry host and port in the image name (or the [registries] mirrors) and that the registry is running`, { cause: err });
    case 'ENOTFOUND': case 'EAI_AGAIN':
      return new UnavailableError(`registry host ${host} cannot be resolved (DNS); check the image name and the node's resolver`, { cause: err });
    case 'ECONNRESET': case 'EPIPE':
      return new UnavailableError(`registry at ${hostPort} closed the connection; check that it speaks ${'HTTP'} on that port (TLS vs plain HTTP: [registries] insecure)`, { cause: err });
    case 'EHOSTUNREACH': case 'ENETUNREACH':
      return new UnavailableError(`registry at ${hostPort} is unreachable (no route); check the node's network`, { cause: err });
    default: {
      const detail = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
      if (/bad port/i.test(detail)) return new UnavailableError(`registry port in ${hostPort} is one the fetch standard blocks (like 1, 25, 6000): run the registry on another port`, { cause: err });
      return new UnavailableError(`request to registry ${hostPort} failed: ${detail}`, { cause: err });
    }
  }
}

/**
 * `src` with a stall bound: when the consumer is waiting for data and none has come for `ms`, the
 * stream fails with `error()`. A slow consumer (a busy disk) is not a stall.
 */
function stallGuard(src: Readable, ms: number, error: () => Error): Readable {
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  let last = Date.now();
  const tick = setInterval(() => {
    if (out.readableLength >= out.readableHighWaterMark || out.writableNeedDrain) { last = Date.now(); return; }
    if (Date.now() - last > ms) { const e = error(); src.destroy(e); out.destroy(e); }
  }, Math.max(50, Math.min(1000, Math.floor(ms / 4))));
  tick.unref();
  src.on('data', () => { last = Date.now(); });
  const stop = (): void => clearInterval(tick);
  out.once('close', stop);
  src.once('close', stop);
  pipeline(src, out).catch(() => { /* errors reach the consumer through out */ });
  return out;
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
    if (this.cfg.mirrorFallback === false && (this.cfg.mirrors[domain] ?? []).length > 0) {
      if (out.length === 0) throw new InvalidArgumentError(`no usable mirror for ${domain} (see the daemon log), and [registries] mirror_fallback = false keeps ${domain} itself from being tried: fix the mirror URLs or set mirror_fallback = true`);
      return out;
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
      const res = await this.followRedirects(new URL(`${ep.base}/v2/${path}`), origin, headers, authHeader, s.signal, streaming, s.deadline);
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

  private async followRedirects(url: URL, origin: URL, headers: Record<string, string>, authHeader: string | undefined, signal: AbortSignal | undefined, streaming: boolean, deadline: AbortSignal | undefined): Promise<Response> {
    let current = url;
    for (let hop = 0; hop < 6; hop++) {
      const h: Record<string, string> = { ...headers, 'user-agent': 'bulkhead/0.1' };
      // Credentials only ever go to the registry's own origin (scheme, host and port).
      if (authHeader && current.origin === origin.origin) h.authorization = authHeader;
      // The deadline covers the headers, and a small body (manifest) too; a stream's body has the stall guard instead.
      const ctl = new AbortController();
      const onAbort = (): void => ctl.abort(signal?.reason);
      const onDeadline = (): void => ctl.abort(deadline?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      deadline?.addEventListener('abort', onDeadline, { once: true });
      if (deadline?.aborted) onDeadline();
      let res: Response;
      try {
        res = await fetch(current, { headers: h, redirect: 'manual', signal: ctl.signal });
      } catch (err) {
        signal?.removeEventListener('abort', onAbort);
        deadline?.removeEventListener('abort', onDeadline);
        if (signal?.aborted) throw new AbortedError('registry request aborted', { cause: err });
        if (deadline?.aborted) throw err; // withEndpoints says which timeout
        throw connectError(current.host, err);
      }
      if (streaming) deadline?.removeEventListener('abort', onDeadline);
      if (!streaming) signal?.removeEventListener('abort', onAbort);
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        await res.body?.cancel().catch(() => {});
        signal?.removeEventListener('abort', onAbort);
        deadline?.removeEventListener('abort', onDeadline);
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
    const signals = [s.deadline ?? AbortSignal.timeout(this.timeoutMs)];
    if (s.signal) signals.push(s.signal);
    let res: Response;
    try {
      res = await fetch(realm, { headers, redirect: 'error', signal: AbortSignal.any(signals) });
    } catch (err) {
      if (s.signal?.aborted) throw new AbortedError('token request aborted', { cause: err });
      if (s.deadline?.aborted) throw err;
      throw connectError(realm.host, err);
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

  /**
   * Runs `fn` per endpoint with retries; the first success wins. Each endpoint has the registry
   * timeout for all its attempts, so the time a caller waits is what the message says.
   */
  private async withEndpoints<T>(s0: Session, what: string, fn: (ep: Endpoint, s: Session) => Promise<T>): Promise<T> {
    let lastErr: unknown;
    const endpoints = this.endpoints(s0.ref.domain);
    for (const ep of endpoints) {
      const deadline = AbortSignal.timeout(this.timeoutMs);
      const s: Session = { ...s0, deadline };
      const wait = s0.signal ? AbortSignal.any([s0.signal, deadline]) : deadline;
      for (let attempt = 0; attempt < this.attempts; attempt++) {
        if (s.signal?.aborted) throw new AbortedError(`${what} aborted`);
        try {
          if (deadline.aborted) throw new AbortedError('deadline');
          return await fn(ep, s);
        } catch (err) {
          lastErr = err;
          if (deadline.aborted && !s.signal?.aborted) {
            const host = new URL(ep.base).host;
            lastErr = new DeadlineExceededError(`registry ${host} did not answer within ${this.timeoutMs} ms (${what}; setting ${SETTING.registryTimeout}): check that the registry at ${host} is up and answering, or raise the setting`, { cause: err });
            break;
          }
          const code = err instanceof BulkheadError ? err.code : 'Internal';
          if (code === 'Aborted' || code === 'InvalidArgument' || code === 'ResourceExhausted') throw err;
          if (code !== 'Unavailable') break; // NotFound / PermissionDenied: try the next endpoint
          this.log.debug('registry request failed; retrying', { what, endpoint: new URL(ep.base).host, attempt, err: (err as Error).message });
          await sleep(100 * 2 ** attempt, undefined, { signal: wait }).catch(() => {});
        }
      }
      if (!ep.isOrigin) this.log.info('mirror could not serve; trying next endpoint', { what, mirror: new URL(ep.base).host });
    }
    const err = lastErr instanceof Error ? lastErr : new UnavailableError(`${what} failed`);
    if (!endpoints.some((ep) => ep.isOrigin)) throw wrapError(err, `every mirror of ${s0.ref.domain} failed and [registries] mirror_fallback = false keeps ${s0.ref.domain} itself from being tried`);
    throw err;
  }

  /** Fetches a manifest or index by tag or digest (verifying the digest). */
  async getManifest(ref: ImageReference, reference: string, opts: { signal?: AbortSignal; auth?: PullAuth } = {}): Promise<FetchedManifest> {
    const s0: Session = { ref, auth: opts.auth, signal: opts.signal };
    const what = `manifest ${ref.domain}/${ref.path}:${reference}`;
    return await this.withEndpoints(s0, what, async (ep, s) => {
      const res = await this.exchange(s, ep, `${ref.path}/manifests/${reference}`, { accept: ACCEPT }, false);
      checkStatus(res, what, ep);
      const len = Number(res.headers.get('content-length') ?? '-1');
      if (len > MANIFEST_MAX) { await res.body?.cancel().catch(() => {}); throw new ResourceExhaustedError(`${what} is ${len} bytes, more than the ${MANIFEST_MAX} allowed`); }
      const bytes = await readCapped(res, MANIFEST_MAX, what);
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
    const s0: Session = { ref, auth: opts.auth, signal: opts.signal };
    const what = `blob ${digest} of ${ref.domain}/${ref.path}`;
    return await this.withEndpoints(s0, what, async (ep, s) => {
      const headers: Record<string, string> = {};
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const res = await this.exchange(s, ep, `${ref.path}/blobs/${digest}`, headers, true);
      checkStatus(res, what, ep);
      if (!res.body) throw new UnavailableError(`${what}: empty answer`);
      const start = res.status === 206 ? offset : 0;
      const size = Number(res.headers.get('content-length') ?? '-1');
      const host = new URL(ep.base).host;
      const stream = stallGuard(Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>, { highWaterMark: 1024 * 1024 }), this.timeoutMs,
        () => new DeadlineExceededError(`registry ${host} sent no data for ${this.timeoutMs} ms (${what}; setting ${SETTING.registryTimeout}): check the registry and the network, or raise the setting`));
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
