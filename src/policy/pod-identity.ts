/**
 * CreateContainer carries a copy of the pod's config (`sandbox_config`), written by whoever sends
 * the request. The node judges containers by its own stored pod, so a copy that disagrees with it
 * in anything the policy reads (who the pod is, its labels and annotations, the security settings
 * and ports its trust was judged on) is a lie or a bug, and the request is refused rather than
 * half-believed. Pure.
 */
import type { PodSandboxConfig, SecurityProfile } from '../api/cri.ts';

function sortedMap(m: Record<string, string> | null | undefined): string {
  return JSON.stringify(Object.entries(m ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function profile(p: SecurityProfile | null | undefined): string {
  return `${p?.profileType ?? 'RuntimeDefault'}:${p?.localhostRef ?? ''}`;
}

/** The fields of a pod config its trust decision depends on, as comparable strings. */
function trustFields(c: PodSandboxConfig): [string, string][] {
  const md = c.metadata;
  const sc = c.linux?.securityContext;
  const ns = sc?.namespaceOptions;
  const ports = (c.portMappings ?? []).map((m) => `${m.protocol ?? 'TCP'}/${m.hostIp ?? ''}/${m.hostPort ?? 0}/${m.containerPort ?? 0}`).sort();
  return [
    ['metadata.name', md?.name ?? ''],
    ['metadata.namespace', md?.namespace ?? ''],
    ['metadata.uid', md?.uid ?? ''],
    ['labels', sortedMap(c.labels)],
    ['annotations', sortedMap(c.annotations)],
    ['linux.security_context.namespace_options.network', ns?.network ?? 'POD'],
    ['linux.security_context.namespace_options.pid', ns?.pid ?? 'POD'],
    ['linux.security_context.namespace_options.ipc', ns?.ipc ?? 'POD'],
    ['linux.security_context.privileged', String(Boolean(sc?.privileged))],
    ['linux.security_context.seccomp', profile(sc?.seccomp)],
    ['linux.security_context.seccomp_profile_path', sc?.seccompProfilePath ?? ''],
    ['linux.security_context.apparmor', profile(sc?.apparmor)],
    ['linux.sysctls', sortedMap(c.linux?.sysctls)],
    ['port_mappings', JSON.stringify(ports)],
  ];
}

/** The first trust-relevant field where `given` differs from `stored`, or undefined when they agree. */
export function sandboxConfigMismatch(stored: PodSandboxConfig, given: PodSandboxConfig): string | undefined {
  const a = trustFields(stored);
  const b = trustFields(given);
  for (let i = 0; i < a.length; i++) if (a[i]![1] !== b[i]![1]) return a[i]![0];
  return undefined;
}
