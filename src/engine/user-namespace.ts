/**
 * `namespace_options.userns_options` (a pod's `hostUsers: false`): no backend here runs a pod in
 * a user namespace of its own (the CRI status says `user_namespaces: false`), so a request for
 * one is refused, never silently run in the node's user namespace where uid 0 is the host's root.
 * Mode NODE (or no options) with no mappings is what every pod gets today.
 */
import { UnimplementedError } from '../errors.ts';
import type { NamespaceOption } from '../api/cri.ts';

export function refuseUserNamespace(ns: NamespaceOption | null | undefined, what: string): void {
  const u = ns?.usernsOptions;
  if (!u) return;
  const mode = u.mode ?? 'NODE';
  const mapped = (u.uids ?? []).length > 0 || (u.gids ?? []).length > 0;
  if (mode === 'NODE' && !mapped) return;
  throw new UnimplementedError(`${what}: namespace_options.userns_options (mode ${mode}${mapped ? ', with uid/gid mappings' : ''}) is not supported: no runtime handler on this node runs pods in their own user namespace (runtime status user_namespaces=false); run the pod with hostUsers: true`);
}
