/**
 * The Kubernetes objects that install Bulkhead in a cluster, generated from what this node has:
 * - a RuntimeClass (node.k8s.io/v1) per available handler, with `overhead.podFixed` from the
 *   bench/overhead measurements (omitted, with a note, when not measured) and a nodeSelector
 *   `bulkhead.io/handler-<name>: "true"` so such pods land only on nodes that have the handler;
 * - the node DaemonSet (privileged, hostPID, host state directories) on nodes labelled
 *   `bulkhead.io/enabled=true`, with its config.toml in a ConfigMap: /metrics on the pod's own
 *   address (port METRICS_PORT) and the prometheus.io scrape annotations on the pod template;
 * - the admission webhook: Deployment, Service, Mutating- and ValidatingWebhookConfiguration
 *   (admissionReviewVersions [v1], sideEffects None, failurePolicy Fail, kube-system and
 *   Bulkhead's own namespace excluded), and a ConfigMap with the policy when one is given.
 * Pure: the same options give the same objects.
 */
import type { HandlerInfo } from '../policy/policy.ts';
import { cpuQuantity, memoryQuantity, type OverheadMeasurements } from './overhead.ts';

export interface ManifestOptions {
  /** Handlers to publish (only available ones are given a RuntimeClass). */
  handlers: readonly HandlerInfo[];
  overhead?: OverheadMeasurements;
  /** Where the overhead was looked for (for the note when it is missing). */
  overheadSource?: string;
  /** Container image with the bulkhead command. */
  image: string;
  namespace: string;
  /** Base64 PEM CA bundle for the webhook's serving certificate; omitted = the API server's trust roots. */
  caBundle?: string;
  /** Policy file text and name, shipped in a ConfigMap to the webhook. */
  policy?: { fileName: string; text: string };
}

export interface Manifests {
  objects: Record<string, unknown>[];
  /** Things the reader must know (missing overhead, skipped handlers). */
  notes: string[];
}

export const DEFAULT_NAMESPACE = 'bulkhead-system';
export const DEFAULT_IMAGE = 'bulkhead/bulkhead:0.1.0';
export const NODE_LABEL = 'bulkhead.io/enabled';
export const handlerLabel = (h: string): string => `bulkhead.io/handler-${h}`;
/** RuntimeClass names are the handler names, so the webhook's choice is a valid runtimeClassName. */
export const runtimeClassName = (h: string): string => h;

const PART_OF = { 'app.kubernetes.io/part-of': 'bulkhead' };
const WEBHOOK_NAME = 'bulkhead-webhook';
const WEBHOOK_PORT = 8443;
/** The daemon's /metrics port in the DaemonSet (the port Prometheus' exporters of node agents commonly use). */
export const METRICS_PORT = 9464;

/**
 * The daemon's config.toml in the DaemonSet. /metrics listens on every address of the pod's own
 * network namespace (the DaemonSet pod is not hostNetwork, so that is its pod IP and loopback):
 * the operator who applies this manifest chooses to expose it, hence allow_non_loopback.
 */
export function daemonConfigToml(policyFile: string | undefined): string {
  return [
    ...(policyFile !== undefined ? [`policy_file = ${JSON.stringify(policyFile)}`, ''] : []),
    '[metrics]',
    `address = "0.0.0.0:${METRICS_PORT}"`,
    'allow_non_loopback = true',
  ].join('\n') + '\n';
}

