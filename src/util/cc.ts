/**
 * Builds Bulkhead's small C helpers with the host's gcc (the guest agent, the console helper,
 * bulkhead-pinns). Output is written next to its final name and renamed into place, so a reader
 * never sees a half-written binary and concurrent builders do not collide.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InternalError } from '../errors.ts';
import { run } from './exec.ts';

export async function compileC(src: string, out: string, args: string[], signal?: AbortSignal): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${randomBytes(4).toString('hex')}`;
  // a missing gcc comes back as UnavailableError from run()
  const r = await run('gcc', ['-O2', '-Wall', ...args, '-o', tmp, src], { timeoutMs: 180_000, ...(signal ? { signal } : {}) });
  if (r.code !== 0) {
    await rm(tmp, { force: true });
    throw new InternalError(`gcc ${src} failed: ${r.stderr.trim()}`);
  }
  await rename(tmp, out);
}

/** First 16 hex digits of the sha256 of a file: names a build by its source. */
export async function sourceKey(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex').slice(0, 16);
}
