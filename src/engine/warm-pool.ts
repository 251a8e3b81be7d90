/**
 * Warm pools: per (handler, trust level), a configured number of ready, unassigned pod sandboxes
 * that RunPodSandbox adopts instead of starting one cold, refilled in the background.
 *
 * A member is a pod made ahead of time, for no pod yet: it has the pod id, pod dir, network
 * namespace (CNI ADD done: its IP), cgroup and running sandbox that a cold pod with that id and
 * no hostname would have. Adoption (pod-lifecycle.ts) gives the new pod the member's id, so every
 * per-id thing (netns and IP lease, cgroup /bulkhead/pod-<id>, pod dir, the sandbox's records) is
 * the pod's as if made for it; then the pod's /etc files are written and the backend's strategy
 * applies the hostname (PodSandbox.adopt); a pod's cgroup_parent gets the sandbox moved under it
 * (cgroup/move.ts; the backend records the new path). What is fixed once the sandbox started takes
 * the cold path, with the reason logged (`adoptionMismatch`, and the pause spec the pod would get
 * compared with the member's): host namespaces, sysctls, host ports (CNI portmap runs at ADD),
 * another network mode, egress guard or trust bit than the level's.
 *
 * A member never crosses handlers or trust levels: a pool is keyed by both, the key of a pod is
 * its handler and the level of its stored policy decision.
 *
 * Crash safety: a member's record (`<runDir>/pool/<id>.json`) is written before anything of it is
 * made and removed only once it is gone, or once an adopting pod's record (phase creating) holds
 * its id; recovery (`removeStalePoolMembers`) removes every member a record names, through the
 * same destroyPod as any pod. On close the pools stop filling and remove their members.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.ts';
import type { NetworkMode } from '../network/pod-network.ts';
import type { PodRecord } from './store.ts';
import { newId } from './ids.ts';
import { type EngineContext, nowNs, settleAll } from './context.ts';
import { buildPodPauseSpec } from './container-spec.ts';
import { sandboxSpecOf } from './sandbox-spec.ts';
import { VOLUMES_ANNOTATION } from '../vm/annotations.ts';
import { destroyPod, networkFor, pauseRootfsOf, recordPodCgroup } from './pod-lifecycle.ts';
import { comparablePauseSpec, type PoolMember, type SandboxPool, type WarmPoolSpec, type WarmPoolStatus } from './warm-pool-member.ts';

export type { PoolMember, WarmPoolSpec, WarmPoolStatus } from './warm-pool-member.ts';

/** The record of a member on disk, written before anything of it is made. */
interface MemberFile {
  version: 1;
  id: string;
  sandboxId: string;
  handler: string;
  level: string;
  mode: NetworkMode;
  podDir: string;
  cgroupParent: string;
}

interface Pool {
  spec: WarmPoolSpec;
  ready: { member: PoolMember; watch: AbortController }[];
  filling: number;
  hits: number;
  misses: number;
  failures: number;
  lastMiss: string;
  lastError: string;
  backoffMs: number;
  notBefore: number;
  /** No refill before this (ms since the epoch): the pod a hit served starts its containers first. */
  refillAfter: number;
}

const MAX_POOL_SIZE = 64;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 60_000;
/**
 * How long a hit's refill waits: the pod that took the member goes on to create and start its
 * containers right away, and a member's making (a microVM clone, its warm-up: ~1 s of CPU under TCG
 * here) would take CPU from exactly that start on a small node.
 */
const HIT_REFILL_DELAY_MS = 1000;

const keyOf = (handler: string, level: string): string => `${handler}\0${level}`;

export function poolDir(ctx: EngineContext): string {
  return join(ctx.opts.runDir, 'pool');
}

export class WarmPools implements SandboxPool {
  readonly #ctx: EngineContext;
  readonly #pools = new Map<string, Pool>();
  readonly #parallelism: number;
  #running = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #stop = new AbortController();
  readonly #fills = new Set<Promise<void>>();
  #started = false;

