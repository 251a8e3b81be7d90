// The trust policy over the real CRI socket, case by case as the issue lists them: an untrusted pod
// asking for a hostPath of / or of the runtime socket, CAP_SYS_ADMIN, an unsafe or smuggled sysctl,
// or a spoofed trust annotation is refused (PERMISSION_DENIED naming the rule) or moved to a
// sandbox, while a trusted pod runs on runc as asked. Nothing is created for a refused request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { TestDaemon } from '../../harness/daemon.ts';
import { policyBuilders, refused, removePod as removeAnyPod, startPolicyDaemon, type PolicyDaemon } from '../fixtures/policy-daemon.ts';

const IMAGE = 'bulkhead.local/policy-test:latest';
const POLICY = `[policy]
default_trust = "untrusted"
[policy.levels.trusted]
min_isolation = "process"
allowed_capabilities = ["SYS_ADMIN"]
[[policy.rules]]
name = "ops namespace, when the cluster admin marks the pod"
trust = "trusted"
namespaces = ["ops"]
annotations = { "bulkhead.io/trusted" = "yes" }
`;

const { pod, ctr } = policyBuilders({ image: IMAGE, command: ['sleep', '30'], logPath: 'c.log', caseLabel: true });
let t: PolicyDaemon;
let d: TestDaemon;
before(async () => {
  t = await startPolicyDaemon({ name: 'policy-socket', image: IMAGE, policy: POLICY });
  d = t.d;
});
after(async () => { await t?.close(); });

const denied = (p: Promise<unknown>, what: string, rule: RegExp): Promise<unknown> => refused(p, 'PermissionDenied', what, rule);
const removePod = (id: string): Promise<void> => removeAnyPod(d, id);

async function handlerOf(id: string): Promise<string> {
  return (await d.client.podSandboxStatus(id)).status.runtimeHandler;
}

test('untrusted containers: hostPath / and of the runtime socket, CAP_SYS_ADMIN are refused at CreateContainer', async () => {
  const cfg = pod('untrusted-ctr', 'tenant');
  const id = await d.client.runPodSandbox(cfg, '');
  try {
    assert.notEqual(await handlerOf(id), 'runc', 'an untrusted pod never lands on runc');
    await denied(d.client.createContainer(id, ctr({ mounts: [{ containerPath: '/host', hostPath: '/' }] }), cfg), 'hostPath /', /host-path/);
    await denied(d.client.createContainer(id, ctr({ mounts: [{ containerPath: '/sock', hostPath: d.socket }] }), cfg), 'hostPath of the CRI socket', /host-path/);
    await denied(d.client.createContainer(id, ctr({ linux: { securityContext: { capabilities: { addCapabilities: ['CAP_SYS_ADMIN'] } } } }), cfg), 'CAP_SYS_ADMIN', /capabilities/);
    assert.deepEqual(await d.client.listContainers({ podSandboxId: id }), [], 'nothing was created');
  } finally {
    await removePod(id);
  }
});

test('untrusted pods: an unsafe sysctl, and one smuggling kernel.core_pattern, are refused at RunPodSandbox', async () => {
  await denied(d.client.runPodSandbox(pod('sysctl', 'tenant', { linux: { sysctls: { 'kernel.core_pattern': '|/tmp/x' } } }), ''), 'kernel.core_pattern', /sysctl/);
  await denied(d.client.runPodSandbox(pod('smuggle', 'tenant', { linux: { sysctls: { 'kernel.shm_rmid_forced': '1\nkernel.core_pattern=|/tmp/x' } } }), ''), 'value smuggling', /sysctl/);
  await denied(d.client.runPodSandbox(pod('smuggle2', 'tenant', { linux: { sysctls: { 'net.ipv4.ip_local_port_range/../../kernel/core_pattern': '|/x' } } }), ''), 'name smuggling', /sysctl/);
  assert.deepEqual((await d.client.listPodSandbox()).filter((p) => p.metadata.namespace === 'tenant'), []);
});

test('a spoofed trust annotation outside the trusted namespace changes nothing: runc is still refused as weak', async () => {
  const id = await d.client.runPodSandbox(pod('spoof', 'tenant', { annotations: { 'bulkhead.io/trusted': 'yes' } }), 'runc');
  try {
    assert.notEqual(await handlerOf(id), 'runc', 'moved off runc despite the annotation');
  } finally {
    await removePod(id);
  }
});

test('a trusted pod (namespace and annotation as the rule says) runs on runc as asked, with the capability its level allows', async () => {
  const cfg = pod('trusted', 'ops', { annotations: { 'bulkhead.io/trusted': 'yes' } });
  const id = await d.client.runPodSandbox(cfg, 'runc');
  try {
    assert.equal(await handlerOf(id), 'runc');
    const cid = await d.client.createContainer(id, ctr({ linux: { securityContext: { capabilities: { addCapabilities: ['CAP_SYS_ADMIN'] } } } }), cfg);
    await d.client.startContainer(cid);
    const r = await d.client.execSync(cid, ['sh', '-c', 'grep CapEff /proc/self/status'], 10);
    const capEff = BigInt('0x' + r.stdout.toString().trim().split(/\s+/)[1]);
    assert.ok((capEff & (1n << 21n)) !== 0n, `CAP_SYS_ADMIN in effect: ${r.stdout.toString()}`);
  } finally {
    await removePod(id);
  }
});
