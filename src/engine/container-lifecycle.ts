/**
 * Container lifecycle: CreateContainer (record, rootfs, spec, backend create), Start, Stop (stop
 * signal, grace, SIGKILL), Remove, UpdateContainerResources and ReopenContainerLog; and
 * destroyContainer, the one undo of everything a container may have, used by remove, by a failed
 * create, by pod removal and by recovery.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError, UnimplementedError, isNotFound,
} from '../errors.ts';
import type { ContainerState as RuntimeState, OciLinuxResources } from '../runtime/backend.ts';
import { DANGEROUS_HOST_PATHS } from '../policy/policy.ts';
import { unifiedProblems } from '../policy/cgroup-unified.ts';
import { ensureHostMount } from '../runtime/helpers/hostmount.ts';
import { cgroupMode } from '../cgroup/hierarchy.ts';
import type * as cri from '../api/cri.ts';
import { NameConflict, type PodRecord, type ContainerRecord, type ContainerRuntimeInfo } from './store.ts';
import { newId, resolveId } from './ids.ts';
import { buildContainerSpec, containerSeccomp, imageProcessConfig, type HostPathGuard } from './container-spec.ts';
import { refuseUserNamespace } from './user-namespace.ts';
import { refuseSelinuxOnEnabledNode } from './selinux.ts';
import { mountAll, unmountTree, volatileUpper } from './mounts.ts';
import { SINGLE_CONTAINER_ANNOTATION } from '../api/annotations.ts';
import { type EngineContext, nowNs, settleAll, visible } from './context.ts';
import { logPathFor, makeLogParents } from './log-dirs.ts';
import { emit } from './cri-view.ts';
import { applyExit, watch } from './exit-monitor.ts';
import { sandboxSpecOf, sandboxStateOf } from './sandbox-spec.ts';

/** A pod `bulkhead run --rm` made (the one-shot annotation in the daemon's own record of it). */
function oneShot(p: PodRecord): boolean {
  return p.config.annotations?.[SINGLE_CONTAINER_ANNOTATION] === 'true';
}

function hostPathGuard(ctx: EngineContext): HostPathGuard {
  return ctx.opts.hostPathGuard ?? { kubeletRoot: '/var/lib/kubelet', protect: [...DANGEROUS_HOST_PATHS, ctx.opts.root, ctx.opts.runDir] };
}

