/**
 * CRI stats: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats, from the
 * backends' samples; usageNanoCores from the previous sample of the same container.
 */
import { isNotFound } from '../errors.ts';
import type { Backend, ContainerStats as ContainerSample } from '../runtime/backend.ts';
import type * as cri from '../api/cri.ts';
import type { PodRecord, ContainerRecord } from './store.ts';
import { type EngineContext, nowNs } from './context.ts';
import { listContainers, listPodSandbox } from './cri-view.ts';

/** The previous-sample key of a pod's own figures (container ids never have this prefix). */
const podRateKey = (podId: string): string => `pod/${podId}`;

function cpuRate(ctx: EngineContext, id: string, ns: number, at: number): number | null {
  const prev = ctx.lastCpu.get(id);
  ctx.lastCpu.set(id, { ns, at });
  if (!prev || at <= prev.at || ns < prev.ns) return null;
  return Math.round(((ns - prev.ns) / (at - prev.at)) * 1e9);
}

async function statsOf(ctx: EngineContext, c: ContainerRecord, backend: Backend, signal: AbortSignal): Promise<cri.ContainerStats> {
  return (await sampleOf(ctx, c, backend, signal)).stats;
}

/** One backend.stats call for a container (some backends start a runtime process for it): its CRI figures and process count. */
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

/** The pod's own host figures (a sandbox that hosts the pod) when its backend has them; undefined = none or not readable now. */
async function podOwnStats(ctx: EngineContext, p: PodRecord, backend: Backend, signal: AbortSignal): Promise<ContainerSample | undefined> {
  if (!backend.podStats || !p.runtime.pauseId) return undefined;
  try {
    return await backend.podStats(p.runtime.pauseId, signal);
  } catch (err) {
    ctx.log.debug('pod stats failed; summing its containers', { pod: p.id, err });
    return undefined;
  }
}

/**
 * A pod's figures: its containers', and at pod level the pod's own host usage where the backend
 * reports one (`Backend.podStats`: e.g. a VM's host cgroup, guest RAM and emulation included), else
 * the sum of its containers.
 */
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
  const own = await podOwnStats(ctx, p, ctx.backendOf(p), signal);
  let ts = nowNs();
  let cpuNs = 0;
  let rate: number | null = 0;
  let ws = 0;
  let usage = 0;
  if (own) {
    ts = own.timestamp.getTime() * 1e6;
    cpuNs = own.cpuUsageNs;
    rate = cpuRate(ctx, podRateKey(p.id), own.cpuUsageNs, ts);
    ws = own.memoryWorkingSetBytes;
    usage = own.memoryUsageBytes;
  } else {
    for (const s of containers) {
      cpuNs += s.cpu?.usageCoreNanoSeconds?.value ?? 0;
      rate += s.cpu?.usageNanoCores?.value ?? 0;
      ws += s.memory?.workingSetBytes?.value ?? 0;
      usage += s.memory?.usageBytes?.value ?? 0;
    }
  }
  return {
    attributes: { id: p.id, metadata: { name: p.name, uid: p.uid, namespace: p.namespace, attempt: p.attempt }, labels: p.config.labels ?? {}, annotations: p.config.annotations ?? {} },
    linux: {
      cpu: { timestamp: ts, usageCoreNanoSeconds: { value: cpuNs }, usageNanoCores: rate === null ? null : { value: rate } },
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
  // the previous samples of pods that are gone (the kubelet lists pod stats every few seconds)
  for (const k of ctx.lastCpu.keys()) if (k.startsWith('pod/') && !ctx.store.getPod(k.slice(4))) ctx.lastCpu.delete(k);
  return out;
}
