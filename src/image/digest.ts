/** Digest helpers shared by the image parts. */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors.ts';

const DIGEST = /^sha256:([a-f0-9]{64})$/;

/** The hex of "sha256:<64 hex>"; anything else (other algorithms, bad hex, path tricks) is InvalidArgument. */
export function digestHex(d: string): string {
  const m = DIGEST.exec(d);
  if (!m) throw new InvalidArgumentError(`invalid digest "${d.slice(0, 100)}" (want sha256:<64 lowercase hex>)`);
  return m[1]!;
}

export function isDigest(d: string): boolean {
  return DIGEST.test(d);
}

export function sha256Of(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/** containerd-style chain IDs: chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : sha256Of(`${prev} ${d}`));
  }
  return out;
}
