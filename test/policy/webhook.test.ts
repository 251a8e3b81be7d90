// The admission webhook over real TLS: a self-signed certificate made with openssl, real
// AdmissionReview JSON posted over HTTPS on 127.0.0.1, patches decoded and checked.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecked } from '../../src/util/exec.ts';
import { parsePolicyText } from '../../src/policy/load.ts';
import { DEFAULT_HANDLERS } from '../../src/policy/handlers.ts';
import { createCounters } from '../../src/policy/enforce.ts';
import { startWebhook, type WebhookServer } from '../../src/policy/webhook.ts';
import { silentLogger } from '../../src/util/log.ts';

const policy = parsePolicyText(`
[levels.trusted]
min_isolation = "process"
default_handler = "runc"
allowed_host_ports = ["8000-9000"]
[levels.restricted]
min_isolation = "user-kernel"
require_run_as_non_root = true
[[rules]]
name = "system"
trust = "trusted"
namespaces = ["infra"]
[[rules]]
name = "restricted"
trust = "restricted"
namespaces = ["secure"]
`, 'toml', 'webhook-test');

export async function selfSignedCert(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  await runChecked('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=bulkhead-webhook', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { timeoutMs: 30_000 });
  return { cert, key };
}

interface Reply { status: number; body: any }

function post(url: string, path: string, ca: string, body: string | object, method = 'POST'): Promise<Reply> {
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, ca, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try { parsed = JSON.parse(text); } catch { /* plain text */ }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(data);
  });
}

function admission(pod: object, over: Record<string, unknown> = {}): object {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: '',
      namespace: 'default',
      operation: 'CREATE',
      userInfo: { username: 'alice', groups: ['system:authenticated'] },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      ...over,
    },
  };
}

function pod(spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'web-', labels: { app: 'web' }, ...metadata },
    spec: { containers: [{ name: 'app', image: 'busybox:1.36', command: ['sleep', '3600'] }], ...spec },
  };
}

function decodePatch(r: Reply): unknown {
  assert.equal(r.body.response.patchType, 'JSONPatch');
  return JSON.parse(Buffer.from(r.body.response.patch, 'base64').toString('utf8'));
}

