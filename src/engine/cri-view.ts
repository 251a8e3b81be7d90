/**
 * The CRI's view of the engine's records: PodSandboxStatus, ContainerStatus, the List calls and
 * the container events (which carry the same status views). Reads only; nothing here changes a
 * record or the outside world.
 */
import { FailedPreconditionError } from '../errors.ts';
import type { PodDecisionRecord } from '../policy/decision.ts';
import type * as cri from '../api/cri.ts';
import type { PodRecord, ContainerRecord } from './store.ts';
import { type EngineContext, nowNs, visible } from './context.ts';

function matchLabels(labels: cri.StringMap | undefined, selector: cri.StringMap | undefined): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) if (labels?.[k] !== v) return false;
  return true;
}

function str(v: string | undefined | null): string {
  return v ?? '';
}

export function podStatusOf(p: PodRecord): cri.PodSandboxStatus {
  const ns = p.config.linux?.securityContext?.namespaceOptions;
  return {
    id: p.id,
    metadata: { name: p.name, uid: p.uid, namespace: p.namespace, attempt: p.attempt },
    state: p.phase === 'ready' ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY',
    createdAt: p.createdAt,
    network: { ip: p.runtime.ips[0] ?? '', additionalIps: p.runtime.ips.slice(1).map((ip) => ({ ip })) },
    linux: {
      namespaces: {
        options: {
          network: ns?.network ?? 'POD', pid: ns?.pid ?? 'POD', ipc: ns?.ipc ?? 'POD', targetId: ns?.targetId ?? '',
          usernsOptions: null,
        },
      },
    },
    labels: p.config.labels ?? {},
    annotations: p.config.annotations ?? {},
    runtimeHandler: p.handler,
  };
}

export function containerStatusOf(c: ContainerRecord): cri.ContainerStatus {
  const state: cri.ContainerState = c.phase === 'created' ? 'CONTAINER_CREATED'
    : c.phase === 'running' ? 'CONTAINER_RUNNING'
      : c.phase === 'exited' ? 'CONTAINER_EXITED' : 'CONTAINER_UNKNOWN';
  const img = c.config.image;
  return {
    id: c.id,
    metadata: { name: c.name, attempt: c.attempt },
    state,
    createdAt: c.createdAt,
    startedAt: c.startedAt,
    finishedAt: c.finishedAt,
    exitCode: c.exitCode,
    image: { image: str(img?.image), annotations: img?.annotations ?? {}, userSpecifiedImage: str(img?.userSpecifiedImage), runtimeHandler: str(img?.runtimeHandler) },
    imageRef: c.imageRef,
    reason: c.reason,
    message: c.message,
    labels: c.config.labels ?? {},
    annotations: c.config.annotations ?? {},
    mounts: c.config.mounts ?? [],
    logPath: c.logPath,
    resources: c.config.linux?.resources ? { linux: c.config.linux.resources, windows: null } : null,
    imageId: c.imageId,
    user: null,
    imageSource: '',
  };
}

/** Emits a container lifecycle event (with the pod's and the container's status as they are now). */
export function emit(ctx: EngineContext, type: cri.ContainerEventType, c: ContainerRecord): void {
  const pod = ctx.store.getPod(c.podId);
  const e: cri.ContainerEventResponse = {
    containerId: c.id,
    containerEventType: type,
    createdAt: nowNs(),
    podSandboxStatus: pod ? podStatusOf(pod) : null,
    containersStatuses: type === 'CONTAINER_DELETED_EVENT' ? [] : [containerStatusOf(c)],
  };
  ctx.events.emit('event', e);
}

