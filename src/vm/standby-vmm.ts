/**
 * Standby clone VMMs (the node-wide host, cmd/vmhost.ts): per template a pod VM was recently cloned
 * from, ONE QEMU already spawned as that template's clone would be — `-incoming defer`, its slot
 * files, console log and QMP socket in a directory of its own, QMP connected with the incoming
 * migration settings made, the agent channel's socketpair held — so the next clone of that template
 * adopts it instead of spawning QEMU (its init: 51 shared libraries, QOM types, machine init, ~50 ms
 * on a clone's critical path here). Adoption (`take`) records it as the pod's VMM, renames its files
 * into the pod dir (same tmpfs: QEMU keeps its open fds) and hands over its handle; the pod's start
 * then goes on exactly as after a spawn (cgroups, slot 0, `migrate-incoming`, `cont`, identity).
 *
 * A standby holds nothing of a pod: it is made from the template's inputs only (StandbySpec) and
 * handed only to a pod whose spec is that same one (the template key names the scope, sizing,
 * accelerator and sandbox request; the files' identities guard a template rebuilt under one key).
 * Everything of the pod — slot contents, cgroups, identity (entropy, clock, names) — comes at
 * adoption. Pods with a NIC spawn their clone as before (their QEMU opens the pod's tap by name).
 *
 * Bounds: one per spec; spawned STANDBY_DELAY_MS after a clone of it is up (not during its start:
 * the guest's TCG work is the critical path on a small host); ended after STANDBY_IDLE_MS unused, when
 * its template's files change or go, and with the host (`close`). Crash: its QEMU dies with the host
 * (setpriv --pdeathsig); its directory `<root>/standby/<key>-XXXXXX` records the host (`host.proc`)
 * and QEMU (`vmm.proc`), and the next host's sweep ends what a dead host left there.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createNetns, deleteNetns, ip, netnsPathOf } from '../network/host.ts';
import { dropNetnsOwner, recordNetnsOwner } from '../network/netns-owner.ts';
import type { Logger } from '../util/log.ts';
import { killPodProcesses, readProc, recordProc, sameProc } from './procs.ts';
import { QemuVmm } from './qemu.ts';
import { Qmp } from './qmp.ts';
import { AgentTalk, fileId, prepareIncoming, restoreClone, TEMPLATE_MAC } from './template.ts';
import { runThrowaway, warmUpKv } from './template-sandbox.ts';
import { encodeKv } from './protocol.ts';
import { fillSlotFile } from './slots.ts';
import { tailFile, type AdoptedVmm, type StandbyProvider, type StandbySpec, type VmHandle } from './vmm.ts';
import { identityKv, SLOT_BYTES, SLOT_COUNT } from './vmd.ts';

/** A standby nobody took for this long ends (the next clone of its template spawns as before). */
export const STANDBY_IDLE_MS = 60_000;
/** How long after a clone is up its template's next standby is spawned (QEMU's init then runs after that pod's start). */
export const STANDBY_DELAY_MS = 1000;
/** A warm standby's restore and warm-up, at most (then it is not kept). */
const WARM_TIMEOUT_MS = 60_000;
/** The session id of a warm-up's throwaway container: one a pod's supervisor never gives (they count up from the sandbox's). */
const WARM_GID = 4_000_000_000;
/** How often standbys are looked at (idle, template changed). */
const CHECK_MS = 5000;

export function standbyDir(root: string): string { return join(root, 'standby'); }

/**
 * Whether a QEMU command line (NUL- or space-separated) is a standby's not adopted yet: it names its
 * standby dir's slot files and that dir still exists (adoption moves the files and removes it). For
 * benches that measure clones' QEMU processes.
 */
export function waitingStandby(cmdline: string): boolean {
  const m = /file=([^,\0 ]*\/standby\/[^/,\0 ]+)\/slot0\.img/.exec(cmdline);
  return m !== null && existsSync(m[1]!);
}

