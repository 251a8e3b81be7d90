// ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats, and the (empty)
// metrics RPCs: Bulkhead does not export Prometheus-style pod metrics through CRI yet.
import type { ContainerStatsFilter, PodSandboxStatsFilter } from '../api/cri.ts';
import type { CriDeps } from './deps.ts';
import { unary, type Impl } from './status.ts';
import { requireId } from './validate.ts';

export function statsHandlers(deps: CriDeps): Record<string, Impl> {
  const { engine } = deps;
  return {
    ContainerStats: unary(async (req: { containerId?: string }) =>
      ({ stats: await engine.containerStats(requireId(req.containerId, 'container_id')) })),
    ListContainerStats: unary(async (req: { filter?: ContainerStatsFilter | null }) =>
      ({ stats: await engine.listContainerStats(req.filter ?? null) })),
    PodSandboxStats: unary(async (req: { podSandboxId?: string }) =>
      ({ stats: await engine.podSandboxStats(requireId(req.podSandboxId, 'pod_sandbox_id')) })),
    ListPodSandboxStats: unary(async (req: { filter?: PodSandboxStatsFilter | null }) =>
      ({ stats: await engine.listPodSandboxStats(req.filter ?? null) })),
    ListMetricDescriptors: unary(async () => ({ descriptors: [] })),
    ListPodSandboxMetrics: unary(async () => ({ podMetrics: [] })),
  };
}
