/**
 * Warm pools for microvm pods (engine/warm-pool.ts): what a pooled pod VM needs when a pod adopts it.
 *
 * Fixed when the VM starts: its network (a member's netns has its IP already, and its VM was started
 * with it: the kernel command line, or a clone's `U` identity), size, devices (the virtio-fs share:
 * members boot with one unless their pool says `volumes = "none"`, see the engine's match), and its
 * template scope (the member's trust level). Applied at adoption:
 *
 *  - the hostname: the sandbox container in the guest has its own UTS namespace, which every app
 *    container of the pod joins (the agent's `join_uts`; app specs carry no hostname), set from the
 *    sandbox spec at start — a member's has none. A pooled VM is armed (`arm`, before the member
 *    counts as ready): after one warm-up round of the same path (`cat` fed a line), an exec session
 *    in the sandbox container, `busybox hostname -F /dev/stdin` with CAP_SYS_ADMIN only (no_new_privs,
 *    the container's seccomp filter) blocked on its stdin, held by this daemon over the VM
 *    supervisor's socket (no host process). Adoption writes the name and end-of-input and waits for
 *    the exit (one round trip through the supervisor and the agent: ~16 ms under TCG here); no
 *    hostname = the connection just closes. The session ends with the connection (the supervisor
 *    kills it): a daemon that dies takes it with it. Not armed (or the armed process failed): a
 *    one-shot exec of a shell that reads the name.
 *  - /etc/hosts and resolv.conf: nothing to do, their contents travel in each container's request.
 *  - the cgroup: the engine moves every process of the VM's cgroup (QEMU, virtiofsd and its child)
 *    to the pod's cgroup_parent (cgroup/move.ts); `movedTo` then rewrites the pod VM's record of its
 *    cgroups (`<podDir>/cgroups.json`, which the supervisor and `delete` remove) to name the new
 *    place, and the bundle's cgroupsPath (stats).
 */
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError, InternalError, InvalidArgumentError } from '../../errors.ts';
import { VmdClient } from '../../vm/client.ts';
import { readRecord } from '../../vm/state.ts';
import type { Frame } from '../../vm/protocol.ts';
import { processKv } from '../../vm/spec.ts';
import { cleanCgroupPath } from '../../cgroup/hierarchy.ts';
import { JournalFile } from '../../cgroup/tree.ts';
import type { Logger } from '../../util/log.ts';

/**
 * Armed: busybox `hostname -F` already running, blocked reading its stdin, sets the first line it
 * gets (no exec in the guest at adoption: under TCG a fresh VM's exec of it costs ~100 ms). One-shot:
 * the name as an argument.
 */
const ARMED = ['/bin/busybox', 'hostname', '-F', '/dev/stdin'];
const ONE_SHOT = ['/bin/busybox', 'sh', '-c', 'read -r h || exit 3; exec /bin/busybox hostname "$h"'];
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/;
const EXIT_TIMEOUT_MS = 10_000;
/** A warm-up's bound: three guest requests on a cold translation cache (~0.4 s here under TCG), under load. */
const WARMUP_TIMEOUT_MS = 60_000;

interface Armed { client: VmdClient; gid: number; exit: Promise<number> }

/** One exec session of the shell in the sandbox container; resolves once the guest started it. */
async function startShell(stateDir: string, sandboxId: string, args: string[], signal?: AbortSignal): Promise<Armed> {
  const rec = await readRecord(stateDir, sandboxId);
  const client = await VmdClient.connect(join(rec.podDir, 'vmd.sock'), signal, 10_000);
  try {
    const caps = ['CAP_SYS_ADMIN'];
    const kv = processKv({
      args, env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 }, noNewPrivileges: true,
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
    }).map(([k, v]) => [k, String(v)] as [string, string]);
    // the session's frames may come right after the answer: listen first
    let gid = -1;
    const early: Frame[] = [];
    let settle!: (code: number) => void;
    const exit = new Promise<number>((resolve) => { settle = resolve; });
    client.on('frame', (f) => {
      if (gid < 0) { early.push(f); return; }
      if (f.id === gid && f.type === 'X') settle(Number(f.payload.toString()));
    });
    client.on('gone', () => settle(-1));
    const r = await client.request<{ id: number }>('exec', { name: sandboxId, kv }, 20_000);
    gid = r.id;
    for (const f of early) if (f.id === gid && f.type === 'X') settle(Number(f.payload.toString()));
    return { client, gid, exit };
  } catch (e) {
    client.close();
    throw e;
  }
}

/**
 * One throwaway container through the VM (the supervisor's `warmup`: create, start, delete, so the
 * pod's first app container runs on code TCG has translated), then `busybox cat` in the sandbox
 * container fed one line: the path adoption takes, once. $BULKHEAD_VM_POOL_WARMUP=0 skips the first
 * (to measure it, bench/pool.ts).
 */
