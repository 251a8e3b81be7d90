// Request checks shared by the RPC handlers: what is malformed is INVALID_ARGUMENT before any work.
import { InvalidArgumentError } from '../errors.ts';

export function requireId(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new InvalidArgumentError(`${what} must not be empty`);
  if (value.length > 256 || /[\0/\s]/.test(value)) throw new InvalidArgumentError(`${what} "${value.slice(0, 80)}" is not a valid id`);
  return value;
}

export function requireString(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new InvalidArgumentError(`${what} must not be empty`);
  return value;
}

/** A non-negative timeout in seconds (int64 decoded as number). */
export function timeoutSeconds(value: unknown, what: string): number {
  const n = typeof value === 'number' ? value : Number(value ?? 0);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${what} must be a non-negative number of seconds`);
  return n;
}

/**
 * The deprecated seccomp_profile_path: "", "unconfined", "runtime/default", "docker/default" or
 * "localhost/<absolute path>"; anything else (a bare path) is malformed.
 */
export function checkSeccompProfilePath(value: string | undefined, what: string): void {
  if (!value || ['unconfined', 'runtime/default', 'docker/default'].includes(value)) return;
  if (value.startsWith('localhost/') && value.length > 'localhost/'.length) return;
  throw new InvalidArgumentError(`${what}: seccomp profile "${value.slice(0, 200)}" must be unconfined, runtime/default or localhost/<path>`);
}
