/**
 * Kubernetes admission webhook (admission.k8s.io/v1 AdmissionReview, pods) over HTTPS, using the
 * same policy engine as the node:
 * - POST /mutate: sets spec.runtimeClassName to the handler the policy chooses (JSONPatch, base64);
 * - POST /validate: denies what the node would deny, with the same messages (status code 403);
 * - GET /healthz.
 * Fail closed: a review that is not valid JSON, not an AdmissionReview v1, or has a malformed pod
 * is denied (HTTP 400 with a denying review when the body cannot be read at all); the generated
 * webhook configurations use failurePolicy: Fail, so an unreachable webhook also denies.
 *
 * Lifecycle: `startWebhook()` listens and returns a handle whose `close()` stops the server;
 * `reviewAdmission()` is the pure request → response part.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidArgumentError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { decidePod, type Decision, type HandlerInfo, type Policy } from './policy.ts';
import { podInputFromK8s } from './k8s-pod.ts';
import type { PolicyCounters } from './enforce.ts';
import { isObject } from '../util/guards.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
/** The API server sends at most ~3 MiB objects; anything bigger is refused unread. */
export const MAX_REVIEW_BYTES = 3 * 1024 * 1024 + 64 * 1024;

export interface AdmissionStatus { code: number; message: string; reason?: string; status?: 'Failure' }

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: AdmissionStatus;
  patchType?: 'JSONPatch';
  patch?: string;
  warnings?: string[];
  auditAnnotations?: Record<string, string>;
}

export interface AdmissionReviewOut {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

export interface WebhookPolicyOptions {
  policy: Policy;
  /** Handlers the cluster offers (RuntimeClass name = handler name). */
  handlers: readonly HandlerInfo[];
  logger?: Logger;
  counters?: PolicyCounters;
}

type Obj = Record<string, unknown>;

function review(response: AdmissionResponse): AdmissionReviewOut {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

function deny(uid: string, code: number, message: string): AdmissionReviewOut {
  return review({ uid, allowed: false, status: { status: 'Failure', code, reason: code === 403 ? 'Forbidden' : 'BadRequest', message } });
}

/** The same text the node puts in its PermissionDeniedError. */
export function denialMessage(who: string, d: Decision): string {
  return `policy: pod ${who} denied by rule ${d.rule} (trust "${d.trust}" from ${d.trustRule === 'default' ? 'the default' : `rule "${d.trustRule}"`}): ${d.violations.map((v) => v.message).join('; ')}`;
}

/**
 * One AdmissionReview in, one out. Pure apart from logging and counting. `body` is the parsed
 * JSON (or undefined when it could not be parsed).
 */
export function reviewAdmission(kind: 'mutate' | 'validate', body: unknown, opts: WebhookPolicyOptions): AdmissionReviewOut {
  if (!isObject(body) || body.apiVersion !== ADMISSION_API_VERSION || body.kind !== 'AdmissionReview' || !isObject(body.request)) {
    return deny('', 400, `bulkhead webhook: the body is not an ${ADMISSION_API_VERSION} AdmissionReview with a request`);
  }
  const req = body.request;
  const uid = typeof req.uid === 'string' ? req.uid : '';
  if (uid === '') return deny('', 400, 'bulkhead webhook: request.uid is missing');
  const k = isObject(req.kind) ? req.kind : {};
  const res = isObject(req.resource) ? req.resource : {};
  if (k.kind !== 'Pod' || (k.group ?? '') !== '' || (res.resource !== undefined && res.resource !== 'pods')) {
    return deny(uid, 400, `bulkhead webhook: only core/v1 Pods are reviewed (got ${JSON.stringify(k.kind ?? null)})`);
  }
  const op = req.operation;
  if (op === 'DELETE' || op === 'CONNECT') return review({ uid, allowed: true });
  if (op !== 'CREATE' && op !== 'UPDATE') return deny(uid, 400, `bulkhead webhook: unknown operation ${JSON.stringify(op ?? null)}`);
  // The API server always names the namespace of a namespaced object; the pod's own
  // metadata.namespace is written by its author and never stands in for it.
  const namespace = typeof req.namespace === 'string' ? req.namespace : '';
  if (namespace === '') return deny(uid, 400, 'bulkhead webhook: request.namespace is missing; a pod is judged by the namespace the API server names, never by its own metadata');
  let decision: Decision;
  let who: string;
  try {
    if (!isObject(req.object)) throw new InvalidArgumentError('pod: request.object is missing');
    const input = podInputFromK8s(req.object, { namespace });
    // metadata.uid is the author's text at admission: it must not open <kubelet_root>/pods/<uid>/.
    delete input.uid;
    who = `${input.namespace}/${input.name || '(generated name)'}`;
    decision = decidePod(opts.policy, input, opts.handlers);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    opts.logger?.warn('admission: malformed pod denied', { uid, endpoint: kind, error: msg });
    return deny(uid, 400, `bulkhead webhook: ${msg}`);
  }
  const c = opts.counters;
  if (c) {
    if (decision.allowed) c.pods.allowed++; else { c.pods.denied++; c.deniedByRule[decision.rule] = (c.deniedByRule[decision.rule] ?? 0) + 1; }
    if (decision.allowed && decision.moved) c.pods.moved++;
  }
  opts.logger?.[decision.allowed ? 'info' : 'warn']('admission decision', {
    endpoint: kind, uid, pod: who, operation: op, allowed: decision.allowed, trust: decision.trust, rule: decision.rule, handler: decision.handler ?? '',
  });
  const audit = { 'bulkhead.io/trust': decision.trust, 'bulkhead.io/rule': decision.rule };
  if (!decision.allowed) {
    const out = deny(uid, 403, denialMessage(who, decision));
    out.response.auditAnnotations = audit;
    return out;
  }
  const response: AdmissionResponse = { uid, allowed: true, auditAnnotations: audit };
  const spec = isObject(req.object) && isObject(req.object.spec) ? req.object.spec : {};
  const current = typeof spec.runtimeClassName === 'string' ? spec.runtimeClassName : undefined;
  if (decision.handler !== undefined && decision.handler !== current) {
    if (kind === 'mutate' && op === 'CREATE') {
      const patch = [{ op: current === undefined ? 'add' : 'replace', path: '/spec/runtimeClassName', value: decision.handler }];
      response.patchType = 'JSONPatch';
      response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
    } else {
      response.warnings = [`bulkhead: this pod will run on runtime handler "${decision.handler}", not ${current === undefined ? 'the default' : `"${current}"`} (${decision.reasons.at(-1) ?? ''})`];
    }
  }
  return review(response);
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Past the limit the rest is read and dropped (bounded by the request timeout), so the client
  // gets the 413 answer instead of a reset connection.
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= limit) chunks.push(chunk as Buffer);
  }
  return size > limit ? undefined : Buffer.concat(chunks);
}

