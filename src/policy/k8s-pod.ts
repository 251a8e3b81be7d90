/**
 * Kubernetes Pod objects (core/v1, as JSON or parsed YAML) → policy input. Used by the admission
 * webhook and `bulkhead policy check`. The object comes from a user: every field is checked for
 * its type, and a malformed one is an InvalidArgumentError (the webhook then denies: fail closed).
 * Pod templates of workload objects (Deployment, Job, CronJob, ...) are accepted by `podFromObject`.
 */
import { InvalidArgumentError } from '../errors.ts';
import type { ContainerInput, PodInput, SecuritySummary } from './policy.ts';
import { isObject } from '../util/guards.ts';

type Obj = Record<string, unknown>;

function bad(path: string, msg: string): never {
  throw new InvalidArgumentError(`pod: ${path} ${msg}`);
}
function obj(v: unknown, path: string): Obj | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) bad(path, 'must be an object');
  return v;
}
function arr(v: unknown, path: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) bad(path, 'must be a list');
  return v;
}
function str(v: unknown, path: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') bad(path, 'must be a string');
  return v;
}
function bool(v: unknown, path: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') bad(path, 'must be true or false');
  return v;
}
function strMap(v: unknown, path: string): Record<string, string> {
  const o = obj(v, path);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, x] of Object.entries(o ?? {})) {
    if (typeof x !== 'string') bad(`${path}.${k}`, 'must be a string');
    out[k] = x;
  }
  return out;
}
function uid(v: unknown, path: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) bad(path, 'must be a non-negative integer');
  return v;
}
function profileType(v: unknown, path: string): string | undefined {
  const o = obj(v, path);
  return o ? str(o.type, `${path}.type`) : undefined;
}

function containerInput(c: unknown, path: string, annotations: Record<string, string>, podSc: Obj | undefined): ContainerInput {
  const o = obj(c, path);
  if (!o) bad(path, 'must be an object');
  const name = str(o.name, `${path}.name`);
  if (!name) bad(`${path}.name`, 'is required');
  const sc = obj(o.securityContext, `${path}.securityContext`);
  const caps = obj(sc?.capabilities, `${path}.securityContext.capabilities`);
  const add = arr(caps?.add, `${path}.securityContext.capabilities.add`).map((x, i) => str(x, `${path}.securityContext.capabilities.add[${i}]`) ?? '');
  const seccomp = profileType(sc?.seccompProfile, `${path}.securityContext.seccompProfile`);
  const apparmor = profileType(sc?.appArmorProfile, `${path}.securityContext.appArmorProfile`);
  const procMount = str(sc?.procMount, `${path}.securityContext.procMount`);
  const security: SecuritySummary = {
    privileged: bool(sc?.privileged, `${path}.securityContext.privileged`),
    addedCapabilities: add,
    seccompUnconfined: seccomp === 'Unconfined' || annotations[`container.seccomp.security.alpha.kubernetes.io/${name}`] === 'unconfined',
    apparmorUnconfined: apparmor === 'Unconfined' || annotations[`container.apparmor.security.beta.kubernetes.io/${name}`] === 'unconfined',
    unmaskedProc: procMount === 'Unmasked',
  };
  // The container's runAsUser / runAsNonRoot win over the pod's, as in Kubernetes.
  const runAsUser = uid(sc?.runAsUser, `${path}.securityContext.runAsUser`) ?? uid(podSc?.runAsUser, 'spec.securityContext.runAsUser');
  const nonRoot = sc?.runAsNonRoot !== undefined && sc.runAsNonRoot !== null
    ? bool(sc.runAsNonRoot, `${path}.securityContext.runAsNonRoot`) : bool(podSc?.runAsNonRoot, 'spec.securityContext.runAsNonRoot');
  if (runAsUser !== undefined) security.runAsUser = runAsUser;
  if (!nonRoot) security.userUnproven = true;
  const shared = arr(o.volumeMounts, `${path}.volumeMounts`).flatMap((m, i) => {
    const mo = obj(m, `${path}.volumeMounts[${i}]`);
    return str(mo?.mountPropagation, `${path}.volumeMounts[${i}].mountPropagation`) === 'Bidirectional' ? [str(mo?.mountPath, `${path}.volumeMounts[${i}].mountPath`) ?? ''] : [];
  });
  if (shared.length > 0) security.bidirectionalMounts = shared;
  const input: ContainerInput = { name, security };
  const image = str(o.image, `${path}.image`);
  if (image) input.image = image;
  return input;
}

/** containers[].ports[].hostPort values that publish a port (0/absent = none). */
function hostPortsOf(ports: unknown, path: string): number[] {
  return arr(ports, path).flatMap((p, i) => {
    const po = obj(p, `${path}[${i}]`);
    const hp = po?.hostPort;
    if (hp === undefined || hp === null || hp === 0) return [];
    if (typeof hp !== 'number' || !Number.isInteger(hp) || hp < 0 || hp > 65535) bad(`${path}[${i}].hostPort`, 'must be a port number');
    return [hp];
  });
}

