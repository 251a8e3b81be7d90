/**
 * One set of error classes for all of Bulkhead. Domain code throws these; exactly one place
 * (cri/status.ts) turns them into gRPC status codes, and only cli/ turns them into exit codes.
 *
 * Beside its class (`code`, what gRPC sees) an error may carry a stable identifier (`reason`, one
 * of ERROR_REASONS, undici's `UND_ERR_*` style) when callers need to tell apart conditions of the
 * same class: "pod not found" from "image not present". The message is for people; code branches
 * on `code` and `reason`, never on message text. Across Bulkhead's own process boundaries (the VM
 * supervisor's frames, bulkhead-vm's ready line, gRPC to the CLI) an error travels as
 * `{code, reason, message}` (toWire/fromWire; over gRPC the reason is the trailing metadata key
 * REASON_METADATA_KEY). Only the output of foreign programs (runc, runsc, crun, conmon) is ever
 * classified by its text, in one place: runtime/errors.ts.
 *
 * Wrapping with `wrapError` adds context and keeps the class and the reason, so a NotFound deep in
 * image/ stays NotFound when the CRI server answers.
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

/**
 * The stable identifiers, each with its class: the one table (exported so clients and docs list
 * them). Add one only when some caller branches on it; never rename one (clients match on it).
 */
export const ERROR_REASONS = {
  /** No pod sandbox with that ID (or unique ID prefix) on this node. */
  BH_POD_NOT_FOUND: 'NotFound',
  /** No container with that ID (or unique ID prefix, or name for the CLI) on this node. */
  BH_CONTAINER_NOT_FOUND: 'NotFound',
  /** The image a request names is not on this node (pull it first), or an image to remove/inspect is unknown. */
  BH_IMAGE_NOT_PRESENT: 'NotFound',
  /** A pod or container name (namespace/name/attempt) is held by another one. */
  BH_NAME_IN_USE: 'AlreadyExists',
  /** The container's (or exec's) command is not in its image: a typo in command/args, or the wrong image. */
  BH_COMMAND_NOT_FOUND: 'InvalidArgument',
  /** The command exists in the image but cannot be executed (not executable, wrong format, a directory). */
  BH_COMMAND_NOT_EXECUTABLE: 'InvalidArgument',
  /** The container is not running (exec, attach, kill of a stopped or never-started container). */
  BH_CONTAINER_NOT_RUNNING: 'FailedPrecondition',
  /** The trust policy refused the pod or container (rule and violations in the message). */
  BH_POLICY_REFUSED: 'PermissionDenied',
  /** No runtime handler of that name is configured. */
  BH_HANDLER_UNKNOWN: 'InvalidArgument',
  /** The runtime handler is configured but cannot run on this host (its probe failed). */
  BH_HANDLER_UNAVAILABLE: 'FailedPrecondition',
  /** The image filesystem is full or below its reserve. */
  BH_IMAGE_FS_FULL: 'ResourceExhausted',
  /** The pod's microVM is gone (it crashed, was killed or powered off). */
  BH_VM_GONE: 'Unavailable',
  /** The microVM guest assets are missing: run `bin/bulkhead-vm setup`. */
  BH_VM_NOT_SET_UP: 'FailedPrecondition',
  /** The daemon closed the connection during a call (it died or was stopped). */
  BH_CONNECTION_DROPPED: 'Unavailable',
  /** A strict handler has no system call profile for the container's image: learn one (`bulkhead profile learn IMAGE`). */
  BH_STRICT_PROFILE_MISSING: 'FailedPrecondition',
} as const satisfies Record<string, ErrorCode>;
export type ErrorReason = keyof typeof ERROR_REASONS;

/** The gRPC trailing metadata key that carries an error's reason to clients. */
export const REASON_METADATA_KEY = 'bulkhead-error-reason';

export interface BulkheadErrorOptions {
  cause?: unknown;
  /** A stable identifier whose class (ERROR_REASONS) is this error's class. */
  reason?: ErrorReason;
}

