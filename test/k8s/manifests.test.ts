// Generated Kubernetes manifests, validated against minimal schemas written from the API facts,
// plus the CLI command run in-process (real files, real YAML round trip).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseAllDocuments } from 'yaml';
import { generateManifests, handlerLabel, METRICS_PORT } from '../../src/k8s/manifests.ts';
import { parseConfig } from '../../src/daemon/config.ts';
import { parseMetricsConfig } from '../../src/metrics/config.ts';
import { parseOverhead, readOverhead } from '../../src/k8s/overhead.ts';
import { validate, validateObject, SCHEMAS } from '../../src/k8s/schema.ts';
import type { HandlerInfo } from '../../src/policy/policy.ts';
import k8sCommand from '../../src/cli/k8s.ts';

const HANDLERS: HandlerInfo[] = [
  { handler: 'runc', isolation: 'process', available: true },
  { handler: 'gvisor', isolation: 'user-kernel', available: true },
  { handler: 'microvm', isolation: 'vm', available: false, reason: 'no /dev/kvm' },
];
const OVERHEAD = parseOverhead(JSON.stringify({ version: 1, measuredAt: '2026-01-01T00:00:00Z', handlers: { gvisor: { memoryBytes: 31457280.5, cpuMillicores: 12.2 } } }), 'test');

type Obj = Record<string, any>;
const byKind = (objs: Obj[], kind: string): Obj[] => objs.filter((o) => o.kind === kind);

