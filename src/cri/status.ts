/**
 * The one place where Bulkhead errors become gRPC status codes (and, for the client, back).
 * Every RPC handler runs inside `serveService`, which decodes the request (a request that does
 * not decode is INVALID_ARGUMENT, never a crash), gives the handler an AbortSignal that fires when
 * the caller goes away, maps thrown errors to a status and logs the call with its duration.
 * The code ↔ class table itself lives in src/wire/grpc-status.ts (no grpc-js there, for the CLI).
 */
import * as grpc from '@grpc/grpc-js';
import { BulkheadError, InvalidArgumentError, REASON_METADATA_KEY, UnimplementedError } from '../errors.ts';
import { errorFromStatus, statusOf } from '../wire/grpc-status.ts';
import type { Logger } from '../util/log.ts';

export interface RpcContext {
  method: string;
  /** Aborted when the caller cancels or disconnects. */
  signal: AbortSignal;
  logger: Logger;
}

export type UnaryImpl = (req: any, ctx: RpcContext) => Promise<unknown>;
/** A server-streaming handler: `send` resolves when the message is written (respects backpressure). */
export type StreamImpl = (req: any, ctx: RpcContext, send: (msg: unknown) => Promise<void>) => Promise<void>;
export type Impl = { kind: 'unary'; fn: UnaryImpl } | { kind: 'stream'; fn: StreamImpl };

/**
 * Watches every unary call (the daemon's metrics): called as the call starts, its result once the
 * call ends with the status code name ('OK', 'NOT_FOUND', ...) and the response (undefined on error).
 */
export type RpcObserver = (method: string, request: unknown) => (code: string, response: unknown) => void;

export function unary(fn: UnaryImpl): Impl { return { kind: 'unary', fn }; }
export function stream(fn: StreamImpl): Impl { return { kind: 'stream', fn }; }

/** The gRPC status for any thrown value; the error's reason (if any) rides in the trailing metadata. */
export function toStatus(err: unknown): { code: grpc.status; details: string; metadata: grpc.Metadata } {
  const st = statusOf(err);
  const metadata = new grpc.Metadata();
  if (st.reason) metadata.set(REASON_METADATA_KEY, st.reason);
  return { code: st.code as grpc.status, details: st.details, metadata };
}

/** The Bulkhead error for a failed call as the client sees it (status code → error class). */
export function fromServiceError(err: unknown): BulkheadError {
  return errorFromStatus(err);
}

class MalformedRequest {
  readonly reason: string;
  constructor(reason: string) { this.reason = reason; }
}

/** A copy of the service definition whose request decoder never throws (see MalformedRequest). */
function tolerantDefinition(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(def)) {
    const decode = m.requestDeserialize;
    out[name] = {
      ...m,
      requestDeserialize: (buf: Buffer) => {
        try { return decode(buf); } catch (err) { return new MalformedRequest(err instanceof Error ? err.message : String(err)); }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

function logCall(logger: Logger, method: string, started: number, err: unknown): void {
  const durationMs = Math.round((performance.now() - started) * 10) / 10;
  if (err === undefined) { logger.debug('rpc', { method, durationMs, code: 'OK' }); return; }
  const { code, details } = toStatus(err);
  const fields = { method, durationMs, code: grpc.status[code], error: details };
  if (code === grpc.status.INTERNAL || code === grpc.status.UNKNOWN) {
    logger.error('rpc', { ...fields, stack: err instanceof Error && !(err instanceof BulkheadError) ? err.stack : undefined });
  } else {
    logger.info('rpc', fields);
  }
}

function checkRequest(req: unknown, method: string): void {
  if (req instanceof MalformedRequest) throw new InvalidArgumentError(`${method}: malformed request: ${req.reason}`);
}

/**
 * Builds the service (definition and implementation) for grpc.Server.addService. Methods the
 * definition has but `impls` lacks answer UNIMPLEMENTED naming the method.
 */
export function serveService(
  def: grpc.ServiceDefinition,
  impls: Record<string, Impl>,
  logger: Logger,
  observe?: RpcObserver,
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const definition = tolerantDefinition(def);
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(def)) {
    const method = m.path;
    const impl: Impl = impls[name] ?? (m.responseStream
      ? stream(async () => { throw new UnimplementedError(`${method} is not implemented by Bulkhead`); })
      : unary(async () => { throw new UnimplementedError(`${method} is not implemented by Bulkhead`); }));
    if ((impl.kind === 'stream') !== m.responseStream || m.requestStream) {
      throw new InvalidArgumentError(`handler for ${method} does not match its streaming kind`);
    }
    if (impl.kind === 'unary') {
      const fn = impl.fn;
      implementation[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const started = performance.now();
        const ac = new AbortController();
        call.on('cancelled', () => ac.abort());
        const ctx: RpcContext = { method, signal: ac.signal, logger };
        const observed = observe?.(method, call.request);
        (async () => { checkRequest(call.request, method); return await fn(call.request ?? {}, ctx); })().then(
          (res) => { logCall(logger, method, started, undefined); observed?.('OK', res); callback(null, res ?? {}); },
          (err: unknown) => {
            logCall(logger, method, started, err);
            const st = toStatus(err);
            observed?.(grpc.status[st.code] ?? 'UNKNOWN', undefined);
            callback({ code: st.code, details: st.details, metadata: st.metadata });
          },
        );
      }) as grpc.handleUnaryCall<unknown, unknown>;
    } else {
      const fn = impl.fn;
      implementation[name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
        const started = performance.now();
        const ac = new AbortController();
        call.on('cancelled', () => ac.abort());
        call.on('close', () => ac.abort());
        call.on('error', () => ac.abort());
        const ctx: RpcContext = { method, signal: ac.signal, logger };
        const send = async (msg: unknown): Promise<void> => {
          ac.signal.throwIfAborted();
          if (!call.write(msg)) {
            await new Promise<void>((resolve, reject) => {
              const onDrain = (): void => { ac.signal.removeEventListener('abort', onAbort); resolve(); };
              const onAbort = (): void => { call.off('drain', onDrain); reject(ac.signal.reason as Error); };
              call.once('drain', onDrain);
              ac.signal.addEventListener('abort', onAbort, { once: true });
            });
          }
        };
        (async () => { checkRequest(call.request, method); await fn(call.request ?? {}, ctx, send); })().then(
          () => { logCall(logger, method, started, undefined); if (!ac.signal.aborted) call.end(); },
          (err: unknown) => {
            if (ac.signal.aborted) { logger.debug('rpc', { method, code: 'CANCELLED' }); return; }
            logCall(logger, method, started, err);
            const st = toStatus(err);
            call.emit('error', { code: st.code, details: st.details, metadata: st.metadata });
          },
        );
      }) as grpc.handleServerStreamingCall<unknown, unknown>;
    }
  }
  return { definition, implementation };
}
