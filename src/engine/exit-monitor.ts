/**
 * The exit monitor: one backend.wait per running container (and per pod's pause process), the
 * exit recorded under the container's lock, and a periodic sweep as the safety net for watches
 * that failed or were never started (after recovery, a backend that could not tell yet).
 */
import { InternalError } from '../errors.ts';
import type { Backend, ContainerState as RuntimeState } from '../runtime/backend.ts';
import type { ContainerRecord } from './store.ts';
import { type EngineContext, dateNs, nowNs } from './context.ts';
import { emit } from './cri-view.ts';

/** Records an exit (under the container's lock). No-op when it is no longer running/created. */
export function applyExit(ctx: EngineContext, c: ContainerRecord, st: RuntimeState): void {
  if (c.phase !== 'running' && c.phase !== 'created') return;
  c.phase = 'exited';
  c.exitCode = st.exitCode ?? 255;
  // the exit file's time can be coarser than our clock: never report finishing before starting
  c.finishedAt = Math.max(st.exitedAt ? dateNs(st.exitedAt) : nowNs(), c.startedAt);
  c.reason = st.oomKilled ? 'OOMKilled' : c.exitCode === 0 ? 'Completed' : 'Error';
  if (st.exitCode === undefined) c.message = st.exitUnknownReason ? `${st.exitUnknownReason}; exit code unknown` : 'exit code unknown';
  ctx.store.updateContainer(c);
  ctx.lastCpu.delete(c.id);
  ctx.log.info('container exited', { container: c.id, exitCode: c.exitCode, reason: c.reason });
  emit(ctx, 'CONTAINER_STOPPED_EVENT', c);
}

/** Exit monitor for one container: backend.wait, then record the exit. */
export function watch(ctx: EngineContext, id: string, backend: Backend): void {
  if (ctx.watchers.has(id) || ctx.closing.signal.aborted) return;
  const ac = new AbortController();
  ctx.watchers.set(id, ac);
  void (async () => {
    try {
      const st = await backend.wait(id, ac.signal);
      if (ac.signal.aborted) return;
      // only an exit is recorded: a backend that cannot tell (yet) leaves it to the sweep
      if (st.status !== 'stopped') throw new InternalError(`wait returned while the container is ${st.status}`);
      await ctx.locks.with(id, async () => {
        const c = ctx.store.getContainer(id);
        if (c) applyExit(ctx, c, st);
      });
    } catch (err) {
      if (!ac.signal.aborted && !ctx.closing.signal.aborted) ctx.log.warn('exit watch failed; sweep will retry', { container: id, err });
    } finally {
      if (ctx.watchers.get(id) === ac) ctx.watchers.delete(id);
    }
  })();
}

/** Watches a pod's pause process: when it dies the pod becomes NOTREADY. */
export function watchPause(ctx: EngineContext, podId: string, pauseId: string, backend: Backend): void {
  if (ctx.watchers.has(pauseId) || ctx.closing.signal.aborted) return;
  const ac = new AbortController();
  ctx.watchers.set(pauseId, ac);
  void (async () => {
    try {
      await backend.wait(pauseId, ac.signal);
      if (ac.signal.aborted) return;
      await ctx.locks.with(podId, async () => {
        const p = ctx.store.getPod(podId);
        if (p && p.phase === 'ready') {
          p.phase = 'notready';
          ctx.store.updatePod(p);
          ctx.log.warn('pod infra process exited; pod not ready', { pod: podId });
        }
      });
    } catch { /* aborted or lost: the sweep checks again */ } finally {
      if (ctx.watchers.get(pauseId) === ac) ctx.watchers.delete(pauseId);
    }
  })();
}

/** Safety net for the exit monitor: running containers nobody watches are checked and re-watched. */
export function startSweep(ctx: EngineContext): void {
  const every = ctx.opts.sweepIntervalMs ?? 2000;
  ctx.sweepTimer = setInterval(() => { void sweep(ctx); }, every);
  ctx.sweepTimer.unref();
}

async function sweep(ctx: EngineContext): Promise<void> {
  if (ctx.closing.signal.aborted) return;
  // the disk reserve, made again once a full disk has room (cheap when it is there)
  ctx.reserve?.ensure();
  try {
    for (const c of ctx.store.listContainers()) {
      if (c.phase !== 'running' || ctx.watchers.has(c.id)) continue;
      const p = ctx.store.getPod(c.podId);
      if (!p) continue;
      const backend = ctx.backendOf(p);
      const st = await backend.state(c.id, ctx.closing.signal).catch(() => undefined);
      if (st?.status === 'running') watch(ctx, c.id, backend);
      else if (st?.status === 'stopped') await ctx.locks.with(c.id, async () => {
        const cur = ctx.store.getContainer(c.id);
        if (cur) applyExit(ctx, cur, st);
      });
    }
  } catch (err) {
    if (!ctx.closing.signal.aborted) ctx.log.warn('sweep failed', { err });
  }
}

/** Stops the sweep and every watch (the engine is closing; containers keep running). */
export function stopMonitor(ctx: EngineContext): void {
  if (ctx.sweepTimer) clearInterval(ctx.sweepTimer);
  for (const ac of ctx.watchers.values()) ac.abort();
  ctx.watchers.clear();
}
