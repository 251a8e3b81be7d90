/**
 * gRPC status codes and their mapping to Bulkhead's error classes, without @grpc/grpc-js: the CLI's
 * client (src/cri/client.ts) maps statuses through here so it never loads grpc-js; the server's
 * wrapper (src/cri/status.ts) uses the same table, so both directions stay one mapping.
 */
import { BulkheadError, errorCode, errorReason, isErrorReason, REASON_METADATA_KEY, type ErrorCode, type ErrorReason } from '../errors.ts';

/** The gRPC status codes (same numbers as grpc-js's `status`). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

const names: string[] = [];
for (const [k, v] of Object.entries(GrpcStatus)) names[v] = k;

/** `NOT_FOUND` for 5; the number as text for codes outside the table. */
export function statusName(code: number): string {
  return names[code] ?? String(code);
}

/** Error class → status code (the server's direction). */
export const errorCodeToStatus: Record<ErrorCode, GrpcStatusCode> = {
  NotFound: GrpcStatus.NOT_FOUND,
  AlreadyExists: GrpcStatus.ALREADY_EXISTS,
  InvalidArgument: GrpcStatus.INVALID_ARGUMENT,
  FailedPrecondition: GrpcStatus.FAILED_PRECONDITION,
  PermissionDenied: GrpcStatus.PERMISSION_DENIED,
  ResourceExhausted: GrpcStatus.RESOURCE_EXHAUSTED,
  DeadlineExceeded: GrpcStatus.DEADLINE_EXCEEDED,
  Aborted: GrpcStatus.ABORTED,
  Unavailable: GrpcStatus.UNAVAILABLE,
  Unimplemented: GrpcStatus.UNIMPLEMENTED,
  Internal: GrpcStatus.INTERNAL,
};

const statusToErrorCode = new Map<number, ErrorCode>();
for (const [k, v] of Object.entries(errorCodeToStatus)) statusToErrorCode.set(v, k as ErrorCode);
// A call the client cancelled surfaces as Aborted; every code without a class is Internal.
statusToErrorCode.set(GrpcStatus.CANCELLED, 'Aborted');

/** The gRPC status for any thrown value; `reason` goes to the trailing metadata key REASON_METADATA_KEY. */
export function statusOf(err: unknown): { code: GrpcStatusCode; details: string; reason?: ErrorReason } {
  const reason = errorReason(err);
  return { code: errorCodeToStatus[errorCode(err)], details: err instanceof Error ? err.message : String(err), ...(reason ? { reason } : {}) };
}

/** The error class for a status code as the client sees it. */
export function errorCodeOfStatus(code: number): ErrorCode {
  return statusToErrorCode.get(code) ?? 'Internal';
}

/**
 * The reason in a failed call's trailing metadata: a plain record (wire/transport.ts) or grpc-js's
 * Metadata (`get(key)` → values). An unknown value is dropped.
 */
function reasonOfMetadata(md: unknown): ErrorReason | undefined {
  if (typeof md !== 'object' || md === null) return undefined;
  const get = (md as { get?: unknown }).get;
  const v: unknown = typeof get === 'function'
    ? (get.call(md, REASON_METADATA_KEY) as unknown[])[0]
    : (md as Record<string, unknown>)[REASON_METADATA_KEY];
  return isErrorReason(v) ? v : undefined;
}

/**
 * The Bulkhead error for a failed call (anything with a numeric `code` and `details`, as grpc-js's
 * ServiceError and grpc-transport.ts's GrpcCallError have); a value without a code is UNKNOWN.
 * The reason comes from the trailing metadata, and only when it belongs to the status's class.
 */
export function errorFromStatus(err: unknown): BulkheadError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; details?: unknown; metadata?: unknown };
  const code = typeof e.code === 'number' ? e.code : GrpcStatus.UNKNOWN;
  const details = (typeof e.details === 'string' && e.details) || (err instanceof Error ? err.message : String(err));
  const reason = reasonOfMetadata(e.metadata);
  return new BulkheadError(errorCodeOfStatus(code), details, { cause: err, ...(reason ? { reason } : {}) });
}
