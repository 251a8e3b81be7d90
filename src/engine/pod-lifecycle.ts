/**
 * Pod lifecycle: RunPodSandbox (record, dirs, network, /etc files, then the backend's pod sandbox:
 * runtime/sandbox/pod-sandbox.ts decides what holds the pod and makes it), StopPodSandbox,
 * RemovePodSandbox, and destroyPod, the one undo of everything a pod may have, used by remove, by
 * a failed creation and by recovery. The topology is the strategy's; this file never asks which.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AbortedError, AlreadyExistsError, InvalidArgumentError, UnavailableError, isNotFound } from '../errors.ts';
import type { Backend } from '../runtime/backend.ts';
import type { PodNetwork, PodNetworkRequest, NetworkMode, PortProtocol } from '../network/pod-network.ts';
import { FAIL_CLOSED } from '../policy/decision.ts';
import { walkDirsBeneath } from '../util/beneath.ts';
import type * as cri from '../api/cri.ts';
import { NameConflict, type PodRecord, type PodRuntimeInfo } from './store.ts';
import { newId, resolveId } from './ids.ts';
import { writePodFiles, validateHostname, type PodFiles } from './pod-files.ts';
import { buildPodPauseSpec, ensurePauseRootfs } from './container-spec.ts';
import { refuseUserNamespace } from './user-namespace.ts';
import { refuseSelinuxOnEnabledNode } from './selinux.ts';
import type { RunPodOptions } from './options.ts';
import { type EngineContext, nowNs, settleAll } from './context.ts';
import { firstMissing, logRootOf, removeLogDir } from './log-dirs.ts';
import { removeMade, removeTree, topMissing } from '../cgroup/tree.ts';
import { recordCgroupOwner, settleCgroupOwner } from '../cgroup/owner.ts';
import { moveCgroup, primeMove } from '../cgroup/move.ts';
import { checkCgroupParent } from './cgroup-dirs.ts';
import { emit } from './cri-view.ts';
import { watchPause } from './exit-monitor.ts';
import { destroyContainer, stopLocked } from './container-lifecycle.ts';
import { sandboxSpecOf, sandboxStateOf } from './sandbox-spec.ts';
import { adoptionMismatch, comparablePauseSpec, firstDifference, type PoolMember } from './warm-pool-member.ts';

/** When `idOrPrefix` names a pod still being created, cancels that creation and waits for its rollback. */
async function cancelCreation(ctx: EngineContext, idOrPrefix: string): Promise<void> {
  if (ctx.creating.size === 0) return;
  let id: string;
  try { id = resolveId('pod sandbox', idOrPrefix, (p) => ctx.store.podIdsWithPrefix(p)); } catch { return; }
  const c = ctx.creating.get(id);
  if (!c) return;
  c.abort.abort(new AbortedError(`pod sandbox ${id} was stopped or removed while being created`));
  await c.done;
}

function podNetworkMode(ctx: EngineContext, config: cri.PodSandboxConfig, opts: RunPodOptions): NetworkMode {
  const ns = config.linux?.securityContext?.namespaceOptions;
  if (ns?.network === 'NODE') return 'host';
  if (opts.networkMode === 'none') return 'none';
  return ctx.opts.network && ctx.opts.defaultNetworkMode !== 'none' ? 'bridge' : 'none';
}

export function networkFor(ctx: EngineContext, mode: NetworkMode): PodNetwork {
  return mode === 'bridge' ? ctx.network : ctx.fallbackNetwork;
}

function netRequest(p: PodRecord, mode: NetworkMode): PodNetworkRequest {
  const d = p.runtime.engine.decision ?? FAIL_CLOSED;
  return {
    id: p.id,
    name: p.name,
    namespace: p.namespace,
    uid: p.uid,
    trust: d.hostNetwork ? 'trusted' : 'untrusted',
    egressGuard: d.egressGuard,
    mode,
    portMappings: (p.config.portMappings ?? []).map((m) => ({
      protocol: (m.protocol ?? 'TCP').toLowerCase() as PortProtocol,
      containerPort: m.containerPort ?? 0,
      hostPort: m.hostPort ?? 0,
      hostIp: m.hostIp ?? '',
    })),
  };
}