/** CRI PodSandboxStatus. */
export function podSandboxStatus(ctx: EngineContext, idOrPrefix: string, verbose: boolean): cri.PodSandboxStatusResponse {
  const p = ctx.resolvePod(idOrPrefix, { creating: true });
  const info: cri.StringMap = {};
  if (verbose) {
    info.info = JSON.stringify({
      handler: p.handler, netnsPath: p.runtime.netnsPath, networkMode: p.runtime.networkMode,
      pauseId: p.runtime.pauseId, cgroupParent: p.runtime.cgroupParent, podDir: p.runtime.podDir,
      logDirectory: p.runtime.logDirectory, config: p.config,
      // The stored policy decision the pod's containers are judged by (null: none, fail closed).
      decision: p.runtime.engine.decision ?? null,
    });
  }
  return {
    status: podStatusOf(p),
    info,
    containersStatuses: ctx.store.listContainers(p.id).filter((c) => visible(c)).map((c) => containerStatusOf(c)),
    timestamp: nowNs(),
  };
}

/**
 * The stored record of a ready pod as the policy judges it: its config, handler and decision
 * (undefined when none was stored or it does not parse: the caller applies the default level).
 */
export function storedPod(ctx: EngineContext, idOrPrefix: string): { id: string; config: cri.PodSandboxConfig; handler: string; decision: PodDecisionRecord | undefined } {
  const p = ctx.resolvePod(idOrPrefix);
  if (p.phase !== 'ready') throw new FailedPreconditionError(`pod sandbox ${p.id} is not ready`);
  return { id: p.id, config: p.config, handler: p.handler, decision: p.runtime.engine.decision };
}

/** CRI ListPodSandbox. */
export function listPodSandbox(ctx: EngineContext, filter?: cri.PodSandboxFilter | null): cri.PodSandbox[] {
  const out: cri.PodSandbox[] = [];
  for (const p of ctx.store.listPods()) {
    // a pod being created is listed NOTREADY (never hidden); one being removed is gone
    if (p.phase === 'removing') continue;
    if (filter?.id && !p.id.startsWith(filter.id)) continue;
    const st = podStatusOf(p);
    if (filter?.state && (filter.state.state ?? 'SANDBOX_READY') !== st.state) continue;
    if (!matchLabels(p.config.labels, filter?.labelSelector)) continue;
    out.push({
      id: p.id, metadata: st.metadata, state: st.state, createdAt: p.createdAt,
      labels: st.labels, annotations: st.annotations, runtimeHandler: p.handler,
    });
  }
  return out;
}

/** CRI ContainerStatus. */
export function containerStatus(ctx: EngineContext, idOrPrefix: string, verbose: boolean): cri.ContainerStatusResponse {
  const c = ctx.resolveContainer(idOrPrefix);
  const info: cri.StringMap = {};
  if (verbose) {
    const p = ctx.store.getPod(c.podId);
    info.info = JSON.stringify({
      sandboxID: c.podId, pid: c.runtime.pid, handler: p?.handler, rootfs: c.runtime.rootfsDir,
      cgroupsPath: c.runtime.cgroupPath, stopSignal: c.runtime.stopSignal, config: c.config,
    });
  }
  return { status: containerStatusOf(c), info };
}

/** CRI ListContainers. */
export function listContainers(ctx: EngineContext, filter?: cri.ContainerFilter | null): cri.Container[] {
  const out: cri.Container[] = [];
  for (const c of ctx.store.listContainers()) {
    if (!visible(c)) continue;
    if (filter?.id && !c.id.startsWith(filter.id)) continue;
    if (filter?.podSandboxId && !c.podId.startsWith(filter.podSandboxId)) continue;
    const st = containerStatusOf(c);
    if (filter?.state && (filter.state.state ?? 'CONTAINER_CREATED') !== st.state) continue;
    if (!matchLabels(c.config.labels, filter?.labelSelector)) continue;
    out.push({
      id: c.id, podSandboxId: c.podId, metadata: st.metadata, image: st.image, imageRef: c.imageRef,
      state: st.state, createdAt: c.createdAt, labels: st.labels, annotations: st.annotations, imageId: c.imageId,
    });
  }
  return out;
}