/** CRI CreateContainer: creates a container in a ready pod; returns its id. */
export async function createContainer(ctx: EngineContext, podIdOrPrefix: string, config: cri.ContainerConfig, signal?: AbortSignal): Promise<string> {
  const name = config.metadata?.name;
  if (!name) throw new InvalidArgumentError('container metadata must have a name');
  const imageRef = config.image?.image;
  if (!imageRef) throw new InvalidArgumentError('container image must be given');
  // Never silently dropped: a container that asked for a device must not start without it.
  refuseUserNamespace(config.linux?.securityContext?.namespaceOptions, `container ${name}`);
  refuseSelinuxOnEnabledNode({ options: [config.linux?.securityContext?.selinuxOptions], relabel: (config.mounts ?? []).some((m) => m.selinuxRelabel) }, ctx.selinux, `container ${name}`);
  if ((config.CDIDevices ?? []).length > 0) throw new UnimplementedError('CDI_devices are not supported: Bulkhead has no CDI registry (no /etc/cdi specs are read); pass the device nodes in devices instead');
  await refuseUnifiedOnV1(config.linux?.resources?.unified, `container ${name}`);
  const p0 = ctx.resolvePod(podIdOrPrefix);
  const sig = signal ?? ctx.closing.signal;
  const id = newId();
  return await ctx.locks.withAll([p0.id, id], async () => {
    const p = ctx.store.getPod(p0.id);
    if (!p || p.phase !== 'ready') throw new FailedPreconditionError(`pod sandbox ${p0.id} is not ready`);
    const backend = ctx.backendOf(p);
    const image = await ctx.opts.images.get(imageRef);
    if (!image) throw new NotFoundError(`image ${JSON.stringify(imageRef)} is not present on this node; pull it first`, { reason: 'BH_IMAGE_NOT_PRESENT' });
    const attempt = config.metadata?.attempt ?? 0;
    const nsOpt = config.linux?.securityContext?.namespaceOptions;
    let target: { id: string; pid: number } | undefined;
    if (nsOpt?.pid === 'TARGET') {
      const t = nsOpt.targetId ? ctx.store.getContainer(resolveId('container', nsOpt.targetId, (x) => ctx.store.containerIdsWithPrefix(x))) : undefined;
      if (!t || t.podId !== p.id || t.phase !== 'running') throw new FailedPreconditionError('pid namespace target must be a running container of the same pod');
      target = { id: t.id, pid: t.runtime.pid };
    }
    // which namespaces the container's spec names is the backend's pod strategy's to say; it may
    // refuse (before anything is made) a combination its sandbox cannot hold
    const namespaces = backend.podSandbox.containerNamespaces({
      pod: sandboxSpecOf(ctx.opts, p), state: sandboxStateOf(p), id, pid: nsOpt?.pid ?? 'CONTAINER', ...(target ? { target } : {}),
    });
    const logPath = logPathFor(p, config, name, attempt);
    const seccompProfileRoot = ctx.opts.seccompProfileRoot ?? '/var/lib/kubelet/seccomp';
    const seccomp = await containerSeccomp(config, p, seccompProfileRoot);
    const containerDir = join(ctx.opts.runDir, 'containers', id);
    const runtime: ContainerRuntimeInfo = {
      bundleDir: containerDir, rootfsDir: join(containerDir, 'rootfs'), rootfsPrepared: false,
      pid: 0, cgroupPath: `${p.runtime.cgroupParent}/${id}`,
      stopSignal: imageProcessConfig(image).StopSignal || 'SIGTERM',
    };
    const rec: ContainerRecord = {
      id, podId: p.id, name, attempt, phase: 'creating', createdAt: nowNs(), startedAt: 0, finishedAt: 0,
      exitCode: 0, reason: '', message: '', imageRef: image.repoDigests?.[0] ?? image.id, imageId: image.id,
      logPath, config, runtime,
    };
    try {
      ctx.store.insertContainer(rec);
    } catch (err) {
      if (err instanceof NameConflict) throw new AlreadyExistsError(err.message, { reason: 'BH_NAME_IN_USE' });
      throw err;
    }
    const t0 = performance.now();
    try {
      await mkdir(runtime.rootfsDir, { recursive: true, mode: 0o700 });
      runtime.rootfsPrepared = true;
      ctx.store.updateContainer(rec);
      const mounts = await ctx.opts.images.prepareRootfs(id, image.id);
      // a one-shot pod's container (`run --rm`) is removed with its pod: nothing reads its
      // writable layer again, which need not be synced (mounts.ts volatileUpper)
      await mountAll(oneShot(p) ? volatileUpper(mounts) : mounts, runtime.rootfsDir);
      const t1 = performance.now();
      await makeLogParents(p.runtime.logDirectory, logPath);
      const spec = await buildContainerSpec({
        id, rootfs: runtime.rootfsDir, image, config, pod: p, namespaces,
        cgroupParent: p.runtime.cgroupParent, pidsLimit: ctx.opts.pidsLimit ?? 4096,
        seccompProfileRoot, seccomp,
        hostPaths: { ...hostPathGuard(ctx), helper: () => ensureHostMount(ctx.opts.helperDir), stagingDir: join(containerDir, 'mounts'), signal: sig },
      });
      const podRef = {
        podId: p.id, role: 'container' as const,
        ...(p.runtime.pauseId ? { sandboxContainerId: p.runtime.pauseId } : {}),
        ...(p.runtime.netnsPath ? { netnsPath: p.runtime.netnsPath } : {}),
      };
      const t2 = performance.now();
      const { pid } = await backend.createContainer({
        id, name: `${p.namespace}_${p.name}_${name}_${attempt}`, spec, pod: podRef, logPath,
        stdin: !!config.stdin, stdinOnce: !!config.stdinOnce, tty: !!config.tty, signal: sig,
      });
      const t3 = performance.now();
      runtime.pid = pid;
      rec.phase = 'created';
      ctx.store.updateContainer(rec);
      // where the time went (bench/run.ts --profile reads these)
      const ms = (a: number, b: number): number => Math.round((b - a) * 10) / 10;
      ctx.log.info('container created', { container: id, pod: p.id, name, rootfsMs: ms(t0, t1), specMs: ms(t1, t2), runtimeMs: ms(t2, t3) });
      emit(ctx, 'CONTAINER_CREATED_EVENT', rec);
      return id;
    } catch (err) {
      ctx.log.warn('container creation failed; cleaning up', { container: id, err });
      await destroyContainer(ctx, rec, p, ctx.closing.signal).catch((e: unknown) => ctx.log.error('cleanup after failed create failed', { container: id, err: e }));
      throw err;
    }
  });
}