  constructor(ctx: EngineContext, specs: readonly WarmPoolSpec[], parallelism = 1) {
    this.#ctx = ctx;
    this.#parallelism = Math.max(1, Math.min(8, parallelism));
    for (const s of specs) {
      if (!Number.isInteger(s.size) || s.size < 0 || s.size > MAX_POOL_SIZE) throw new InvalidArgumentError(`warm pool ${s.handler}/${s.level}: size must be 0..${MAX_POOL_SIZE}`);
      const backend = ctx.opts.backends.get(s.handler);
      if (!backend) throw new InvalidArgumentError(`warm pool ${s.handler}/${s.level}: handler ${s.handler} is not configured`);
      if (!backend.podSandbox.adopt) throw new InvalidArgumentError(`warm pool ${s.handler}/${s.level}: the ${backend.name} backend's sandboxes cannot be pooled (pools: gvisor, microvm)`);
      if (s.size === 0) continue;
      const k = keyOf(s.handler, s.level);
      if (this.#pools.has(k)) throw new InvalidArgumentError(`warm pool ${s.handler}/${s.level} is configured twice`);
      this.#pools.set(k, { spec: { ...s }, ready: [], filling: 0, hits: 0, misses: 0, failures: 0, lastMiss: '', lastError: '', backoffMs: 0, notBefore: 0, refillAfter: 0 });
    }
  }

  /** A pool serves pods of this handler and level. */
  has(handler: string, level: string): boolean { return this.#pools.has(keyOf(handler, level)); }

  /** Starts filling (after recovery). */
  start(): void {
    if (this.#pools.size === 0) return;
    this.#started = true;
    this.#ctx.log.info('warm pools filling', { pools: [...this.#pools.values()].map((p) => `${p.spec.handler}/${p.spec.level || '-'}=${p.spec.size}`) });
    this.#kick();
  }

  /** The oldest ready member of the pod's pool (undefined = none ready). */
  take(handler: string, level: string): PoolMember | undefined {
    const p = this.#pools.get(keyOf(handler, level));
    const e = p?.ready.shift();
    if (!e) return undefined;
    e.watch.abort();
    // the pool refills once the pod is ready (hit) or went cold (miss); one given back waits again
    return e.member;
  }

  /** A member taken but not adopted (the pod's pause spec differs): it waits again. */
  giveBack(m: PoolMember): void {
    const p = this.#pools.get(keyOf(m.handler, m.level));
    if (!p || this.#stop.signal.aborted) { void this.#destroy(m.handler, this.#fileOf(m), 'pool closed'); return; }
    // a refill started meanwhile may already stand in for it: never more than the target
    if (p.ready.length + p.filling >= p.spec.size) { void this.#destroy(m.handler, this.#fileOf(m), 'pool full'); return; }
    this.#ready(p, m);
  }

  hit(handler: string, level: string, pod: string, ms: number): void {
    const p = this.#pools.get(keyOf(handler, level));
    if (!p) return;
    p.hits++;
    this.#ctx.log.info('warm pool hit', { pod, handler, level, adoptMs: ms, ready: p.ready.length });
    // the refill starts a little after the pod is ready (HIT_REFILL_DELAY_MS), not during its adoption or its containers' start
    p.refillAfter = Date.now() + HIT_REFILL_DELAY_MS;
    this.#kick();
  }

  miss(handler: string, level: string, reason: string): void {
    const p = this.#pools.get(keyOf(handler, level));
    if (!p) return;
    p.misses++;
    p.lastMiss = reason;
    this.#ctx.log.info('warm pool miss: cold start', { handler, level, reason });
    this.#kick();
  }

  /** After adoption: the pod's record holds the member's id; its member record goes. */
  async adopted(m: PoolMember): Promise<void> {
    await rm(join(poolDir(this.#ctx), `${m.id}.json`), { force: true });
  }

  status(): WarmPoolStatus[] {
    return [...this.#pools.values()].map((p) => ({
      handler: p.spec.handler, level: p.spec.level, target: p.spec.size, ready: p.ready.length, filling: p.filling,
      hits: p.hits, misses: p.misses, failures: p.failures, lastMiss: p.lastMiss, lastError: p.lastError,
    }));
  }

  /** Stops filling, waits for fills in flight, removes every ready member. */
  async close(): Promise<void> {
    this.#stop.abort();
    if (this.#timer) clearTimeout(this.#timer);
    await Promise.allSettled([...this.#fills]);
    const signal = AbortSignal.timeout(60_000);
    const all = [...this.#pools.values()].flatMap((p) => p.ready.splice(0).map((e) => { e.watch.abort(); return e.member; }));
    await Promise.allSettled(all.map((m) => this.#destroy(m.handler, this.#fileOf(m), 'daemon shutdown', signal)));
    if (this.#started) this.#ctx.log.info('warm pools emptied', { removed: all.length });
  }

  #kick(): void {
    if (this.#stop.signal.aborted || !this.#started) return;
    const now = Date.now();
    let wakeAt = Infinity;
    for (const p of this.#pools.values()) {
      while (this.#running < this.#parallelism && p.ready.length + p.filling < p.spec.size) {
        const after = Math.max(p.notBefore, p.refillAfter);
        if (after > now) { wakeAt = Math.min(wakeAt, after); break; }
        this.#fill(p);
      }
    }
    if (wakeAt !== Infinity) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(() => { this.#timer = undefined; this.#kick(); }, wakeAt - now);
      this.#timer.unref();
    }
  }

  #fill(p: Pool): void {
    this.#running++;
    p.filling++;
    const t0 = performance.now();
    const run = this.#make(p.spec).then((m) => {
      p.backoffMs = 0;
      p.notBefore = 0;
      this.#ctx.log.info('warm pool member ready', { handler: p.spec.handler, level: p.spec.level, member: m.id, sandbox: m.sandboxId, ms: Math.round(performance.now() - t0) });
      if (this.#stop.signal.aborted) return this.#destroy(m.handler, this.#fileOf(m), 'pool closed');
      this.#ready(p, m);
    }, (err: unknown) => {
      if (this.#stop.signal.aborted) return;
      p.failures++;
      p.lastError = err instanceof Error ? err.message : String(err);
      p.backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, p.backoffMs * 2));
      p.notBefore = Date.now() + p.backoffMs;
      this.#ctx.log.warn('warm pool member could not be made; backing off', { handler: p.spec.handler, level: p.spec.level, retryInMs: p.backoffMs, err });
    }).finally(() => {
      this.#running--;
      p.filling--;
      this.#fills.delete(run);
      this.#kick();
    });
    this.#fills.add(run);
  }

  /** Holds `m` ready; a member whose sandbox dies while it waits is removed and replaced. */
  #ready(p: Pool, m: PoolMember): void {
    const watch = new AbortController();
    p.ready.push({ member: m, watch });
    const backend = this.#ctx.opts.backends.get(m.handler);
    if (!backend) return;
    void backend.wait(m.sandboxId, AbortSignal.any([watch.signal, this.#stop.signal])).then(() => {
      if (watch.signal.aborted || this.#stop.signal.aborted) return;
      const i = p.ready.findIndex((e) => e.member === m);
      if (i < 0) return;
      p.ready.splice(i, 1);
      p.failures++;
      p.lastError = `member ${m.id.slice(0, 12)}'s sandbox exited while waiting`;
      this.#ctx.log.warn('warm pool member\'s sandbox exited; replacing it', { handler: m.handler, level: m.level, member: m.id });
      void this.#destroy(m.handler, this.#fileOf(m), 'sandbox exited').finally(() => this.#kick());
    }, () => undefined);
  }

  #fileOf(m: PoolMember): MemberFile {
    return { version: 1, id: m.id, sandboxId: m.sandboxId, handler: m.handler, level: m.level, mode: m.mode, podDir: m.podDir, cgroupParent: m.cgroupParent };
  }

  /** Makes one member: record first, then dirs, network, the sandbox. On failure what was made goes. */
  async #make(s: WarmPoolSpec): Promise<PoolMember> {
    const ctx = this.#ctx;
    const { backend } = await ctx.backendFor(s.handler, this.#stop.signal);
    const id = newId();
    const mode: NetworkMode = s.network === 'none' || !ctx.opts.network || ctx.opts.defaultNetworkMode === 'none' ? 'none' : 'bridge';
    const file: MemberFile = {
      version: 1, id, sandboxId: newId(), handler: s.handler, level: s.level, mode,
      podDir: join(ctx.opts.runDir, 'pods', id), cgroupParent: `${ctx.opts.cgroupParent ?? '/bulkhead'}/pod-${id.slice(0, 16)}`,
    };
    await writeMemberFile(ctx, file);
    const rec = memberRecord(file);
    const signal = this.#stop.signal;
    try {
      const [, , net, rootfs] = await settleAll([
        mkdir(file.podDir, { recursive: true, mode: 0o711 }),
        recordPodCgroup(ctx, rec.runtime),
        networkFor(ctx, mode).setup({
          id, name: `warm-${id.slice(0, 12)}`, namespace: 'bulkhead-warm-pool', uid: id, portMappings: [],
          trust: s.hostNetwork ? 'trusted' : 'untrusted', egressGuard: s.egressGuard, mode,
        }, signal),
        pauseRootfsOf(ctx),
      ] as const);
      rec.runtime.netnsPath = net.netnsPath ?? '';
      rec.runtime.ips = net.ips;
      signal.throwIfAborted();
      const spec = await buildPodPauseSpec({ id: file.sandboxId, pod: rec, rootfs, files: { hostname: '', hosts: '', resolvConf: '' } });
      // the member's sandbox is its level's (a VM template's sharing scope is keyed by it)
      // and, with pool volumes = "none" or "copy", for pods that bind no volumes or have them copied in
      // (microvm: a template clone, no share)
      const state = await backend.podSandbox.create({
        ...sandboxSpecOf(ctx.opts, rec), ...(s.level ? { trustLevel: s.level } : {}), ...(s.volumes ? { annotations: { [VOLUMES_ANNOTATION]: s.volumes } } : {}),
      }, { sandboxContainer: true }, {
        sandboxId: file.sandboxId, name: `warm-pool_${s.handler}_${id.slice(0, 12)}`, logPath: join(file.podDir, 'pause.log'), signal,
        sandboxSpec: async () => spec,
      });
      await backend.podSandbox.prepareAdoption?.(state);
      const vols = s.volumes ?? backend.podVolumes?.(undefined);
      signal.throwIfAborted();
      return {
        id, sandboxId: file.sandboxId, handler: s.handler, level: s.level, mode, netnsPath: rec.runtime.netnsPath, ips: net.ips,
        cgroupParent: file.cgroupParent, podDir: file.podDir, egressGuard: s.egressGuard, hostNetwork: s.hostNetwork, pauseSpec: comparablePauseSpec(spec),
        // a pool that names no mode takes its handler's default (a copying handler's members have no share)
        ...(vols === 'none' || vols === 'copy' ? { volumes: vols } : {}),
      };
    } catch (err) {
      await this.#destroy(s.handler, file, 'fill failed');
      throw err;
    }
  }

  async #destroy(handler: string, file: MemberFile, why: string, signal = AbortSignal.timeout(60_000)): Promise<void> {
    try {
      await destroyMember(this.#ctx, file, signal);
    } catch (err) {
      this.#ctx.log.warn('removing a warm pool member failed; the next daemon start removes it', { handler, member: file.id, why, err });
    }
  }
}

async function writeMemberFile(ctx: EngineContext, f: MemberFile): Promise<void> {
  const dir = poolDir(ctx);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${f.id}.tmp`);
  await writeFile(tmp, JSON.stringify(f), { mode: 0o600 });
  await rename(tmp, join(dir, `${f.id}.json`));
}

/** A member as the pod record destroyPod undoes (never stored: a member is no pod). */
function memberRecord(f: MemberFile): PodRecord {
  return {
    id: f.id, name: `warm-${f.id.slice(0, 12)}`, namespace: 'bulkhead-warm-pool', uid: f.id, attempt: 0, handler: f.handler, phase: 'creating', createdAt: nowNs(),
    config: { metadata: { name: `warm-${f.id.slice(0, 12)}`, namespace: 'bulkhead-warm-pool', uid: f.id, attempt: 0 } },
    runtime: {
      netnsPath: '', networkMode: f.mode === 'none' ? 'none' : 'pod', ips: [], podDir: f.podDir, logDirectory: '', cgroupParent: f.cgroupParent,
      pauseId: f.sandboxId, namespacePaths: {}, engine: { mode: f.mode, ownCgroup: true, cgroupMade: {}, ownLogDir: false, logDirMade: '' },
    },
  };
}

/** Removes a member (sandbox, network, dirs, cgroup), then its record. */
async function destroyMember(ctx: EngineContext, f: MemberFile, signal: AbortSignal): Promise<void> {
  await destroyPod(ctx, memberRecord(f), signal);
  await rm(join(poolDir(ctx), `${f.id}.json`), { force: true });
}

const ID = /^[0-9a-f]{64}$/;
const isMemberFile = (v: unknown): v is MemberFile => {
  const f = v as Partial<MemberFile> | null;
  return typeof f === 'object' && f !== null && f.version === 1 && typeof f.id === 'string' && ID.test(f.id) && typeof f.sandboxId === 'string' && ID.test(f.sandboxId)
    && typeof f.handler === 'string' && typeof f.level === 'string' && (f.mode === 'bridge' || f.mode === 'none')
    && typeof f.podDir === 'string' && f.podDir.endsWith(`/pods/${f.id}`) && typeof f.cgroupParent === 'string' && f.cgroupParent.endsWith(`/pod-${f.id.slice(0, 16)}`);
};

/**
 * Recovery: every member a record names is removed (a daemon that died left them unassigned). A
 * member whose id a settled pod now holds was adopted just before the crash: only its record goes.
 */
export async function removeStalePoolMembers(ctx: EngineContext, signal: AbortSignal): Promise<number> {
  const dir = poolDir(ctx);
  let names: string[];
  try { names = await readdir(dir); } catch { return 0; }
  let n = 0;
  for (const name of names) {
    const path = join(dir, name);
    if (!name.endsWith('.json')) { if (name.endsWith('.tmp')) await rm(path, { force: true }); continue; }
    let f: unknown;
    try { f = JSON.parse(await readFile(path, 'utf8')); } catch { f = undefined; }
    if (!isMemberFile(f) || `${f.id}.json` !== name) {
      ctx.log.warn('unreadable warm pool member record removed; its member (if any) is left to the orphan sweeps', { file: path });
      await rm(path, { force: true });
      continue;
    }
    const pod = ctx.store.getPod(f.id);
    if (pod && pod.phase !== 'creating') { await rm(path, { force: true }); continue; }
    try {
      await destroyMember(ctx, f, signal);
      n++;
      ctx.log.info('removed a warm pool member left by an earlier daemon', { handler: f.handler, level: f.level, member: f.id });
    } catch (err) {
      ctx.log.warn('removing a warm pool member left by an earlier daemon failed', { member: f.id, err });
    }
  }
  return n;
}