describe('generateManifests', () => {
  const m = generateManifests({ handlers: HANDLERS, overhead: OVERHEAD, image: 'bulkhead/bulkhead:test', namespace: 'bulkhead-system', caBundle: Buffer.from('-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n').toString('base64'), policy: { fileName: 'policy.toml', text: 'default_trust = "untrusted"\n' } });
  const objs = m.objects as Obj[];

  it('every object passes its schema', () => {
    for (const o of objs) assert.deepEqual(validateObject(o), [], `${o.kind} ${o.metadata?.name}`);
    assert.deepEqual(objs.map((o) => o.kind).sort(), ['ConfigMap', 'DaemonSet', 'Deployment', 'MutatingWebhookConfiguration', 'Namespace', 'RuntimeClass', 'RuntimeClass', 'Service', 'ValidatingWebhookConfiguration']);
  });

  it('a RuntimeClass per available handler, with measured overhead and a node selector', () => {
    const rcs = byKind(objs, 'RuntimeClass');
    assert.deepEqual(rcs.map((r) => r.handler), ['runc', 'gvisor']);
    const gvisor = rcs.find((r) => r.handler === 'gvisor')!;
    assert.deepEqual(gvisor.overhead, { podFixed: { memory: '31Mi', cpu: '13m' } });
    assert.deepEqual(gvisor.scheduling.nodeSelector, { [handlerLabel('gvisor')]: 'true' });
    const runc = rcs.find((r) => r.handler === 'runc')!;
    assert.equal(runc.overhead, undefined, 'no measurement, no guessed overhead');
    assert.ok(m.notes.some((n) => /handler runc has no overhead measurement/.test(n)));
    assert.ok(m.notes.some((n) => /handler microvm is not available on this node \(no \/dev\/kvm\)/.test(n)));
  });

  it('without a measurement file: no overhead anywhere, and a note says so', () => {
    const n = generateManifests({ handlers: HANDLERS, image: 'i', namespace: 'bulkhead-system', overheadSource: '/var/lib/bulkhead/overhead.json' });
    for (const rc of byKind(n.objects as Obj[], 'RuntimeClass')) assert.equal(rc.overhead, undefined);
    assert.ok(n.notes.some((x) => x.includes('no overhead measurement at /var/lib/bulkhead/overhead.json')));
    assert.ok(n.notes.some((x) => x.includes('caBundle')));
    for (const o of n.objects) assert.deepEqual(validateObject(o), []);
  });

  it('the DaemonSet is privileged, hostPID, on labelled nodes, with the host state directories', () => {
    const ds = byKind(objs, 'DaemonSet')[0]!;
    const spec = ds.spec.template.spec;
    assert.equal(spec.hostPID, true);
    assert.deepEqual(spec.nodeSelector, { 'bulkhead.io/enabled': 'true' });
    assert.equal(spec.containers[0].securityContext.privileged, true);
    const paths = spec.volumes.filter((v: Obj) => v.hostPath).map((v: Obj) => v.hostPath.path);
    for (const p of ['/var/lib/bulkhead', '/run/bulkhead', '/sys/fs/cgroup']) assert.ok(paths.includes(p), p);
    assert.deepEqual(ds.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'bulkhead-node' });
    assert.equal(ds.spec.template.metadata.labels['app.kubernetes.io/name'], 'bulkhead-node');
    assert.deepEqual(spec.containers[0].command, ['bulkhead', '--config', '/etc/bulkhead/config.toml', 'daemon']);
  });

  it('the DaemonSet serves /metrics on its pod address, with the scrape annotations and its config in a ConfigMap', () => {
    for (const [what, objects] of [['with a policy', objs], ['without', generateManifests({ handlers: HANDLERS, image: 'i', namespace: 'bulkhead-system' }).objects as Obj[]]] as const) {
      const ds = byKind(objects, 'DaemonSet')[0]!;
      const tpl = ds.spec.template;
      assert.deepEqual(tpl.metadata.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(METRICS_PORT), 'prometheus.io/path': '/metrics' }, what);
      const c = tpl.spec.containers[0];
      assert.deepEqual(c.ports, [{ name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' }], what);
      assert.deepEqual(c.command, ['bulkhead', '--config', '/etc/bulkhead/config.toml', 'daemon'], what);
      const vol = tpl.spec.volumes.find((v: Obj) => v.name === c.volumeMounts.find((m: Obj) => m.mountPath === '/etc/bulkhead').name);
      const cm = byKind(objects, 'ConfigMap').find((o) => o.metadata.name === vol.configMap.name)!;
      // the daemon's own parsers accept it, and it is the operator's explicit choice of a non-loopback address
      const cfg = parseConfig(cm.data['config.toml'], { root: '/r', runDir: '/run', socket: '/s', config: '/c' });
      assert.deepEqual(parseMetricsConfig(cfg.sections.metrics), { host: '0.0.0.0', port: METRICS_PORT, allowNonLoopback: true }, what);
      assert.equal(cfg.policyFile, what === 'with a policy' ? '/etc/bulkhead/policy.toml' : '', what);
    }
  });

  it('the webhook configurations fail closed, speak v1 only, have no side effects and skip kube-system', () => {
    const svc = byKind(objs, 'Service')[0]!;
    for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
      const wh = byKind(objs, kind)[0]!.webhooks[0];
      assert.deepEqual(wh.admissionReviewVersions, ['v1']);
      assert.equal(wh.sideEffects, 'None');
      assert.equal(wh.failurePolicy, 'Fail');
      assert.deepEqual(wh.namespaceSelector.matchExpressions[0], { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'bulkhead-system'] });
      assert.equal(wh.clientConfig.service.name, svc.metadata.name);
      assert.equal(wh.clientConfig.service.namespace, svc.metadata.namespace);
      assert.ok(wh.clientConfig.caBundle);
    }
    assert.equal(byKind(objs, 'MutatingWebhookConfiguration')[0]!.webhooks[0].clientConfig.service.path, '/mutate');
    assert.equal(byKind(objs, 'ValidatingWebhookConfiguration')[0]!.webhooks[0].clientConfig.service.path, '/validate');
    const dep = byKind(objs, 'Deployment')[0]!;
    assert.deepEqual(svc.spec.selector, dep.spec.selector.matchLabels);
    const args: string[] = dep.spec.template.spec.containers[0].command;
    assert.equal(args[args.indexOf('--handlers') + 1], 'runc=process,gvisor=user-kernel');
    assert.equal(args[args.indexOf('--policy') + 1], '/etc/bulkhead/policy.toml');
  });
});