/** The files a clone's QEMU opens by path in its dir, renamed into the pod dir at adoption. */
const FILES = [...Array.from({ length: SLOT_COUNT }, (_, i) => `slot${i}.img`), 'console.log', 'qmp.sock'];

/**
 * A standby of a template with a NIC: QEMU runs in a private holding netns with a tap of a unique
 * name, both named in `<dir>/netns` (and the netns owner-recorded, netns-owner.ts, anchored on the
 * dir) before they are made, so a dead host's are found again.
 */
interface HoldingNet { netns: string; tap: string }
/** The holding netns's name: one Bulkhead gives (netns-owner.ts BULKHEAD_NETNS_NAME), so a daemon's orphan sweep may remove it too. */
const holdingNet = (): HoldingNet => { const h = randomBytes(3).toString('hex'); return { netns: `bulkhead-standby-${h}`, tap: `bhsb${h}` }; };
const NET_RECORD = 'netns';

/** Removes a holding netns (its tap goes with it) and its owner record; a missing one is fine. */
async function removeHoldingNet(n: HoldingNet): Promise<void> {
  await deleteNetns(n.netns, AbortSignal.timeout(20_000));
  await dropNetnsOwner(n.netns);
}

async function readHoldingNet(dir: string): Promise<HoldingNet | undefined> {
  try {
    const n = JSON.parse(await readFile(join(dir, NET_RECORD), 'utf8')) as Partial<HoldingNet>;
    return typeof n.netns === 'string' && /^bulkhead-standby-[0-9a-f]{6}$/.test(n.netns) && typeof n.tap === 'string' ? { netns: n.netns, tap: n.tap } : undefined;
  } catch { return undefined; }
}

interface Standby {
  spec: string;
  net?: HoldingNet;
  key: string;
  dir: string;
  vm: VmHandle;
  qmp: Qmp;
  /** The template's files as they were at the spawn (QEMU holds the state file open, maps the memory file). */
  files: string;
  /** Restored and warmed up (`#warm`): the guest runs. */
  restored: boolean;
  since: number;
}

export interface StandbyCounts { ready: number; spawning: number; pids: number[] }

const filesOf = (s: StandbySpec): string => `${fileId(s.stateFile)}\n${fileId(s.memFile)}`;

