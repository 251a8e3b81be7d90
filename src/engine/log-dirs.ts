/**
 * Pod log directories and container log paths: where they may lie (the configured pod-log roots
 * and <root>/logs), made without following symlinks, and removed only where Bulkhead made them.
 */
import { lstat, rm, rmdir } from 'node:fs/promises';
import { join, isAbsolute, normalize, sep } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import { isUnder, partsBeneath, relativeParts, walkDirsBeneath } from '../util/beneath.ts';
import type * as cri from '../api/cri.ts';
import type { PodRecord } from './store.ts';
import { DEFAULT_POD_LOG_ROOT, type EngineOptions } from './options.ts';

/** Joins `rel` under `base`, refusing anything that leaves it. */
function joinInside(base: string, rel: string, what: string): string {
  if (isAbsolute(rel)) throw new InvalidArgumentError(`${what} must be relative: ${JSON.stringify(rel)}`);
  const p = normalize(join(base, rel));
  if (p !== base && !p.startsWith(base.endsWith(sep) ? base : base + sep)) throw new InvalidArgumentError(`${what} leaves its directory: ${JSON.stringify(rel)}`);
  return p;
}

export function logPathFor(p: PodRecord, config: cri.ContainerConfig, name: string, attempt: number): string {
  if (config.logPath) {
    relativeParts(config.logPath, 'log_path', 'a container log path is relative to the pod log directory, without ".."');
    return joinInside(p.runtime.logDirectory, config.logPath, 'logPath');
  }
  return join(p.runtime.logDirectory, `${name}_${attempt}.log`);
}

/** The directories a pod's log_directory may lie under: the configured pod-log roots and <root>/logs. */
function logRoots(opts: EngineOptions): string[] {
  return [...(opts.podLogRoots ?? [DEFAULT_POD_LOG_ROOT]), join(opts.root, 'logs')].map((r) => normalize(r).replace(/(.)\/+$/, '$1'));
}

/** The root a log directory lies under (with its components below it), or INVALID_ARGUMENT naming the rule. */
export function logRootOf(opts: EngineOptions, dir: string): { root: string; parts: string[] } {
  const roots = logRoots(opts);
  const rule = `pod log directories must be under ${roots.join(' or ')} (engine pod_log_root)`;
  const n = isAbsolute(dir) ? normalize(dir) : dir;
  const root = roots.find((r) => isUnder(n, r) && n !== r);
  if (!root) throw new InvalidArgumentError(`log_directory ${JSON.stringify(dir.slice(0, 200))} is not allowed: ${rule}`);
  return { root, parts: partsBeneath(root, dir, 'log_directory', rule) };
}

/** Creates the directories between a pod's log directory and a container's log file, refusing symlinks. */
export async function makeLogParents(logDirectory: string, logPath: string): Promise<void> {
  const rel = logPath.slice(logDirectory.length + 1).split('/');
  const rule = 'no symlinks under the pod log root';
  await walkDirsBeneath(logDirectory, rel.slice(0, -1), { create: true, mode: 0o755, what: 'log_path', rule });
  const st = await lstat(logPath).catch(() => undefined);
  if (st && !st.isFile()) throw new InvalidArgumentError(`log_path ${logPath} exists and is not a regular file (${rule})`);
}

/** The first of `parts` below `root` that does not exist (the topmost directory creating them will make). */
export async function firstMissing(root: string, parts: readonly string[]): Promise<string | undefined> {
  let cur = root;
  for (const name of parts) {
    cur = join(cur, name);
    try { await lstat(cur); } catch { return cur; }
  }
  return undefined;
}

/**
 * Removes a pod's log directory when Bulkhead created it, and the empty directories above it up to
 * the topmost one it made (older records: only its own default directory).
 */
export async function removeLogDir(p: PodRecord): Promise<void> {
  const made = p.runtime.engine.logDirMade;
  const dir = p.runtime.logDirectory;
  if (typeof made !== 'string') {
    if (p.runtime.engine.ownLogDir) await rm(dir, { recursive: true, force: true });
    return;
  }
  if (!made || !(dir === made || dir.startsWith(made + '/'))) return;
  await rm(dir, { recursive: true, force: true });
  for (let d = dir; d !== made && d.length > made.length;) {
    d = d.slice(0, d.lastIndexOf('/'));
    await rmdir(d).catch(() => undefined);
  }
}