export interface WebhookServerOptions extends WebhookPolicyOptions {
  cert: string | Buffer;
  key: string | Buffer;
  host: string;
  port: number;
}

export interface WebhookServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Parses "127.0.0.1:8443" or "[::1]:8443". */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError(`listen address "${listen}" is not HOST:PORT`);
  return { host: (m[1] ?? m[2])!, port };
}

/** Starts the HTTPS webhook; resolves once it listens. */
export async function startWebhook(opts: WebhookServerOptions): Promise<WebhookServer> {
  const server: Server = createServer({ cert: opts.cert, key: opts.key, minVersion: 'TLSv1.2' }, (req, res) => {
    void (async () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'GET' && path === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok\n'); return; }
      if (path !== '/mutate' && path !== '/validate') { send(res, 404, { error: 'not found' }); return; }
      if (req.method !== 'POST') { send(res, 405, deny('', 405, 'bulkhead webhook: use POST')); return; }
      const body = await readBody(req, MAX_REVIEW_BYTES);
      if (body === undefined) { send(res, 413, deny('', 413, 'bulkhead webhook: review too large')); return; }
      let parsed: unknown;
      try { parsed = JSON.parse(body.toString('utf8')); } catch {
        send(res, 400, deny('', 400, 'bulkhead webhook: the body is not JSON'));
        return;
      }
      const out = reviewAdmission(path === '/mutate' ? 'mutate' : 'validate', parsed, opts);
      // A review we could not even identify gets HTTP 400 too, so the API server counts a failure (and fails closed).
      send(res, out.response.uid === '' ? 400 : 200, out);
    })().catch((err: unknown) => {
      opts.logger?.error('admission: handler failed', { error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) send(res, 500, deny('', 500, 'bulkhead webhook: internal error'));
      else res.destroy();
    });
  });
  server.requestTimeout = 15_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as AddressInfo;
  const host = opts.host;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port: addr.port,
    url: `https://${shown}:${addr.port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
