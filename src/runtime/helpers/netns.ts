/**
 * The network layer's fast netns maker (network/loopback-pod-network.ts `NetnsMaker`) on the
 * namespace helper of ./pinns.ts: one ~2 ms process makes a netns with lo up, one removes it.
 */
import type { NetnsMaker } from '../../network/loopback-pod-network.ts';
import { ensurePinns, pinNamespaces, unpinNamespaces } from './pinns.ts';

/** Resolves to a maker once the helper is built; rejects (UnavailableError) without gcc. */
export async function netnsMaker(helperDir?: string): Promise<NetnsMaker> {
  const bin = await ensurePinns(helperDir);
  return {
    create: (path, signal) => pinNamespaces(bin, { net: path, loopbackUp: true, signal }),
    remove: (paths, signal) => unpinNamespaces(bin, paths, signal),
  };
}
