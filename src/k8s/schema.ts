/**
 * Minimal JSON Schemas for the Kubernetes kinds Bulkhead generates, written from the API facts
 * (required fields, types, enums, name and quantity formats), and a small validator for the
 * subset of JSON Schema they use. Objects are closed (additionalProperties: false) where the
 * generator writes them, so a misspelt field is caught here instead of by a cluster.
 */

export interface Schema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  enum?: readonly (string | number | boolean)[];
  const?: string | number | boolean;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  minimum?: number;
  maximum?: number;
  /** Integer or string (IntOrString). */
  intOrString?: boolean;
}

export interface SchemaError { path: string; message: string }

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Validates `value` against `schema`; returns every error with a JSON path. */
export function validate(schema: Schema, value: unknown, path = '$'): SchemaError[] {
  const errs: SchemaError[] = [];
  const t = typeOf(value);
  if (schema.intOrString) {
    if (t !== 'integer' && t !== 'string') errs.push({ path, message: `must be an integer or a string (got ${t})` });
    return errs;
  }
  if (schema.type) {
    const ok = schema.type === t || (schema.type === 'number' && t === 'integer');
    if (!ok) return [{ path, message: `must be ${schema.type} (got ${t})` }];
  }
  if (schema.const !== undefined && value !== schema.const) errs.push({ path, message: `must be ${JSON.stringify(schema.const)}` });
  if (schema.enum && !schema.enum.includes(value as string)) errs.push({ path, message: `must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}` });
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) errs.push({ path, message: `must have at least ${schema.minLength} characters` });
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errs.push({ path, message: `must have at most ${schema.maxLength} characters` });
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) errs.push({ path, message: `${JSON.stringify(value)} does not match ${schema.pattern}` });
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errs.push({ path, message: `must be ≥ ${schema.minimum}` });
    if (schema.maximum !== undefined && value > schema.maximum) errs.push({ path, message: `must be ≤ ${schema.maximum}` });
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errs.push({ path, message: `must have at least ${schema.minItems} item(s)` });
    if (schema.items) value.forEach((v, i) => errs.push(...validate(schema.items!, v, `${path}[${i}]`)));
  }
  if (t === 'object') {
    const o = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (o[r] === undefined) errs.push({ path: `${path}.${r}`, message: 'is required' });
    for (const [k, v] of Object.entries(o)) {
      const p = schema.properties?.[k];
      if (p) errs.push(...validate(p, v, `${path}.${k}`));
      else if (schema.additionalProperties === false) errs.push({ path: `${path}.${k}`, message: 'is not a field of this kind' });
      else if (typeof schema.additionalProperties === 'object') errs.push(...validate(schema.additionalProperties, v, `${path}.${k}`));
    }
  }
  return errs;
}

// ---------------------------------------------------------------------------------------------
// Building blocks (from the Kubernetes API conventions)

const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** Label/annotation key: optional DNS-subdomain prefix and a name of ≤63 characters. */
const QUALIFIED_NAME = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$';
export const QUANTITY = '^[+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(([KMGTPE]i)|[mkMGTPE]|([eE][+-]?[0-9]+))?$';

const str = (extra: Partial<Schema> = {}): Schema => ({ type: 'string', ...extra });
const bool: Schema = { type: 'boolean' };
const int = (min?: number, max?: number): Schema => ({ type: 'integer', ...(min !== undefined ? { minimum: min } : {}), ...(max !== undefined ? { maximum: max } : {}) });
const list = (items: Schema, extra: Partial<Schema> = {}): Schema => ({ type: 'array', items, ...extra });
const obj = (properties: Record<string, Schema>, required: string[] = [], closed = true): Schema => ({ type: 'object', properties, required, additionalProperties: !closed });
const labelMap: Schema = { type: 'object', properties: {}, additionalProperties: str({ pattern: LABEL_VALUE }) };
const stringMap: Schema = { type: 'object', properties: {}, additionalProperties: str() };
const quantityMap: Schema = { type: 'object', properties: {}, additionalProperties: str({ pattern: QUANTITY }) };

const objectMeta = (namespaced: boolean): Schema => obj({
  name: str({ pattern: DNS_SUBDOMAIN, maxLength: 253 }),
  namespace: str({ pattern: DNS_LABEL, maxLength: 63 }),
  labels: labelMap,
  annotations: stringMap,
}, namespaced ? ['name', 'namespace'] : ['name']);

const typeMeta = (apiVersion: string, kind: string): Record<string, Schema> => ({ apiVersion: { type: 'string', const: apiVersion }, kind: { type: 'string', const: kind } });

const labelSelector = obj({
  matchLabels: labelMap,
  matchExpressions: list(obj({ key: str({ pattern: QUALIFIED_NAME }), operator: str({ enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] }), values: list(str()) }, ['key', 'operator'])),
});

