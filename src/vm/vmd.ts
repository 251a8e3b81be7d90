// Over 500 lines on purpose: the supervisor's one event loop (boot, agent channel, client routing, slots, shutdown) reads best as one file; the VMM drivers, protocol and cgroup placement live beside it.
/**
 * The pod VM supervisor: one detached process per pod (`bulkhead-vm _vmd`), started by the
 * pod's first `create`. It boots the VM, holds the agent channel and routes between the agent and
 * its host clients (container supervisors, `kill`, `exec`, `delete`, `state`) that connect to
 * `<podDir>/vmd.sock`.
 *
 * Client protocol: the frames of protocol.ts. `Q` (id = request id, JSON {op, ...}) is answered by
 * `A` (JSON result) or `F` (message) with the same id. Data frames use the guest session id:
 * `I`/`W` from the session's owner to the guest; `O`/`R`/`X` and `B` (started, payload pid) from
 * the guest to the owner. `V` (JSON {reason}) tells every client that the VM is gone.
 *
 * Drive slots: SLOT_COUNT sparse files exist from boot (microvm cannot hotplug); a container's
 * read-only image is copied into a free slot before the guest mounts it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdir, open, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { joinVmmCgroups, placeVmm, processTree, removeVmmCgroups } from './vm-cgroup.ts';
import { AlreadyExistsError, DeadlineExceededError, FailedPreconditionError, fromWire, InvalidArgumentError, NotFoundError, ResourceExhaustedError, toWire, UnavailableError } from '../errors.ts';
import { agentError } from './agent-errors.ts';
import { recordProc } from './procs.ts';
import { prepareShare, releaseShare, SHARE_SOCKET, shareDir, VIRTIOFSD } from './share.ts';
import type { Logger } from '../util/log.ts';
import { attachTap, detachTap, type TapAttachment } from '../network/tap.ts';
import { run } from '../util/exec.ts';
import type { GuestAssets } from './assets.ts';
import { encodeFrame, encodeKv, FrameDecoder, type Frame } from './protocol.ts';
import type { Accel, AdoptedVmm, StandbyProvider, StandbySpec, TemplateImage, TemplateProvider, TemplateRequest, VmConfig, VmHandle, Vmm } from './vmm.ts';
import { randomBytes } from 'node:crypto';
import { genericSandboxKv, podSandboxKv, sandboxHash, runThrowaway, warmUpKv, type SandboxRequest } from './template-sandbox.ts';
import { fillSlotFile } from './slots.ts';
import { trace } from './trace.ts';
import { processCpuMs } from '../util/proc.ts';
import { trimIdleMs, trimTranslations, TRIM_BUSY_PERMILLE } from './tb-trim.ts';
import { agentStartWaitMs, cloneStepMs } from './limits.ts';
import { parseCopies, PodCopies, type CopyVolume } from './copy-volumes.ts';

/**
 * Drive slots per pod VM (microvm has no hotplug): the most containers a pod VM holds at once, its
 * sandbox and exited-but-not-deleted ones included. QEMU 7.2's microvm has 24 virtio-mmio transports
 * (8 without its second IO-APIC, which is on by default); the agent channel, the virtio-fs share and
 * the NIC take 3, so at most 21 fit (22 fail to boot). Each costs a sparse file and a little guest
 * and QEMU memory; measured (bench/vm-lean.ts, TCG) 4 → 20 slots: boot +~0.3 s, QEMU PSS within
 * the noise (±10 MiB). 8 covers a pod with its sidecars and init containers.
 */
export const SLOT_COUNT = 8;
/**
 * TCG's translation buffer of a clone, in MiB (`-accel tcg,tb-size=`): what the guest ran since its
 * restore stays resident up to this size (QEMU's default is 1 GiB here). An idle clone whose sandbox
 * container started holds ~22 MiB of it whatever the size above that; a smaller buffer is flushed
 * and refilled during a container's start: measured (bench/vm-tb.ts, TCG, load ~4, medians of 6-8
 * interleaved rounds) `run --rm … true` 1162 ms with QEMU's default vs 1152 at 32; 1241 vs 1681 at
 * 16 (6 MiB less) and 2460 at 8 (14 MiB less). So 32: no latency given away, a busy clone's buffer
 * capped at 32 MiB instead of 1 GiB.
 * $BULKHEAD_VM_CLONE_TB_MIB sets another (0 = QEMU's default). A booted VM keeps QEMU's default.
 */
export const CLONE_TB_MIB = 32;
export function cloneTbMiB(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.BULKHEAD_VM_CLONE_TB_MIB;
  const n = v !== undefined && /^\d{1,4}$/.test(v) ? Number(v) : CLONE_TB_MIB;
  return n > 0 ? n : undefined;
}
/**
 * Output flow control: the most one client connection may have queued in the supervisor (frames
 * written for it that its socket has not taken yet) before the pod's guest channel is paused. A
 * client that stops reading (a foreground exec whose caller stops reading: the C shim blocks on its
 * stdout and stops reading vmd.sock) then stops its own pod's guest — QEMU's virtio-serial port is
 * throttled and the agent's writes wait, as a process's writes wait on a full pipe — never another
 * pod's, and the supervisor holds at most this (plus one read of the channel) for it; the channel
 * reads on once that client has taken everything queued (or is gone). The same bound holds input:
 * a client whose `I`/`W` frames the guest channel has not taken (over this much queued) is not read
 * until the channel drains. Under `--supervisor node` this is what keeps one tenant from growing
 * the process that serves every tenant's VMs (test/vm/vmd-fake-agent.test.ts "a client that stops
 * reading …").
 */
export const CLIENT_BUFFER_BYTES = 1 << 20;
/** Apparent size of each slot file (sparse); the largest root image a container can have. */
export const SLOT_BYTES = 16 * 1024 * 1024 * 1024;

export interface VmdOptions {
  podId: string;
  podDir: string;
  assets: GuestAssets;
  vmm: Vmm;
  accel: Accel;
  memoryMiB: number;
  vcpus: number;
  bootTimeoutMs: number;
  /** cgroup (relative to each hierarchy's root) for the VMM process; "" = none. */
  cgroup: string;
  /** The pod's CPU limit for the VMM's cgroup (CFS quota/period, µs); absent = none. */
  cpuQuota?: number;
  cpuPeriod?: number;
  /** The pod's network namespace (path): the VM gets its interface through a tap there. Absent = no network. */
  netns?: string;
  /**
   * Where to get a template to clone this VM from (template.ts); absent = always boot. Used only
   * for a QEMU VM without a volume share (`volumes` false), else the VM boots, saying why.
   */
  templates?: TemplateProvider;
  /** The pod may bind volumes (virtio-fs): the VM gets a share, which a clone cannot have. Default true. */
  volumes?: boolean;
  /**
   * The sandbox container's create request (template-sandbox.ts): a clone of a template that has
   * this sandbox container created and started adopts it when the request comes.
   */
  sandbox?: SandboxRequest;
  /**
   * Clone VMMs spawned ahead (standby-vmm.ts; the node-wide host): a clone adopts the one spawned
   * for its template instead of spawning QEMU. Absent = always spawn.
   */
  standbys?: StandbyProvider;
  logger: Logger;
}

