/**
 * A pod's requested cgroup_parent judged against the configured roots. What creating the pod will
 * make of it, and removing only that (or the engine's own pod cgroup), is src/cgroup/tree.ts's.
 */
import { normalize } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import { isUnder } from '../util/beneath.ts';
import { DEFAULT_CGROUP_ROOTS, type EngineOptions } from './options.ts';

/** A requested cgroup_parent: a clean cgroupfs path strictly under one of the configured roots. */
export function checkCgroupParent(opts: EngineOptions, cp: string): string {
  const roots = (opts.cgroupRoots ?? DEFAULT_CGROUP_ROOTS).map((r) => normalize(r).replace(/(.)\/+$/, '$1'));
  const rule = `cgroup_parent must be a cgroupfs path under ${roots.join(' or ')} (engine cgroup_roots)`;
  if (!/^\/[A-Za-z0-9_.:@=+\/-]*$/.test(cp) || cp.split('/').some((x) => x === '..' || x === '.')) {
    throw new InvalidArgumentError(`cgroup_parent ${JSON.stringify(cp.slice(0, 200))} is not allowed: ${rule}, without "..")`);
  }
  const n = normalize(cp).replace(/(.)\/+$/, '$1');
  if (!roots.some((r) => isUnder(n, r) && n !== r)) throw new InvalidArgumentError(`cgroup_parent ${n} is not allowed: ${rule}`);
  return n;
}
