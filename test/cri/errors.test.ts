// Errors with stable reasons through the real daemon and real runtimes: a container whose command
// is not in its image fails CreateContainer/StartContainer with INVALID_ARGUMENT, a message that
// says what to fix, and the reason BH_COMMAND_NOT_FOUND in the trailing metadata (which the
// CLI's client and grpc-js both decode), on runc and on gVisor.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { BulkheadError, REASON_METADATA_KEY } from '../../src/errors.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import { loadProtos } from '../../src/cri/proto.ts';

let d: TestDaemon;
let images: TestImages;

before(async () => {
  images = await buildAndPushTestImages(await sharedRegistry());
  d = await startTestDaemon({ name: 'bulkhead-cri-errors-' });
  await d.client.pullImage(images.busybox);
});
after(async () => { await d?.close(); });

function podConfig(name: string): PodSandboxConfig {
  return { metadata: { name, namespace: 'cri-errors', uid: randomUUID(), attempt: 0 }, logDirectory: join(d.base, 'logs', name), linux: {} };
}

/** Creates and starts a container running `command`; the error of whichever step fails. */
async function createAndStart(handler: string, command: string[]): Promise<{ step: string; err: unknown }> {
  const pc = podConfig(`${handler}-${randomUUID().slice(0, 8)}`);
  const podId = await d.client.runPodSandbox(pc, handler);
  try {
    let id: string;
    try {
      id = await d.client.createContainer(podId, { metadata: { name: 'typo', attempt: 0 }, image: { image: images.busybox }, command, logPath: 'typo.log' }, pc);
    } catch (err) { return { step: 'create', err }; }
    try { await d.client.startContainer(id); } catch (err) { return { step: 'start', err }; }
    return { step: 'none', err: undefined };
  } finally {
    await d.client.stopPodSandbox(podId).catch(() => {});
    await d.client.removePodSandbox(podId).catch(() => {});
  }
}

for (const handler of ['runc', 'gvisor']) {
  test(`${handler}: a command that is not in the image is INVALID_ARGUMENT BH_COMMAND_NOT_FOUND, saying what to fix`, async () => {
    const { step, err } = await createAndStart(handler, ['nosuchcmd-bh', 'arg']);
    assert.notEqual(step, 'none', 'the container must not start');
    assert.ok(err instanceof BulkheadError, String(err));
    assert.equal(err.code, 'InvalidArgument', `${step}: ${err.code}: ${err.message}`);
    assert.equal(err.reason, 'BH_COMMAND_NOT_FOUND', err.message);
    assert.match(err.message, /nosuchcmd-bh/);
    assert.match(err.message, /fix the command\/args of the pod spec/);
  });
}

test('runc: a command path that is not executable is BH_COMMAND_NOT_EXECUTABLE', async () => {
  const { err } = await createAndStart('runc', ['/etc/passwd']);
  assert.ok(err instanceof BulkheadError, String(err));
  assert.deepEqual([err.code, err.reason], ['InvalidArgument', 'BH_COMMAND_NOT_EXECUTABLE'], err.message);
});

test('an image that is not on the node is NOT_FOUND BH_IMAGE_NOT_PRESENT (not a missing pod or container)', async () => {
  const pc = podConfig(`noimage-${randomUUID().slice(0, 8)}`);
  const podId = await d.client.runPodSandbox(pc, 'runc');
  try {
    await assert.rejects(
      d.client.createContainer(podId, { metadata: { name: 'x', attempt: 0 }, image: { image: 'bulkhead.local/never-pulled:1' }, command: ['true'], logPath: 'x.log' }, pc),
      (e: unknown) => e instanceof BulkheadError && e.code === 'NotFound' && e.reason === 'BH_IMAGE_NOT_PRESENT' && /pull it first/.test(e.message),
    );
  } finally {
    await d.client.removePodSandbox(podId).catch(() => {});
  }
});

test('the reason is in the trailing metadata for any gRPC client (grpc-js, as the kubelet uses)', async () => {
  const { RuntimeServiceClient } = loadProtos();
  const kubeletLike = new RuntimeServiceClient(`unix://${d.socket}`, grpc.credentials.createInsecure());
  try {
    // RunPodSandbox on a handler that is not configured: BH_HANDLER_UNKNOWN
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      (kubeletLike as unknown as Record<string, (req: object, cb: (e: grpc.ServiceError | null) => void) => void>)
        .runPodSandbox!({ config: podConfig('unknown-handler'), runtimeHandler: 'no-such-handler' }, (e) => resolve(e));
    });
    assert.ok(err, 'the call must fail');
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
    assert.deepEqual(err.metadata.get(REASON_METADATA_KEY), ['BH_HANDLER_UNKNOWN'], err.details);
  } finally {
    kubeletLike.close();
  }
  // the CLI's own client (no grpc-js) decodes the same
  await assert.rejects(d.client.runPodSandbox(podConfig('unknown-handler-2'), 'no-such-handler'), { code: 'InvalidArgument', reason: 'BH_HANDLER_UNKNOWN' });
});

test('the engine\'s own refusals carry their reasons: unknown pod, unknown container, exec into a stopped container, a name in use', async () => {
  const reasonOf = async (p: Promise<unknown>): Promise<string | undefined> => {
    try { await p; } catch (err) { assert.ok(err instanceof BulkheadError, String(err)); return `${err.code}/${err.reason}`; }
    return 'resolved';
  };
  assert.equal(await reasonOf(d.client.podSandboxStatus('0123456789ab')), 'NotFound/BH_POD_NOT_FOUND');
  assert.equal(await reasonOf(d.client.containerStatus('0123456789ab')), 'NotFound/BH_CONTAINER_NOT_FOUND');
  assert.equal(await reasonOf(d.client.containerStatus('not-hex!')), 'NotFound/BH_CONTAINER_NOT_FOUND');
  const pc = podConfig(`reasons-${randomUUID().slice(0, 8)}`);
  const podId = await d.client.runPodSandbox(pc, 'runc');
  try {
    const cc = { metadata: { name: 'c', attempt: 0 }, image: { image: images.busybox }, command: ['true'], logPath: 'c.log' };
    const id = await d.client.createContainer(podId, cc, pc);
    assert.equal(await reasonOf(d.client.createContainer(podId, cc, pc)), 'AlreadyExists/BH_NAME_IN_USE');
    assert.equal(await reasonOf(d.client.execSync(id, ['true'], 5)), 'FailedPrecondition/BH_CONTAINER_NOT_RUNNING');
  } finally {
    await d.client.stopPodSandbox(podId).catch(() => {});
    await d.client.removePodSandbox(podId).catch(() => {});
  }
});