export class StandbyVmms implements StandbyProvider {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #binary: string | undefined;
  readonly #delayMs: number;
  readonly #idleMs: number;
  readonly #ready = new Map<string, Standby>();
  readonly #spawning = new Set<string>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Directories this host made (the sweep leaves them). */
  readonly #mine = new Set<string>();
  #check: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: { root: string; log: Logger; binary?: string; delayMs?: number; idleMs?: number }) {
    this.#dir = standbyDir(o.root);
    this.#log = o.log;
    this.#binary = o.binary;
    this.#delayMs = o.delayMs ?? STANDBY_DELAY_MS;
    this.#idleMs = o.idleMs ?? STANDBY_IDLE_MS;
  }

  counts(): StandbyCounts {
    return { ready: this.#ready.size, spawning: this.#spawning.size, pids: [...this.#ready.values()].map((s) => s.vm.pid) };
  }

  cloned(spec: StandbySpec): void {
    const key = JSON.stringify(spec);
    if (this.#closed || this.#ready.has(spec.key) || this.#spawning.has(key) || this.#timers.has(key)) return;
    const t = setTimeout(() => { this.#timers.delete(key); void this.#spawn(spec, key); }, this.#delayMs);
    t.unref();
    this.#timers.set(key, t);
  }

  async take(spec: StandbySpec, podDir: string, podNet?: { netns: string; tap: string }): Promise<AdoptedVmm | undefined> {
    const s = this.#ready.get(spec.key);
    if (!s) return undefined;
    this.#ready.delete(spec.key);
    let files: string | undefined;
    try { files = filesOf(spec); } catch { files = undefined; }
    // never another spec's; a template rebuilt (or removed) under the same key is another template
    if (s.spec !== JSON.stringify(spec) || files !== s.files) {
      await this.#end(s, s.spec !== JSON.stringify(spec) ? 'spawned for another spec' : 'its template changed');
      return undefined;
    }
    if (!sameProc(readProc(s.dir, 'vmm'))) { await this.#end(s, 'its QEMU is gone'); return undefined; }
    if (!s.net !== !podNet) { await this.#end(s, 'a NIC where the pod has none, or none where it has one'); return undefined; }
    try {
      // the pod's VMM from here on: its delete finds it by this record (its command line names the standby dir)
      recordProc(podDir, 'vmm', s.vm.pid);
      for (const f of FILES) await rename(join(s.dir, f), join(podDir, f));
      // its tap into the pod netns under the name the pod's network expects (QEMU keeps its fd); QEMU
      // itself stays in the holding netns, which it alone keeps once its name is removed below
      if (s.net && podNet) await ip(['-n', s.net.netns, 'link', 'set', 'dev', s.net.tap, 'netns', podNet.netns, 'name', podNet.tap], AbortSignal.timeout(20_000));
    } catch (e) {
      await this.#end(s, `not moved into the pod: ${(e as Error).message.split('\n')[0]}`);
      return undefined;
    }
    // what is left of the standby (its dir, the holding netns's name) goes behind the pod's start
    void (async () => {
      if (s.net) await removeHoldingNet(s.net).catch((e: unknown) => this.#log.warn('holding netns of an adopted standby VMM not removed', { netns: s.net?.netns, err: (e as Error).message }));
      this.#mine.delete(s.dir);
      await rm(s.dir, { recursive: true, force: true }).catch(() => {});
    })();
    this.#log.info('standby VMM adopted', { template: s.key.slice(0, 12), pid: s.vm.pid, podDir, waitedMs: Math.round(performance.now() - s.since) });
    const consoleLog = join(podDir, 'console.log');
    const vm: VmHandle = {
      pid: s.vm.pid, accel: s.vm.accel, qmp: join(podDir, 'qmp.sock'), control: s.vm.control,
      wait: () => s.vm.wait(), stop: (graceMs) => s.vm.stop(graceMs), consoleTail: (n = 20) => tailFile(consoleLog, n),
    };
    return { vm, qmp: s.qmp, ...(podNet && s.net ? { tap: podNet.tap } : {}), ...(s.restored ? { restored: true } : {}) };
  }

  async #spawn(spec: StandbySpec, specKey: string): Promise<void> {
    if (this.#closed || this.#ready.has(spec.key) || this.#spawning.has(specKey)) return;
    this.#spawning.add(specKey);
    let dir: string | undefined;
    let vm: VmHandle | undefined;
    let qmp: Qmp | undefined;
    let net: HoldingNet | undefined;
    try {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      dir = await mkdtemp(join(this.#dir, `${spec.key.slice(0, 12)}-`));
      this.#mine.add(dir);
      recordProc(dir, 'host', process.pid);
      const files = filesOf(spec);
      if (spec.nic) {
        net = holdingNet();
        await writeFile(join(dir, NET_RECORD), JSON.stringify(net), { mode: 0o600 });
        await recordNetnsOwner(net.netns, dir);
        await createNetns(net.netns, AbortSignal.timeout(20_000));
        await ip(['-n', net.netns, 'tuntap', 'add', 'dev', net.tap, 'mode', 'tap'], AbortSignal.timeout(20_000));
      }
      await Promise.all(Array.from({ length: SLOT_COUNT }, async (_, i) => {
        const fh = await open(join(dir!, `slot${i}.img`), 'w');
        try { await fh.truncate(SLOT_BYTES); } finally { await fh.close(); }
      }));
      // as vmd.ts #startClone spawns a clone, from the template's inputs only
      vm = await new QemuVmm(this.#binary).boot({
        name: 'standby', kernel: spec.kernel, initramfs: spec.initramfs, memoryMiB: spec.memoryMiB, vcpus: spec.vcpus, accel: spec.accel,
        consoleLog: join(dir, 'console.log'), workDir: dir, drives: Array.from({ length: SLOT_COUNT }, (_, i) => ({ serial: `slot${i}`, path: join(dir!, `slot${i}.img`) })),
        memFile: { path: spec.memFile, share: false }, qmp: join(dir, 'qmp.sock'), incoming: spec.stateFile,
        ...(spec.tbSizeMiB ? { tbSizeMiB: spec.tbSizeMiB } : {}), ...(spec.jitMemfd ? { jitMemfd: true } : {}), ...(spec.memMerge ? { memMerge: true } : {}),
        // the template's MAC: the restored device has it until the identity gives the guest the pod's
        ...(net ? { tap: net.tap, netns: netnsPathOf(net.netns), mac: TEMPLATE_MAC } : {}),
      });
      vm.control.on('error', () => {});
      qmp = await Qmp.connect(vm.qmp!, 30_000);
      await prepareIncoming(qmp);
      if (this.#closed || this.#ready.has(spec.key)) throw new Error('not needed any more');
      const t0 = performance.now();
      if (spec.warm) await this.#warm(spec.warm, vm, qmp, dir);
      if (this.#closed || this.#ready.has(spec.key)) throw new Error('not needed any more');
      const s: Standby = { spec: specKey, key: spec.key, dir, vm, qmp, files, since: performance.now(), restored: spec.warm !== undefined, ...(net ? { net } : {}) };
      this.#ready.set(spec.key, s);
      void vm.wait().then((exit) => { if (this.#ready.get(spec.key) === s) { this.#ready.delete(spec.key); void this.#end(s, `its QEMU exited (${exit.reason})`); } });
      this.#watch();
      this.#log.info('standby VMM ready', { template: spec.key.slice(0, 12), pid: vm.pid, dir, ...(spec.warm ? { warmedUpMs: Math.round(performance.now() - t0) } : {}) });
    } catch (e) {
      if (!this.#closed) this.#log.warn('standby VMM not kept', { template: spec.key.slice(0, 12), reason: (e as Error).message.split('\n')[0] });
      qmp?.close();
      await vm?.stop(0).catch(() => undefined);
      if (net) await removeHoldingNet(net).catch(() => {});
      if (dir) { this.#mine.delete(dir); await rm(dir, { recursive: true, force: true }).catch(() => {}); }
    } finally {
      this.#spawning.delete(specKey);
    }
  }

  /**
   * Restores a standby whose template holds the sandbox container and warms it up, so that a pod's start
   * on it runs on kernel code TCG has translated (a clone's translation cache starts empty; without this
   * the pod's identity, its first app container's create and start are the guest's first pass through
   * ~20,000 blocks): slot 0 gets the sandbox's image, the state is loaded and the guest runs; a first
   * identity (fresh host entropy and the time, the sandbox named: no names, files or network, which are
   * the pod's and come with its own identity at adoption), then one throwaway container of the
   * sandbox's image through create, start and delete (the supervisor's warm-up, vmd.ts `#warmUp`), in
   * the last slot, which is then made sparse zeros again. Nothing of a pod is in it: everything here comes
   * from the template's inputs.
   */
  async #warm(w: NonNullable<StandbySpec['warm']>, vm: VmHandle, qmp: Qmp, dir: string): Promise<void> {
    const until = Date.now() + WARM_TIMEOUT_MS;
    await fillSlotFile(join(dir, 'slot0.img'), w.image, true, SLOT_BYTES);
    await restoreClone(vm.qmp!, WARM_TIMEOUT_MS, undefined, qmp);
    const talk = new AgentTalk(vm);
    try {
      await talk.ask('U', 0, encodeKv([...identityKv(undefined), ['sb', String(w.gid)]]), 'a standby VM\'s first identity', until);
      const slot = SLOT_COUNT - 1;
      const path = join(dir, `slot${slot}.img`);
      await fillSlotFile(path, w.image, true, SLOT_BYTES);
      const ops = { C: 'create', S: 'start', D: 'delete' } as const;
      await runThrowaway((type, kv) => talk.ask(type, WARM_GID, kv ? encodeKv(kv) : undefined, `a standby VM's warm-up ${ops[type]}`, until), warmUpKv(w.kv, w.gid, slot, Math.round(WARM_TIMEOUT_MS * 3 / 4)));
      // the slot as the pod's supervisor makes one: sparse zeros (its first fill writes only an image's non-zero runs)
      await truncate(path, 0);
      await truncate(path, SLOT_BYTES);
    } finally {
      talk.close(true);
    }
  }

  /** Ends standbys unused for the idle time or whose template changed; stops looking when none is left. */
  #watch(): void {
    if (this.#check) return;
    this.#check = setInterval(() => {
      const now = performance.now();
      for (const [key, s] of this.#ready) {
        let files: string | undefined;
        const spec = JSON.parse(s.spec) as StandbySpec;
        try { files = filesOf(spec); } catch { files = undefined; }
        const why = files !== s.files ? 'its template changed or was removed' : now - s.since > this.#idleMs ? `unused for ${Math.round(this.#idleMs / 1000)} s` : undefined;
        if (!why) continue;
        this.#ready.delete(key);
        void this.#end(s, why);
      }
      if (!this.#ready.size) { clearInterval(this.#check); this.#check = undefined; }
    }, Math.min(CHECK_MS, this.#idleMs));
    this.#check.unref();
  }

  async #end(s: Standby, why: string): Promise<void> {
    s.qmp.close();
    await s.vm.stop(0).catch(() => undefined);
    if (s.net) await removeHoldingNet(s.net).catch((e: unknown) => this.#log.warn('holding netns of a standby VMM not removed', { netns: s.net?.netns, err: (e as Error).message }));
    this.#mine.delete(s.dir);
    await rm(s.dir, { recursive: true, force: true }).catch(() => {});
    if (!this.#closed) this.#log.info('standby VMM ended', { template: s.key.slice(0, 12), pid: s.vm.pid, reason: why });
  }

  /** Ends every standby and removes its directory (the host leaving). */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    if (this.#check) { clearInterval(this.#check); this.#check = undefined; }
    const all = [...this.#ready.values()];
    this.#ready.clear();
    await Promise.all(all.map((s) => this.#end(s, 'the host leaves')));
    // a spawn under way ends itself (closed); wait a little for it so its directory goes before the host does
    for (const until = Date.now() + 5000; this.#spawning.size && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
  }

  /**
   * Ends what a dead host left in `<root>/standby/`: the QEMU of each directory not owned by a live
   * host (recorded, or naming the directory: one that outlived its host's pdeathsig), then the
   * directory. This host's own are left. Returns the directories removed.
   */
  async sweep(): Promise<string[]> {
    const removed: string[] = [];
    for (const n of await readdir(this.#dir).catch(() => [] as string[])) {
      const d = join(this.#dir, n);
      if (this.#mine.has(d) || sameProc(readProc(d, 'host'))) continue;
      const left = await killPodProcesses(d, 0);
      if (left.length) { this.#log.warn('a standby VMM a dead host left survived SIGKILL', { dir: d, left }); continue; }
      const net = await readHoldingNet(d);
      if (net) {
        try { await removeHoldingNet(net); } catch (e) { this.#log.warn('holding netns of a dead host\'s standby VMM not removed', { netns: net.netns, err: (e as Error).message }); continue; }
      }
      await rm(d, { recursive: true, force: true });
      removed.push(d);
    }
    if (removed.length) this.#log.warn('standby VMMs of a dead host removed', { dirs: removed });
    return removed;
  }
}
