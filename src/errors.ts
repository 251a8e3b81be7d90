/**
 * One set of error classes for all of Bulkhead. Domain code throws these; exactly one place
 * (cri/status.ts) turns them into gRPC status codes, and only cli/ turns them into exit codes.
 *
 * Wrapping with `wrapError` adds context and keeps the class, so a NotFound deep in image/
 * stays NotFound when the CRI server answers.
 */

export type ErrorCode =
  | 'NotFound'
  | 'AlreadyExists'
  | 'InvalidArgument'
  | 'FailedPrecondition'
  | 'PermissionDenied'
  | 'ResourceExhausted'
  | 'DeadlineExceeded'
  | 'Aborted'
  | 'Unavailable'
  | 'Unimplemented'
  | 'Internal';

export class BulkheadError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = `${code}Error`;
  }
}

export class NotFoundError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('NotFound', message, options); }
}
export class AlreadyExistsError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('AlreadyExists', message, options); }
}
export class InvalidArgumentError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('InvalidArgument', message, options); }
}
export class FailedPreconditionError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('FailedPrecondition', message, options); }
}
export class PermissionDeniedError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('PermissionDenied', message, options); }
}
export class ResourceExhaustedError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('ResourceExhausted', message, options); }
}
export class DeadlineExceededError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('DeadlineExceeded', message, options); }
}
export class AbortedError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('Aborted', message, options); }
}
export class UnavailableError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('Unavailable', message, options); }
}
export class UnimplementedError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('Unimplemented', message, options); }
}
export class InternalError extends BulkheadError {
  constructor(message: string, options?: { cause?: unknown }) { super('Internal', message, options); }
}

/** The class of any thrown value: a BulkheadError keeps its own, an AbortError is Aborted, the rest Internal. */
export function errorCode(err: unknown): ErrorCode {
  if (err instanceof BulkheadError) return err.code;
  if (err instanceof Error && err.name === 'AbortError') return 'Aborted';
  return 'Internal';
}

/** Adds context ("pull busybox: ...") and keeps the class of the original error. */
export function wrapError(err: unknown, context: string): BulkheadError {
  const message = err instanceof Error ? err.message : String(err);
  return new BulkheadError(errorCode(err), `${context}: ${message}`, { cause: err });
}

export function isNotFound(err: unknown): boolean {
  return errorCode(err) === 'NotFound';
}