/**
 * CRI RunPodSandbox: creates and starts a pod sandbox; returns its id. On failure everything
 * made so far is undone before the error is thrown.
 */
export async function runPodSandbox(ctx: EngineContext, config: cri.PodSandboxConfig, runtimeHandler: string, opts: RunPodOptions): Promise<string> {
  const md = config.metadata;
  if (!md?.name || !md.namespace || !md.uid) throw new InvalidArgumentError('pod sandbox metadata must have name, namespace and uid');
  refuseUserNamespace(config.linux?.securityContext?.namespaceOptions, `pod ${md.namespace}/${md.name}`);
  refuseSelinuxOnEnabledNode({ options: [config.linux?.securityContext?.selinuxOptions] }, ctx.selinux, `pod ${md.namespace}/${md.name}`);
  const { name: handler, backend } = await ctx.backendFor(runtimeHandler, opts.signal);
  const hostname = config.hostname ?? '';
  if (hostname) validateHostname(hostname);
  const mode = podNetworkMode(ctx, config, opts);
  const callerSignal = opts.signal ? AbortSignal.any([opts.signal, ctx.closing.signal]) : ctx.closing.signal;
  // One attempt per pod name in flight: the kubelet's retry of a call it gave up on waits here
  // until that call is done or rolled back. Then a bounded number of creations run at once; a
  // call whose client goes away while it waits has made nothing.
  const unreserve = await ctx.podNames.reserve(`${md.namespace}\0${md.name}\0${md.attempt ?? 0}`, callerSignal);
  let releaseSlot: (() => void) | undefined;
  try {
    releaseSlot = await ctx.podSlots.acquire(callerSignal);
    return await createPod(ctx, config, { name: md.name, namespace: md.namespace, uid: md.uid, attempt: md.attempt ?? 0 }, handler, backend, hostname, mode, callerSignal, opts);
  } finally {
    releaseSlot?.();
    unreserve();
  }
}

/**
 * A ready member of the pod's warm pool (engine/warm-pool.ts) when the pod can take one; a pod that
 * cannot, or finds its pool empty, is a miss with the reason logged and starts cold.
 */
function takeMember(ctx: EngineContext, config: cri.PodSandboxConfig, handler: string, backend: Backend, mode: NetworkMode, opts: RunPodOptions): PoolMember | undefined {
  const pool = ctx.pool;
  const level = opts.decision?.level ?? '';
  if (!pool?.has(handler, level)) return undefined;
  const d = opts.decision ?? FAIL_CLOSED;
  const m = pool.take(handler, level);
  if (!m) { pool.miss(handler, level, 'pool empty'); return undefined; }
  const why = adoptionMismatch(config, mode, d.egressGuard, d.hostNetwork, m, backend.podVolumes?.(config.annotations ?? undefined));
  if (why) { pool.giveBack(m); pool.miss(handler, level, why); return undefined; }
  return m;
}

type PodMeta = { name: string; namespace: string; uid: string; attempt: number };

/**
 * A member taken for the pod goes back to its pool when the pod fails before its record holds the
 * member's id (a refused log_directory or cgroup_parent, a name in use): nothing of it was used.
 */
async function createPod(
  ctx: EngineContext, config: cri.PodSandboxConfig, md: PodMeta, handler: string,
  backend: Backend, hostname: string, mode: NetworkMode, callerSignal: AbortSignal, opts: RunPodOptions, pooled = true,
): Promise<string> {
  const held: { member: PoolMember | undefined } = { member: pooled ? takeMember(ctx, config, handler, backend, mode, opts) : undefined };
  try {
    return await createPodWith(ctx, config, md, handler, backend, hostname, mode, callerSignal, opts, held);
  } catch (err) {
    if (held.member) ctx.pool!.giveBack(held.member);
    throw err;
  }
}