const toleration = obj({ key: str(), operator: str({ enum: ['Exists', 'Equal'] }), value: str(), effect: str({ enum: ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] }), tolerationSeconds: int() });

const securityContext = obj({
  privileged: bool, runAsNonRoot: bool, runAsUser: int(0), runAsGroup: int(0), readOnlyRootFilesystem: bool, allowPrivilegeEscalation: bool,
  capabilities: obj({ add: list(str()), drop: list(str()) }),
  seccompProfile: obj({ type: str({ enum: ['RuntimeDefault', 'Unconfined', 'Localhost'] }), localhostProfile: str() }, ['type']),
  procMount: str({ enum: ['Default', 'Unmasked'] }),
});

const probe = obj({
  httpGet: obj({ path: str(), port: { intOrString: true }, scheme: str({ enum: ['HTTP', 'HTTPS'] }), host: str() }, ['port']),
  exec: obj({ command: list(str()) }),
  initialDelaySeconds: int(0), periodSeconds: int(1), timeoutSeconds: int(1), failureThreshold: int(1), successThreshold: int(1),
});

const container = obj({
  name: str({ pattern: DNS_LABEL, maxLength: 63 }),
  image: str({ minLength: 1 }),
  imagePullPolicy: str({ enum: ['Always', 'Never', 'IfNotPresent'] }),
  command: list(str()), args: list(str()), workingDir: str(),
  env: list(obj({ name: str({ minLength: 1 }), value: str() }, ['name'])),
  ports: list(obj({ name: str({ maxLength: 15 }), containerPort: int(1, 65535), protocol: str({ enum: ['TCP', 'UDP', 'SCTP'] }) }, ['containerPort'])),
  resources: obj({ requests: quantityMap, limits: quantityMap }),
  volumeMounts: list(obj({ name: str(), mountPath: str({ pattern: '^/' }), readOnly: bool, mountPropagation: str({ enum: ['None', 'HostToContainer', 'Bidirectional'] }), subPath: str() }, ['name', 'mountPath'])),
  securityContext,
  readinessProbe: probe, livenessProbe: probe,
}, ['name']);

const volume = obj({
  name: str({ pattern: DNS_LABEL, maxLength: 63 }),
  hostPath: obj({ path: str({ pattern: '^/' }), type: str({ enum: ['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice'] }) }, ['path']),
  secret: obj({ secretName: str({ pattern: DNS_SUBDOMAIN }), defaultMode: int(0, 511), optional: bool }),
  configMap: obj({ name: str({ pattern: DNS_SUBDOMAIN }), defaultMode: int(0, 511), optional: bool }),
  emptyDir: obj({ medium: str(), sizeLimit: str({ pattern: QUANTITY }) }),
}, ['name']);

const podSpec = obj({
  containers: list(container, { minItems: 1 }),
  initContainers: list(container),
  volumes: list(volume),
  nodeSelector: stringMap,
  tolerations: list(toleration),
  hostPID: bool, hostNetwork: bool, hostIPC: bool,
  priorityClassName: str(),
  serviceAccountName: str({ pattern: DNS_SUBDOMAIN }),
  automountServiceAccountToken: bool,
  runtimeClassName: str({ pattern: DNS_SUBDOMAIN }),
  terminationGracePeriodSeconds: int(0),
  securityContext: obj({ runAsNonRoot: bool, runAsUser: int(0), runAsGroup: int(0), fsGroup: int(0), seccompProfile: obj({ type: str({ enum: ['RuntimeDefault', 'Unconfined', 'Localhost'] }), localhostProfile: str() }, ['type']) }),
}, ['containers']);

const podTemplate = obj({ metadata: obj({ labels: labelMap, annotations: stringMap }), spec: podSpec }, ['spec']);

const webhookClientConfig = obj({
  url: str({ pattern: '^https://' }),
  service: obj({ namespace: str({ pattern: DNS_LABEL }), name: str({ pattern: DNS_LABEL }), path: str({ pattern: '^/' }), port: int(1, 65535) }, ['namespace', 'name']),
  caBundle: str({ pattern: '^[A-Za-z0-9+/]*={0,2}$' }),
});

const ruleWithOperations = obj({
  apiGroups: list(str()), apiVersions: list(str()), resources: list(str()),
  operations: list(str({ enum: ['*', 'CREATE', 'UPDATE', 'DELETE', 'CONNECT'] })),
  scope: str({ enum: ['Cluster', 'Namespaced', '*'] }),
});

