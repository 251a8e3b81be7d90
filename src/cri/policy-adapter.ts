/**
 * The trust policy (src/policy/) as the CRI server uses it: RunPodSandbox asks `enforcePod` for
 * the handler (possibly stronger than requested; PermissionDenied naming the rule otherwise) and
 * the decision record the engine stores with the pod (egress guard, host network, defaults, ...);
 * CreateContainer asks `enforceContainer` with the engine's stored pod. Availability comes from the
 * real handler probes, so an unavailable strong handler is never silently replaced by a weaker one.
 */
import { handlerInfoFromStatuses, NodePolicy, type PolicyCounters } from '../policy/enforce.ts';
import type { Policy } from '../policy/policy.ts';
import type { Logger } from '../util/log.ts';
import type { CriPolicy } from './deps.ts';
import type { RuntimeHandlers } from '../runtime/handlers.ts';

export function criPolicy(policy: Policy, handlers: RuntimeHandlers, logger: Logger, counters?: PolicyCounters): CriPolicy {
  const node = new NodePolicy({
    policy, logger, ...(counters ? { counters } : {}),
    handlers: async () => handlerInfoFromStatuses(await handlers.statuses()),
  });
  return {
    enforcePod: async (config, requestedHandler) => await node.enforcePod(config, requestedHandler),
    enforceContainer: async (pod, config) => await node.enforceContainer(pod, config),
  };
}