async function createPodWith(
  ctx: EngineContext, config: cri.PodSandboxConfig, md: PodMeta, handler: string,
  backend: Backend, hostname: string, mode: NetworkMode, callerSignal: AbortSignal, opts: RunPodOptions, held: { member: PoolMember | undefined },
): Promise<string> {
  const tStart = performance.now();
  const member = held.member;
  // a member that will move (the pod names a cgroup_parent) has the kernel's wait for it paid from
  // here, side by side with the checks and records below (cgroup/move.ts)
  const primed = member && config.linux?.cgroupParent ? primeMove(`${member.cgroupParent}/${member.sandboxId}`) : undefined;
  const id = member?.id ?? newId();
  // Aborted by the caller (deadline, cancel), the daemon closing, or Stop/RemovePodSandbox.
  const cancel = new AbortController();
  const signal = AbortSignal.any([callerSignal, cancel.signal]);
  const podDir = join(ctx.opts.runDir, 'pods', id);
  const logLoc = logRootOf(ctx.opts, config.logDirectory || join(ctx.opts.root, 'logs', id));
  const logDirectory = join(logLoc.root, ...logLoc.parts);
  const logDirMade = await firstMissing(logLoc.root, logLoc.parts);
  const ownCgroup = !config.linux?.cgroupParent;
  const cgroupParent = config.linux?.cgroupParent ? checkCgroupParent(ctx.opts, config.linux.cgroupParent) : `${ctx.opts.cgroupParent ?? '/bulkhead'}/pod-${id.slice(0, 16)}`;
  const cgroupMade = ownCgroup ? {} : topMissing(cgroupParent);
  const runtime: PodRuntimeInfo = {
    netnsPath: '', networkMode: mode === 'host' ? 'host' : mode === 'none' ? 'none' : 'pod', ips: [],
    podDir, logDirectory, cgroupParent, pauseId: '',
    namespacePaths: {}, engine: { mode, ownCgroup, cgroupMade, ownLogDir: !config.logDirectory, logDirMade: logDirMade ?? '', ...(opts.decision ? { decision: opts.decision } : {}) },
  };
  const rec: PodRecord = {
    id, name: md.name, namespace: md.namespace, uid: md.uid, attempt: md.attempt ?? 0, handler,
    phase: 'creating', createdAt: nowNs(), config, runtime,
  };
  // the backend decides how the pod is held before anything is made; a sandbox container's id is
  // recorded with the pod from the first write, so a crash at any later point leaves it findable
  const plan = await backend.podSandbox.plan(sandboxSpecOf(ctx.opts, rec));
  if (member && !plan.sandboxContainer) {
    // the pod runs without a sandbox container (gVisor: a one-shot pod's container is its
    // sandbox): it has no use for a pooled one, which goes back unused (not a miss)
    ctx.pool!.giveBack(member);
    held.member = undefined;
    return await createPod(ctx, config, md, handler, backend, hostname, mode, callerSignal, opts, false);
  }
  if (member) {
    // the pause spec this pod would get, against the member's: anything but the hostname differing
    // (a field set at start that the checks above do not know) sends the pod the cold way
    Object.assign(runtime, { netnsPath: member.netnsPath, ips: member.ips, pauseId: member.sandboxId });
    // a cgroup_parent of the pod's own is applied by moving the sandbox (adoptSandbox): compared as the member's
    const asMember = { ...rec, runtime: { ...runtime, cgroupParent: member.cgroupParent } };
    const mine = comparablePauseSpec(await buildPodPauseSpec({ id: member.sandboxId, pod: asMember, rootfs: await pauseRootfsOf(ctx), files: { hostname: '', hosts: '', resolvConf: '' } }));
    if (!plan.sandboxContainer || mine !== member.pauseSpec || (ownCgroup && runtime.cgroupParent !== member.cgroupParent) || podDir !== member.podDir) {
      ctx.pool!.giveBack(member);
      held.member = undefined;
      const where = mine !== member.pauseSpec ? `sandbox spec field ${firstDifference(mine, member.pauseSpec)}` : 'pod dir or cgroup';
      ctx.pool!.miss(handler, member.level, `the pod's sandbox differs from the pool's (${where}; fixed at sandbox start)`);
      return await createPod(ctx, config, md, handler, backend, hostname, mode, callerSignal, opts, false);
    }
    // recorded before anything moves: the cgroup the sandbox will have, and the member's own
    if (!ownCgroup) runtime.engine.extraCgroups = [`${cgroupParent}/${member.sandboxId}`, member.cgroupParent];
  } else if (plan.sandboxContainer) runtime.pauseId = newId();
  let settled!: () => void;
  const done = new Promise<void>((r) => { settled = r; });
  // undefined: a member failed adoption and was undone; the pod starts cold
  const made = await ctx.locks.with(id, async (): Promise<string | undefined> => {
    try {
      ctx.store.insertPod(rec);
    } catch (err) {
      settled();
      if (err instanceof NameConflict) throw new AlreadyExistsError(err.message, { reason: 'BH_NAME_IN_USE' });
      throw err;
    }
    // from here the pod's record holds the member (destroyPod undoes it with the pod)
    held.member = undefined;
    ctx.creating.set(id, { abort: cancel, done });
    // a member goes under the pod's cgroup_parent from here (its record names both cgroups), side
    // by side with the steps below: the move's kernel wait (cgroup/move.ts) hides behind them
    const moving = member && !ownCgroup ? startMove(ctx, rec, member, primed) : undefined;
    try {
      const t0 = performance.now();
      // Independent steps run side by side; every one is settled before an error is thrown, so
      // the cleanup below never races a half-finished step (e.g. a netns still being made).
      const logDirs = mkdir(logLoc.root, { recursive: true, mode: 0o755 }).then(() => walkDirsBeneath(logLoc.root, logLoc.parts, { create: true, mode: 0o755, what: 'log_directory', rule: 'no symlinks under the pod log root' }));
      let pauseR = '';
      // a pod with no network to wait for (its one container makes its own loopback-only netns,
      // plan.ownNetwork) has its addresses now, none: its /etc files are written beside the steps
      // below, in its dir once that is made (with the dir's own mode)
      let early: Promise<PodFiles | undefined> = Promise.resolve(undefined);
      if (member) {
        // the pod's record now holds the member's id (and recovery undoes it as this pod): its
        // member record goes; the member's dir, netns, IP, cgroup and sandbox are the pod's
        await settleAll([logDirs, ctx.pool!.adopted(member), recordPodCgroup(ctx, runtime)] as const);
      } else {
        const podDirMade = mkdir(podDir, { recursive: true, mode: 0o711 });
        if (mode === 'none' && plan.ownNetwork) early = podDirMade.then(() => writePodFiles(join(podDir, 'etc'), hostname, [], config.dnsConfig));
        const [, , , , netR, rootfs] = await settleAll([
          podDirMade,
          early,
          logDirs,
          // before anything makes the pod's cgroup: found again should this daemon die with its root deleted
          recordPodCgroup(ctx, runtime),
          // a container that makes its own loopback-only netns needs none of the pod's (plan.ownNetwork)
          mode === 'none' && plan.ownNetwork ? Promise.resolve({ netnsPath: null, ips: [] }) : networkFor(ctx, mode).setup(netRequest(rec, mode), signal),
          runtime.pauseId ? pauseRootfsOf(ctx) : Promise.resolve(''),
        ] as const);
        pauseR = rootfs;
        runtime.netnsPath = netR.netnsPath ?? '';
        runtime.ips = netR.ips;
        ctx.store.updatePod(rec);
      }
      signal.throwIfAborted();
      const t1 = performance.now();
      const files = await early ?? await writePodFiles(join(podDir, 'etc'), hostname, runtime.ips, config.dnsConfig);
      signal.throwIfAborted();
      const t2 = performance.now();
      const state = member
        ? await adoptSandbox(ctx, backend, rec, member, moving, signal)
        : await backend.podSandbox.create(sandboxSpecOf(ctx.opts, rec), plan, {
          sandboxId: runtime.pauseId, name: `${md.namespace}_${md.name}_pause`, logPath: join(podDir, 'pause.log'), signal,
          sandboxSpec: () => buildPodPauseSpec({ id: runtime.pauseId, pod: rec, rootfs: pauseR, files }),
        });
      runtime.namespacePaths = state.namespacePaths;
      if (runtime.pauseId) watchPause(ctx, id, runtime.pauseId, backend);
      runtime.engine.files = files;
      // a caller that went away during the last step gets nothing, so nothing may stay
      signal.throwIfAborted();
      rec.phase = 'ready';
      ctx.store.updatePod(rec);
      // the steps' times (bench/run.ts --profile reads them)
      ctx.log.info('pod sandbox ready', { pod: id, name: `${md.namespace}/${md.name}`, handler, prepareMs: ms(t0, t1), filesMs: ms(t1, t2), sandboxMs: ms(t2, performance.now()), ...(member ? { warmPool: true } : {}) });
      if (member) ctx.pool!.hit(handler, member.level, id, ms(tStart, performance.now()));
      return id;
    } catch (err) {
      ctx.log.warn('pod sandbox creation failed; cleaning up', { pod: id, err, ...(member ? { warmPool: true } : {}) });
      // the member is used up either way (the pool makes another)
      if (member) ctx.pool!.miss(handler, member.level, signal.aborted ? 'the call was cancelled during adoption' : `adoption failed: ${err instanceof Error ? err.message : String(err)}`);
      // a move still under way ends before the cleanup removes what it moves
      await moving?.catch(() => undefined);
      try {
        await destroyPod(ctx, rec, ctx.closing.signal);
      } catch (e) {
        // Never a hidden half-made record that holds the name: what could not be undone is a
        // NOTREADY pod, listed, that RemovePodSandbox (the kubelet's next step) retries.
        ctx.log.error('cleanup after failed pod creation failed; the pod stays NOTREADY for RemovePodSandbox', { pod: id, err: e });
        if (ctx.store.getPod(id)) { rec.phase = 'notready'; ctx.store.updatePod(rec); }
        throw err;
      }
      // a member that failed adoption (its sandbox died just now) is gone: the pod starts cold
      if (!member || signal.aborted) throw err;
      return undefined;
    } finally {
      ctx.creating.delete(id);
      settled();
    }
  });
  return made ?? await createPod(ctx, config, md, handler, backend, hostname, mode, callerSignal, opts, false);
}

