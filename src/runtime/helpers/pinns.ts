/**
 * Pod namespaces without a pause process (see pinns.c): the IPC and UTS namespaces of a pod (and,
 * for a loopback-only pod, its network namespace) are created once, configured, and kept alive
 * by bind mounts on files under the pod's directory. Containers join them by path.
 *
 * Compared with a pause container (conmon + `runc create` + `runc start`, then kill, wait and
 * `runc delete` at removal) this is one ~2 ms process at creation and one at removal, and no
 * process per pod. A pod that shares one PID namespace among its containers still needs a
 * process to own it; the engine keeps the pause container for that case.
 *
 * The helper is built from pinns.c with the host's gcc on first use into a cache directory,
 * named by the hash of its source (so an edited source is rebuilt, concurrent daemons share it).
 */
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError, InvalidArgumentError, UnavailableError } from '../../errors.ts';
import { compileC, sourceKey } from '../../util/cc.ts';
import { run } from '../../util/exec.ts';

const SOURCE = join(import.meta.dirname, 'pinns.c');
/** Where built helpers are cached unless the caller says otherwise. */
export const DEFAULT_HELPER_DIR = '/var/cache/bulkhead/bin';

const builds = new Map<string, Promise<string>>();

/** Path of a built helper from a C source next to this file (built once per source hash); UnavailableError without gcc. */
export function ensureHelper(source: string, name: string, helperDir: string = DEFAULT_HELPER_DIR): Promise<string> {
  const key = `${helperDir}\0${source}`;
  let p = builds.get(key);
  if (!p) {
    p = (async () => {
      const bin = join(helperDir, `${name}-${await sourceKey(source)}`);
      try {
        await access(bin, constants.X_OK);
      } catch {
        await compileC(source, bin, []);
      }
      return bin;
    })();
    builds.set(key, p);
    p.catch(() => builds.delete(key));
  }
  return p;
}

/** Path of a built bulkhead-pinns (building it once if needed); UnavailableError without gcc. */
export function ensurePinns(helperDir: string = DEFAULT_HELPER_DIR): Promise<string> {
  return ensureHelper(SOURCE, 'bulkhead-pinns', helperDir);
}

export interface PinRequest {
  /** Files to create and pin the new namespaces on (each must not exist yet). */
  ipc?: string;
  uts?: string;
  net?: string;
  /** Enter this network namespace before applying net.* sysctls (a CNI-made netns). */
  joinNet?: string;
  /** Set in the new UTS namespace (needs `uts`). */
  hostname?: string;
  /** Bring loopback up in the new network namespace. */
  loopbackUp?: boolean;
  /** Applied inside the new namespaces (kernel.shm*, net.*, ...); keys dotted or slashed. */
  sysctls?: Record<string, string>;
  signal?: AbortSignal;
}

const IPC_SYSCTLS = new Set(['kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax', 'kernel.shmmni', 'kernel.shm_rmid_forced']);
const UTS_SYSCTLS = new Set(['kernel.hostname', 'kernel.domainname']);

/**
 * Refuses sysctls that would not land in one of the pod's own namespaces (they would change the
 * host): IPC ones need a private IPC namespace, net.* a private network namespace, and
 * kernel.hostname/domainname a private UTS namespace. Everything else is node-wide.
 */
export function checkPinnableSysctls(sysctls: Record<string, string>, own: { ipc: boolean; uts: boolean; net: boolean }): void {
  for (const raw of Object.keys(sysctls)) {
    const key = raw.replaceAll('/', '.');
    const ok = IPC_SYSCTLS.has(key) || key.startsWith('fs.mqueue.') ? own.ipc
      : key.startsWith('net.') ? own.net
        : UTS_SYSCTLS.has(key) ? own.uts : false;
    if (!ok) throw new InvalidArgumentError(`sysctl ${raw} is not namespaced to this pod (it would change the node); it cannot be set here`);
  }
}

/** Creates and pins the namespaces; on failure nothing is left behind and the error says why. */
export async function pinNamespaces(bin: string, req: PinRequest): Promise<void> {
  const args: string[] = [];
  if (req.joinNet) args.push('--join-net', req.joinNet);
  if (req.ipc) args.push('--ipc', req.ipc);
  if (req.uts) args.push('--uts', req.uts);
  if (req.net) args.push('--net', req.net);
  if (req.hostname) args.push('--hostname', req.hostname);
  if (req.loopbackUp) args.push('--lo-up');
  for (const [k, v] of Object.entries(req.sysctls ?? {})) args.push('--sysctl', `${k}=${v}`);
  const r = await run(bin, args, { timeoutMs: 10_000, ...(req.signal ? { signal: req.signal } : {}) });
  if (r.code !== 0) {
    const msg = r.stderr.trim() || `exit ${r.code}`;
    // a sysctl the kernel does not have (or refuses) is the caller's input, not our fault
    if (/sysctl/.test(msg)) throw new InvalidArgumentError(`cannot apply pod sysctls: ${msg}`);
    throw new UnavailableError(`cannot create the pod's namespaces: ${msg}`);
  }
}

/** Unmounts and removes pinned namespace files; missing or unmounted ones are fine. */
export async function unpinNamespaces(bin: string, files: string[], signal?: AbortSignal): Promise<void> {
  if (files.length === 0) return;
  const r = await run(bin, ['--unpin', ...files], { timeoutMs: 10_000, ...(signal ? { signal } : {}) });
  if (r.code !== 0 || r.stderr.trim()) throw new InternalError(`unpinning ${files.join(', ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
}