describe('admission webhook over TLS', () => {
  let dir = '';
  let ca = '';
  let server: WebhookServer;
  const counters = createCounters();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-webhook-'));
    const { cert, key } = await selfSignedCert(dir);
    ca = await readFile(cert, 'utf8');
    server = await startWebhook({ policy, handlers: DEFAULT_HANDLERS, logger: silentLogger, counters, cert: ca, key: await readFile(key, 'utf8'), host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers /healthz', async () => {
    const r = await post(server.url, '/healthz', ca, '', 'GET');
    assert.equal(r.status, 200);
  });

  it('mutate: an untrusted pod asking for runc is patched to the strongest handler (microvm)', async () => {
    const r = await post(server.url, '/mutate', ca, admission(pod({ runtimeClassName: 'runc' })));
    assert.equal(r.status, 200);
    assert.equal(r.body.apiVersion, 'admission.k8s.io/v1');
    assert.equal(r.body.kind, 'AdmissionReview');
    assert.equal(r.body.response.uid, '705ab4f5-6393-11e8-b7cc-42010a800002');
    assert.equal(r.body.response.allowed, true);
    assert.deepEqual(decodePatch(r), [{ op: 'replace', path: '/spec/runtimeClassName', value: 'microvm' }]);
    assert.equal(r.body.response.auditAnnotations['bulkhead.io/trust'], 'untrusted');
  });

  it('mutate: a pod naming no RuntimeClass gets one added', async () => {
    const r = await post(server.url, '/mutate', ca, admission(pod()));
    assert.deepEqual(decodePatch(r), [{ op: 'add', path: '/spec/runtimeClassName', value: 'microvm' }]);
  });

  it('mutate: a trusted pod keeps runc and gets no patch', async () => {
    const r = await post(server.url, '/mutate', ca, admission(pod({ runtimeClassName: 'runc' }), { namespace: 'infra' }));
    assert.equal(r.body.response.allowed, true);
    assert.equal(r.body.response.patch, undefined);
    assert.equal(r.body.response.patchType, undefined);
  });

  it('mutate: a trusted pod naming no RuntimeClass gets its level default (runc)', async () => {
    const r = await post(server.url, '/mutate', ca, admission(pod(), { namespace: 'infra' }));
    assert.deepEqual(decodePatch(r), [{ op: 'add', path: '/spec/runtimeClassName', value: 'runc' }]);
  });

  it('mutate: a spoofed trust annotation does not keep runc', async () => {
    const r = await post(server.url, '/mutate', ca, admission(pod({ runtimeClassName: 'runc' }, { annotations: { 'bulkhead.io/trust': 'trusted' } })));
    assert.deepEqual(decodePatch(r), [{ op: 'replace', path: '/spec/runtimeClassName', value: 'microvm' }]);
  });

  const denials: { name: string; pod: object; rule: RegExp }[] = [
    { name: 'privileged container', pod: pod({ containers: [{ name: 'app', image: 'busybox', securityContext: { privileged: true } }] }), rule: /denied by rule untrusted\/privileged .*container app: privileged mode is not allowed/ },
    { name: 'host network', pod: pod({ hostNetwork: true }), rule: /untrusted\/host-network/ },
    { name: 'hostPath /', pod: pod({ volumes: [{ name: 'root', hostPath: { path: '/' } }] }), rule: /untrusted\/host-path/ },
    { name: 'hostPath of the Bulkhead CRI socket', pod: pod({ volumes: [{ name: 's', hostPath: { path: '/run/bulkhead/cri.sock', type: 'Socket' } }] }), rule: /untrusted\/host-path.*\/run\/bulkhead\/cri\.sock/ },
    { name: 'CAP_SYS_ADMIN', pod: pod({ containers: [{ name: 'app', image: 'busybox', securityContext: { capabilities: { add: ['SYS_ADMIN'] } } }] }), rule: /untrusted\/capabilities.*CAP_SYS_ADMIN/ },
    { name: 'core_pattern smuggled in a sysctl', pod: pod({ securityContext: { sysctls: [{ name: 'kernel.shm_rmid_forced', value: '1\nkernel.core_pattern=|/x' }] } }), rule: /untrusted\/sysctl/ },
    { name: 'unmasked /proc in an init container', pod: pod({ initContainers: [{ name: 'init', image: 'busybox', securityContext: { procMount: 'Unmasked' } }] }), rule: /untrusted\/proc-mount.*container init/ },
    { name: 'a hostPort (untrusted may publish none)', pod: pod({ containers: [{ name: 'app', image: 'busybox', ports: [{ containerPort: 443, hostPort: 18443 }] }] }), rule: /denied by rule untrusted\/host-port .*host port 18443 is not allowed/ },
    { name: 'a hostPath into its own metadata.uid kubelet dir (the uid is the author\'s text)', pod: pod({ volumes: [{ name: 'k', hostPath: { path: '/var/lib/kubelet/pods/0f0f0f0f-aaaa-bbbb-cccc-000000000001/volumes' } }] }, { uid: '0f0f0f0f-aaaa-bbbb-cccc-000000000001' }), rule: /untrusted\/host-path/ },
    { name: 'Bidirectional mount propagation in an unprivileged container', pod: pod({ containers: [{ name: 'app', image: 'busybox', volumeMounts: [{ name: 'v', mountPath: '/shared', mountPropagation: 'Bidirectional' }] }], volumes: [{ name: 'v', emptyDir: {} }] }), rule: /untrusted\/mount-propagation .*\/shared/ },
    { name: 'legacy AppArmor unconfined annotation', pod: pod({}, { annotations: { 'container.apparmor.security.beta.kubernetes.io/app': 'unconfined' } }), rule: /untrusted\/apparmor/ },
  ];
  for (const endpoint of ['/validate', '/mutate']) {
    for (const c of denials) {
      it(`${endpoint.slice(1)}: denies ${c.name} with 403 and the node's message`, async () => {
        const r = await post(server.url, endpoint, ca, admission(c.pod));
        assert.equal(r.status, 200);
        assert.equal(r.body.response.allowed, false);
        assert.equal(r.body.response.status.code, 403);
        assert.equal(r.body.response.status.reason, 'Forbidden');
        assert.match(r.body.response.status.message, /^policy: pod default\/web- denied by rule /);
        assert.match(r.body.response.status.message, c.rule);
        assert.equal(r.body.response.patch, undefined);
      });
    }
  }

  it('validate: allows a plain pod and warns that the node will move it off runc', async () => {
    const r = await post(server.url, '/validate', ca, admission(pod({ runtimeClassName: 'runc' })));
    assert.equal(r.body.response.allowed, true);
    assert.equal(r.body.response.patch, undefined);
    assert.match(r.body.response.warnings[0], /will run on runtime handler "microvm", not "runc"/);
  });

  it('hostPort: a trusted level publishes ports in its allowed_host_ports only', async () => {
    const ports = (hostPort: number): object => pod({ runtimeClassName: 'runc', containers: [{ name: 'app', image: 'busybox', ports: [{ containerPort: 80, hostPort }] }] });
    const ok = await post(server.url, '/validate', ca, admission(ports(8080), { namespace: 'infra' }));
    assert.equal(ok.body.response.allowed, true);
    const out = await post(server.url, '/validate', ca, admission(ports(18443), { namespace: 'infra' }));
    assert.equal(out.body.response.allowed, false);
    assert.match(out.body.response.status.message, /denied by rule trusted\/host-port .*host port 18443 .*allowed_host_ports: 8000-9000/);
  });

  it('refuses a review without request.namespace, whatever the pod\'s own metadata.namespace says', async () => {
    for (const endpoint of ['/validate', '/mutate']) {
      const r = await post(server.url, endpoint, ca, admission(pod({ runtimeClassName: 'runc' }, { namespace: 'infra' }), { namespace: undefined }));
      assert.equal(r.body.response.allowed, false);
      assert.equal(r.body.response.status.code, 400);
      assert.match(r.body.response.status.message, /request\.namespace is missing/);
      assert.equal(r.body.response.patch, undefined);
    }
  });

  it('validate: allows DELETE without looking at the pod', async () => {
    const r = await post(server.url, '/validate', ca, admission(pod(), { operation: 'DELETE', object: null }));
    assert.equal(r.body.response.allowed, true);
  });

  const malformed: { name: string; body: string | object; status: number; message: RegExp }[] = [
    { name: 'not JSON', body: '{"apiVersion": ', status: 400, message: /not JSON/ },
    { name: 'an admission.k8s.io/v1beta1 review', body: { ...admission(pod()), apiVersion: 'admission.k8s.io/v1beta1' }, status: 400, message: /not an admission\.k8s\.io\/v1 AdmissionReview/ },
    { name: 'no request', body: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, status: 400, message: /with a request/ },
    { name: 'no uid', body: admission(pod(), { uid: undefined }), status: 400, message: /uid is missing/ },
    { name: 'a Deployment instead of a Pod', body: admission(pod(), { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }), status: 200, message: /only core\/v1 Pods/ },
    { name: 'CREATE without an object', body: admission(pod(), { object: null }), status: 200, message: /request\.object is missing/ },
    { name: 'containers that are not a list', body: admission({ kind: 'Pod', metadata: {}, spec: { containers: { name: 'x' } } }), status: 200, message: /spec\.containers must be a list/ },
    { name: 'privileged given as a string', body: admission(pod({ containers: [{ name: 'app', image: 'busybox', securityContext: { privileged: 'true' } }] })), status: 200, message: /privileged must be true or false/ },
    { name: 'a hostPath without a path', body: admission(pod({ volumes: [{ name: 'h', hostPath: {} }] })), status: 200, message: /hostPath\.path is required/ },
    { name: 'an unknown operation', body: admission(pod(), { operation: 'PATCH' }), status: 200, message: /unknown operation/ },
  ];
  for (const c of malformed) {
    it(`fails closed on ${c.name}`, async () => {
      const r = await post(server.url, '/validate', ca, c.body);
      assert.equal(r.status, c.status);
      assert.equal(r.body.response.allowed, false);
      assert.equal(r.body.response.status.code, 400);
      assert.match(r.body.response.status.message, c.message);
    });
  }

  it('require_run_as_non_root (Restricted): runAsNonRoot: true or a non-zero runAsUser (container over pod); uid 0 or nothing is refused', async () => {
    const c = (sc?: object): object => ({ name: 'app', image: 'busybox', ...(sc ? { securityContext: sc } : {}) });
    const cases: [string, object, boolean][] = [
      ['nothing said', pod({ containers: [c()] }), false],
      ['runAsUser 0', pod({ containers: [c({ runAsUser: 0 })] }), false],
      ['runAsNonRoot with runAsUser 0', pod({ containers: [c({ runAsNonRoot: true, runAsUser: 0 })] }), false],
      ['pod runAsNonRoot, container runAsNonRoot false', pod({ securityContext: { runAsNonRoot: true }, containers: [c({ runAsNonRoot: false })] }), false],
      ['pod runAsUser 1000, container runAsUser 0', pod({ securityContext: { runAsUser: 1000 }, containers: [c({ runAsUser: 0 })] }), false],
      ['runAsNonRoot', pod({ containers: [c({ runAsNonRoot: true })] }), true],
      ['runAsUser 1000', pod({ containers: [c({ runAsUser: 1000 })] }), true],
      ['pod runAsNonRoot', pod({ securityContext: { runAsNonRoot: true }, containers: [c()] }), true],
    ];
    for (const [what, p, ok] of cases) {
      const r = await post(server.url, '/validate', ca, admission(p, { namespace: 'secure' }));
      assert.equal(r.body.response.allowed, ok, what);
      if (!ok) assert.match(r.body.response.status.message, /denied by rule restricted\/run-as-non-root/, what);
    }
    // the flag is off for the other levels: nothing said is fine there
    assert.equal((await post(server.url, '/validate', ca, admission(pod({ containers: [c({ runAsUser: 0 })] })))).body.response.allowed, true);
  });

  it('refuses a body over the size cap and other methods or paths', async () => {
    const big = await post(server.url, '/validate', ca, 'x'.repeat(4 * 1024 * 1024));
    assert.equal(big.status, 413);
    assert.equal(big.body.response.allowed, false);
    assert.equal((await post(server.url, '/validate', ca, '', 'GET')).status, 405);
    assert.equal((await post(server.url, '/other', ca, admission(pod()))).status, 404);
  });

  it('counted its decisions', () => {
    assert.ok(counters.pods.allowed >= 5);
    assert.ok(counters.pods.denied >= denials.length * 2);
    assert.ok(counters.pods.moved >= 3);
  });
});