/** CRI StartContainer: starts a created container. */
export async function startContainer(ctx: EngineContext, idOrPrefix: string, signal?: AbortSignal): Promise<void> {
  const c0 = ctx.resolveContainer(idOrPrefix);
  await ctx.locks.with(c0.id, async () => {
    const c = ctx.store.getContainer(c0.id);
    if (!c || !visible(c)) throw new NotFoundError(`container ${idOrPrefix} not found`, { reason: 'BH_CONTAINER_NOT_FOUND' });
    if (c.phase !== 'created') throw new FailedPreconditionError(`container ${c.id} is ${c.phase}, not created`);
    const p = ctx.podOfContainer(c);
    const backend = ctx.backendOf(p);
    const startedAt = nowNs();
    try {
      await backend.start(c.id, signal ?? ctx.closing.signal);
    } catch (err) {
      c.phase = 'exited';
      c.finishedAt = nowNs();
      c.exitCode = 128;
      c.reason = 'ContainerCannotRun';
      c.message = err instanceof Error ? err.message : String(err);
      ctx.store.updateContainer(c);
      emit(ctx, 'CONTAINER_STOPPED_EVENT', c);
      throw err;
    }
    c.phase = 'running';
    c.startedAt = startedAt;
    ctx.store.updateContainer(c);
    ctx.log.info('container started', { container: c.id });
    emit(ctx, 'CONTAINER_STARTED_EVENT', c);
    watch(ctx, c.id, backend);
  });
}

/**
 * CRI StopContainer: the stop signal, up to `timeoutSec` seconds of grace, then SIGKILL.
 * Idempotent: an exited, created or unknown container succeeds.
 */
export async function stopContainer(ctx: EngineContext, idOrPrefix: string, timeoutSec: number, signal?: AbortSignal): Promise<void> {
  let c0: ContainerRecord;
  try { c0 = ctx.resolveContainer(idOrPrefix); } catch (err) { if (isNotFound(err)) return; throw err; }
  await ctx.locks.with(c0.id, async () => {
    const c = ctx.store.getContainer(c0.id);
    if (!c || c.phase !== 'running') return;
    await stopLocked(ctx, c, ctx.podOfContainer(c), timeoutSec, signal ?? ctx.closing.signal);
  });
}

/** Stops a running container (caller holds its lock) and records the exit. */
export async function stopLocked(ctx: EngineContext, c: ContainerRecord, p: PodRecord, timeoutSec: number, signal: AbortSignal): Promise<void> {
  const backend = ctx.backendOf(p);
  ctx.unwatch(c.id);
  let st: RuntimeState | undefined;
  try {
    if (timeoutSec > 0) {
      await backend.kill(c.id, c.runtime.stopSignal as NodeJS.Signals, signal);
      try {
        st = await backend.wait(c.id, AbortSignal.any([signal, AbortSignal.timeout(timeoutSec * 1000)]));
      } catch (err) {
        if (signal.aborted) throw err;
        st = undefined; // grace period over
      }
    }
    if (!st || st.status !== 'stopped') {
      await backend.kill(c.id, 'SIGKILL', signal);
      st = await backend.wait(c.id, AbortSignal.any([signal, AbortSignal.timeout(60_000)]));
    }
  } catch (err) {
    if (!isNotFound(err)) throw err;
    st = { id: c.id, status: 'unknown', pid: 0 };
  }
  applyExit(ctx, c, st);
}

/** CRI RemoveContainer: kills it if running, removes runtime state, rootfs and record. Idempotent. */
export async function removeContainer(ctx: EngineContext, idOrPrefix: string, signal?: AbortSignal): Promise<void> {
  let c0: ContainerRecord;
  try { c0 = ctx.resolveContainer(idOrPrefix); } catch (err) { if (isNotFound(err)) return; throw err; }
  await ctx.locks.with(c0.id, async () => {
    const c = ctx.store.getContainer(c0.id);
    if (!c) return;
    ctx.store.setContainerPhase(c.id, 'removing');
    await destroyContainer(ctx, c, ctx.store.getPod(c.podId), signal ?? ctx.closing.signal);
    ctx.log.info('container removed', { container: c.id });
    emit(ctx, 'CONTAINER_DELETED_EVENT', c);
    // a removal is what frees a full disk: the reserve is made again now, not at the next sweep
    ctx.reserve?.ensure();
  });
}

/** Undoes everything a container may have (runtime, mounts, snapshot, dirs); then the record. */
export async function destroyContainer(ctx: EngineContext, c: ContainerRecord, p: PodRecord | undefined, signal: AbortSignal): Promise<void> {
  ctx.unwatch(c.id);
  ctx.lastCpu.delete(c.id);
  const backend = p ? ctx.opts.backends.get(p.handler) : undefined;
  const deleting = backend ? backend.delete(c.id, signal)
    : (async () => { for (const b of ctx.opts.backends.values()) await b.delete(c.id, signal).catch(() => undefined); })();
  // an exited container's rootfs is used by nothing: unmount it while the runtime deletes;
  // otherwise only after the delete has killed what still runs
  if (c.phase === 'exited') await settleAll([deleting, unmountTree(c.runtime.rootfsDir)]);
  else await deleting;
  // host paths staged for the container: unmounted (or this throws) before the bundle is removed
  await settleAll([unmountTree(c.runtime.rootfsDir), unmountTree(join(c.runtime.bundleDir, 'mounts'))]);
  // the writable layer (the image store's) and the bundle are apart once nothing is mounted: side by side
  await settleAll([
    c.runtime.rootfsPrepared ? ctx.opts.images.removeRootfs(c.id) : Promise.resolve(),
    rm(c.runtime.bundleDir, { recursive: true, force: true }),
  ]);
  ctx.store.deleteContainer(c.id);
}

