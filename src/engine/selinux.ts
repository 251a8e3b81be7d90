/**
 * `selinux_options` (pod and container) and `Mount.selinux_relabel`: Bulkhead applies no SELinux
 * labels. On a node without SELinux (this one: no /sys/fs/selinux) that is what containerd and
 * CRI-O do too (their label library returns no label when SELinux is off): a label only ever
 * confines a process inside a loaded SELinux policy, and with none loaded no process on the node
 * has one, so a request's options are accepted and give the container nothing more than any
 * other container has (its trust level's rules still apply). On a node where SELinux IS enabled,
 * ignoring a requested label would silently drop confinement the pod asked for, so the request is
 * refused (FailedPrecondition) instead.
 */
import { existsSync } from 'node:fs';
import { FailedPreconditionError } from '../errors.ts';
import type { SELinuxOption } from '../api/cri.ts';

/** Whether SELinux is enabled on this node (selinuxfs mounted with an enforce file). */
export function selinuxEnabled(root = '/sys/fs/selinux'): boolean {
  return existsSync(`${root}/enforce`);
}

function asked(o: SELinuxOption | null | undefined): boolean {
  return Boolean(o && (o.user || o.role || o.type || o.level));
}

/** Throws when the request asks for SELinux labels (or relabeling) on a node where SELinux is enabled. */
export function refuseSelinuxOnEnabledNode(
  req: { options?: (SELinuxOption | null | undefined)[]; relabel?: boolean },
  enabled: boolean,
  what: string,
): void {
  if (!enabled) return;
  if ((req.options ?? []).some(asked) || req.relabel) {
    throw new FailedPreconditionError(`${what}: selinux_options / selinux_relabel are not applied by Bulkhead, and SELinux is enabled on this node: the requested label would be silently dropped; run the pod on a node without SELinux or remove seLinuxOptions`);
  }
}