/**
 * The member's sandbox goes under the pod's cgroup_parent (its processes moved, with the settings
 * its runtime gave its cgroup); the promise never rejects unobserved (adoptSandbox awaits it, the
 * cleanup of a failed creation waits for it).
 */
function startMove(ctx: EngineContext, rec: PodRecord, m: PoolMember, primed: Promise<number | undefined> | undefined): Promise<void> {
  const t0 = performance.now();
  const p = moveCgroup(`${m.cgroupParent}/${m.sandboxId}`, `${rec.runtime.cgroupParent}/${m.sandboxId}`, () => undefined, { removeUpTo: m.cgroupParent, ...(primed ? { after: primed } : {}) })
    .then(() => ctx.log.debug('warm pool member moved to the pod\'s cgroup', { pod: rec.id, ms: ms(t0, performance.now()) }));
  p.catch(() => undefined);
  return p;
}

/**
 * A member's sandbox becomes the pod's: `moving` (startMove) has it under the pod's cgroup_parent
 * when the pod names one, and the strategy applies what the pod sets on top (hostname) meanwhile;
 * both are done before the pod is ready.
 */
async function adoptSandbox(ctx: EngineContext, backend: Backend, rec: PodRecord, m: PoolMember, moving: Promise<void> | undefined, signal: AbortSignal): Promise<{ sandboxId: string; namespacePaths: Record<string, string> }> {
  const state = { sandboxId: m.sandboxId, namespacePaths: {} };
  const moved = moving ? { cgroupsPath: `${rec.runtime.cgroupParent}/${m.sandboxId}` } : undefined;
  const t1 = performance.now();
  await settleAll([moving ?? Promise.resolve(), backend.podSandbox.adopt!(sandboxSpecOf(ctx.opts, rec), state, signal, moved)] as const);
  const t2 = performance.now();
  if (moved) await removeTree(m.cgroupParent);
  ctx.log.debug('warm pool member adopted', { pod: rec.id, adoptMs: ms(t1, t2), removeMs: ms(t2, performance.now()) });
  return state;
}

