/**
 * The host paths the running daemon depends on: its --root and --run-dir (state, the CRI socket,
 * pod and container dirs), the socket and config file wherever they were put, the policy file,
 * the helper cache and the directory Bulkhead itself runs from. A container that could mount one
 * of these (or a parent of one) could rewrite the daemon or its policy, so they join the policy's
 * protected paths: refused for every level except host_paths = "any", checked by name in the
 * policy and by real path when the host path is mounted (bulkhead-hostmount).
 */
import { realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { normalizeHostPath } from './policy.ts';

export interface DaemonPaths {
  root: string;
  runDir: string;
  socket: string;
  /** The config file ("" when none). */
  config?: string;
  /** The policy file ("" when the policy is built in or a config section). */
  policyFile?: string;
  /** Where C helpers are built (default /var/cache/bulkhead/bin). */
  cacheDir?: string;
}

/** The directory Bulkhead's sources live in (src/policy/ is two levels below it). */
export const INSTALL_DIR = join(import.meta.dirname, '..', '..');

/** Normalized paths, each also as its real path when that differs (a symlinked root is protected by both names). */
export function daemonProtectedPaths(p: DaemonPaths): string[] {
  const raw = [p.root, p.runDir, p.socket, p.config ?? '', p.policyFile ?? '', p.cacheDir ?? '/var/cache/bulkhead', '/var/cache/bulkhead', INSTALL_DIR, dirname(process.execPath)];
  const out = new Set<string>();
  for (const r of raw) {
    const n = r ? normalizeHostPath(r) : undefined;
    if (n === undefined || n === '/') continue;
    out.add(n);
    try { out.add(realpathSync(n)); } catch { /* not there (yet): the name is protected */ }
  }
  return [...out];
}

/** The paths, each followed by its real path where that differs (missing ones as given). */
export function withRealPaths(paths: readonly string[]): string[] {
  const out = new Set<string>();
  for (const p of paths) {
    out.add(p);
    try { out.add(realpathSync(p)); } catch { /* not there */ }
  }
  return [...out];
}