export function generateManifests(opts: ManifestOptions): Manifests {
  const notes: string[] = [];
  const ns = opts.namespace;
  const objects: Record<string, unknown>[] = [];

  objects.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { ...PART_OF } } });

  if (!opts.overhead) notes.push(`no overhead measurement${opts.overheadSource ? ` at ${opts.overheadSource}` : ''}: RuntimeClasses have no overhead.podFixed (run bench/overhead.ts on a node to measure it)`);
  for (const h of opts.handlers) {
    if (!h.available) { notes.push(`handler ${h.handler} is not available on this node${h.reason ? ` (${h.reason})` : ''}: no RuntimeClass`); continue; }
    const rc: Record<string, unknown> = {
      apiVersion: 'node.k8s.io/v1',
      kind: 'RuntimeClass',
      metadata: { name: runtimeClassName(h.handler), labels: { ...PART_OF, 'bulkhead.io/isolation': h.isolation } },
      handler: h.handler,
    };
    const m = opts.overhead?.handlers[h.handler];
    if (m) rc.overhead = { podFixed: { memory: memoryQuantity(m.memoryBytes), cpu: cpuQuantity(m.cpuMillicores) } };
    else if (opts.overhead) notes.push(`handler ${h.handler} has no overhead measurement in the file: its RuntimeClass has no overhead.podFixed`);
    rc.scheduling = { nodeSelector: { [handlerLabel(h.handler)]: 'true' } };
    objects.push(rc);
  }

  // The daemon reads config.toml (which points at the policy, when one is given); the webhook reads the policy itself.
  const configMap = opts.policy ? 'bulkhead-policy' : 'bulkhead-config';
  const data: Record<string, string> = { 'config.toml': daemonConfigToml(opts.policy ? `/etc/bulkhead/${opts.policy.fileName}` : undefined) };
  if (opts.policy) data[opts.policy.fileName] = opts.policy.text;
  objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: configMap, namespace: ns, labels: { ...PART_OF } }, data });
  const policyArgs = opts.policy ? ['--policy', `/etc/bulkhead/${opts.policy.fileName}`] : [];
  const configArgs = ['--config', '/etc/bulkhead/config.toml'];
  const configMount = [{ name: 'config', mountPath: '/etc/bulkhead', readOnly: true }];
  const configVolume = [{ name: 'config', configMap: { name: configMap } }];
  const policyMount = opts.policy ? [{ name: 'policy', mountPath: '/etc/bulkhead', readOnly: true }] : [];
  const policyVolume = opts.policy ? [{ name: 'policy', configMap: { name: 'bulkhead-policy' } }] : [];

  const nodeLabels = { 'app.kubernetes.io/name': 'bulkhead-node', ...PART_OF };
  const hostDir = (name: string, path: string, type: string): Record<string, unknown> => ({ name, hostPath: { path, type } });
  objects.push({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'bulkhead-node', namespace: ns, labels: nodeLabels },
    spec: {
      selector: { matchLabels: { 'app.kubernetes.io/name': 'bulkhead-node' } },
      updateStrategy: { type: 'OnDelete' },
      template: {
        metadata: {
          labels: nodeLabels,
          annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(METRICS_PORT), 'prometheus.io/path': '/metrics' },
        },
        spec: {
          nodeSelector: { [NODE_LABEL]: 'true' },
          hostPID: true,
          priorityClassName: 'system-node-critical',
          tolerations: [{ operator: 'Exists' }],
          terminationGracePeriodSeconds: 30,
          containers: [{
            name: 'bulkhead',
            image: opts.image,
            command: ['bulkhead', ...configArgs, 'daemon'],
            securityContext: { privileged: true },
            ports: [{ name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' }],
            volumeMounts: [
              { name: 'state', mountPath: '/var/lib/bulkhead', mountPropagation: 'Bidirectional' },
              { name: 'run', mountPath: '/run/bulkhead', mountPropagation: 'Bidirectional' },
              { name: 'cgroup', mountPath: '/sys/fs/cgroup' },
              { name: 'kubelet', mountPath: '/var/lib/kubelet', mountPropagation: 'HostToContainer', readOnly: true },
              { name: 'pod-logs', mountPath: '/var/log/pods' },
              ...configMount,
            ],
          }],
          volumes: [
            hostDir('state', '/var/lib/bulkhead', 'DirectoryOrCreate'),
            hostDir('run', '/run/bulkhead', 'DirectoryOrCreate'),
            hostDir('cgroup', '/sys/fs/cgroup', 'Directory'),
            hostDir('kubelet', '/var/lib/kubelet', 'Directory'),
            hostDir('pod-logs', '/var/log/pods', 'DirectoryOrCreate'),
            ...configVolume,
          ],
        },
      },
    },
  });

  const whLabels = { 'app.kubernetes.io/name': WEBHOOK_NAME, ...PART_OF };
  const handlerList = opts.handlers.filter((h) => h.available).map((h) => `${h.handler}=${h.isolation}`).join(',');
  objects.push({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: WEBHOOK_NAME, namespace: ns, labels: whLabels },
    spec: {
      replicas: 2,
      selector: { matchLabels: { 'app.kubernetes.io/name': WEBHOOK_NAME } },
      template: {
        metadata: { labels: whLabels },
        spec: {
          automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{
            name: 'webhook',
            image: opts.image,
            command: ['bulkhead', 'webhook', '--cert', '/tls/tls.crt', '--key', '/tls/tls.key', '--listen', `0.0.0.0:${WEBHOOK_PORT}`,
              ...(handlerList ? ['--handlers', handlerList] : []), ...policyArgs],
            ports: [{ name: 'https', containerPort: WEBHOOK_PORT, protocol: 'TCP' }],
            readinessProbe: { httpGet: { path: '/healthz', port: WEBHOOK_PORT, scheme: 'HTTPS' }, periodSeconds: 5 },
            securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
            volumeMounts: [{ name: 'tls', mountPath: '/tls', readOnly: true }, ...policyMount],
          }],
          volumes: [{ name: 'tls', secret: { secretName: `${WEBHOOK_NAME}-tls` } }, ...policyVolume],
        },
      },
    },
  });
  objects.push({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: WEBHOOK_NAME, namespace: ns, labels: whLabels },
    spec: { type: 'ClusterIP', selector: { 'app.kubernetes.io/name': WEBHOOK_NAME }, ports: [{ name: 'https', port: 443, targetPort: WEBHOOK_PORT, protocol: 'TCP' }] },
  });
  if (!opts.caBundle) notes.push(`no CA bundle given: set clientConfig.caBundle (base64 PEM) to the CA of the ${WEBHOOK_NAME}-tls certificate, or the API server will not trust the webhook and every pod will be denied (failurePolicy Fail)`);
  const clientConfig = (path: string): Record<string, unknown> => ({
    service: { namespace: ns, name: WEBHOOK_NAME, path, port: 443 },
    ...(opts.caBundle ? { caBundle: opts.caBundle } : {}),
  });
  const common = {
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    failurePolicy: 'Fail',
    matchPolicy: 'Equivalent',
    timeoutSeconds: 10,
    namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', ns] }] },
  };
  objects.push({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'bulkhead-runtimeclass', labels: { ...PART_OF } },
    webhooks: [{
      name: 'runtimeclass.bulkhead.io',
      clientConfig: clientConfig('/mutate'),
      rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' }],
      reinvocationPolicy: 'Never',
      ...common,
    }],
  });
  objects.push({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: 'bulkhead-policy', labels: { ...PART_OF } },
    webhooks: [{
      name: 'policy.bulkhead.io',
      clientConfig: clientConfig('/validate'),
      rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['pods', 'pods/ephemeralcontainers'], scope: 'Namespaced' }],
      ...common,
    }],
  });
  return { objects, notes };
}