export function pauseRootfsOf(ctx: EngineContext): Promise<string> {
  ctx.pauseRootfs ??= ensurePauseRootfs(join(ctx.opts.root, 'pause'));
  return ctx.pauseRootfs;
}

/** CRI StopPodSandbox: kills every container and the pause process, frees the network. Idempotent. */
export async function stopPodSandbox(ctx: EngineContext, idOrPrefix: string, signal?: AbortSignal): Promise<void> {
  await cancelCreation(ctx, idOrPrefix);
  let p: PodRecord;
  try { p = ctx.resolvePod(idOrPrefix); } catch (err) { if (isNotFound(err)) return; throw err; }
  const sig = signal ?? ctx.closing.signal;
  for (const c of ctx.store.listContainers(p.id)) {
    await ctx.locks.with(c.id, async () => {
      const cur = ctx.store.getContainer(c.id);
      if (cur && cur.phase === 'running') await stopLocked(ctx, cur, p, 0, sig);
    });
  }
  await ctx.locks.with(p.id, async () => {
    const cur = ctx.store.getPod(p.id);
    if (!cur || cur.phase !== 'ready' && cur.phase !== 'notready') return;
    const backend = ctx.backendOf(cur);
    if (cur.runtime.pauseId) ctx.unwatch(cur.runtime.pauseId);
    await backend.podSandbox.stop(sandboxStateOf(cur), sig);
    const mode = cur.runtime.engine.mode;
    if (mode !== 'host') await networkFor(ctx, mode).teardown(cur.id, sig);
    if (cur.phase !== 'notready') {
      cur.phase = 'notready';
      ctx.store.updatePod(cur);
      ctx.log.info('pod sandbox stopped', { pod: cur.id });
    }
  });
}