describe('the schema validator catches what a cluster would reject', () => {
  const good = (): Obj => ({ apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: 'gvisor' }, handler: 'gvisor', overhead: { podFixed: { memory: '30Mi', cpu: '10m' } } });
  const table: { name: string; mutate: (o: Obj) => void; error: RegExp }[] = [
    { name: 'missing handler', mutate: (o) => { delete o.handler; }, error: /\$\.handler is required/ },
    { name: 'handler not a DNS label', mutate: (o) => { o.handler = 'Run_C'; }, error: /\$\.handler/ },
    { name: 'bad quantity', mutate: (o) => { o.overhead.podFixed.memory = '30 MB'; }, error: /podFixed\.memory/ },
    { name: 'misspelt field', mutate: (o) => { o.overheads = {}; }, error: /\$\.overheads is not a field/ },
    { name: 'wrong apiVersion', mutate: (o) => { o.apiVersion = 'node.k8s.io/v1beta1'; }, error: /no schema/ },
    { name: 'label key not qualified', mutate: (o) => { o.metadata.labels = { 'bad key!': 'x' }; }, error: /not a qualified name/ },
    { name: 'label value too long', mutate: (o) => { o.metadata.labels = { a: 'x'.repeat(64) }; }, error: /labels\.a/ },
  ];
  it('accepts the good object', () => assert.deepEqual(validateObject(good()), []));
  for (const c of table) {
    it(c.name, () => {
      const o = good();
      c.mutate(o);
      const errs = validateObject(o);
      assert.ok(errs.length > 0, 'expected an error');
      assert.match(errs.map((e) => `${e.path} ${e.message}`).join('\n'), c.error);
    });
  }
  it('webhooks: sideEffects Unknown and a two-part name are refused in v1', () => {
    const schema = SCHEMAS['admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration']!;
    const errs = validate(schema, { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingWebhookConfiguration', metadata: { name: 'x' }, webhooks: [{ name: 'bulkhead.io', clientConfig: { service: { namespace: 'a', name: 'b' } }, sideEffects: 'Unknown', admissionReviewVersions: ['v1'] }] });
    assert.deepEqual(errs.map((e) => e.path).sort(), ['$.webhooks[0].name', '$.webhooks[0].sideEffects']);
  });
  it('a DaemonSet without a selector or containers is refused', () => {
    const errs = validateObject({ apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'd', namespace: 'n' }, spec: { template: { spec: { containers: [] } } } });
    assert.deepEqual(errs.map((e) => e.path).sort(), ['$.spec.selector', '$.spec.template.spec.containers']);
  });
});

describe('bulkhead k8s manifests (CLI, in-process)', () => {
  let dir = '';
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'bulkhead-k8s-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  async function runCli(flags: Record<string, string | boolean>, json: boolean): Promise<{ code: number; out: string; err: string }> {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (b: Buffer) => { out += b.toString(); });
    stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const code = await k8sCommand.run({
      global: { root: dir, runDir: dir, socket: join(dir, 'no-daemon.sock'), config: join(dir, 'none.toml'), json, debug: false },
      flags, args: ['manifests'], stdout, stderr, signal: new AbortController().signal,
    });
    return { code, out, err };
  }

  it('prints valid YAML documents and reads the overhead file', async () => {
    await writeFile(join(dir, 'overhead.json'), JSON.stringify({ version: 1, measuredAt: '2026-01-01T00:00:00Z', handlers: { gvisor: { memoryBytes: 20 * 1024 * 1024, cpuMillicores: 5 } } }));
    const r = await runCli({ handlers: 'runc,gvisor=user-kernel' }, false);
    assert.equal(r.code, 0);
    const docs = parseAllDocuments(r.out);
    const objs = (Array.isArray(docs) ? docs : [docs]).map((d) => d.toJS() as Obj);
    for (const o of objs) assert.deepEqual(validateObject(o), []);
    const gv = objs.find((o) => o.kind === 'RuntimeClass' && o.handler === 'gvisor')!;
    assert.deepEqual(gv.overhead, { podFixed: { memory: '20Mi', cpu: '5m' } });
    assert.match(r.err, /note: handler runc has no overhead measurement/);
  });

  it('--json prints a v1 List; a missing overhead file is reported, not guessed', async () => {
    const r = await runCli({ handlers: 'gvisor', overhead: join(dir, 'missing.json') }, true);
    const list = JSON.parse(r.out) as Obj;
    assert.equal(list.kind, 'List');
    assert.equal(list.items.find((o: Obj) => o.kind === 'RuntimeClass').overhead, undefined);
    assert.match(r.err, /no overhead measurement at .*missing\.json/);
  });

  it('with no daemon and no --handlers, uses the config and says they were not probed', async () => {
    const r = await runCli({ overhead: join(dir, 'missing.json') }, true);
    assert.match(r.err, /no Bulkhead daemon answers on .*no-daemon\.sock/);
    assert.ok(JSON.parse(r.out).items.some((o: Obj) => o.kind === 'RuntimeClass' && o.handler === 'gvisor'));
  });

  it('a broken overhead file is an error', async () => {
    await writeFile(join(dir, 'bad.json'), '{"version": 2}');
    await assert.rejects(readOverhead(join(dir, 'bad.json')), /version must be 1/);
    await assert.rejects(runCli({ handlers: 'runc', overhead: join(dir, 'bad.json') }, false), /overhead file/);
  });
});
