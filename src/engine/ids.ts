/** Object ids: 64 lowercase hex characters (256 random bits), looked up by unique prefix like crictl. */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';

export function newId(): string {
  return randomBytes(32).toString('hex');
}

const HEX = /^[0-9a-f]+$/;

/**
 * Resolves a full id or unique prefix through `lookup(prefix)` (which returns the ids starting with
 * it). Throws NotFound when nothing matches and InvalidArgument when the prefix is ambiguous.
 */
export function resolveId(kind: 'pod sandbox' | 'container', idOrPrefix: string, lookup: (prefix: string) => string[]): string {
  const reason = kind === 'container' ? 'BH_CONTAINER_NOT_FOUND' : 'BH_POD_NOT_FOUND';
  if (idOrPrefix === '') throw new InvalidArgumentError(`${kind} id must not be empty`);
  if (!HEX.test(idOrPrefix) || idOrPrefix.length > 64) throw new NotFoundError(`${kind} ${JSON.stringify(idOrPrefix)} not found`, { reason });
  const hits = lookup(idOrPrefix);
  if (hits.length === 0) throw new NotFoundError(`${kind} ${idOrPrefix} not found`, { reason });
  if (hits.length > 1) throw new InvalidArgumentError(`${kind} id prefix ${idOrPrefix} is ambiguous (${hits.length} matches)`);
  return hits[0]!;
}