/** CRI RemovePodSandbox: removes the pod and all its containers. Idempotent. */
export async function removePodSandbox(ctx: EngineContext, idOrPrefix: string, signal?: AbortSignal): Promise<void> {
  await cancelCreation(ctx, idOrPrefix);
  let p: PodRecord;
  try { p = ctx.resolvePod(idOrPrefix); } catch (err) { if (isNotFound(err)) return; throw err; }
  const sig = signal ?? ctx.closing.signal;
  await ctx.locks.with(p.id, async () => {
    const cur = ctx.store.getPod(p.id);
    if (!cur) return;
    cur.phase = 'removing';
    ctx.store.setPodPhase(cur.id, 'removing');
    // what earlier removals left busy may be free by now (in the background)
    ctx.released.kick();
    const steps = await destroyPod(ctx, cur, sig);
    ctx.log.info('pod sandbox removed', { pod: cur.id, handler: cur.handler, ...steps });
    // a removal is what frees a full disk: the reserve is made again now, not at the next sweep
    ctx.reserve?.ensure();
  });
}

/**
 * Undoes everything a pod may have; then the record. The backend's strategy removes the
 * containers (through the engine's destroyContainer), then its sandbox, then what held the pod's
 * namespaces; then the pod's network, directories and cgroups go. A pod whose handler is no
 * longer configured still loses its containers' records, network, dirs and cgroups.
 */
