/**
 * CRI stats: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats, from the
 * backends' samples; usageNanoCores from the previous sample of the same container.
 */
import { isNotFound } from '../errors.ts';
import type { Backend } from '../runtime/backend.ts';
import type * as cri from '../api/cri.ts';
import type { PodRecord, ContainerRecord } from './store.ts';
import { type EngineContext, nowNs } from './context.ts';
import { listContainers, listPodSandbox } from './cri-view.ts';

function cpuRate(ctx: EngineContext, id: string, ns: number, at: number): number | null {
  const prev = ctx.lastCpu.get(id);
  ctx.lastCpu.set(id, { ns, at });
  if (!prev || at <= prev.at || ns < prev.ns) return null;
  return Math.round(((ns - prev.ns) / (at - prev.at)) * 1e9);
}

async function statsOf(ctx: EngineContext, c: ContainerRecord, backend: Backend, signal: AbortSignal): Promise<cri.ContainerStats> {
  return (await sampleOf(ctx, c, backend, signal)).stats;
}

/** One backend.stats call for a container (a `runsc events` process on gVisor): its CRI figures and process count. */
async function sampleOf(ctx: EngineContext, c: ContainerRecord, backend: Backend, signal: AbortSignal): Promise<{ stats: cri.ContainerStats; pids: number }> {
  const attributes = { id: c.id, metadata: { name: c.name, attempt: c.attempt }, labels: c.config.labels ?? {}, annotations: c.config.annotations ?? {} };
  if (c.phase !== 'running') return { stats: { attributes, cpu: null, memory: null, writableLayer: null, swap: null }, pids: 0 };
  const s = await backend.stats(c.id, signal);
  const ts = s.timestamp.getTime() * 1e6;
  const rate = cpuRate(ctx, c.id, s.cpuUsageNs, ts);
  const limit = c.config.linux?.resources?.memoryLimitInBytes ?? 0;
  const stats: cri.ContainerStats = {
    attributes,
    cpu: { timestamp: ts, usageCoreNanoSeconds: { value: s.cpuUsageNs }, usageNanoCores: rate === null ? null : { value: rate } },
    memory: {
      timestamp: ts, workingSetBytes: { value: s.memoryWorkingSetBytes },
      availableBytes: limit > 0 ? { value: Math.max(0, limit - s.memoryWorkingSetBytes) } : null,
      usageBytes: { value: s.memoryUsageBytes }, rssBytes: null, pageFaults: null, majorPageFaults: null,
    },
    writableLayer: null,
    swap: null,
  };
  return { stats, pids: s.pids };
}

/** CRI ContainerStats. */
export async function containerStats(ctx: EngineContext, idOrPrefix: string, signal?: AbortSignal): Promise<cri.ContainerStats> {
  const c = ctx.resolveContainer(idOrPrefix);
  return await statsOf(ctx, c, ctx.backendOf(ctx.podOfContainer(c)), signal ?? ctx.closing.signal);
}

/** CRI ListContainerStats (running containers only, like the other runtimes). */
export async function listContainerStats(ctx: EngineContext, filter?: cri.ContainerStatsFilter | null, signal?: AbortSignal): Promise<cri.ContainerStats[]> {
  const out: cri.ContainerStats[] = [];
  for (const c of listContainers(ctx, { ...(filter?.id ? { id: filter.id } : {}), ...(filter?.podSandboxId ? { podSandboxId: filter.podSandboxId } : {}), ...(filter?.labelSelector ? { labelSelector: filter.labelSelector } : {}), state: { state: 'CONTAINER_RUNNING' } })) {
    const rec = ctx.store.getContainer(c.id);
    if (!rec) continue;
    try {
      out.push(await statsOf(ctx, rec, ctx.backendOf(ctx.podOfContainer(rec)), signal ?? ctx.closing.signal));
    } catch (err) {
      if (!isNotFound(err)) ctx.log.debug('stats failed', { container: c.id, err });
    }
  }
  return out;
}

async function podStats(ctx: EngineContext, p: PodRecord, signal: AbortSignal): Promise<cri.PodSandboxStats> {
  const containers: cri.ContainerStats[] = [];
  let procs = 0;
  // one sample per container gives both its figures and its process count
  for (const c of ctx.store.listContainers(p.id)) {
    if (c.phase !== 'running') continue;
    try {
      const s = await sampleOf(ctx, c, ctx.backendOf(p), signal);
      containers.push(s.stats);
      procs += s.pids;
    } catch { /* exited meanwhile */ }
  }
  const ts = nowNs();
  let cpuNs = 0;
  let rate = 0;
  let ws = 0;
  let usage = 0;
  for (const s of containers) {
    cpuNs += s.cpu?.usageCoreNanoSeconds?.value ?? 0;
    rate += s.cpu?.usageNanoCores?.value ?? 0;
    ws += s.memory?.workingSetBytes?.value ?? 0;
    usage += s.memory?.usageBytes?.value ?? 0;
  }
  return {
    attributes: { id: p.id, metadata: { name: p.name, uid: p.uid, namespace: p.namespace, attempt: p.attempt }, labels: p.config.labels ?? {}, annotations: p.config.annotations ?? {} },
    linux: {
      cpu: { timestamp: ts, usageCoreNanoSeconds: { value: cpuNs }, usageNanoCores: { value: rate } },
      memory: { timestamp: ts, workingSetBytes: { value: ws }, availableBytes: null, usageBytes: { value: usage }, rssBytes: null, pageFaults: null, majorPageFaults: null },
      network: null,
      process: { timestamp: ts, processCount: { value: procs } },
      containers,
    },
    windows: null,
  };
}

/** CRI PodSandboxStats. */
export async function podSandboxStats(ctx: EngineContext, idOrPrefix: string, signal?: AbortSignal): Promise<cri.PodSandboxStats> {
  return await podStats(ctx, ctx.resolvePod(idOrPrefix), signal ?? ctx.closing.signal);
}

/** CRI ListPodSandboxStats (ready pods). */
export async function listPodSandboxStats(ctx: EngineContext, filter?: cri.PodSandboxStatsFilter | null, signal?: AbortSignal): Promise<cri.PodSandboxStats[]> {
  const out: cri.PodSandboxStats[] = [];
  for (const s of listPodSandbox(ctx, { ...(filter?.id ? { id: filter.id } : {}), ...(filter?.labelSelector ? { labelSelector: filter.labelSelector } : {}), state: { state: 'SANDBOX_READY' } })) {
    const p = ctx.store.getPod(s.id);
    if (p) out.push(await podStats(ctx, p, signal ?? ctx.closing.signal));
  }
  return out;
}
