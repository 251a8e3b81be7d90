/** What several bulkhead-vm commands share: how supervisors are spawned and waited for, the pod's supervisor client. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeadlineExceededError, UnavailableError } from '../../errors.ts';
import type { Command } from '../../util/command.ts';
import { freshBundle } from '../../util/bundle.ts';
import { VmdClient } from '../client.ts';
import { parseReadyLine } from '../ready.ts';
import type { ContainerRecord } from '../state.ts';
import type { VmGlobal } from './global.ts';

export interface VmCommand extends Command<VmGlobal> {
  /**
   * Takes a container ID as its first argument, and finds a container created under another
   * --root through the default root's by-id index (podman's cleanup through conmon runs `delete`
   * without the runtime flags).
   */
  byId?: boolean;
  /** Stop parsing flags after this many positionals (exec: the ID, then the command and its flags). */
  positionalsBeforeArgs?: number;
}

/** The program's entry point: the pod supervisor is started as `node <cli.ts> _vmd ...`. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli.ts');
export const NODE_ARGS = ['--disable-warning=ExperimentalWarning'];
/** The supervisors' bundle under the repository (src/cli/bundle-build.ts VM_SUPERVISOR_BUNDLE). */
export const SUPERVISOR_BUNDLE_DIR = 'dist/vm';
export const SUPERVISOR_MANIFEST = 'supervisor.json';
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * What a supervisor (`_vmhost`, `_vmd`: long-lived Node.js processes) is started from: the
 * supervisors' bundle (`npm run build:cli`, `npm ci`, setup) when it matches the sources, else the
 * CLI's source (src/util/bundle.ts; BULKHEAD_CLI_BUNDLE=0: always the sources). From the sources, a
 * supervisor whose modules are not in Node's compile cache for its flags (the first after an
 * install or upgrade) strips their types with Node's WebAssembly stripper and holds it as long as
 * it lives: the node-wide host ~52 instead of ~27 MiB PSS with 10 pods (src/vm/README.md).
 */
export function supervisorEntry(env: NodeJS.ProcessEnv = process.env): string {
  const dir = join(REPO, SUPERVISOR_BUNDLE_DIR);
  const bundle = env.BULKHEAD_CLI_BUNDLE === '0' ? undefined : freshBundle(dir, REPO, SUPERVISOR_MANIFEST);
  return bundle ? join(dir, bundle) : CLI;
}
/** The node-wide VM supervisor's socket (`--supervisor node`, vmhost.ts). */
export function hostSocket(root: string): string { return join(root, 'vmhost.sock'); }
/**
 * Node.js flags of the pod supervisor (`_vmd`, one long-lived process per pod), measured with
 * bench/vm-lean.ts (idle pod, TCG): V8's size-over-speed mode and 1 MiB semi-spaces take its private
 * memory from ~21 to ~17 MiB; --jitless and --lite-mode cannot run it (type stripping needs
 * WebAssembly the first time a module is not in the compile cache); --single-threaded,
 * --v8-pool-size=1, --max-old-space-size and a forced GC after boot changed nothing measurable.
 * Extra flags for measuring come from $BULKHEAD_VMD_V8_FLAGS (space-separated, each `--...`).
 */
export function vmdNodeArgs(env: NodeJS.ProcessEnv = process.env): string[] {
  const extra = (env.BULKHEAD_VMD_V8_FLAGS ?? '').split(' ').filter((f) => /^--[a-z0-9-]+(=[A-Za-z0-9._-]+)?$/.test(f));
  return [...NODE_ARGS, '--optimize-for-size', '--max-semi-space-size=1', ...extra];
}

export function spawnDetached(args: string[], stdio: ('inherit' | 'ignore' | 'pipe' | number)[], cmd: string = process.execPath, cwd?: string): ReturnType<typeof spawn> {
  // a supervisor (Node.js) keeps Node's compile cache as bin/bulkhead-vm sets it, also when the
  // caller is a daemon started without it: else every supervisor strips its TypeScript again
  // (~150 ms of CPU and the stripper's ~13 MiB of private memory, see cmd/vmd.ts)
  const env = cmd === process.execPath && !process.env.NODE_COMPILE_CACHE ? { ...process.env, NODE_COMPILE_CACHE: NODE_COMPILE_CACHE_DIR } : process.env;
  return spawn(cmd, args, { detached: true, stdio, env, ...(cwd ? { cwd } : {}) });
}

/** Node's compile cache of Bulkhead's processes (bin/bulkhead, bin/bulkhead-vm: $NODE_COMPILE_CACHE's default). */
export const NODE_COMPILE_CACHE_DIR = '/var/cache/bulkhead/node';

/** Reads the ready line (ready.ts) from a child's fd 3: its pid, or the error it carries; rejects if it exits first. */
export function readyLine(child: ReturnType<typeof spawn>, what: string, timeoutMs: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    let buf = '';
    const timer = setTimeout(() => reject(new UnavailableError(`${what} did not become ready within ${timeoutMs} ms`)), timeoutMs);
    pipe.on('data', (b: Buffer) => {
      buf += b.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        const r = parseReadyLine(buf.slice(0, nl), what);
        if ('pid' in r) resolvePromise(r.pid); else reject(r.error);
      }
    });
    pipe.on('end', () => { clearTimeout(timer); if (!buf.includes('\n')) reject(new UnavailableError(`${what} exited before it was ready`)); });
  });
}

/** Closes the child's end of the ready pipe (the child keeps running). */
export function closeReadyPipe(child: ReturnType<typeof spawn>): void {
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
}

/**
 * A guest step run by a `bulkhead-vm` command (start, kill): bounded by the boot timeout — its caller
 * (conmon under podman) may set none, and a guest that never answers must not hold it for ever —
 * with the setting named when it runs out.
 */
export async function guestStep<T>(g: VmGlobal, what: string, f: (timeoutMs: number) => Promise<T>): Promise<T> {
  try {
    return await f(g.bootTimeoutMs);
  } catch (e) {
    if (!(e instanceof DeadlineExceededError)) throw e;
    throw new DeadlineExceededError(`${what}: ${e.message} (a guest step is bounded by the boot timeout: --boot-timeout or BULKHEAD_VM_BOOT_TIMEOUT_MS)`, { cause: e });
  }
}

/** One connection to the pod's VM supervisor for `f` (`connectTimeoutMs` bounds the connect). */
export async function withPod<T>(rec: ContainerRecord, f: (c: VmdClient) => Promise<T>, connectTimeoutMs?: number): Promise<T> {
  const c = await VmdClient.connect(join(rec.podDir, 'vmd.sock'), undefined, connectTimeoutMs);
  try { return await f(c); } finally { c.close(); }
}

export function readFileSafe(p: string): string { try { return readFileSync(p, 'utf8'); } catch { return ''; } }
