// CreateContainer, StartContainer, StopContainer, RemoveContainer, ListContainers, ContainerStatus,
// UpdateContainerResources, ReopenContainerLog, CheckpointContainer.
import { InvalidArgumentError, UnimplementedError } from '../errors.ts';
import type { ContainerFilter } from '../api/cri.ts';
import { sandboxConfigMismatch } from '../policy/pod-identity.ts';
import type { CriDeps } from './deps.ts';
import type { CreateContainerRequest, UpdateContainerResourcesRequest } from '../api/cri-messages.ts';
import { unary, type Impl } from './status.ts';
import { checkContainerBounds, checkMetadataName, checkSeccompProfilePath, requireId, timeoutSeconds } from './validate.ts';

export function containerHandlers(deps: CriDeps): Record<string, Impl> {
  const { engine } = deps;
  return {
    CreateContainer: unary(async (req: CreateContainerRequest, ctx) => {
      const podId = requireId(req.podSandboxId, 'pod_sandbox_id');
      const config = req.config;
      if (!config) throw new InvalidArgumentError('CreateContainer: config is required');
      if (!config.metadata?.name) throw new InvalidArgumentError('container config: metadata.name must not be empty');
      checkMetadataName(config.metadata.name, 'container config: metadata.name');
      if (!config.image?.image) throw new InvalidArgumentError('container config: image.image must not be empty');
      checkSeccompProfilePath(config.linux?.securityContext?.seccompProfilePath, 'container config');
      checkContainerBounds(config);
      // Judged by the daemon's own record of the pod, never by the request's copy of it: a copy
      // that disagrees in anything trust depends on is refused; an omitted one is not needed.
      const pod = engine.storedPod(podId);
      if (req.sandboxConfig) {
        const field = sandboxConfigMismatch(pod.config, req.sandboxConfig);
        if (field !== undefined) throw new InvalidArgumentError(`policy: CreateContainer sandbox_config.${field} differs from pod sandbox ${pod.id}'s stored config (rule stored-pod): containers are judged by the pod as it was created; send that config, or none`);
      }
      if (deps.policy?.enforceContainer) await deps.policy.enforceContainer(pod, config);
      const containerId = await engine.createContainer(pod.id, config, pod.config, ctx.signal);
      return { containerId };
    }),

    StartContainer: unary(async (req: { containerId?: string }, ctx) => {
      await engine.startContainer(requireId(req.containerId, 'container_id'), ctx.signal);
      return {};
    }),

    StopContainer: unary(async (req: { containerId?: string; timeout?: number }, ctx) => {
      await engine.stopContainer(requireId(req.containerId, 'container_id'), timeoutSeconds(req.timeout, 'timeout'), ctx.signal);
      return {};
    }),

    RemoveContainer: unary(async (req: { containerId?: string }, ctx) => {
      await engine.removeContainer(requireId(req.containerId, 'container_id'), ctx.signal);
      return {};
    }),

    ListContainers: unary(async (req: { filter?: ContainerFilter | null }) =>
      ({ containers: await engine.listContainers(req.filter ?? null) })),

    ContainerStatus: unary(async (req: { containerId?: string; verbose?: boolean }) =>
      await engine.containerStatus(requireId(req.containerId, 'container_id'), Boolean(req.verbose))),

    UpdateContainerResources: unary(async (req: UpdateContainerResourcesRequest) => {
      const id = requireId(req.containerId, 'container_id');
      await engine.updateContainerResources(id, req.linux ?? null);
      return {};
    }),

    ReopenContainerLog: unary(async (req: { containerId?: string }) => {
      await engine.reopenContainerLog(requireId(req.containerId, 'container_id'));
      return {};
    }),

    CheckpointContainer: unary(async () => {
      throw new UnimplementedError('CheckpointContainer is not supported by Bulkhead: no backend can checkpoint a sandboxed container (runc/CRIU checkpointing is not wired in)');
    }),
  };
}