async function warmUp(stateDir: string, sandboxId: string, log: Logger): Promise<void> {
  if (process.env.BULKHEAD_VM_POOL_WARMUP !== '0') {
    const rec = await readRecord(stateDir, sandboxId);
    const client = await VmdClient.connect(join(rec.podDir, 'vmd.sock'), undefined, 10_000);
    try {
      const r = await client.request<{ ms: number }>('warmup', {}, WARMUP_TIMEOUT_MS);
      log.debug('pooled pod VM warmed up', { sandbox: sandboxId, ms: r.ms });
    } catch (e) {
      log.warn('a pooled pod VM\'s container warm-up failed (its first container starts on a cold translation cache)', { sandbox: sandboxId, err: e });
    } finally {
      client.close();
    }
  }
  const a = await startShell(stateDir, sandboxId, ['/bin/busybox', 'cat']);
  try {
    a.client.send('I', a.gid, 'warm-up\n');
    a.client.send('I', a.gid);
    let t: NodeJS.Timeout | undefined;
    await Promise.race([a.exit, new Promise((resolve) => { t = setTimeout(resolve, EXIT_TIMEOUT_MS); })]);
    clearTimeout(t);
  } finally {
    a.client.close();
  }
}

export class VmPoolAdoption {
  readonly #stateDir: () => string;
  readonly #log: Logger;
  readonly #armed = new Map<string, Promise<Armed | undefined>>();
  #closed = false;

  constructor(stateDir: () => string, log: Logger) {
    this.#stateDir = stateDir;
    this.#log = log;
  }

  /**
   * A pooled VM runs: its hostname shell waits in the sandbox container from now on. Settles once the
   * guest started it (a member is ready only then: under TCG a fresh VM's first exec takes 100+ ms).
   */
  async arm(sandboxId: string): Promise<void> {
    if (this.#closed || this.#armed.has(sandboxId)) return;
    // one full round first (exec, stdin, exit), so the guest's first pass through those paths (TCG
    // translates code on first use) is not the adopting pod's
    const p = warmUp(this.#stateDir(), sandboxId, this.#log).then(() => startShell(this.#stateDir(), sandboxId, ARMED)).then((a) => {
      // a VM that goes away (removed from the pool) ends the session; the entry goes with it
      void a.exit.then(() => { if (this.#armed.get(sandboxId) === p) this.#armed.delete(sandboxId); a.client.close(); });
      return a;
    }, (e: unknown) => {
      this.#log.warn('cannot arm a pooled pod VM for its hostname; adoption will run a one-shot exec', { sandbox: sandboxId, err: e });
      if (this.#armed.get(sandboxId) === p) this.#armed.delete(sandboxId);
      return undefined;
    });
    this.#armed.set(sandboxId, p);
    await p;
  }

  /** Sets the pod's hostname ('' = none) in a pooled VM's sandbox UTS namespace. */
  async setHostname(sandboxId: string, hostname: string, signal: AbortSignal): Promise<void> {
    if (hostname && !HOSTNAME.test(hostname)) throw new InvalidArgumentError('microvm: the pod hostname is not a valid host name (letters, digits, dots and dashes, 1-253 characters)');
    const pending = this.#armed.get(sandboxId);
    this.#armed.delete(sandboxId);
    const armed = pending ? await pending : undefined;
    // no hostname: the armed shell just goes (the supervisor kills a session whose connection closes)
    if (armed && !hostname) { armed.client.close(); return; }
    if (armed) {
      const code = await this.#give(armed, hostname, signal);
      if (code === 0) return;
      this.#log.warn('armed hostname shell of a pooled pod VM failed; running a one-shot exec', { sandbox: sandboxId, exit: code });
    }
    if (!hostname) return;
    const once = await startShell(this.#stateDir(), sandboxId, ONE_SHOT, signal);
    const code = await this.#give(once, hostname, signal);
    if (code !== 0) throw new InternalError(`microvm: setting the pod hostname in VM ${sandboxId.slice(0, 12)} failed (exit ${code}); the pod starts cold`);
  }

  async #give(a: Armed, hostname: string, signal: AbortSignal): Promise<number> {
    try {
      if (a.client.goneReason !== undefined) return -1;
      a.client.send('I', a.gid, `${hostname}\n`);
      a.client.send('I', a.gid);
      let t: NodeJS.Timeout | undefined;
      const timeout = new Promise<number>((resolve) => { t = setTimeout(() => resolve(-2), EXIT_TIMEOUT_MS); });
      const aborted = new Promise<number>((resolve) => signal.addEventListener('abort', () => resolve(-3), { once: true }));
      try { return await Promise.race([a.exit, timeout, aborted]); } finally { clearTimeout(t); }
    } finally {
      a.client.close();
    }
  }

  /**
   * The engine moved the VM's processes from cgroup `from` to `to`: the pod VM's record of its
   * cgroups names the new directories, so whoever removes the pod removes them.
   */
  async movedTo(sandboxId: string, from: string, to: string): Promise<void> {
    const src = cleanCgroupPath(from);
    const dst = cleanCgroupPath(to);
    if (!src || !dst) throw new FailedPreconditionError(`microvm: VM ${sandboxId.slice(0, 12)} has no cgroup to move from`);
    const rec = await readRecord(this.#stateDir(), sandboxId);
    const file = join(rec.podDir, 'cgroups.json');
    // the journal's format (cgroup/tree.ts JournalFile), written once: the old dirs (gone) and the new
    const dirs = new JournalFile(file).dirs();
    const next = [...dirs, ...dirs.filter((d) => d.endsWith(`/${src}`)).map((d) => `${d.slice(0, -src.length)}${dst}`).filter((d) => !dirs.includes(d))];
    if (next.length === dirs.length) return;
    await writeFile(`${file}.tmp`, JSON.stringify(next), { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  /** The daemon closes: armed sessions end (their shells are killed in the guests). */
  close(): void {
    this.#closed = true;
    for (const p of this.#armed.values()) void p.then((a) => a?.client.close());
    this.#armed.clear();
  }
}
