// A pod on the gvisor handler (runsc, ptrace platform) through the CRI socket: the container runs
// on gVisor's kernel, exec works, teardown is clean. And a handler the host cannot run is a clear
// FAILED_PRECONDITION naming it, never a fallback to another handler.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { release } from 'node:os';
import { readFile } from 'node:fs/promises';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { BulkheadError } from '../../src/errors.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';

let d: TestDaemon;
let images: TestImages;

before(async () => {
  images = await buildAndPushTestImages(await sharedRegistry());
  d = await startTestDaemon({
    name: 'bulkhead-cri-gvisor-',
    handlers: {
      runc: { backend: 'runc' },
      gvisor: { backend: 'gvisor', runtime_args: ['--platform=ptrace'] },
      // A handler whose runtime binary does not exist: configured, but unusable on this host.
      broken: { backend: 'runc', binary: '/nonexistent/bin/runc' },
    },
  });
});
after(async () => { await d?.close(); });

function pod(name: string): PodSandboxConfig {
  return { metadata: { name, namespace: 'cri-gvisor', uid: randomUUID(), attempt: 0 }, labels: { t: name }, linux: {} };
}

test('a gvisor pod runs its container on gVisor\'s kernel', async () => {
  const c = d.client;
  const info = await c.info();
  const gv = info.handlers.find((h) => h.name === 'gvisor');
  assert.ok(gv?.available, `gvisor probe: ${gv?.reason}`);
  assert.equal(gv.isolation, 'user-kernel');

  await c.pullImage(images.busybox);
  const pc = pod('gv');
  const podId = await c.runPodSandbox(pc, 'gvisor');
  assert.equal((await c.podSandboxStatus(podId)).status.runtimeHandler, 'gvisor');
  const ctr = await c.createContainer(podId, { metadata: { name: 'sleeper' }, image: { image: images.busybox }, command: ['sleep', '3600'], logPath: 'sleeper.log' }, pc);
  await c.startContainer(ctr, { timeoutMs: 120_000 });
  assert.equal((await c.containerStatus(ctr)).status.state, 'CONTAINER_RUNNING');
  const r = await c.execSync(ctr, ['uname', '-r'], 30);
  assert.equal(r.exitCode, 0, r.stderr.toString());
  const kernel = r.stdout.toString().trim();
  assert.notEqual(kernel, release(), 'the container must not see the host kernel');
  const fail = await c.execSync(ctr, ['sh', '-c', 'exit 5'], 30);
  assert.equal(fail.exitCode, 5);
  await c.stopContainer(ctr, 1);
  assert.equal((await c.containerStatus(ctr)).status.state, 'CONTAINER_EXITED');
  await c.removeContainer(ctr);
  await c.stopPodSandbox(podId);
  await c.removePodSandbox(podId);
  assert.deepEqual(await c.listPodSandbox(), []);
});

test('a configured handler the host cannot run is FAILED_PRECONDITION naming it and why', async () => {
  const err = await d.client.runPodSandbox(pod('broken'), 'broken').then(() => null, (e: unknown) => e);
  assert.ok(err instanceof BulkheadError, String(err));
  assert.equal(err.code, 'FailedPrecondition', err.message);
  assert.match(err.message, /runtime handler "broken"/);
  assert.match(err.message, /cannot run on this host: \S/);
  assert.deepEqual(await d.client.listPodSandbox({ labelSelector: { t: 'broken' } }), [], 'no pod was created on another handler');
  const st = await d.client.status(true);
  const broken = (JSON.parse(st.info.handlers!) as { name: string; available: boolean; reason: string }[]).find((h) => h.name === 'broken');
  assert.equal(broken?.available, false);
  assert.notEqual(broken?.reason, '');
  assert.ok(!st.runtimeHandlers.some((h) => h.name === 'broken'), 'unavailable handlers are not advertised');
});

test('a gvisor pod is one sandbox: its containers share the pause\'s PID namespace (PID POD), exit codes and logs are their own', async () => {
  const c = d.client;
  await c.pullImage(images.busybox);
  const pc: PodSandboxConfig = { ...pod('gv-two'), linux: { securityContext: { namespaceOptions: { pid: 'POD' } } } };
  const podId = await c.runPodSandbox(pc, 'gvisor');
  const shared = { linux: { securityContext: { namespaceOptions: { pid: 'POD' as const } } } };
  const a = await c.createContainer(podId, { metadata: { name: 'a' }, image: { image: images.busybox }, command: ['sleep', '5151'], ...shared }, pc);
  const b = await c.createContainer(podId, {
    metadata: { name: 'b' }, image: { image: images.busybox }, ...shared,
    command: ['sh', '-c', 'echo to-out; echo to-err >&2; while ! ps -o args | grep -q "^sleep 5151"; do sleep 0.2; done; echo saw-a; exit 3'],
  }, pc);
  await c.startContainer(a, { timeoutMs: 120_000 });
  await c.startContainer(b, { timeoutMs: 120_000 });
  let st = (await c.containerStatus(b)).status;
  for (let i = 0; i < 300 && st.state !== 'CONTAINER_EXITED'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    st = (await c.containerStatus(b)).status;
  }
  assert.equal(st.state, 'CONTAINER_EXITED');
  assert.equal(st.exitCode, 3, 'b saw a\'s process and exited with its own code');
  const log = await readFile(st.logPath, 'utf8');
  assert.match(log, /^\S+ stdout F to-out$/m);
  assert.match(log, /^\S+ stderr F to-err$/m);
  assert.match(log, /^\S+ stdout F saw-a$/m);
  assert.equal((await c.containerStatus(a)).status.state, 'CONTAINER_RUNNING');
  await c.stopContainer(a, 0);
  const sa = (await c.containerStatus(a)).status;
  assert.equal(sa.state, 'CONTAINER_EXITED');
  assert.equal(sa.exitCode, 137);
  await c.stopPodSandbox(podId);
  await c.removePodSandbox(podId);
  assert.deepEqual(await c.listContainers({ podSandboxId: podId }), []);
});
