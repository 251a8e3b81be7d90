/**
 * What the engine tells a backend's pod-sandbox strategy (runtime/sandbox/pod-sandbox.ts) about a
 * pod: read from the stored pod record, never from a later request.
 */
import type { PodSandboxSpec, PodSandboxState } from '../runtime/sandbox/pod-sandbox.ts';
import type { EngineOptions } from './options.ts';
import type { PodRecord } from './store.ts';

export function sandboxSpecOf(opts: EngineOptions, p: PodRecord): PodSandboxSpec {
  const ns = p.config.linux?.securityContext?.namespaceOptions;
  return {
    podId: p.id,
    podDir: p.runtime.podDir,
    netnsPath: p.runtime.netnsPath,
    hostNetwork: p.runtime.networkMode === 'host',
    hostname: p.config.hostname ?? '',
    ipc: ns?.ipc ?? 'POD',
    // a pod that says nothing shares one PID namespace (as the pod record has always been read)
    pid: ns?.pid ?? 'POD',
    sysctls: p.config.linux?.sysctls ?? {},
    pinNamespaces: opts.pinNamespaces !== false,
    ...(opts.helperDir !== undefined ? { helperDir: opts.helperDir } : {}),
    ...(p.runtime.engine.decision ? { trustLevel: p.runtime.engine.decision.level } : {}),
    ...(p.config.annotations ? { annotations: p.config.annotations } : {}),
    networkMode: p.runtime.networkMode,
  };
}

export function sandboxStateOf(p: PodRecord): PodSandboxState {
  return { sandboxId: p.runtime.pauseId, namespacePaths: p.runtime.namespacePaths };
}