export class BulkheadError extends Error {
  readonly code: ErrorCode;
  readonly reason: ErrorReason | undefined;
  constructor(code: ErrorCode, message: string, options?: BulkheadErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    // a reason of another class would tell the client two different things: the class wins
    this.reason = options?.reason !== undefined && ERROR_REASONS[options.reason] === code ? options.reason : undefined;
    this.name = `${code}Error`;
  }
}

/** An error of the class its reason names: `reasonError('BH_POD_NOT_FOUND', 'pod sandbox x not found')`. */
export function reasonError(reason: ErrorReason, message: string, options?: { cause?: unknown }): BulkheadError {
  return new BulkheadError(ERROR_REASONS[reason], message, { ...options, reason });
}

export class NotFoundError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('NotFound', message, options); }
}
export class AlreadyExistsError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('AlreadyExists', message, options); }
}
export class InvalidArgumentError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('InvalidArgument', message, options); }
}
export class FailedPreconditionError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('FailedPrecondition', message, options); }
}
export class PermissionDeniedError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('PermissionDenied', message, options); }
}
export class ResourceExhaustedError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('ResourceExhausted', message, options); }
}
export class DeadlineExceededError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('DeadlineExceeded', message, options); }
}
export class AbortedError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('Aborted', message, options); }
}
export class UnavailableError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('Unavailable', message, options); }
}
export class UnimplementedError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('Unimplemented', message, options); }
}
export class InternalError extends BulkheadError {
  constructor(message: string, options?: BulkheadErrorOptions) { super('Internal', message, options); }
}

/** The class of any thrown value: a BulkheadError keeps its own, an AbortError is Aborted, the rest Internal. */
export function errorCode(err: unknown): ErrorCode {
  if (err instanceof BulkheadError) return err.code;
  if (err instanceof Error && err.name === 'AbortError') return 'Aborted';
  return 'Internal';
}

/** The stable identifier of any thrown value, if it has one. */
export function errorReason(err: unknown): ErrorReason | undefined {
  return err instanceof BulkheadError ? err.reason : undefined;
}

/** Adds context ("pull busybox: ...") and keeps the class and reason of the original error. */
export function wrapError(err: unknown, context: string): BulkheadError {
  const message = err instanceof Error ? err.message : String(err);
  const reason = errorReason(err);
  return new BulkheadError(errorCode(err), `${context}: ${message}`, { cause: err, ...(reason ? { reason } : {}) });
}

/** An error as it crosses Bulkhead's own process boundaries (JSON). */
export interface WireError {
  code: ErrorCode;
  reason?: ErrorReason;
  message: string;
}

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'NotFound', 'AlreadyExists', 'InvalidArgument', 'FailedPrecondition', 'PermissionDenied', 'ResourceExhausted',
  'DeadlineExceeded', 'Aborted', 'Unavailable', 'Unimplemented', 'Internal',
]);

export function isErrorReason(v: unknown): v is ErrorReason {
  return typeof v === 'string' && Object.hasOwn(ERROR_REASONS, v);
}

export function toWire(err: unknown): WireError {
  const reason = errorReason(err);
  return { code: errorCode(err), ...(reason ? { reason } : {}), message: err instanceof Error ? err.message : String(err) };
}

/**
 * The error a peer sent as WireError (already parsed from JSON). Whatever does not fit — an unknown
 * class, an unknown reason, no message — is Internal or dropped, never trusted: the peer may be an
 * older or broken Bulkhead process.
 */
export function fromWire(v: unknown, fallbackMessage = 'failed without a message'): BulkheadError {
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const code: ErrorCode = typeof o.code === 'string' && CODES.has(o.code) ? o.code as ErrorCode : 'Internal';
  const message = typeof o.message === 'string' && o.message !== '' ? o.message.slice(0, 8192) : fallbackMessage;
  return new BulkheadError(code, message, isErrorReason(o.reason) ? { reason: o.reason } : undefined);
}

export function isNotFound(err: unknown): boolean {
  return errorCode(err) === 'NotFound';
}
