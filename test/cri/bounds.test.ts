// Bounded resources over the real socket (issue #11 point 7): streaming URLs per container and in
// all, header blocks on the cri.sock relay, label/annotation sizes and what List* can return, and
// a flood of concurrent RunPodSandbox calls (queued, never a hidden half-made pod; a cancelled call
// is rolled back so the kubelet's retry with the same metadata succeeds).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../fixtures/daemon.ts';
import { sharedRegistry } from '../fixtures/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../fixtures/images.ts';
import { BulkheadError } from '../../src/errors.ts';
import type { ContainerConfig, PodSandboxConfig } from '../../src/engine/types.ts';

let d: TestDaemon;
let images: TestImages;

before(async () => {
  images = await buildAndPushTestImages(await sharedRegistry());
  d = await startTestDaemon({ name: 'bulkhead-cri-bounds-', handlers: { runc: { backend: 'runc' } } });
});
after(async () => { await d?.close(); });

function code(name: string, message?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BulkheadError, `expected a BulkheadError, got ${String(err)}`);
    assert.equal(err.code, name, `expected ${name}, got ${err.code}: ${err.message}`);
    if (message) assert.match(err.message, message);
    return true;
  };
}

function podConfig(name: string, extra: Partial<PodSandboxConfig> = {}): PodSandboxConfig {
  return {
    metadata: { name, namespace: 'bounds', uid: randomUUID(), attempt: 0 },
    logDirectory: join(d.base, 'logs', name),
    // host network: the flood measures the engine's own work, not CNI
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
    ...extra,
  };
}

function ctrConfig(name: string, extra: Partial<ContainerConfig> = {}): ContainerConfig {
  return { metadata: { name, attempt: 0 }, image: { image: images.busybox }, command: ['sleep', '3600'], logPath: `${name}.log`, ...extra };
}

async function runningContainer(podName: string): Promise<{ pod: string; ctr: string }> {
  const cfg = podConfig(podName);
  const pod = await d.client.runPodSandbox(cfg);
  const ctr = await d.client.createContainer(pod, ctrConfig('main'), cfg);
  await d.client.startContainer(ctr);
  return { pod, ctr };
}

test('streaming URLs: a container past its share gets RESOURCE_EXHAUSTED, other pods keep Exec and PortForward', async () => {
  await d.client.pullImage(images.busybox);
  const a = await runningContainer('tokens-a');
  const b = await runningContainer('tokens-b');
  const req = (containerId: string) => ({ containerId, cmd: ['true'], stdout: true });
  for (let i = 0; i < 16; i++) await d.client.exec(req(a.ctr));
  await assert.rejects(d.client.exec(req(a.ctr)), code('ResourceExhausted', /limit 16 per container/));
  await assert.rejects(d.client.attach({ containerId: a.ctr, stdout: true }), code('ResourceExhausted'));
  // the other pod is not affected
  const url = await d.client.exec({ containerId: b.ctr, cmd: ['echo', 'still-here'], stdout: true });
  assert.match(url, /\/exec\//);
  for (let i = 0; i < 16; i++) await d.client.portForward(b.pod, [80]);
  await assert.rejects(d.client.portForward(b.pod, [80]), code('ResourceExhausted', /pod sandbox/));
  assert.match(await d.client.portForward(a.pod, [80]), /\/portforward\//);
  await d.client.removePodSandbox(a.pod);
  await d.client.removePodSandbox(b.pod);
});
