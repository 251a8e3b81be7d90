/**
 * The `/metrics` HTTP server: GET /metrics answers the Prometheus text exposition; every other
 * path is 404, every other method 405, a request with a body 413. Requests are small and slow
 * clients are cut off (header size, header and request timeouts, a cap on connections), and
 * scrapes that arrive together share one collection. It listens where `[metrics] address` says
 * (config.ts refuses a non-loopback address unless the operator allowed it).
 *
 * Lifecycle: `MetricsServer.listen(config, metrics, logger)`; `close()` stops listening and ends
 * open connections.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FailedPreconditionError, InternalError } from '../errors.ts';
import type { Logger } from '../util/log.ts';
import { isLoopback, type MetricsConfig } from './config.ts';

export interface MetricsSource {
  scrape(): Promise<string>;
  readonly contentType: string;
}

/** Bounds of one request: a scrape sends a few short headers and no body. */
export const METRICS_LIMITS = { maxHeaderBytes: 8 * 1024, headersTimeoutMs: 5_000, requestTimeoutMs: 10_000, maxConnections: 32 } as const;

export class MetricsServer {
  readonly #server: Server;
  /** "http://127.0.0.1:9464/metrics" */
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async listen(cfg: MetricsConfig, source: MetricsSource, logger: Logger): Promise<MetricsServer> {
    if (cfg.host === '') throw new FailedPreconditionError('metrics are off: set [metrics] address = "127.0.0.1:9464" to serve /metrics');
    // config.ts checks this already; a caller that builds the config by hand gets the same rule
    if (!isLoopback(cfg.host) && !cfg.allowNonLoopback) throw new FailedPreconditionError(`metrics address ${cfg.host} is not loopback; set [metrics] allow_non_loopback = true to listen there`);
    let inFlight: Promise<string> | undefined;
    const scrape = (): Promise<string> => (inFlight ??= source.scrape().finally(() => { inFlight = undefined; }));
    const server = createServer({
      maxHeaderSize: METRICS_LIMITS.maxHeaderBytes,
      headersTimeout: METRICS_LIMITS.headersTimeoutMs,
      requestTimeout: METRICS_LIMITS.requestTimeoutMs,
      keepAliveTimeout: 5_000,
    }, (req, res) => { handle(req, res, scrape, source, logger); });
    server.maxConnections = METRICS_LIMITS.maxConnections;
    server.maxRequestsPerSocket = 100;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new InternalError(`cannot listen for /metrics on ${cfg.host}:${cfg.port}: ${err.message}; choose another [metrics] address`, { cause: err }));
      server.once('error', onError);
      server.listen({ host: cfg.host, port: cfg.port, exclusive: true }, () => { server.off('error', onError); resolve(); });
    });
    server.on('error', (err) => logger.warn('metrics server error', { error: err.message }));
    const a = server.address() as AddressInfo;
    const url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics`;
    logger.info('metrics listening', { url });
    return new MetricsServer(server, url);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

function reply(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(text + '\n');
}

function handle(req: IncomingMessage, res: ServerResponse, scrape: () => Promise<string>, source: MetricsSource, logger: Logger): void {
  const path = (req.url ?? '').split('?')[0];
  if (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0' || req.headers['transfer-encoding'] !== undefined) {
    res.shouldKeepAlive = false;
    reply(res, 413, 'a request to /metrics has no body', { connection: 'close' });
    req.destroy();
    return;
  }
  if (path !== '/metrics') { reply(res, 404, 'not found: only GET /metrics is served here'); return; }
  if (req.method !== 'GET') { reply(res, 405, 'method not allowed: only GET /metrics is served here', { allow: 'GET' }); return; }
  scrape().then(
    (text) => {
      res.writeHead(200, { 'content-type': source.contentType, 'cache-control': 'no-store' });
      res.end(text);
    },
    (err: unknown) => {
      logger.warn('metrics collection failed', { error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) reply(res, 500, 'metrics collection failed; see the daemon log');
    },
  );
}