/** Writes `v` as JSON to `path` atomically (a reader sees the old file or the new one). */
async function writeJsonFile(path: string, v: unknown): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(v), { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

/** Name of the tap the pod VM's NIC uses inside the pod netns. */
export const POD_TAP = 'bhvm0';
/** The pod's interface in its netns (CNI's eth0), joined to the tap. */
const POD_IF = 'eth0';

/** Whether the pod netns has its pod interface (`--network none` pods have only lo). */
async function hasPodInterface(netns: string): Promise<boolean> {
  const r = await run('nsenter', [`--net=${netns}`, '--', 'ip', '-j', 'link', 'show'], { timeoutMs: 20_000 });
  if (r.code !== 0) throw new FailedPreconditionError(`cannot list the interfaces of pod netns ${netns}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return (JSON.parse(r.stdout) as { ifname?: string }[]).some((l) => l.ifname === POD_IF);
}

/**
 * Kernel command line words the guest init reads to configure eth0 (see initScript in assets.ts):
 * `bulkhead.addr=IP/PREFIX` (repeatable), `bulkhead.gw=IP`, `bulkhead.mtu=N`.
 */
export function guestNetArgs(t: Pick<TapAttachment, 'addresses' | 'gateway' | 'mtu'>): string[] {
  const ip4 = /^\d{1,3}(\.\d{1,3}){3}$/;
  const out: string[] = [];
  for (const a of t.addresses) {
    const [ip, len] = a.split('/');
    if (!ip || !ip4.test(ip) || !/^\d{1,2}$/.test(len ?? '')) throw new InvalidArgumentError(`bad pod address ${a}`);
    out.push(`bulkhead.addr=${a}`);
  }
  if (t.gateway) {
    if (!ip4.test(t.gateway)) throw new InvalidArgumentError(`bad pod gateway ${t.gateway}`);
    out.push(`bulkhead.gw=${t.gateway}`);
  }
  if (!Number.isInteger(t.mtu) || t.mtu < 68 || t.mtu > 65535) throw new InvalidArgumentError(`bad pod MTU ${t.mtu}`);
  out.push(`bulkhead.mtu=${t.mtu}`);
  return out;
}

/** A request to the guest; `done`: one the supervisor made itself (a warm-up), answered to it rather than to a client. */
interface Pending { conn: Socket | null; reqId: number; op: string; name?: string; done?: (ok: boolean, text: string) => void }
interface Session { gid: number; owner: Socket | null; name?: string; exec: boolean; exited?: number }
/** `request`: a sandbox container's create request (its root image and kv), which a warm-up repeats. */
interface Container { name: string; gid: number; slot: number; sandbox: boolean; request?: SandboxRequest }

/** What the containers map knows a template's sandbox container by until a create adopts it (never a container id: checkId). */
const PRESTARTED = '(template sandbox)';
/** What the containers map knows a warm-up's throwaway container by (never a container id). */
const WARMUP = '(warm-up)';

/**
 * Protocol version of the guest agent this host needs: 2 = the agent applies PID namespaces,
 * capabilities, no_new_privs and seccomp; 3 = it binds the pod's volumes from the virtio-fs share;
 * 4 = it applies the pod's sysctls in each container's namespaces; 5 = a container may share the
 * pod's IPC/UTS namespaces and the sandbox's or a target's PID namespace (an older agent would
 * ignore all these: fail closed); 6 = it takes its identity (entropy, clock, network) after a
 * restore from a template (`U`); 7 = the identity also names the template's sandbox container and
 * sets the pod's hostname in its UTS namespace and the pod's files on its root (`sb=`, `sb_*`);
 * 8 = copied volumes (`Y`, `cvol`: copy-volumes.ts). 9 (not required: checked per request by
 * PodCopies.add) = a copied emptyDir of a known size (`Y op=ed`).
 */
export const AGENT_PROTOCOL = 8;

/** Refuses an agent older than AGENT_PROTOCOL, naming the setup command for `assetsDir` (<root>/vm). */
export function checkAgentProtocol(version: number, assetsDir: string): void {
  if (version >= AGENT_PROTOCOL) return;
  throw new FailedPreconditionError(`the guest agent in ${assetsDir} speaks protocol ${version}, this host needs ${AGENT_PROTOCOL} (namespaces, capabilities, seccomp, volumes, sysctls, template identity, a template's sandbox container and copied volumes in the guest); run \`bin/bulkhead-vm --assets ${dirname(assetsDir)} setup\` (or scripts/setup.sh)`);
}

/** Waits for the agent's hello on a fresh VM; errors carry the last console lines. */
export async function waitForHello(vm: VmHandle, timeoutMs: number): Promise<{ kernel: string; version: number; rest: Buffer }> {
  return await new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err?: Error, v?: { kernel: string; version: number; rest: Buffer }): void => {
      clearTimeout(timer);
      vm.control.off('data', onData);
      void vm.wait().then(() => {}); // keep the promise observed
      if (err) reject(err); else resolve(v!);
    };
    const fail = async (msg: string, Cls: typeof DeadlineExceededError): Promise<void> => {
      const tail = await vm.consoleTail(15);
      done(new Cls(`${msg}${tail.length ? `; last console lines:\n  ${tail.join('\n  ')}` : ' (the console is empty)'}`));
    };
    const timer = setTimeout(() => { void fail(`the guest agent did not answer within ${timeoutMs} ms (accel ${vm.accel})`, DeadlineExceededError); }, timeoutMs);
    const onData = (b: Buffer): void => {
      buf = Buffer.concat([buf, b]);
      if (buf.length < 9) return;
      if (buf[0] !== 0x48 /* H */) { void fail(`agent protocol violation: first frame is 0x${buf[0]!.toString(16)}, not hello`, DeadlineExceededError); return; }
      const len = buf.readUInt32BE(5);
      if (len > 4096) { void fail('agent protocol violation: oversized hello', DeadlineExceededError); return; }
      if (buf.length < 9 + len) return;
      const hello = buf.subarray(9, 9 + len).toString('utf8');
      const m = /^bulkhead-agent (\d{1,4}) (\S+)/.exec(hello);
      if (!m) { void fail(`agent protocol violation: bad hello ${JSON.stringify(hello)}`, DeadlineExceededError); return; }
      done(undefined, { kernel: m[2]!, version: Number(m[1]), rest: buf.subarray(9 + len) });
    };
    vm.control.on('data', onData);
    void vm.wait().then((e) => { void fail(`the VM exited during boot: ${e.reason}`, DeadlineExceededError); });
  });
}

/**
 * The `U` request of a clone (a VM restored from a template): fresh host entropy, the host's clock
 * and the pod's network identity; the agent answers with its hello text. Errors carry the console.
 */
export function identityKv(net: { mac: string; addresses: string[]; gateway?: string; mtu: number } | undefined, now = Date.now()): [string, string][] {
  const kv: [string, string][] = [['entropy', randomBytes(64).toString('hex')], ['time', `${Math.floor(now / 1000)}.${String((now % 1000) * 1_000_000).padStart(9, '0')}`]];
  if (net) {
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(net.mac)) throw new InvalidArgumentError(`bad pod MAC ${net.mac}`);
    kv.push(['mac', net.mac.toLowerCase()]);
    // validated as on the kernel command line of a booted VM
    for (const w of guestNetArgs({ addresses: net.addresses, mtu: net.mtu, gateway: net.gateway ?? null })) {
      const [k, v] = w.slice('bulkhead.'.length).split('=') as [string, string];
      kv.push([k, v]);
    }
  }
  return kv;
}

export class PodVmSupervisor {
  readonly #o: VmdOptions;
  readonly #log: Logger;
  #vm!: VmHandle;
  #server!: Server;
  #kernel = '';
  #nextGid = 1;
  readonly #slots: (string | undefined)[] = new Array<string | undefined>(SLOT_COUNT).fill(undefined);
  /** Slots still as start() made them (all zeros, sparse): their first fill skips the image's zero blocks. */
  readonly #slotFresh: boolean[] = new Array<boolean>(SLOT_COUNT).fill(false);
  readonly #containers = new Map<string, Container>();
  readonly #sessions = new Map<number, Session>();
  readonly #pending = new Map<number, Pending[]>();
  /** Copied volumes (pod annotation io.bulkhead.vm.volumes=copy): sent before each create, refreshed, the termination log written back. */
  readonly #copies = new PodCopies((gid, payload, op) => this.#sendCopy(gid, payload, op), (msg, fields) => this.#log.warn(msg, fields));
  /** A session whose copies the guest refused (its create then fails); an exit held until its termination log is back. */
  readonly #copyFailed = new Map<number, string>();
  readonly #heldExit = new Map<number, { payload: Buffer; left: number; vols: CopyVolume[] }>();
  readonly #conns = new Set<Socket>();
  /** Clients over CLIENT_BUFFER_BYTES of queued output: while any, the guest channel is paused. */
  readonly #slow = new Set<Socket>();
  /** Clients not read while the guest channel's queued input is over CLIENT_BUFFER_BYTES. */
  readonly #inputHeld = new Set<Socket>();
  /** How many times the guest channel was paused for a slow client (`info`). */
  #pauses = 0;
  #toGuestFrames = 0;
  #cgroups: string[] = [];
  /** The pod netns has its pod interface: the VM gets a NIC, joined to it through `#tap`. */
  #nic = false;
  #tap: TapAttachment | undefined;
  #fsd: ChildProcess | undefined;
  #stopping = false;
  /** The guest agent's protocol (its hello). */
  #agentProtocol = 0;
  /** Key of the template this VM was cloned from ('' = booted). */
  #template_ = '';
  /** The template's sandbox container, created and started, until a create adopts it (template-sandbox.ts). */
  #prestarted: { pid: number; request: string; started: boolean } | undefined;
  #startMs = 0;
  /**
   * A clone's identity (`U`): sent right after its restore and not waited for by the start; the
   * agent answers requests in order, and until the identity is answered no other frame is sent to
   * the guest (they wait in `#held`), so nothing the pod asks of the guest runs with the template's
   * entropy, clock or names. A failed identity before the VM is reported ready fails the start; after,
   * it stops the VM as a crash would (every client told why).
   */
  #identity: 'none' | 'pending' | 'done' | 'failed' = 'none';
  #held: Buffer[] | undefined;
  #identityError: Error | undefined;
  #ready = false;
  /** The VM whose agent frames #fromGuest routes (a clone that failed is not the booted VM after it). */
  #listeningTo: VmHandle | undefined;
  #identityTimer: NodeJS.Timeout | undefined;
  #finished!: Promise<number>;
  #finish!: (code: number) => void;
  /**
   * Idle trim of QEMU's translation buffer (tb-trim.ts): the quiet time it waits for (0 = never, this
   * VM); when the pod was last used (a request or output through the agent channel; stats polls are
   * not use); the next look; QEMU's CPU time at the last look and at the last trim; what was done.
   */
  readonly #trimIdleMs: number;
  #usedAt = 0;
  #usedSinceTrim = true;
  #trimTimer: NodeJS.Timeout | undefined;
  #trimLook: { at: number; cpuMs: number } | undefined;
  #trimCpuMs = 0;
  #trimming = false;
  #trimFailures = 0;
  readonly #trimStats = { trims: 0, punchedBytes: 0, lastStoppedMs: 0 };