/**
 * A Pod object → policy input. `namespace` overrides metadata.namespace (the admission request's
 * namespace is authoritative; a pod being created often has none in its metadata).
 */
export function podInputFromK8s(pod: unknown, opts: { namespace?: string } = {}): PodInput {
  const p = obj(pod, 'the object');
  if (!p) bad('the object', 'is missing');
  const kind = str(p.kind, 'kind');
  if (kind !== undefined && kind !== 'Pod') bad('kind', `is "${kind}", not Pod`);
  const md = obj(p.metadata, 'metadata') ?? {};
  const spec = obj(p.spec, 'spec');
  if (!spec) bad('spec', 'is required');
  const annotations = strMap(md.annotations, 'metadata.annotations');
  const labels = strMap(md.labels, 'metadata.labels');
  const namespace = opts.namespace || str(md.namespace, 'metadata.namespace') || 'default';
  const name = str(md.name, 'metadata.name') || str(md.generateName, 'metadata.generateName') || '';
  const psc = obj(spec.securityContext, 'spec.securityContext');
  const sysctls: Record<string, string> = Object.create(null) as Record<string, string>;
  arr(psc?.sysctls, 'spec.securityContext.sysctls').forEach((s, i) => {
    const so = obj(s, `spec.securityContext.sysctls[${i}]`);
    const n = str(so?.name, `spec.securityContext.sysctls[${i}].name`);
    if (!n) bad(`spec.securityContext.sysctls[${i}].name`, 'is required');
    sysctls[n] = str(so?.value, `spec.securityContext.sysctls[${i}].value`) ?? '';
  });
  const hostPaths: string[] = [];
  arr(spec.volumes, 'spec.volumes').forEach((v, i) => {
    const vo = obj(v, `spec.volumes[${i}]`);
    const hp = obj(vo?.hostPath, `spec.volumes[${i}].hostPath`);
    if (hp) {
      const path = str(hp.path, `spec.volumes[${i}].hostPath.path`);
      if (path === undefined) bad(`spec.volumes[${i}].hostPath.path`, 'is required');
      hostPaths.push(path);
    }
  });
  const security: SecuritySummary = {
    hostNetwork: bool(spec.hostNetwork, 'spec.hostNetwork'),
    hostPID: bool(spec.hostPID, 'spec.hostPID'),
    hostIPC: bool(spec.hostIPC, 'spec.hostIPC'),
    hostPaths,
    seccompUnconfined: profileType(psc?.seccompProfile, 'spec.securityContext.seccompProfile') === 'Unconfined' || annotations['seccomp.security.alpha.kubernetes.io/pod'] === 'unconfined',
    apparmorUnconfined: profileType(psc?.appArmorProfile, 'spec.securityContext.appArmorProfile') === 'Unconfined',
  };
  if (Object.keys(sysctls).length > 0) security.sysctls = sysctls;
  const containers: ContainerInput[] = [];
  const hostPorts: number[] = [];
  for (const key of ['initContainers', 'containers', 'ephemeralContainers'] as const) {
    arr(spec[key], `spec.${key}`).forEach((c, i) => {
      containers.push(containerInput(c, `spec.${key}[${i}]`, annotations, psc));
      hostPorts.push(...hostPortsOf((c as Obj).ports, `spec.${key}[${i}].ports`));
    });
  }
  security.hostPorts = hostPorts;
  if (containers.length === 0) bad('spec.containers', 'must name at least one container');
  const input: PodInput = {
    namespace,
    name,
    labels,
    annotations,
    runtimeHandler: str(spec.runtimeClassName, 'spec.runtimeClassName') ?? '',
    security,
    containers,
  };
  // metadata.uid is not taken: in a manifest or an admission review it is the author's text, and
  // the allowance for <kubelet_root>/pods/<uid>/ is only given on the node, from the stored pod.
  str(md.uid, 'metadata.uid');
  return input;
}

/** The Pod inside a manifest: a Pod itself, or the pod template of a workload object. */
export function podFromObject(doc: unknown): Obj {
  const o = obj(doc, 'the document');
  if (!o) bad('the document', 'is empty');
  const kind = str(o.kind, 'kind');
  if (kind === 'Pod') return o;
  const spec = obj(o.spec, 'spec');
  const tmplHolder = kind === 'CronJob' ? obj(obj(spec?.jobTemplate, 'spec.jobTemplate')?.spec, 'spec.jobTemplate.spec') : spec;
  const tmpl = obj(tmplHolder?.template, 'spec.template');
  if (!tmpl) bad('kind', `${JSON.stringify(kind ?? '')} is not a Pod and has no pod template`);
  const md = obj(tmpl.metadata, 'spec.template.metadata') ?? {};
  const outer = obj(o.metadata, 'metadata') ?? {};
  const metadata = { ...md, namespace: md.namespace ?? outer.namespace, name: md.name ?? outer.name };
  return { apiVersion: 'v1', kind: 'Pod', metadata, spec: tmpl.spec };
}
