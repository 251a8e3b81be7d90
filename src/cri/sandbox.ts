// RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox.
import { requestedNetwork } from './annotations.ts';
import { FailedPreconditionError, InvalidArgumentError } from '../errors.ts';
import type { PodSandboxConfig, PodSandboxFilter } from '../api/cri.ts';
import type { PodDecisionRecord } from '../policy/decision.ts';
import type { CriDeps, PodDecision, RunPodOptions } from './deps.ts';
import type { RunPodSandboxRequest } from '../api/cri-messages.ts';
import { unary, type Impl } from './status.ts';
import { checkMetadataName, checkPodBounds, checkSeccompProfilePath, requireId } from './validate.ts';

export function checkPodConfig(config: PodSandboxConfig | null | undefined): PodSandboxConfig {
  if (!config) throw new InvalidArgumentError('RunPodSandbox: config is required');
  const md = config.metadata;
  if (!md) throw new InvalidArgumentError('pod sandbox config: metadata is required');
  if (!md.name) throw new InvalidArgumentError('pod sandbox config: metadata.name must not be empty');
  checkMetadataName(md.name, 'pod sandbox config: metadata.name');
  if (md.namespace) checkMetadataName(md.namespace, 'pod sandbox config: metadata.namespace');
  checkSeccompProfilePath(config.linux?.securityContext?.seccompProfilePath, 'pod sandbox config');
  checkPodBounds(config);
  return config;
}

type PortKey = string;
const portKey = (m: { protocol?: string; hostPort?: number }): PortKey => `${m.hostPort ?? 0}/${(m.protocol ?? 'TCP').toLowerCase()}`;

/** The host ports a pod publishes through portmap (none for a host-network pod). */
function publishedPorts(config: PodSandboxConfig): Set<PortKey> {
  if (config.linux?.securityContext?.namespaceOptions?.network === 'NODE') return new Set();
  return new Set((config.portMappings ?? []).filter((m) => m.hostPort).map(portKey));
}

/**
 * A host port another pod on this node already publishes is refused: the CNI portmap plugin
 * would add a second DNAT rule for it and the first pod would keep (or lose) the traffic by rule
 * order. Host-network pods publish nothing through portmap and are not checked.
 *
 * Pods still being created are not READY, so their ports are held in `inFlight` from before the
 * READY pods are looked at until their RunPodSandbox has finished (by then a created pod is READY
 * and found by the look-up): two concurrent calls for one port cannot both pass. Returns the
 * release function.
 */
async function reserveHostPorts(deps: CriDeps, config: PodSandboxConfig, inFlight: Map<PortKey, string>): Promise<() => void> {
  const wanted = publishedPorts(config);
  if (wanted.size === 0) return () => {};
  const who = `${config.metadata?.namespace ?? ''}/${config.metadata?.name ?? ''}`;
  for (const k of wanted) {
    const holder = inFlight.get(k);
    if (holder !== undefined) throw new FailedPreconditionError(`policy: host port ${k} is being published by pod ${holder}, which is being created on this node (rule host-port-taken); choose another hostPort or remove that pod`);
  }
  for (const k of wanted) inFlight.set(k, who);
  const release = (): void => { for (const k of wanted) if (inFlight.get(k) === who) inFlight.delete(k); };
  try {
    for (const p of await deps.engine.listPodSandbox({ state: { state: 'SANDBOX_READY' } })) {
      let other: PodSandboxConfig;
      try { other = deps.engine.storedPod(p.id).config; } catch { continue; } // gone or not ready meanwhile
      const taken = [...publishedPorts(other)].find((k) => wanted.has(k));
      if (taken) {
        const md = other.metadata;
        throw new FailedPreconditionError(`policy: host port ${taken} is already published by pod ${md?.namespace ?? ''}/${md?.name ?? ''} (${p.id.slice(0, 12)}) on this node (rule host-port-taken); choose another hostPort or remove that pod`);
      }
    }
  } catch (err) {
    release();
    throw err;
  }
  return release;
}

export function sandboxHandlers(deps: CriDeps): Record<string, Impl> {
  const { engine } = deps;
  const portsInFlight = new Map<PortKey, string>();
  return {
    RunPodSandbox: unary(async (req: RunPodSandboxRequest, ctx) => {
      const config = checkPodConfig(req.config);
      let handler = req.runtimeHandler ?? '';
      // A name no handler has is a malformed request, whatever the policy would say.
      if (handler !== '') deps.handlers.known(handler);
      let record: PodDecisionRecord | undefined;
      if (deps.policy) {
        let decision: PodDecision;
        try {
          decision = await deps.policy.enforcePod(config, handler);
        } catch (err) {
          // A refusal because the requested handler cannot run here is reported as exactly that.
          if (handler !== '') await deps.handlers.resolve(handler, ctx.signal);
          throw err;
        }
        handler = decision.handler;
        record = decision.record;
      }
      const releasePorts = await reserveHostPorts(deps, config, portsInFlight);
      try {
        const entry = await deps.handlers.resolve(handler, ctx.signal);
        // Without a policy nothing is recorded and the engine applies the fail-closed decision.
        if (record) record = { ...record, handler: entry.name };
        const network = requestedNetwork(config.annotations, config.linux?.securityContext?.namespaceOptions?.network === 'NODE');
        const opts: RunPodOptions = { signal: ctx.signal };
        if (record) opts.decision = record;
        if (network === 'none') opts.networkMode = 'none';
        const podSandboxId = await engine.runPodSandbox(config, entry.name, opts);
        return { podSandboxId };
      } finally {
        releasePorts();
      }
    }),

    StopPodSandbox: unary(async (req: { podSandboxId?: string }, ctx) => {
      await engine.stopPodSandbox(requireId(req.podSandboxId, 'pod_sandbox_id'), ctx.signal);
      return {};
    }),

    RemovePodSandbox: unary(async (req: { podSandboxId?: string }, ctx) => {
      await engine.removePodSandbox(requireId(req.podSandboxId, 'pod_sandbox_id'), ctx.signal);
      return {};
    }),

    PodSandboxStatus: unary(async (req: { podSandboxId?: string; verbose?: boolean }) =>
      await engine.podSandboxStatus(requireId(req.podSandboxId, 'pod_sandbox_id'), Boolean(req.verbose))),

    ListPodSandbox: unary(async (req: { filter?: PodSandboxFilter | null }) =>
      ({ items: await engine.listPodSandbox(req.filter ?? null) })),
  };
}
