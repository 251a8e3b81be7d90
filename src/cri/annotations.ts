/**
 * Bulkhead's own pod annotations: what a client can ask for that CRI has no field for.
 * `io.bulkhead.network`: "bridge" (the default, CNI), "none" (a private netns with only loopback)
 * or "host" (only together with namespace_options.network = NODE, which is what decides it).
 */
import { InvalidArgumentError } from '../errors.ts';

export const NETWORK_ANNOTATION = 'io.bulkhead.network';

export type RequestedNetwork = 'bridge' | 'none' | 'host';

export function requestedNetwork(annotations: Record<string, string> | null | undefined, hostNamespace: boolean): RequestedNetwork | undefined {
  const v = annotations?.[NETWORK_ANNOTATION];
  if (v === undefined || v === '') return undefined;
  if (v !== 'bridge' && v !== 'none' && v !== 'host') throw new InvalidArgumentError(`annotation ${NETWORK_ANNOTATION} must be bridge, none or host, not "${v}"`);
  if (v === 'host' && !hostNamespace) throw new InvalidArgumentError(`annotation ${NETWORK_ANNOTATION}=host needs linux.security_context.namespace_options.network = NODE`);
  if (v !== 'host' && hostNamespace) throw new InvalidArgumentError(`annotation ${NETWORK_ANNOTATION}=${v} contradicts namespace_options.network = NODE`);
  return v;
}
