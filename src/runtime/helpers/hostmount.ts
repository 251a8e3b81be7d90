/**
 * Host paths of a container, mounted by what they are rather than by name (see hostmount.c): the
 * helper opens the path once, checks the opened object's real path (beneath the pod's own
 * kubelet directory, or clear of the protected paths) and bind-mounts that very descriptor onto a
 * staging point under the container's bundle directory. The OCI spec names the staging point, so
 * the runtime mounts the object that was checked even if a path component is swapped for a
 * symlink afterwards. Staging mounts live under <bundle>/mounts and go with the bundle
 * (engine: destroyContainer, also after a crash).
 */
import { join } from 'node:path';
import { InvalidArgumentError, PermissionDeniedError } from '../../errors.ts';
import { run } from '../../util/exec.ts';
import { DEFAULT_HELPER_DIR, ensureHelper } from './pinns.ts';

const SOURCE = join(import.meta.dirname, 'hostmount.c');

export function ensureHostMount(helperDir: string = DEFAULT_HELPER_DIR): Promise<string> {
  return ensureHelper(SOURCE, 'bulkhead-hostmount', helperDir);
}

export interface HostMountRequest {
  source: string;
  /** The staging point (created by the helper; must not exist as anything else). */
  target: string;
  /** Resolve `source` beneath this directory only (a pod's own kubelet directory). */
  beneath?: string;
  readonly: boolean;
  /** Refused when the source's real path is, is under, or contains one of these. */
  protect: readonly string[];
  /** When given (a "listed" level), the source's real path must lie under one of these. */
  allow?: readonly string[];
  signal?: AbortSignal;
}

/** Bind-mounts the host path onto the staging point; returns its real path. */
export async function mountHostPath(bin: string, req: HostMountRequest): Promise<string> {
  const args = ['--source', req.source, '--target', req.target];
  if (req.beneath) args.push('--beneath', req.beneath);
  if (req.readonly) args.push('--ro');
  if (!req.beneath) for (const p of req.protect) args.push('--protect', p);
  if (!req.beneath && req.allow) {
    if (req.allow.length === 0) throw new PermissionDeniedError(`host-path rule: host path ${req.source} is not under an allowed path (none listed)`);
    for (const p of req.allow) args.push('--allow', p);
  }
  const r = await run(bin, args, { timeoutMs: 10_000, ...(req.signal ? { signal: req.signal } : {}) });
  const msg = r.stderr.trim().replace(/^bulkhead-hostmount: /, '').split('\n')[0] ?? '';
  if (r.code === 2) throw new PermissionDeniedError(`host-path rule: ${msg}`);
  if (r.code !== 0) throw new InvalidArgumentError(`mount host path ${req.source}: ${msg || `exit ${r.code}`}`);
  return r.stdout.trim();
}
