/**
 * `runc delete --force` of a container that has ended, done in the daemon's process. For a stopped
 * container runc 1.1 loads `<root>/<id>/state.json`, finds the init process gone, and destroys:
 * it SIGKILLs what is left in the container's cgroup when the container shares a PID namespace
 * (not with one of its own: the kernel killed the rest when init died), removes the cgroup
 * directories its state names (`cgroup_paths`), Intel RDT's if any, then the state directory, then
 * runs the poststop hooks. That is a few rmdirs behind a Go binary's start and the daemon's fork
 * (~10 ms per `run --rm` on this host), paid at every container removal.
 *
 * Done here only when every fact runc would check is known: conmon recorded the exit (its exit
 * file: conmon reaped the init process), the state is the container's own and has the shape above,
 * its init process is not running (pid and start time, as runc compares them), the spec has a PID
 * namespace of its own and no poststop hook, no Intel RDT group, and every cgroup directory named is
 * the container's own (its spec's cgroupsPath). Anything else, and a cgroup directory that stays
 * (busy, or with a child), leaves the work to runc itself with the state still in place.
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CGROUP_ROOT, cleanCgroupPath } from '../../cgroup/hierarchy.ts';
import { rmdirCgroup } from '../../cgroup/tree.ts';
import type { OciSpec } from '../../oci/spec.ts';
import { liveStartTime } from '../../util/proc.ts';
import { ID_RE } from '../conmon/shared.ts';
import { isObject } from '../../util/guards.ts';

/** What deleting ended container `id` removes (endedContainer). */
export interface EndedContainer {
  id: string;
  stateDir: string;
  /** The container's cgroup directories, one per hierarchy runc made it in. */
  cgroupDirs: string[];
}

/**
 * What `runc --root <root> delete --force <id>` would remove for container `id`, whose exit conmon
 * recorded and whose spec is `spec`; undefined when the case is not the one described in the file
 * comment (runc is run then). Reads one small file and /proc.
 */
export function endedContainer(root: string, id: string, spec: OciSpec, cgroupRoot = CGROUP_ROOT): EndedContainer | undefined {
  if (!ID_RE.test(id)) return undefined;
  // Bulkhead's specs carry no hooks; one that does (its poststop hooks runc would run) is runc's
  const hooks = (spec as { hooks?: { poststop?: unknown } }).hooks;
  if (hooks?.poststop !== undefined && hooks.poststop !== null && (!Array.isArray(hooks.poststop) || hooks.poststop.length > 0)) return undefined;
  const pidNs = spec.linux?.namespaces?.find((n) => n.type === 'pid');
  if (!pidNs || pidNs.path) return undefined;
  const rel = cleanCgroupPath(spec.linux?.cgroupsPath ?? '');
  if (!rel) return undefined;
  const stateDir = join(root, id);
  let st: unknown;
  try { st = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')); } catch { return undefined; }
  if (!isObject(st) || st.id !== id || typeof st.init_process_pid !== 'number' || !isObject(st.cgroup_paths)) return undefined;
  if (st.intel_rdt_path !== undefined && st.intel_rdt_path !== '' && st.intel_rdt_path !== null) return undefined;
  // runc's test of a running init: the pid alive with the start time it recorded
  const start = liveStartTime(st.init_process_pid);
  if (start !== undefined && String(st.init_process_start) === start) return undefined;
  const cgroupDirs: string[] = [];
  for (const dir of Object.values(st.cgroup_paths)) {
    if (typeof dir !== 'string' || !dir.startsWith(cgroupRoot + '/') || !dir.endsWith('/' + rel) || dir.includes('/../')) return undefined;
    if (!cgroupDirs.includes(dir)) cgroupDirs.push(dir);
  }
  return { id, stateDir, cgroupDirs };
}

/**
 * Removes what endedContainer found: the cgroup directories (one just emptied may be busy a
 * moment), then the state directory. false, with the state left in place, when a cgroup directory
 * stays: the caller runs `runc delete` then.
 */
export async function removeEndedContainer(c: EndedContainer): Promise<boolean> {
  // busy while the container's last tasks finish exiting: retried for ~1 s, as runc's own removal retries
  for (const dir of c.cgroupDirs) if (!(await rmdirCgroup(dir))) return false;
  await rm(c.stateDir, { recursive: true, force: true });
  return true;
}
