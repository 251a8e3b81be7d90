/**
 * `runsc delete --force` of a sandbox that has ended, done in the daemon's process. For such a
 * sandbox runsc 0.0~20221219 (measured with strace) takes its state file's lock, finds the sandbox
 * and gofer processes gone, removes the sandbox's cgroup in each v1 controller its state names
 * (`sandbox.cgroup.cgroupv1.own`), then the state and lock files; that is ~3 ms of work behind a Go
 * binary's start (15-25 ms on this host, by the load), paid at every pod removal and every
 * `run --rm`.
 *
 * Done here only when every fact runsc would check is known: conmon recorded the sandbox's exit
 * (its exit file: conmon reaped the sandbox process), the state file is the root container's own
 * and has the shape above, no other container of the sandbox has a state file, the gofer is gone
 * (GvisorBackend.forgetOrphanGofer ran before), the sandbox process is not running, and the
 * cgroup named there is the container's own (its spec's cgroupsPath). Anything else, and a cgroup
 * directory that stays (busy, or with a child), leaves the work to runsc itself, with the state
 * still in place. runsc's lock is not taken (Node.js has no flock): the daemon runs no other runsc
 * command on a container it is deleting (the engine holds the container's lock; an ended
 * sandbox's state is read from conmon's exit file, not from runsc).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CGROUP_ROOT, cleanCgroupPath } from '../../cgroup/hierarchy.ts';
import { rmdirCgroup } from '../../cgroup/tree.ts';
import { ID_RE, pidAlive } from '../conmon/shared.ts';
import { isObject } from '../../util/guards.ts';

/** What deleting ended sandbox `id` removes (endedSandbox). */
export interface EndedSandbox {
  id: string;
  stateFile: string;
  lockFile: string;
  /** The sandbox's cgroup directories, one per v1 controller runsc made it in. */
  cgroupDirs: string[];
}

const CONTROLLER_RE = /^[a-z_]{1,32}$/;

/**
 * What `runsc delete --force <id>` would remove for root container `id` of state dir `stateDir`,
 * whose runtime exit conmon recorded and whose spec names cgroup `cgroupsPath`; undefined when the
 * case is not the one described in the file comment (runsc is run then). Reads a few small files.
 */
export function endedSandbox(stateDir: string, id: string, cgroupsPath: string | undefined, cgroupRoot = CGROUP_ROOT): EndedSandbox | undefined {
  if (!ID_RE.test(id)) return undefined;
  const base = join(stateDir, `${id}_sandbox:${id}`);
  let st: unknown;
  try { st = JSON.parse(readFileSync(`${base}.state`, 'utf8')); } catch { return undefined; }
  if (!isObject(st) || st.id !== id || !isObject(st.saver) || !isObject(st.saver.id) || st.saver.id.sandboxId !== id || st.saver.id.containerId !== id) return undefined;
  const sb = st.sandbox;
  if (!isObject(sb) || sb.id !== id || typeof sb.pid !== 'number') return undefined;
  // another container of this sandbox still recorded: runsc's own handling
  let names: string[];
  try { names = readdirSync(stateDir); } catch { return undefined; }
  if (names.some((n) => n.endsWith(`_sandbox:${id}.state`) && n !== `${id}_sandbox:${id}.state`)) return undefined;
  // the gofer gone (or forgotten: 0); the sandbox process not running (its pid may be another's by now)
  if (typeof st.goferPid !== 'number' || (st.goferPid !== 0 && pidAlive(st.goferPid))) return undefined;
  if (sandboxRuns(sb.pid, id)) return undefined;
  const cgroupDirs: string[] = [];
  if (sb.cgroup !== null && sb.cgroup !== undefined) {
    const v1 = isObject(sb.cgroup) && Object.keys(sb.cgroup).length === 1 ? sb.cgroup.cgroupv1 : undefined;
    if (!isObject(v1) || typeof v1.name !== 'string' || !isObject(v1.own)) return undefined;
    if (v1.parents !== null && v1.parents !== undefined && !(isObject(v1.parents) && Object.keys(v1.parents).length === 0)) return undefined;
    const rel = cleanCgroupPath(v1.name);
    if (rel === undefined || cgroupsPath === undefined || cleanCgroupPath(cgroupsPath) !== rel) return undefined;
    for (const [ctl, made] of Object.entries(v1.own)) {
      if (made !== true) continue;
      if (!CONTROLLER_RE.test(ctl)) return undefined;
      cgroupDirs.push(join(cgroupRoot, ctl, rel));
    }
  } else if (cgroupsPath) return undefined; // a cgroup in the spec but none in runsc's state: not known here
  return { id, stateFile: `${base}.state`, lockFile: `${base}.lock`, cgroupDirs };
}

/**
 * Removes what endedSandbox found: the cgroup directories (one just emptied may be busy a moment),
 * then the state and lock files. false, with the state left in place, when a cgroup directory
 * stays: the caller runs `runsc delete` then.
 */
export async function removeEndedSandbox(s: EndedSandbox): Promise<boolean> {
  // busy while the sandbox's last tasks (ptrace stubs) finish exiting: retried for ~1 s, as runsc's
  // own delete retries; one gone is fine (the same hierarchy under another controller's name)
  for (const dir of s.cgroupDirs) if (!(await rmdirCgroup(dir))) return false;
  await rm(s.stateFile, { force: true });
  await rm(s.lockFile, { force: true });
  return true;
}

/** The sandbox process of `id` is running: pid `pid` is runsc's sandbox for that id (a reused pid is not). */
function sandboxRuns(pid: number, id: string): boolean {
  if (!pidAlive(pid)) return false;
  let argv: string[];
  try { argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'); } catch { return false; }
  return argv[0] === 'runsc-sandbox' && argv.some((a) => a.includes(id));
}