const webhookCommon: Record<string, Schema> = {
  // A webhook name must be fully qualified: at least three DNS segments.
  name: str({ pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?){2,}$', maxLength: 253 }),
  clientConfig: webhookClientConfig,
  rules: list(ruleWithOperations),
  failurePolicy: str({ enum: ['Ignore', 'Fail'] }),
  matchPolicy: str({ enum: ['Exact', 'Equivalent'] }),
  namespaceSelector: labelSelector,
  objectSelector: labelSelector,
  sideEffects: str({ enum: ['None', 'NoneOnDryRun'] }),
  timeoutSeconds: int(1, 30),
  admissionReviewVersions: list(str({ enum: ['v1', 'v1beta1'] }), { minItems: 1 }),
};
const webhookRequired = ['name', 'clientConfig', 'sideEffects', 'admissionReviewVersions'];

/** apiVersion/kind → schema. */
export const SCHEMAS: Readonly<Record<string, Schema>> = {
  'v1/Namespace': obj({ ...typeMeta('v1', 'Namespace'), metadata: objectMeta(false) }, ['apiVersion', 'kind', 'metadata']),
  'v1/ConfigMap': obj({ ...typeMeta('v1', 'ConfigMap'), metadata: objectMeta(true), data: stringMap, immutable: bool }, ['apiVersion', 'kind', 'metadata']),
  'node.k8s.io/v1/RuntimeClass': obj({
    ...typeMeta('node.k8s.io/v1', 'RuntimeClass'),
    metadata: objectMeta(false),
    handler: str({ pattern: DNS_LABEL, maxLength: 63 }),
    overhead: obj({ podFixed: quantityMap }),
    scheduling: obj({ nodeSelector: labelMap, tolerations: list(toleration) }),
  }, ['apiVersion', 'kind', 'metadata', 'handler']),
  'apps/v1/DaemonSet': obj({
    ...typeMeta('apps/v1', 'DaemonSet'),
    metadata: objectMeta(true),
    spec: obj({ selector: labelSelector, template: podTemplate, updateStrategy: obj({ type: str({ enum: ['RollingUpdate', 'OnDelete'] }) }) }, ['selector', 'template']),
  }, ['apiVersion', 'kind', 'metadata', 'spec']),
  'apps/v1/Deployment': obj({
    ...typeMeta('apps/v1', 'Deployment'),
    metadata: objectMeta(true),
    spec: obj({ replicas: int(0), selector: labelSelector, template: podTemplate }, ['selector', 'template']),
  }, ['apiVersion', 'kind', 'metadata', 'spec']),
  'v1/Service': obj({
    ...typeMeta('v1', 'Service'),
    metadata: objectMeta(true),
    spec: obj({
      type: str({ enum: ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] }),
      selector: stringMap,
      ports: list(obj({ name: str({ pattern: DNS_LABEL }), port: int(1, 65535), targetPort: { intOrString: true }, protocol: str({ enum: ['TCP', 'UDP', 'SCTP'] }) }, ['port']), { minItems: 1 }),
    }),
  }, ['apiVersion', 'kind', 'metadata', 'spec']),
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': obj({
    ...typeMeta('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration'),
    metadata: objectMeta(false),
    webhooks: list(obj({ ...webhookCommon, reinvocationPolicy: str({ enum: ['Never', 'IfNeeded'] }) }, webhookRequired)),
  }, ['apiVersion', 'kind', 'metadata']),
  'admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration': obj({
    ...typeMeta('admissionregistration.k8s.io/v1', 'ValidatingWebhookConfiguration'),
    metadata: objectMeta(false),
    webhooks: list(obj(webhookCommon, webhookRequired)),
  }, ['apiVersion', 'kind', 'metadata']),
};

/** Label/annotation/nodeSelector keys must be qualified names (the validator has no propertyNames). */
function checkKeys(value: unknown, path: string, errs: SchemaError[]): void {
  if (Array.isArray(value)) { value.forEach((v, i) => checkKeys(v, `${path}[${i}]`, errs)); return; }
  if (typeof value !== 'object' || value === null) return;
  for (const [k, v] of Object.entries(value)) {
    if (['labels', 'annotations', 'matchLabels', 'nodeSelector'].includes(k) && typeof v === 'object' && v !== null) {
      for (const key of Object.keys(v)) if (!new RegExp(QUALIFIED_NAME).test(key) || key.length > 317) errs.push({ path: `${path}.${k}`, message: `key ${JSON.stringify(key)} is not a qualified name` });
    }
    checkKeys(v, `${path}.${k}`, errs);
  }
}

/** Validates one Kubernetes object against the schema of its apiVersion/kind. */
export function validateObject(o: unknown): SchemaError[] {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return [{ path: '$', message: 'must be an object' }];
  const { apiVersion, kind } = o as { apiVersion?: unknown; kind?: unknown };
  const schema = SCHEMAS[`${String(apiVersion)}/${String(kind)}`];
  if (!schema) return [{ path: '$', message: `no schema for ${String(apiVersion)} ${String(kind)}` }];
  const errs = validate(schema, o);
  checkKeys(o, '$', errs);
  return errs;
}