/** CRI UpdateContainerResources: applies new limits to a created or running container. */
export async function updateContainerResources(ctx: EngineContext, idOrPrefix: string, linux: cri.LinuxContainerResources | null | undefined, signal?: AbortSignal): Promise<void> {
  const c0 = ctx.resolveContainer(idOrPrefix);
  if (!linux) return;
  await ctx.locks.with(c0.id, async () => {
    const c = ctx.store.getContainer(c0.id);
    if (!c) throw new NotFoundError(`container ${idOrPrefix} not found`, { reason: 'BH_CONTAINER_NOT_FOUND' });
    if (c.phase !== 'created' && c.phase !== 'running') throw new FailedPreconditionError(`container ${c.id} is ${c.phase}`);
    const p = ctx.podOfContainer(c);
    // Judged by the pod's stored decision (none stored: fail closed), as CreateContainer is.
    const d = p.runtime.engine.decision;
    const bad = d?.unifiedAny ? [] : unifiedProblems(linux.unified);
    await refuseUnifiedOnV1(bad.length > 0 ? undefined : linux.unified, `container ${c.id}`);
    if (bad.length > 0) throw new PermissionDeniedError(`policy: UpdateContainerResources for container ${c.id} denied by rule ${d?.level ?? 'default'}/cgroup-unified: linux.unified: ${bad.join('; ')} (only a level that allows privileged containers may set other cgroup files)`, { reason: 'BH_POLICY_REFUSED' });
    await ctx.backendOf(p).updateResources(c.id, criToOciResources(linux), signal ?? ctx.closing.signal);
    c.config = { ...c.config, linux: { ...(c.config.linux ?? {}), resources: linux } };
    ctx.store.updateContainer(c);
  });
}

/** CRI ReopenContainerLog: conmon reopens the log file (after rotation). Running containers only. */
export async function reopenContainerLog(ctx: EngineContext, idOrPrefix: string): Promise<void> {
  const c = ctx.resolveContainer(idOrPrefix);
  if (c.phase !== 'running') throw new FailedPreconditionError(`container ${c.id} is not running`, { reason: 'BH_CONTAINER_NOT_RUNNING' });
  await ctx.backendOf(ctx.podOfContainer(c)).reopenLog(c.id);
}

/** CRI LinuxContainerResources → OCI linux.resources (0 / "" mean "not set"). */
export function criToOciResources(r: cri.LinuxContainerResources): OciLinuxResources {
  const out: OciLinuxResources = {};
  const cpu: NonNullable<OciLinuxResources['cpu']> = {};
  if (r.cpuShares) cpu.shares = r.cpuShares;
  if (r.cpuQuota) cpu.quota = r.cpuQuota;
  if (r.cpuPeriod) cpu.period = r.cpuPeriod;
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  if (r.memoryLimitInBytes) {
    // no swap unless asked, as at creation (runtime/spec.ts); on cgroup v1 a limit above the old
    // memory+swap limit is refused unless memsw moves with it
    out.memory = { limit: r.memoryLimitInBytes, swap: r.memorySwapLimitInBytes || r.memoryLimitInBytes };
  }
  if (r.hugepageLimits && r.hugepageLimits.length > 0) out.hugepageLimits = r.hugepageLimits.map((h) => ({ pageSize: h.pageSize ?? '', limit: h.limit ?? 0 }));
  if (r.unified && Object.keys(r.unified).length > 0) out.unified = r.unified;
  return out;
}

/**
 * `linux.resources.unified` names cgroup v2 files: on a cgroup v1 node an OCI runtime refuses the
 * spec or a backend writing cgroups itself (cgroup/limits.ts) has nowhere to put them, so the
 * limit would be silently dropped. The kubelet sends unified only on v2 nodes; anyone else is told.
 */
async function refuseUnifiedOnV1(unified: Record<string, string> | null | undefined, what: string): Promise<void> {
  if (!unified || Object.keys(unified).length === 0) return;
  if (cgroupMode() === 'v1') {
    throw new FailedPreconditionError(`${what}: linux.resources.unified sets cgroup v2 files, but this node runs cgroup v1, where they would not be applied; set the limits through the v1 fields (memory_limit_in_bytes, cpu_quota, ...) or run on a cgroup v2 node`);
  }
}
