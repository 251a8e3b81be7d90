/**
 * Recovery after a restart: the store reconciled with what conmon and the runtimes report.
 * Transitional records (creating, removing) are finished or undone; running containers are
 * watched again or their exit applied; pods whose pause is gone become NOTREADY; bundle dirs and
 * runtime containers no record names are removed.
 */
import { rm, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isNotFound } from '../errors.ts';
import type { ContainerState as RuntimeState } from '../runtime/backend.ts';
import type { PodRecord, ContainerRecord } from './store.ts';
import { unmountTree } from './mounts.ts';
import { type EngineContext, nowNs } from './context.ts';
import { applyExit, startSweep, watch, watchPause } from './exit-monitor.ts';
import { destroyContainer } from './container-lifecycle.ts';
import { destroyPod } from './pod-lifecycle.ts';
import { removeStalePoolMembers } from './warm-pool.ts';

/**
 * Reconciles the store with what conmon and the runtimes report, then starts the exit monitor.
 * Call once before serving. Safe to call on an empty root.
 */
export async function recover(ctx: EngineContext): Promise<void> {
  const signal = ctx.closing.signal;
  for (const c of ctx.store.listContainers()) {
    await ctx.locks.with(c.id, async () => {
      try {
        await recoverContainer(ctx, c, signal);
      } catch (err) {
        ctx.log.error('recovering container failed', { container: c.id, err });
      }
    });
  }
  for (const p of ctx.store.listPods()) {
    await ctx.locks.with(p.id, async () => {
      try {
        await recoverPod(ctx, p, signal);
      } catch (err) {
        ctx.log.error('recovering pod failed', { pod: p.id, err });
      }
    });
  }
  // Warm pool members an earlier daemon left (pods it was adopting were undone above)
  await removeStalePoolMembers(ctx, signal);
  // Bundle dirs no record names (records lost): their staged host paths and rootfs are unmounted
  // (or this stops, leaving them) before the dir goes, so a removal never reaches into the host.
  await sweepOrphanBundles(ctx);
  // Orphans: containers a backend holds that the store does not know (e.g. records lost).
  for (const [handler, backend] of ctx.opts.backends) {
    let found: { id: string }[] = [];
    try { found = await backend.list(); } catch (err) { ctx.log.warn('backend list failed', { handler, err }); }
    for (const r of found) {
      if (ctx.store.getContainer(r.id) || isPauseId(ctx, r.id)) continue;
      ctx.log.warn('deleting orphan container', { handler, container: r.id });
      await backend.delete(r.id, signal).catch((err: unknown) => ctx.log.warn('orphan delete failed', { container: r.id, err }));
    }
  }
  ctx.reserve?.ensure();
  startSweep(ctx);
}

async function sweepOrphanBundles(ctx: EngineContext): Promise<void> {
  const dir = join(ctx.opts.runDir, 'containers');
  let names: string[] = [];
  try { names = await readdir(dir); } catch { return; }
  for (const name of names) {
    if (!/^[0-9a-f]{64}$/.test(name) || ctx.store.getContainer(name) || isPauseId(ctx, name)) continue;
    const bundle = join(dir, name);
    try {
      await unmountTree(join(bundle, 'mounts'));
      await unmountTree(join(bundle, 'rootfs'));
      await rm(bundle, { recursive: true, force: true });
      ctx.log.info('removed an orphan container bundle', { bundle });
    } catch (err) {
      ctx.log.warn('orphan container bundle left in place', { bundle, err });
    }
  }
}

function isPauseId(ctx: EngineContext, id: string): boolean {
  return ctx.store.listPods().some((p) => p.runtime.pauseId === id);
}

async function recoverContainer(ctx: EngineContext, c: ContainerRecord, signal: AbortSignal): Promise<void> {
  const pod = ctx.store.getPod(c.podId);
  if (c.phase === 'creating' || c.phase === 'removing' || !pod) {
    ctx.log.info('cleaning up interrupted container', { container: c.id, phase: c.phase });
    await destroyContainer(ctx, c, pod, signal);
    return;
  }
  if (c.phase === 'exited') return;
  const backend = ctx.backendOf(pod);
  let st: RuntimeState;
  try {
    st = await backend.state(c.id, signal);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    st = { id: c.id, status: 'unknown', pid: 0 };
  }
  if (st.status === 'running') {
    if (c.phase === 'created') {
      c.phase = 'running';
      c.startedAt = nowNs();
      ctx.store.updateContainer(c);
    }
    watch(ctx, c.id, backend);
  } else if (st.status === 'stopped') {
    if (c.phase === 'created' && st.exitCode === undefined) return;
    applyExit(ctx, c, st);
  } else if (st.status === 'created') {
    // start never happened (or was interrupted before the runtime acted): still created.
    if (c.phase === 'running') { c.phase = 'created'; ctx.store.updateContainer(c); }
  } else {
    c.phase = 'exited';
    c.finishedAt = nowNs();
    c.exitCode = 255;
    c.reason = 'Error';
    c.message = 'container state was lost while the daemon was down';
    ctx.store.updateContainer(c);
  }
}

async function recoverPod(ctx: EngineContext, p: PodRecord, signal: AbortSignal): Promise<void> {
  if (p.phase === 'creating' || p.phase === 'removing') {
    ctx.log.info('cleaning up interrupted pod', { pod: p.id, phase: p.phase });
    await destroyPod(ctx, p, signal);
    return;
  }
  if (p.phase === 'ready' && p.runtime.pauseId) {
    const backend = ctx.backendOf(p);
    let st: RuntimeState | undefined;
    try { st = await backend.state(p.runtime.pauseId, signal); } catch { st = undefined; }
    if (st?.status === 'running') watchPause(ctx, p.id, p.runtime.pauseId, backend);
    else { p.phase = 'notready'; ctx.store.updatePod(p); }
  }
}
