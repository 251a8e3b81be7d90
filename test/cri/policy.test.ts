// The trust policy enforced through the CRI socket: with the built-in policy (every pod untrusted)
// a pod asking for runc is moved to gVisor, privileged and host-network pods are refused with
// PERMISSION_DENIED naming the rule, and nothing is created for a refused pod.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { BulkheadError } from '../../src/errors.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';

let d: TestDaemon;
before(async () => { d = await startTestDaemon({ name: 'bulkhead-cri-policy-', policy: 'builtin' }); });
after(async () => { await d?.close(); });

function pod(name: string, linux: PodSandboxConfig['linux'] = {}): PodSandboxConfig {
  return { metadata: { name, namespace: 'cri-policy', uid: randomUUID(), attempt: 0 }, labels: { t: name }, linux };
}

test('an untrusted pod asking for runc is moved to a sandboxed handler', async () => {
  const info = await d.client.info();
  assert.ok(info.handlers.find((h) => h.name === 'gvisor')?.available, 'this test needs the gvisor handler');
  const id = await d.client.runPodSandbox(pod('moved'), 'runc');
  const handler = (await d.client.podSandboxStatus(id)).status.runtimeHandler;
  const isolation = info.handlers.find((h) => h.name === handler)?.isolation;
  assert.ok(isolation === 'user-kernel' || isolation === 'vm', `moved to ${handler} (${isolation})`);
  await d.client.stopPodSandbox(id);
  await d.client.removePodSandbox(id);
});

test('privileged and host-network pods are PERMISSION_DENIED naming the rule; nothing is created', async () => {
  const cases: [string, PodSandboxConfig][] = [
    ['privileged', pod('priv', { securityContext: { privileged: true } })],
    ['host network', pod('hostnet', { securityContext: { namespaceOptions: { network: 'NODE' } } })],
  ];
  for (const [what, cfg] of cases) {
    const err = await d.client.runPodSandbox(cfg, 'gvisor').then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BulkheadError, `${what}: ${String(err)}`);
    assert.equal(err.code, 'PermissionDenied', `${what}: ${err.message}`);
    assert.match(err.message, /untrusted/, `${what}: names the trust level`);
  }
  assert.deepEqual(await d.client.listPodSandbox({ labelSelector: { t: 'priv' } }), []);
  assert.deepEqual(await d.client.listPodSandbox({ labelSelector: { t: 'hostnet' } }), []);
});
