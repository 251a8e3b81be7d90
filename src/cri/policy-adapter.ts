/**
 * The trust policy (src/policy/) as the CRI server uses it: RunPodSandbox asks `enforcePod` for
 * the handler (possibly stronger than requested; PermissionDenied naming the rule otherwise) and
 * the trust the engine applies (host network only for levels that allow it); CreateContainer asks
 * `enforceContainer`. Availability comes from the real handler probes, so an unavailable strong
 * handler is never silently replaced by a weaker one.
 */
import { enforceContainer, enforcePod, type PolicyCounters } from '../policy/enforce.ts';
import type { HandlerInfo, Policy } from '../policy/policy.ts';
import type { Logger } from '../util/log.ts';
import type { CriPolicy } from './deps.ts';
import type { RuntimeHandlers } from './runtime-handlers.ts';

export function criPolicy(policy: Policy, handlers: RuntimeHandlers, logger: Logger, counters?: PolicyCounters): CriPolicy {
  const available = async (): Promise<HandlerInfo[]> => (await handlers.statuses()).map((h) => {
    const info: HandlerInfo = { handler: h.name, isolation: h.isolation, available: h.probe.available };
    if (h.probe.reason) info.reason = h.probe.reason;
    return info;
  });
  const opts = counters ? { logger, counters } : { logger };
  return {
    async enforcePod(config, requestedHandler) {
      const { handler, decision } = enforcePod(policy, { config, runtimeHandler: requestedHandler }, await available(), opts);
      const level = policy.levels[decision.trust];
      // Kubernetes' defaults for unset seccomp / no_new_privs=false only where the level would
      // allow the pod to ask for them explicitly (unconfined seccomp; privileged, which implies
      // no_new_privs off); every other pod keeps the hardened defaults.
      const defaults = { seccomp: level?.allowUnconfinedSeccomp ? 'Unconfined' as const : 'RuntimeDefault' as const, honorNoNewPrivs: level?.allowPrivileged === true };
      return { handler, trust: level?.allowHostNetwork ? 'trusted' : 'untrusted', defaults };
    },
    async enforceContainer(podConfig, config, handler) {
      enforceContainer(policy, { config, sandboxConfig: podConfig }, handler, await available(), opts);
    },
  };
}