export async function destroyPod(ctx: EngineContext, p: PodRecord, signal: AbortSignal): Promise<DestroySteps> {
  const t0 = performance.now();
  let tContainers = t0;
  const backend = ctx.opts.backends.get(p.handler);
  if (p.runtime.pauseId) ctx.unwatch(p.runtime.pauseId);
  // the containers go side by side (each `delete --force` kills what still runs); every one is
  // settled before the first error is thrown
  const removeContainers = async (): Promise<void> => {
    await settleAll(ctx.store.listContainers(p.id).map((c) => ctx.locks.with(c.id, async () => {
      const cur = ctx.store.getContainer(c.id);
      if (!cur) return;
      ctx.store.setContainerPhase(cur.id, 'removing');
      await destroyContainer(ctx, cur, p, signal);
      emit(ctx, 'CONTAINER_DELETED_EVENT', cur);
    })));
    tContainers = performance.now();
  };
  if (backend) {
    await backend.podSandbox.destroy({ podDir: p.runtime.podDir, ...(ctx.opts.helperDir !== undefined ? { helperDir: ctx.opts.helperDir } : {}) }, sandboxStateOf(p), removeContainers, signal);
  } else {
    await removeContainers();
  }
  const t1 = performance.now();
  const mode = p.runtime.engine.mode;
  let t2 = t1;
  let cgroupsMs = 0;
  const cgroups = async (): Promise<void> => {
    const t = performance.now();
    // the extras first: the sandbox's moved cgroup sits under the pod's
    for (const cg of p.runtime.engine.extraCgroups ?? []) {
      if (await settleCgroupOwner(cg, await removeTree(cg))) ctx.released.add(cg, false);
    }
    const left = p.runtime.engine.ownCgroup ? await removeTree(p.runtime.cgroupParent) : await removeMade(p.runtime.cgroupParent, p.runtime.engine.cgroupMade);
    // busy directories keep the owner record (released): retried while the daemon runs, else by the next start's sweep
    if (left.length > 0) ctx.log.warn('pod cgroup left busy after its removal; retried later (released-cgroups.ts)', { pod: p.id, left: left.slice(0, 8) });
    if (await settleCgroupOwner(p.runtime.cgroupParent, left)) ctx.released.add(p.runtime.cgroupParent, !p.runtime.engine.ownCgroup);
    cgroupsMs = ms(t, performance.now());
  };
  // cgroups after the network: only empty ones can go, and the netns teardown may still have held
  // a process; a made pod without a netns (host, or a one-shot container's own loopback-only one)
  // has nothing there that could: its cgroups go beside its network and dirs (a pod whose creation
  // failed may have a netns its record does not name yet: the old order)
  const alongside = p.runtime.netnsPath === '' && mode !== 'bridge' && p.phase !== 'creating';
  await settleAll([
    // the pod's network after its sandbox (a VM's tap, a Sentry's sockets live in it)
    mode !== 'host' ? networkFor(ctx, mode).teardown(p.id, signal) : Promise.resolve(),
    rm(p.runtime.podDir, { recursive: true, force: true }),
    // after the containers: conmon may still be writing their last log lines
    // the pod's log directory, when Bulkhead created it (from the topmost directory it made)
    removeLogDir(p),
    alongside ? cgroups() : Promise.resolve(),
  ]).finally(() => { t2 = performance.now(); });
  if (!alongside) await cgroups();
  ctx.store.deletePod(p.id);
  return { containersMs: ms(t0, tContainers), sandboxMs: ms(tContainers, t1), networkAndDirsMs: ms(t1, t2), cgroupsMs };
}

/**
 * The owner record of the pod's cgroup (cgroup/owner.ts), anchored at the daemon's root: its own
 * (`<parent>/pod-<id>`), or what it makes of a cgroup_parent it was given. A pod that names a
 * parent which exists already makes nothing there but its containers' cgroups, which its kubelet
 * removes with the pod's.
 */
export async function recordPodCgroup(ctx: EngineContext, runtime: PodRuntimeInfo): Promise<void> {
  const made = runtime.engine.cgroupMade;
  if (!runtime.engine.ownCgroup && Object.keys(made).length === 0) return;
  await recordCgroupOwner(runtime.cgroupParent, ctx.opts.root, { own: runtime.engine.ownCgroup, ...(runtime.engine.ownCgroup ? {} : { made }) });
}

/** How long each step of destroyPod took (ms; for the log and bench/run.ts --profile). */
export interface DestroySteps { containersMs: number; sandboxMs: number; networkAndDirsMs: number; cgroupsMs: number }

const ms = (a: number, b: number): number => Math.round((b - a) * 10) / 10;