  constructor(o: VmdOptions) {
    this.#o = o;
    this.#log = o.logger;
    // QEMU under TCG with one vCPU (tb-trim.ts: one region from the buffer's start)
    this.#trimIdleMs = o.vmm.name === 'qemu' && o.accel === 'tcg' && o.vcpus === 1 ? trimIdleMs() : 0;
    this.#finished = new Promise((r) => { this.#finish = r; });
  }

  slotPath(i: number): string { return join(this.#o.podDir, `slot${i}.img`); }

  /** The pod is used now: the idle trim waits for another quiet window. */
  #touch(): void {
    this.#usedAt = performance.now();
    this.#usedSinceTrim = true;
    if (this.#trimIdleMs && this.#ready && !this.#trimTimer && !this.#stopping) this.#armTrim(this.#trimIdleMs);
  }

  #armTrim(ms: number): void {
    this.#trimLook = { at: performance.now(), cpuMs: processCpuMs(this.#vm.pid) };
    this.#trimTimer = setTimeout(() => { this.#trimTimer = undefined; void this.#maybeTrim(); }, ms);
    this.#trimTimer.unref();
  }

  /**
   * Trims the translation buffer of a VM quiet for #trimIdleMs whose QEMU is not busy, if anything ran
   * since the last trim (a request, or CPU time: a guest busy on its own translates too). Looks again
   * every quiet window while the VM lives; after 3 failed trims, never again for this VM.
   */
  async #maybeTrim(): Promise<void> {
    const idle = this.#trimIdleMs;
    if (this.#stopping || this.#trimming || !idle) return;
    const now = performance.now();
    const look = this.#trimLook;
    const cpuMs = processCpuMs(this.#vm.pid);
    const quietFor = now - this.#usedAt;
    const busy = look !== undefined && (cpuMs - look.cpuMs) * 1000 > (now - look.at) * TRIM_BUSY_PERMILLE;
    const ranSince = this.#usedSinceTrim || cpuMs - this.#trimCpuMs > 1000;
    if (quietFor < idle || busy || !ranSince) { this.#armTrim(quietFor < idle ? Math.max(idle - quietFor, 1000) : idle); return; }
    this.#trimming = true;
    try {
      // the wake: input for session 0, which is none (the agent drops it), straight to the channel: not use of the pod
      const wake = (): void => { if (!this.#held) { try { this.#vm.control.write(encodeFrame('I', 0, 'w')); } catch { /* channel gone */ } } };
      const r = await trimTranslations({ pid: this.#vm.pid, qmpPath: join(this.#o.podDir, 'qmp.sock'), gdbPath: join(this.#o.podDir, 'gdb.sock'), wake });
      if (this.#stopping) return;
      this.#usedSinceTrim = false;
      this.#trimCpuMs = processCpuMs(this.#vm.pid);
      if (r.trimmed) {
        this.#trimStats.trims++;
        this.#trimStats.punchedBytes += r.punchedBytes ?? 0;
        this.#trimStats.lastStoppedMs = r.stoppedMs ?? 0;
        this.#log.info('translations trimmed', { vmmPid: this.#vm.pid, usedMiB: +(r.usedBytes / 2 ** 20).toFixed(1), punchedMiB: +((r.punchedBytes ?? 0) / 2 ** 20).toFixed(1), stoppedMs: r.stoppedMs });
      } else if (r.reason !== 'little in use') {
        this.#log.warn('translations not trimmed', { vmmPid: this.#vm.pid, reason: r.reason });
        if (/memfd|not TCG/.test(r.reason ?? '') || ++this.#trimFailures >= 3) return;
      }
    } catch (e) {
      if (this.#stopping) return;
      this.#log.warn('translation trim failed', { vmmPid: this.#vm.pid, reason: (e as Error).message.split('\n')[0] });
      if (++this.#trimFailures >= 3) return;
    } finally {
      this.#trimming = false;
    }
    if (!this.#stopping && !this.#trimTimer) this.#armTrim(idle);
  }

  get socketPath(): string { return join(this.#o.podDir, 'vmd.sock'); }

  /**
   * Boots the VM and starts serving; resolves when ready for clients. A start that fails at any step,
   * or finds itself abandoned (abortStart), leaves nothing running: under the node-wide host
   * (cmd/vmhost.ts) no process exit would end a VMM it left (its pdeathsig names the host).
   */
  async start(): Promise<void> {
    try {
      await this.#start();
    } catch (e) {
      await (this.#vm as VmHandle | undefined)?.stop(0).catch(() => undefined);
      try { (this.#server as Server | undefined)?.close(); } catch { /* not listening */ }
      await this.#stopFileServer();
      await this.#cleanupCgroups();
      await this.#detachNetwork();
      throw e;
    }
  }

  /** Throws once the start was abandoned: nothing may be spawned after abortStart has ended what it found. */
  #live(): void {
    // its pod dir removed (a forced delete that could not reach this supervisor): as abandoned
    if (this.#stopping || !existsSync(this.#o.podDir)) throw new UnavailableError('the pod VM start was abandoned (its creator went away or its sandbox was deleted)', { reason: 'BH_VM_GONE' });
  }

  async #start(): Promise<void> {
    const o = this.#o;
    trace('vmd start');
    await mkdir(o.podDir, { recursive: true, mode: 0o700 });
    // the slot files at once, not one after another (8 x 3 thread-pool round trips: ~10 ms of a clone's
    // start), while the pod netns is looked at (a process: nsenter + ip)
    const [, podIf] = await Promise.all([
      Promise.all(Array.from({ length: SLOT_COUNT }, async (_, i) => {
        const fh = await open(this.slotPath(i), 'w');
        try { await fh.truncate(SLOT_BYTES); } finally { await fh.close(); }
        this.#slotFresh[i] = true;
      })),
      o.netns ? hasPodInterface(o.netns) : Promise.resolve(false),
    ]);
    trace('vmd slot files made, netns looked at');
    const consoleLog = join(o.podDir, 'console.log');
    if (o.netns) {
      // A netns with no pod interface (a `--network none` pod: only lo) gives a VM with no NIC.
      if (podIf) {
        this.#nic = true;
        // a clone may adopt a standby VMM that brings its own tap (standby-vmm.ts): then the tap is attached once that is known
        if (!o.standbys) await this.#attachNetwork(false);
      } else {
        this.#log.info('pod netns has no pod interface: the VM gets no network', { netns: o.netns, podIf: POD_IF });
      }
    }
    const slots = Array.from({ length: SLOT_COUNT }, (_, i) => ({ serial: `slot${i}`, path: this.slotPath(i) }));
    const base: VmConfig = {
      name: o.podId.slice(0, 12), kernel: o.assets.kernel, initramfs: o.assets.initramfs,
      memoryMiB: o.memoryMiB, vcpus: o.vcpus, accel: o.accel, consoleLog, workDir: o.podDir, drives: slots,
    };
    let hello: { kernel: string; version: number; rest: Buffer } | undefined;
    const t0 = performance.now();
    // A clone of the template for this sizing when the pod can have one (template.ts); else, or when
    // the clone fails, the VM boots.
    const template = await this.#template();
    trace('vmd template found');
    if (template) {
      try {
        this.#live();
        hello = await this.#startClone(base, template);
        this.#template_ = template.key;
      } catch (e) {
        if (this.#stopping) throw e; // abandoned (abortStart stopped the clone): no boot in its place
        this.#log.warn('VM template not used: booting instead', { template: template.key.slice(0, 12), reason: (e as Error).message.split('\n')[0] });
        this.#forgetIdentity();
        await this.#vm?.stop(0).catch(() => undefined);
        this.#vm = undefined as unknown as VmHandle;
        await this.#cleanupCgroups();
      }
    }
    if (!hello) {
      this.#live();
      try {
        if (this.#nic && !this.#tap) await this.#attachNetwork(false);
        const fsSocket = o.vmm.name === 'qemu' && o.volumes !== false ? await this.#startFileServer() : undefined;
        const net = this.#tap && o.netns ? { tap: this.#tap.tap, mac: this.#tap.mac, netns: o.netns, kernelArgs: guestNetArgs(this.#tap) } : undefined;
        this.#live();
        // trimmed when idle as a clone is: its QMP socket and its buffer in a memfd
        const trim = this.#trimIdleMs ? { qmp: join(o.podDir, 'qmp.sock'), jitMemfd: true } : {};
        this.#vm = await o.vmm.boot({ ...base, ...(net ?? {}), ...(fsSocket ? { fsSocket } : {}), ...trim });
        this.#live();
      } catch (e) {
        await this.#stopFileServer();
        await this.#detachNetwork();
        throw e;
      }
      await this.#placeVmm();
      try {
        hello = await waitForHello(this.#vm, o.bootTimeoutMs);
        checkAgentProtocol(hello.version, o.assets.dir);
      } catch (e) {
        await this.#vm.stop(1000);
        await this.#stopFileServer();
        await this.#cleanupCgroups();
        await this.#detachNetwork();
        throw e;
      }
      // the whole pod VM in its cgroup: virtiofsd too, with the child it serves from (forked into its
      // namespaces after its socket appears; the guest mounted the share before the agent said hello)
      if (this.#cgroups.length && this.#fsd?.pid !== undefined) joinVmmCgroups(this.#cgroups, processTree(this.#fsd.pid), this.#log);
    }
    if (this.#tap?.redirected) {
      try { await this.#tap.redirected; } catch (e) {
        // the tap is already undone; nothing else of the VM outlives a failed start
        this.#tap = undefined;
        await this.#vm.stop(0).catch(() => undefined);
        await this.#stopFileServer();
        await this.#cleanupCgroups();
        throw e;
      }
    }
    this.#live();
    trace('vmd vm ready');
    this.#startMs = Math.round(performance.now() - t0);
    await writeFile(join(o.podDir, 'vmm.pid'), String(this.#vm.pid));
    this.#kernel = hello.kernel;
    this.#agentProtocol = hello.version;
    this.#log.info('guest up', { kernel: hello.kernel, accel: o.accel, vmmPid: this.#vm.pid, from: this.#template_ ? `template ${this.#template_.slice(0, 12)}` : 'boot', ms: this.#startMs });
    this.#listenToGuest(hello.rest);
    void this.#vm.wait().then((exit) => {
      if (!this.#stopping) void this.shutdown(exit.reason, true);
    });
    await rm(this.socketPath, { force: true });
    this.#server = createServer((c) => this.#accept(c));
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.socketPath, () => resolve());
    });
    // a clone whose identity failed before this point fails its start
    if (this.#identityError) throw this.#identityError;
    this.#ready = true;
    trace('vmd listening');
    this.#touch();
    // the next clone of this template adopts a VMM spawned after this start, not during it
    if (this.#template_ && this.#standby) this.#o.standbys?.cloned(this.#standby);
  }

  /** Routes the agent's frames (`rest`: what came after its hello) from here on; once per VM. */
  #listenToGuest(rest: Buffer): void {
    if (this.#listeningTo === this.#vm) return;
    const vm = this.#vm;
    this.#listeningTo = vm;
    const dec = new FrameDecoder('guest agent');
    const onGuest = (b: Buffer): void => {
      if (this.#vm !== vm) return; // a clone given up for a boot
      let frames: Frame[];
      try { frames = dec.push(b); } catch (e) {
        if (this.#identity === 'pending') this.#identityFailed(`agent protocol violation: ${(e as Error).message}`, true);
        else void this.shutdown(`agent protocol violation: ${(e as Error).message}`, true);
        return;
      }
      for (const f of frames) this.#fromGuest(f);
    };
    this.#vm.control.on('data', onGuest);
    // a restored standby's channel was held paused since its warm-up (AgentTalk.close)
    this.#vm.control.resume();
    if (rest.length) onGuest(rest);
    this.#vm.control.on('error', () => {});
  }

  /**
   * The pod's tap in its netns, joined to its interface (the tc redirect set up while QEMU starts and
   * restores; awaited before the VM is ready). `existing`: a standby VMM's tap, already moved in.
   */
  async #attachNetwork(existing: boolean): Promise<void> {
    const o = this.#o;
    this.#tap = await attachTap(o.netns!, POD_TAP, { podIf: POD_IF, deferRedirect: true, existing });
    this.#log.info('pod network attached', { netns: o.netns, tap: POD_TAP, mac: this.#tap.mac, addresses: this.#tap.addresses, ...(existing ? { tapFrom: 'standby VMM' } : {}) });
  }

  /** Moves the VMM into the pod's cgroups (memory: guest + 256 MiB; the pod's CPU limit). */
  async #placeVmm(): Promise<void> {
    const o = this.#o;
    if (!o.cgroup) return;
    this.#cgroups = await placeVmm(o.cgroup, [this.#vm.pid], {
      memoryBytes: (o.memoryMiB + 256) * 1048576,
      ...(o.cpuQuota ? { cpuQuota: o.cpuQuota, cpuPeriod: o.cpuPeriod ?? 100000 } : {}),
    }, o.podDir, this.#log);
  }

  /**
   * The template to clone this VM from, built now if missing; undefined (with the reason logged)
   * when the VM must boot: no templates configured, not QEMU, or a pod that may bind volumes (its
   * virtio-fs device cannot be migrated in QEMU 7.2, and vhost-user needs the guest RAM shared,
   * where a clone's is a private copy).
   */
  async #template(): Promise<TemplateImage | undefined> {
    const o = this.#o;
    if (!o.templates) return undefined;
    if (o.vmm.name !== 'qemu') { this.#log.info('cold boot: VM templates are QEMU only', { vmm: o.vmm.name }); return undefined; }
    if (o.volumes !== false && existsSync(VIRTIOFSD)) {
      this.#log.info('cold boot: the pod may bind volumes, which need a virtio-fs share a clone cannot have (annotate the pod io.bulkhead.vm.volumes=none, or =copy to have its volumes copied in, to take the template path)');
      return undefined;
    }
    let sandbox: TemplateRequest['sandbox'];
    try {
      if (o.sandbox) sandbox = { hash: sandboxHash(o.sandbox), image: o.sandbox.image, kv: genericSandboxKv(o.sandbox.kv) };
    } catch (e) {
      this.#log.warn('the sandbox container is not taken from a template', { reason: (e as Error).message });
    }
    try {
      return await o.templates.get({ memoryMiB: o.memoryMiB, vcpus: o.vcpus, accel: o.accel, nic: this.#nic, ...(sandbox ? { sandbox } : {}) }, (line) => this.#log.info(line));
    } catch (e) {
      this.#log.warn('cold boot: no VM template', { reason: (e as Error).message.split('\n')[0] });
      return undefined;
    }
  }

  /** The standby VMM spec of a clone of `t` (standby-vmm.ts): undefined when this VM takes none (no provider). */
  #standbySpec(t: TemplateImage): StandbySpec | undefined {
    const o = this.#o;
    if (!o.standbys) return undefined;
    const tb = cloneTbMiB();
    // a template with the sandbox container: the standby is restored and warmed up ahead (its generic request, as the template's)
    const warm = t.sandbox && o.sandbox && process.env.BULKHEAD_VM_STANDBY_WARM !== '0' ? { image: o.sandbox.image, kv: genericSandboxKv(o.sandbox.kv), gid: t.sandbox.gid } : undefined;
    return { key: t.key, memFile: t.memFile, stateFile: t.stateFile, kernel: o.assets.kernel, initramfs: o.assets.initramfs, memoryMiB: o.memoryMiB, vcpus: o.vcpus, accel: o.accel, nic: this.#nic, memMerge: t.nodeWide, ...(tb ? { tbSizeMiB: tb } : {}), ...(this.#trimIdleMs ? { jitMemfd: true } : {}), ...(warm ? { warm } : {}) };
  }
  /** Set once this VM is a clone whose template may keep a standby VMM (told when the VM is ready). */
  #standby: StandbySpec | undefined;

  /**
   * Starts a clone of `t` — adopting its template's standby VMM when there is one, else spawning
   * QEMU —, restores it and gives the guest its identity; the agent's hello. A standby that fails
   * (its QEMU gone, the state refused) is given up for a spawned clone, logged.
   */
  async #startClone(base: VmConfig, t: TemplateImage): Promise<{ kernel: string; version: number; rest: Buffer }> {
    const o = this.#o;
    checkAgentProtocol(t.agentVersion, o.assets.dir);
    const spec = this.#standbySpec(t);
    this.#standby = spec;
    const podNet = this.#nic && o.netns ? { netns: o.netns, tap: POD_TAP } : undefined;
    let adopted = spec ? await o.standbys!.take(spec, o.podDir, podNet).catch((e: unknown) => { this.#log.warn('standby VMM not taken', { reason: (e as Error).message }); return undefined; }) : undefined;
    if (this.#nic && !this.#tap) {
      try {
        await this.#attachNetwork(adopted?.tap !== undefined);
      } catch (e) {
        if (!adopted?.tap) throw e;
        // the moved tap is undone (attachTap's undo): the pod gets a tap of its own and a spawned clone
        this.#log.warn('standby VMM not used (its tap did not join the pod network): spawning the clone', { pid: adopted.vm.pid, reason: (e as Error).message.split('\n')[0] });
        adopted.qmp.close();
        await adopted.vm.stop(0).catch(() => undefined);
        adopted = undefined;
        await this.#attachNetwork(false);
      }
    }
    if (adopted) {
      try {
        return await this.#restoreClone(base, t, adopted);
      } catch (e) {
        if (this.#stopping) throw e;
        this.#log.warn('standby VMM not used: spawning the clone', { pid: adopted.vm.pid, reason: (e as Error).message.split('\n')[0] });
        this.#forgetIdentity();
        await adopted.vm.stop(0).catch(() => undefined);
        this.#vm = undefined as unknown as VmHandle;
        await this.#cleanupCgroups();
        this.#live();
      }
    }
    return await this.#restoreClone(base, t, undefined);
  }

  async #restoreClone(base: VmConfig, t: TemplateImage, adopted: AdoptedVmm | undefined): Promise<{ kernel: string; version: number; rest: Buffer }> {
    const o = this.#o;
    const net = this.#tap && o.netns ? { tap: this.#tap.tap, mac: this.#tap.mac, netns: o.netns } : undefined;
    if (!adopted) await rm(join(o.podDir, 'qmp.sock'), { force: true });
    const t0 = performance.now();
    const tb = cloneTbMiB();
    // a template with the sandbox container: its root image in slot 0 (the same bytes the template's
    // guest mounted there) before the guest runs, written while QEMU starts
    const sb = t.sandbox && o.sandbox ? { ...t.sandbox, request: o.sandbox } : undefined;
    // (a restored standby's slot 0 holds it already: its guest has it mounted)
    const restored = adopted?.restored === true;
    const fill = sb && !restored ? this.#fillSlot(0, sb.request.image) : undefined;
    fill?.catch(() => {});
    if (restored) this.#slotFresh[0] = false;
    if (adopted) {
      this.#vm = adopted.vm;
      trace('clone standby adopted');
    } else {
      this.#vm = await o.vmm.boot({ ...base, ...(net ?? {}), memFile: { path: t.memFile, share: false }, qmp: join(o.podDir, 'qmp.sock'), incoming: t.stateFile, ...(tb ? { tbSizeMiB: tb } : {}), ...(this.#trimIdleMs ? { jitMemfd: true } : {}), ...(t.nodeWide ? { memMerge: true } : {}) });
      trace('clone qemu spawned');
    }
    this.#vm.control.on('error', () => {});
    this.#live();
    const timeout = cloneStepMs(o.bootTimeoutMs);
    // QEMU into the pod's cgroups and slot 0 filled while it loads its state: both before the guest runs (`cont`)
    const placed = this.#placeVmm();
    placed.catch(() => {});
    const tap = this.#tap;
    const kv = identityKv(tap ? { mac: tap.mac, addresses: tap.addresses, mtu: tap.mtu, ...(tap.gateway ? { gateway: tap.gateway } : {}) } : undefined);
    // the pod's hostname in the sandbox container's UTS namespace, its files on the sandbox's root (protocol 7)
    if (sb) kv.push(['sb', String(sb.gid)], ...podSandboxKv(sb.request.kv));
    const t1 = performance.now();
    if (restored) {
      // a standby restored and warmed up ahead (standby-vmm.ts): its guest runs; the pod's identity now
      await placed; trace('clone placed in cgroups');
      adopted!.qmp.close(); // QEMU serves one QMP client: free for the idle trim (tb-trim.ts)
      this.#sendIdentity(t, kv, timeout);
    } else {
      // the identity goes once the state is loaded, before `cont`: the guest finds it waiting when it runs
      await o.templates!.restore(this.#vm, t, timeout, async () => {
        await placed; trace('clone placed in cgroups');
        await fill; trace('clone slot0 filled');
        this.#sendIdentity(t, kv, timeout);
      }, adopted?.qmp);
    }
    trace('clone restored (cont)');
    const t2 = performance.now();
    if (sb) {
      this.#slots[0] = PRESTARTED;
      this.#containers.set(PRESTARTED, { name: PRESTARTED, gid: sb.gid, slot: 0, sandbox: false });
      this.#sessions.set(sb.gid, { gid: sb.gid, owner: null, name: PRESTARTED, exec: false });
      this.#nextGid = Math.max(this.#nextGid, sb.gid + 1);
      this.#prestarted = { pid: sb.pid, request: JSON.stringify(sb.request), started: false };
    }
    this.#log.info('clone restored', { template: t.key.slice(0, 12), vmm: adopted ? 'standby' : 'spawned', spawnMs: Math.round(t1 - t0), restoreMs: Math.round(t2 - t1), sandbox: sb ? 'started in the template' : 'none' });
    // the pod dir says it is a clone from here on (a container with volumes is refused); firstRandom comes with the identity's answer
    await this.#writeTemplateJson({ key: t.key, firstRandom: null });
    return { kernel: t.kernel, version: t.agentVersion, rest: Buffer.alloc(0) };
  }

  /**
   * Sends a clone its identity (fresh entropy, the host clock, the pod's network and, with a
   * template's sandbox container, its hostname and files) without waiting: see `#identity`.
   */
  #sendIdentity(t: TemplateImage, kv: [string, string][], timeoutMs: number): void {
    const vm = this.#vm;
    this.#listenToGuest(Buffer.alloc(0));
    this.#cloneOf = t;
    this.#identity = 'pending';
    this.#held = [];
    const t0 = performance.now();
    // a slow answer is the host's load, not the template's fault: the template stays (a refusal or a
    // protocol violation removes it); under load 12-18 a good template was thrown away for it
    const timer = setTimeout(() => { if (this.#vm === vm) this.#identityFailed(`the cloned guest's agent did not answer its identity within ${timeoutMs} ms (accel ${vm.accel})`, false); }, timeoutMs);
    this.#identityTimer = timer;
    void vm.wait().then((e) => { if (this.#vm === vm) this.#identityFailed(`the cloned VM exited: ${e.reason}`, false); });
    const q = this.#pending.get(0) ?? [];
    q.push({ conn: null, reqId: 0, op: 'identity' });
    this.#pending.set(0, q);
    this.#identityDone = (ok, text) => {
      clearTimeout(timer);
      if (this.#identity !== 'pending' || this.#vm !== vm) return;
      if (!ok) { this.#identityFailed(`the cloned guest refused its identity: ${text.slice(0, 300)}`, /sandbox container is not running|sandbox's UTS namespace/.test(text)); return; }
      const m = /^bulkhead-agent (\d{1,4}) (\S+)/.exec(text);
      if (!m) { this.#identityFailed('agent protocol violation: a bad answer to the identity', true); return; }
      try { checkAgentProtocol(Number(m[1]), this.#o.assets.dir); } catch (e) { this.#identityFailed((e as Error).message, true); return; }
      this.#identity = 'done';
      this.#kernel = m[2]!;
      this.#agentProtocol = Number(m[1]);
      const held = this.#held ?? [];
      this.#held = undefined;
      for (const b of held) vm.control.write(b);
      trace('clone identity answered');
      this.#log.info('clone identity set', { identityMs: Math.round(performance.now() - t0), held: held.length });
      // firstRandom: what the clone's pool gave first after its reseed (two clones of a template must differ)
      const firstRandom = / random=([0-9a-f]{64})$/.exec(text)?.[1] ?? '';
      void this.#writeTemplateJson({ key: t.key, firstRandom }).catch((e: unknown) => this.#log.warn('template.json not written', { err: (e as Error).message }));
    };
    vm.control.write(encodeFrame('U', 0, encodeKv(kv)));
  }

  #identityDone: ((ok: boolean, text: string) => void) | undefined;
  #templateJson: Promise<void> = Promise.resolve();

  /** `<podDir>/template.json`, written in call order (the identity's answer can come before the start's own write is done). */
  #writeTemplateJson(v: { key: string; firstRandom: string | null }): Promise<void> {
    const next = this.#templateJson.catch(() => {}).then(() => writeJsonFile(join(this.#o.podDir, 'template.json'), v));
    this.#templateJson = next;
    return next;
  }
  #cloneOf: TemplateImage | undefined;

  /** A clone given up for a boot (its restore failed after the identity was sent): nothing of its identity applies to the booted VM. */
  #forgetIdentity(): void {
    clearTimeout(this.#identityTimer);
    this.#identity = 'none';
    this.#held = undefined;
    this.#identityDone = undefined;
    this.#identityError = undefined;
    this.#cloneOf = undefined;
    this.#pending.delete(0);
  }

  /**
   * The clone's identity failed: nothing more reaches its guest. Before the VM is ready the start
   * fails with it; after, the VM stops as if it crashed. A template whose sandbox container is gone
   * or whose clone refuses (or breaks the protocol) is removed (every clone of it would fail): the
   * next pod builds it. One whose clone is only slow to answer stays.
   */
  #identityFailed(reason: string, discard: boolean): void {
    const t = this.#cloneOf;
    if (this.#identity !== 'pending' || !t) return;
    this.#identity = 'failed';
    this.#held = [];
    if (this.#stopping) return; // the VM was stopped (its pod deleted) before the guest answered
    trace('clone identity failed');
    this.#log.error('the clone\'s identity failed: the pod VM stops', { template: t.key.slice(0, 12), reason });
    void this.#vm.consoleTail(15).then((tail) => { if (tail.length) this.#log.error('console of the clone', { tail: tail.join(' | ') }); }, () => {});
    if (discard) void this.#o.templates?.discard?.(t, reason).catch(() => {});
    const err = new UnavailableError(`the cloned VM refused or did not take its identity (${reason.split('\n')[0]}); retry: the next pod VM boots or clones a rebuilt template`, { reason: 'BH_VM_GONE' });
    if (this.#ready) void this.shutdown(err.message, true);
    else this.#identityError ??= err;
  }

  /**
   * The start was abandoned (its creator went away, e.g. killed on a caller's timeout): ends what
   * this start made — the VMM, the tap, the cgroups, the pod directory with its slot files.
   */
  async abortStart(reason: string): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#trimTimer);
    this.#copies.close();
    this.#log.error('pod VM start abandoned', { reason });
    const vm = this.#vm as VmHandle | undefined;
    if (vm) { try { await vm.stop(0); } catch { /* gone */ } }
    await this.#stopFileServer();
    await this.#cleanupCgroups();
    await this.#detachNetwork();
    await rm(this.#o.podDir, { recursive: true, force: true });
    // a node-wide host (cmd/vmhost.ts) lives on: nothing of this pod may stay open in it
    this.#server?.close();
    this.#finish(1);
  }

  /**
   * Ends the pod VM now, whatever its state (a forced delete through the node-wide host): a start
   * under way is abandoned (nothing is spawned after it), a running VM stops at once, its clients told.
   */
  async end(reason: string): Promise<void> {
    if ((this.#server as Server | undefined)?.listening) await this.shutdown(reason, true);
    else await this.abortStart(reason);
  }

  /** Resolves with the process exit code once the VM is gone and everything is cleaned up. */
  finished(): Promise<number> { return this.#finished; }

  #toGuest(type: Frame['type'], gid: number, payload?: Buffer | string): void {
    this.#toGuestFrames++;
    if (type !== 'T') this.#touch(); // a stats poll is not use
    const f = encodeFrame(type, gid, payload);
    if (this.#held) this.#held.push(f); // a clone's identity is not answered yet
    else this.#vm.control.write(f);
  }

  #request(conn: Socket | null, reqId: number, op: string, gid: number, type: Frame['type'], payload?: Buffer | string, name?: string): void {
    const q = this.#pending.get(gid) ?? [];
    q.push({ conn, reqId, op, ...(name !== undefined ? { name } : {}) });
    this.#pending.set(gid, q);
    this.#toGuest(type, gid, payload);
  }

  /** `A` with a JSON body, or `F` with the error as {code, reason, message} (errors.ts WireError). */
  #reply(conn: Socket | null, reqId: number, ok: boolean, body: unknown): void {
    this.#send(conn, encodeFrame(ok ? 'A' : 'F', reqId, JSON.stringify(ok ? body ?? {} : body)));
  }

  /** A failed agent request: its text becomes {code, reason, message} here, once (agent-errors.ts). */
  #fail(p: Pending, text: string): void {
    this.#reply(p.conn, p.reqId, false, agentError(p.op, text));
  }

  #fromGuest(f: Frame): void {
    if (f.type === 'O' || f.type === 'R' || f.type === 'X') this.#touch();
    const s = this.#sessions.get(f.id);
    switch (f.type) {
      case 'O': case 'R':
        this.#send(s?.owner ?? null, encodeFrame(f.type, f.id, f.payload));
        return;
      case 'X': {
        const code = Number(f.payload.toString());
        trace(`vmd exit gid ${f.id} code ${code}`);
        if (s) {
          // a termination log copied into the guest comes back to the host before the exit is told
          const back = s.exec ? [] : this.#copies.writeBacks(f.id);
          if (back.length && !this.#heldExit.has(f.id)) {
            this.#heldExit.set(f.id, { payload: f.payload, left: back.length, vols: back.map((b) => b.v) });
            for (const b of back) this.#request(null, 0, 'copyback', f.id, 'Y', b.payload, b.v.destination);
            return;
          }
          s.exited = code;
          this.#send(s.owner, encodeFrame('X', f.id, f.payload));
          if (s.exec) this.#sessions.delete(f.id);
        }
        return;
      }
      case 'A': case 'F': {
        const q = this.#pending.get(f.id);
        const p = q?.shift();
        if (q && q.length === 0) this.#pending.delete(f.id);
        if (!p) { this.#log.warn('agent answered a request nobody asked', { id: f.id }); return; }
        this.#settle(p, f.id, f.type === 'A', f.payload.toString('utf8'), f.payload);
        return;
      }
      default:
        void this.shutdown(`agent protocol violation: unexpected frame ${f.type} from the guest`, true);
    }
  }

  #settle(p: Pending, gid: number, ok: boolean, text: string, raw?: Buffer): void {
    trace(`vmd agent answered ${p.op} gid ${gid} ${ok ? 'A' : 'F'}`);
    if (p.done) { p.done(ok, text); return; }
    switch (p.op) {
      case 'copy':
        if (!ok) this.#copyFailed.set(gid, text);
        return;
      case 'refresh':
        if (!ok) this.#log.warn('the guest refused a copied volume\'s refresh', { gid, reason: text.slice(0, 300) });
        return;
      case 'copyback':
        void this.#copyBack(gid, p.name ?? '', ok, raw ?? Buffer.alloc(0), text);
        return;
      case 'identity':
        this.#identityDone?.(ok, text);
        return;
      case 'create': {
        const copyErr = this.#copyFailed.get(gid);
        this.#copyFailed.delete(gid);
        if (ok && copyErr !== undefined) {
          // created, but its volumes are not whole in the guest: deleted again, the create fails naming why
          this.#request(null, 0, 'delete', gid, 'D', undefined, p.name);
          this.#fail(p, `copied volumes: ${copyErr}`);
          return;
        }
        if (!ok) { this.#dropContainer(p.name!); this.#fail(p, text); return; }
        this.#reply(p.conn, p.reqId, true, { id: gid });
        return;
      }
      case 'exec':
        if (!ok) { this.#sessions.delete(gid); this.#fail(p, text); return; }
        this.#startedEvent(gid, text);
        this.#reply(p.conn, p.reqId, true, { id: gid, pid: Number(text) });
        return;
      case 'start':
        if (!ok) { this.#fail(p, text); return; }
        this.#startedEvent(gid, text);
        this.#reply(p.conn, p.reqId, true, { pid: Number(text) });
        return;
      case 'delete': {
        const c = p.name ? this.#containers.get(p.name) : undefined;
        // a delete answered ahead (its name already free) frees its slot whatever the guest says: it knows no such container then
        if ((ok || c?.name.startsWith('(deleting ')) && c) this.#dropContainer(c.name);
        if (ok) this.#reply(p.conn, p.reqId, true, {}); else this.#fail(p, text);
        if (ok && c?.sandbox) void this.shutdown('pod stopped: sandbox container deleted', false);
        return;
      }
      case 'stats': {
        if (!ok) { this.#fail(p, text); return; }
        const o: Record<string, number> = {};
        for (const kv of text.split(' ')) { const [k, v] = kv.split('='); if (k && v) o[k] = Number(v); }
        this.#reply(p.conn, p.reqId, true, o);
        return;
      }
      default:
        if (ok) this.#reply(p.conn, p.reqId, true, { message: text }); else this.#fail(p, text);
    }
  }

  #startedEvent(gid: number, pid: string): void {
    this.#send(this.#sessions.get(gid)?.owner ?? null, encodeFrame('B', gid, pid));
  }

  /** Every frame to a client goes here: over CLIENT_BUFFER_BYTES queued for it, the guest channel pauses until it drains. */
  #send(conn: Socket | null, frame: Buffer): void {
    if (!conn || conn.destroyed) return;
    conn.write(frame);
    if (conn.writableLength <= CLIENT_BUFFER_BYTES || this.#slow.has(conn)) return;
    this.#slow.add(conn);
    // write() returned false once the queue passed its high-water mark: 'drain' comes when it is empty
    conn.once('drain', () => this.#unslow(conn));
    if (this.#slow.size > 1) return;
    this.#pauses++;
    this.#vm.control.pause();
  }

  #unslow(conn: Socket): void {
    if (!this.#slow.delete(conn) || this.#slow.size) return;
    this.#vm.control.resume();
  }

  /** Input for the guest: over CLIENT_BUFFER_BYTES queued on the channel, the client is not read until it drains. */
  #holdInput(conn: Socket): void {
    const ch = this.#vm.control;
    if (ch.writableLength <= CLIENT_BUFFER_BYTES || this.#inputHeld.has(conn)) return;
    this.#inputHeld.add(conn);
    conn.pause();
    if (this.#inputHeld.size > 1) return;
    ch.once('drain', () => {
      for (const c of this.#inputHeld) if (!c.destroyed) c.resume();
      this.#inputHeld.clear();
    });
  }

  #dropContainer(name: string): void {
    const c = this.#containers.get(name);
    if (!c) return;
    this.#containers.delete(name);
    this.#sessions.delete(c.gid);
    this.#copies.forget(c.gid);
    if (this.#slots[c.slot] === name) this.#slots[c.slot] = undefined;
  }

  #accept(conn: Socket): void {
    this.#conns.add(conn);
    const dec = new FrameDecoder('vmd client');
    conn.on('data', (b: Buffer) => {
      let frames: Frame[];
      try { frames = dec.push(b); } catch { conn.destroy(); return; }
      const sent = this.#toGuestFrames;
      for (const f of frames) {
        if (f.type === 'Q') {
          void this.#op(conn, f.id, f.payload).catch((e: unknown) => this.#reply(conn, f.id, false, toWire(e)));
        } else if (f.type === 'I' || f.type === 'W') {
          const s = this.#sessions.get(f.id);
          if (s && s.owner === conn && s.exited === undefined) this.#toGuest(f.type, f.id, f.payload);
        } else {
          conn.destroy();
        }
      }
      // a client whose frames went to the guest (its input, a request the guest answers)
      if (this.#toGuestFrames !== sent) this.#holdInput(conn);
    });
    conn.on('error', () => {});
    conn.on('close', () => {
      this.#conns.delete(conn);
      this.#inputHeld.delete(conn);
      this.#unslow(conn);
      // A supervisor that goes away takes its process with it.
      for (const s of this.#sessions.values()) {
        if (s.owner !== conn) continue;
        s.owner = null;
        if (s.exited === undefined && !this.#stopping) this.#request(null, 0, 'kill', s.gid, 'K', '9');
      }
    });
  }

  #container(name: unknown): Container {
    const c = typeof name === 'string' ? this.#containers.get(name) : undefined;
    if (!c) throw new NotFoundError(`container ${String(name)} is not in this VM`, { reason: 'BH_CONTAINER_NOT_FOUND' });
    return c;
  }

  async #op(conn: Socket, reqId: number, payload: Buffer): Promise<void> {
    const m = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    trace(`vmd op ${String(m.op)} ${typeof m.name === 'string' ? m.name.slice(0, 8) : ''}`);
    if (this.#stopping) throw new UnavailableError('the pod VM is stopping', { reason: 'BH_VM_GONE' });
    switch (m.op) {
      case 'create': {
        const name = String(m.name);
        if (this.#containers.has(name)) throw new AlreadyExistsError(`container ${name} exists in this VM`);
        if (this.#adopt(conn, reqId, name, m)) return;
        const slot = this.#slots.findIndex((s) => s === undefined);
        if (slot < 0) throw new ResourceExhaustedError(`all ${SLOT_COUNT} drive slots of this VM are in use (a microVM pod holds at most ${SLOT_COUNT} containers, its sandbox included)`);
        this.#slots[slot] = name;
        try { await this.#fillSlot(slot, String(m.image)); } catch (e) { this.#slots[slot] = undefined; throw e; }
        const gid = this.#nextGid++;
        const request = m.sandbox === true ? { image: String(m.image), kv: m.kv as [string, string][] } : undefined;
        this.#containers.set(name, { name, gid, slot, sandbox: m.sandbox === true, ...(request ? { request } : {}) });
        this.#sessions.set(gid, { gid, owner: conn, name, exec: false });
        // join_ipc / join_uts / join_pid name a container of this VM: the agent knows it by session id
        const kv = (m.kv as [string, string][]).map(([k, v]): [string, string] => (k.startsWith('join_') ? [k, String(this.#container(v).gid)] : [k, v]));
        kv.push(['slot', `slot${slot}`], ['start_wait_ms', String(agentStartWaitMs(this.#o.bootTimeoutMs))]);
        // copied volumes: read on the host and sent before the create (the agent binds them at start)
        const copies = parseCopies(m.copies);
        if (copies.length) {
          try { kv.push(...await this.#copies.add(gid, copies, this.#agentProtocol)); } catch (e) { this.#dropContainer(name); throw e; }
          if (this.#stopping) throw new UnavailableError('the pod VM is stopping', { reason: 'BH_VM_GONE' });
        }
        trace(`vmd slot filled, C sent gid ${gid}`);
        this.#request(conn, reqId, 'create', gid, 'C', encodeKv(kv), name);
        return;
      }
      case 'start': {
        const c = this.#container(m.name);
        // the template's sandbox container runs already: its first start is answered here
        const p = this.#prestarted;
        if (p && c.sandbox && !p.started && this.#slots[c.slot] === c.name && this.#sessions.get(c.gid)?.exited === undefined) {
          p.started = true;
          this.#startedEvent(c.gid, String(p.pid));
          this.#reply(conn, reqId, true, { pid: p.pid });
          return;
        }
        this.#request(conn, reqId, 'start', c.gid, 'S');
        return;
      }
      case 'exec': {
        const c = this.#container(m.name);
        const gid = this.#nextGid++;
        this.#sessions.set(gid, { gid, owner: conn, exec: true });
        const kv: [string, string][] = [...(m.kv as [string, string][]), ['parent', String(c.gid)], ['start_wait_ms', String(agentStartWaitMs(this.#o.bootTimeoutMs))]];
        this.#request(conn, reqId, 'exec', gid, 'E', encodeKv(kv));
        return;
      }
      case 'kill': {
        const c = this.#container(m.name);
        this.#request(conn, reqId, 'kill', c.gid, 'K', `${Number(m.signal)}${m.all ? ' all' : ''}`);
        return;
      }
      case 'stats': {
        const c = this.#container(m.name);
        this.#request(conn, reqId, 'stats', c.gid, 'T');
        return;
      }
      case 'delete': {
        const name = String(m.name);
        const c = this.#containers.get(name);
        if (!c) { this.#reply(conn, reqId, true, {}); return; }
        // its copied volumes are refreshed no more (a termination log held for its exit still comes back)
        this.#copies.forget(c.gid);
        // An app container whose process has exited (and its session with it): answered at once, the
        // guest's delete (unmounts, its exec sessions killed, its cgroup: 30-70 ms under TCG, most of a
        // templated pod's container removal) goes on behind the answer. Its name is free now; its slot
        // stays taken until the guest's answer. Frames reach the agent in order: whatever comes after
        // (a create, the sandbox's shutdown) finds it deleted.
        if (!c.sandbox && this.#sessions.get(c.gid)?.exited !== undefined) {
          const leaving = `(deleting ${name})`;
          this.#containers.delete(name);
          this.#containers.set(leaving, { ...c, name: leaving });
          if (this.#slots[c.slot] === name) this.#slots[c.slot] = leaving;
          const s = this.#sessions.get(c.gid);
          if (s) s.owner = null;
          this.#request(null, 0, 'delete', c.gid, 'D', undefined, leaving);
          this.#reply(conn, reqId, true, {});
          return;
        }
        this.#request(conn, reqId, 'delete', c.gid, 'D', undefined, name);
        return;
      }
      case 'info':
        this.#reply(conn, reqId, true, {
          vmmPid: this.#vm.pid, accel: this.#o.accel, kernel: this.#kernel, memoryMiB: this.#o.memoryMiB, vcpus: this.#o.vcpus,
          template: this.#template_ || null, startMs: this.#startMs,
          // idle trims of the translation buffer (tb-trim.ts): off (null) or how many, bytes given back in all
          trim: this.#trimIdleMs ? { idleMs: this.#trimIdleMs, ...this.#trimStats } : null,
          // output flow control: bytes queued in this supervisor for its clients, for the guest; the channel paused now, how often
          flow: { queued: [...this.#conns].reduce((n, c) => n + c.writableLength, 0), toGuest: this.#vm.control.writableLength, paused: this.#slow.size > 0, pauses: this.#pauses, held: this.#inputHeld.size },
          containers: [...this.#containers.values()].filter((c) => c.name !== PRESTARTED && !c.name.startsWith('(deleting ')).map((c) => ({ name: c.name, slot: c.slot, sandbox: c.sandbox, exited: this.#sessions.get(c.gid)?.exited ?? null })),
        });
        return;
      case 'warmup':
        this.#reply(conn, reqId, true, await this.#warmUp());
        return;
      case 'shutdown':
        this.#reply(conn, reqId, true, {});
        void this.shutdown(String(m.reason ?? 'shutdown requested'), false);
        return;
      default:
        throw new InvalidArgumentError(`unknown op ${String(m.op)}`);
    }
  }

  /**
   * A sandbox's create in a clone whose template started this request's sandbox container: that
   * container becomes the request's (its session, slot 0), answered at once. A request that differs
   * (the supervisor was told another) deletes the template's container and is created as usual.
   */
  #adopt(conn: Socket, reqId: number, name: string, m: Record<string, unknown>): boolean {
    const p = this.#prestarted;
    const c = this.#containers.get(PRESTARTED);
    if (!p || !c || m.sandbox !== true) return false;
    const s = this.#sessions.get(c.gid);
    const same = JSON.stringify({ image: m.image, kv: m.kv }) === p.request && s !== undefined && s.exited === undefined;
    this.#containers.delete(PRESTARTED);
    if (!same) {
      this.#prestarted = undefined;
      this.#log.warn('the sandbox container started in the template does not match the pod\'s: deleted, the pod\'s created');
      // its slot is free once the guest has deleted it (its answer drops the entry)
      this.#containers.set(PRESTARTED, c);
      this.#request(null, 0, 'delete', c.gid, 'D', undefined, PRESTARTED);
      return false;
    }
    this.#containers.set(name, { ...c, name, sandbox: true, request: { image: String(m.image), kv: m.kv as [string, string][] } });
    this.#slots[c.slot] = name;
    s.owner = conn;
    s.name = name;
    this.#reply(conn, reqId, true, { id: c.gid });
    this.#log.info('sandbox container adopted from the template', { name, gid: c.gid, pid: p.pid });
    return true;
  }

  /** A request the supervisor makes itself: resolves with the agent's answer text, rejects with its failure. */
  #ask(op: string, gid: number, type: Frame['type'], payload?: Buffer | string): Promise<string> {
    return new Promise((resolve, reject) => {
      const q = this.#pending.get(gid) ?? [];
      q.push({ conn: null, reqId: 0, op, done: (ok, text) => { if (ok) resolve(text); else reject(fromWire(agentError(op, text))); } });
      this.#pending.set(gid, q);
      this.#toGuest(type, gid, payload);
    });
  }

  /**
   * A warm-up: one throwaway container through the path an app container takes — its root image (the
   * sandbox's) copied into a free slot, created (the guest mounts it, its overlay, its cgroup), started
   * (namespaces joined and made, mounts, pivot_root, seccomp, exec) and deleted while it runs (kill,
   * exit, unmounts, cgroup removal) — so that under TCG, where the guest's first pass through any kernel
   * path is translated (a clone's translation cache starts empty), a pod's first app container runs on
   * translated code. For a VM made before its pod (a warm-pool member): measured
   * here, TCG, load ~4, a clone's app container create 170 → 34 ms and start 104 → 61 ms. Nothing of it
   * stays: its session, slot and guest directories are gone with its delete; it runs the sandbox's own
   * process with the sandbox's own settings in the sandbox's IPC and UTS namespaces, so it can do
   * nothing the sandbox could not.
   */
  async #warmUp(): Promise<{ ms: number }> {
    const sb = [...this.#containers.values()].find((c) => c.sandbox && c.request);
    if (!sb?.request) throw new FailedPreconditionError('warm-up: this pod VM has no sandbox container to take a root image from');
    if (this.#containers.has(WARMUP)) throw new FailedPreconditionError('warm-up: one is under way');
    const slot = this.#slots.findLastIndex((s) => s === undefined);
    if (slot < 0) throw new ResourceExhaustedError(`warm-up: all ${SLOT_COUNT} drive slots of this VM are in use`);
    const t0 = performance.now();
    this.#slots[slot] = WARMUP;
    let gid = -1;
    try {
      await this.#fillSlot(slot, sb.request.image);
      gid = this.#nextGid++;
      this.#containers.set(WARMUP, { name: WARMUP, gid, slot, sandbox: false });
      const ops = { C: 'create', S: 'start', D: 'delete' } as const;
      await runThrowaway((type, kv) => this.#ask(ops[type], gid, type, kv ? encodeKv(kv) : undefined), warmUpKv(sb.request.kv, sb.gid, slot, agentStartWaitMs(this.#o.bootTimeoutMs)));
      // deleted (the guest unmounted it): the slot sparse zeros again, so a later fill writes only an image's non-zero runs
      await truncate(this.slotPath(slot), 0);
      await truncate(this.slotPath(slot), SLOT_BYTES);
      this.#slotFresh[slot] = true;
    } finally {
      this.#containers.delete(WARMUP);
      if (this.#slots[slot] === WARMUP) this.#slots[slot] = undefined;
    }
    const ms = Math.round(performance.now() - t0);
    this.#log.info('warm-up done', { ms, slot, gid });
    return { ms };
  }

  async #fillSlot(slot: number, image: string): Promise<void> {
    // a fresh slot (as start() made it) reads as zeros: only the image's non-zero runs are written
    const fresh = this.#slotFresh[slot] === true;
    this.#slotFresh[slot] = false;
    await fillSlotFile(this.slotPath(slot), image, fresh, SLOT_BYTES);
  }

  /**
   * Starts the pod's virtio-fs server on its share (share.ts) and returns its socket; undefined
   * when virtiofsd is not installed (the VM boots without a share; a volume is then refused at
   * create). virtiofsd sandboxes itself (sandbox=namespace: new mount, PID and network namespaces,
   * pivot_root into the share, its own seccomp filter, capabilities cut to the file-serving ones);
   * it runs under `setpriv --pdeathsig KILL` (it dies with this supervisor) and is recorded in the
   * pod dir as `fsd.proc`.
   */
  async #startFileServer(): Promise<string | undefined> {
    const o = this.#o;
    if (!existsSync(VIRTIOFSD)) {
      this.#log.warn('virtiofsd is not installed: this VM gets no volume share (host paths and kubelet volumes will be refused)', { binary: VIRTIOFSD });
      return undefined;
    }
    const share = shareDir(o.podDir);
    await prepareShare(share);
    const sock = join(o.podDir, SHARE_SOCKET);
    await rm(sock, { force: true });
    const logPath = join(o.podDir, 'virtiofsd.log');
    const logFd = openSync(logPath, 'a');
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', VIRTIOFSD, `--socket-path=${sock}`,
      '-o', `source=${share}`, '-o', 'sandbox=namespace', '-o', 'cache=auto', '-o', 'no_posix_lock', '-o', 'no_xattr',
      '-o', 'announce_submounts', '-o', 'log_level=warn', '--rlimit-nofile=0'], { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    child.on('error', () => {});
    if (child.pid !== undefined) recordProc(o.podDir, 'fsd', child.pid);
    this.#fsd = child;
    let exited = false;
    child.once('exit', (code, sig) => {
      exited = true;
      // the guest's volume requests would hang on a dead file server: the VM stops, saying why —
      // unless the VMM died first and took virtiofsd with it (its vhost-user peer hung up): then the
      // VMM's own exit is the reason, reported by its wait handler
      const vm = this.#vm;
      if (this.#fsd !== child || !vm || this.#stopping) return;
      const vmGone = vm.wait().then(() => true);
      void Promise.race([vmGone, new Promise<boolean>((r) => setTimeout(() => r(false), 1000))]).then((gone) => {
        if (!gone && this.#fsd === child && this.#vm === vm && !this.#stopping) void this.shutdown(`virtiofsd (the pod's volume share) exited (${sig ?? `code ${code}`}); see ${logPath}`, true);
      });
    });
    for (const until = Date.now() + 10_000; Date.now() < until && !exited && !existsSync(sock);) await new Promise((r) => setTimeout(r, 20));
    if (!existsSync(sock)) {
      const tail = (await readFile(logPath, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ');
      throw new UnavailableError(`virtiofsd (the pod's volume share) did not start${tail ? `: ${tail}` : ''}`);
    }
    this.#log.info('volume share up', { share, fsdPid: child.pid });
    return sock;
  }

  /** Ends the virtio-fs server and undoes the share's mounts (never recursing through one). */
  async #stopFileServer(): Promise<void> {
    const c = this.#fsd;
    this.#fsd = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise<void>((r) => { c.once('exit', () => r()); });
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 1000);
      await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
      clearTimeout(t);
    }
    const left = await releaseShare(shareDir(this.#o.podDir)).catch((e: unknown) => [(e as Error).message]);
    if (left.length) this.#log.warn('pod share left in place (a mount could not be undone)', { left });
  }

  /** Removes the tap (the pod veth's redirect with it); the netns itself belongs to the network layer. */
  async #detachNetwork(): Promise<void> {
    if (!this.#tap || !this.#o.netns) return;
    const t = this.#tap;
    this.#tap = undefined;
    // a redirect still being set up finishes first, so nothing it adds comes after the undo
    await t.redirected?.catch(() => undefined);
    try { await detachTap(this.#o.netns, t.tap, { podIf: t.podIf }); } catch (e) {
      this.#log.warn('cannot remove the pod tap', { netns: this.#o.netns, err: (e as Error).message });
    }
  }

  async #cleanupCgroups(): Promise<void> {
    this.#cgroups = [];
    const left = await removeVmmCgroups(this.#o.podDir);
    if (left.length) this.#log.warn('VMM cgroups left (busy or shared)', { dirs: left });
  }

  /** One copied volume's step for the guest (PodCopies), waiting while the channel holds over CLIENT_BUFFER_BYTES. */
  async #sendCopy(gid: number, payload: Buffer, op: 'copy' | 'refresh'): Promise<void> {
    if (this.#stopping) throw new UnavailableError('the pod VM is stopping', { reason: 'BH_VM_GONE' });
    this.#request(null, 0, op, gid, 'Y', payload);
    const ch = this.#vm.control;
    if (ch.writableLength > CLIENT_BUFFER_BYTES && !ch.destroyed) {
      await new Promise<void>((resolve) => {
        const done = (): void => { ch.off('drain', done); ch.off('close', done); resolve(); };
        ch.on('drain', done);
        ch.on('close', done);
      });
    }
  }

  /** A termination log's content from the guest to its host file; the held exit goes to the client after the last one. */
  async #copyBack(gid: number, dest: string, ok: boolean, content: Buffer, text: string): Promise<void> {
    const h = this.#heldExit.get(gid);
    const v = h?.vols.find((x) => x.destination === dest);
    if (!ok) this.#log.warn('termination log not copied back', { destination: dest, reason: text.slice(0, 200) });
    else if (v) await this.#copies.writeBack(v, content).catch((e: unknown) => this.#log.warn('termination log not written on the host', { destination: dest, reason: (e as Error).message }));
    if (!h || --h.left > 0) return;
    this.#heldExit.delete(gid);
    const s = this.#sessions.get(gid);
    if (!s) return;
    s.exited = Number(h.payload.toString());
    this.#send(s.owner, encodeFrame('X', gid, h.payload));
  }

  /** Stops the VM, tells every client why, removes the pod directory. */
  async shutdown(reason: string, unexpected: boolean): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#trimTimer);
    this.#copies.close();
    this.#log[unexpected ? 'error' : 'info']('pod VM stopping', { reason });
    trace('vmd shutdown');
    // the power-off goes straight to the guest (after a pending identity: the agent answers in order)
    if (!unexpected && this.#identity !== 'failed') { try { this.#vm.control.write(encodeFrame('P', 0)); } catch { /* channel gone */ } }
    const exit = await this.#vm.stop(unexpected ? 100 : 5000);
    trace('vmd vm stopped');
    const why = unexpected ? reason : `${reason} (${exit.reason})`;
    for (const c of this.#conns) { if (!c.destroyed) c.end(encodeFrame('V', 0, JSON.stringify({ reason: why, unexpected }))); }
    this.#server?.close();
    await this.#stopFileServer();
    await this.#cleanupCgroups();
    await this.#detachNetwork();
    if (unexpected) {
      await writeFile(join(this.#o.podDir, 'exit.json'), JSON.stringify({ reason: why, at: new Date().toISOString() })).catch(() => {});
      for (let i = 0; i < SLOT_COUNT; i++) await rm(this.slotPath(i), { force: true });
      await rm(this.socketPath, { force: true });
    } else {
      await rm(this.#o.podDir, { recursive: true, force: true });
    }
    trace('vmd cleaned up');
    this.#finish(unexpected ? 1 : 0);
  }
}
