// A CRI client whose deadline passes while the runtime is slow (a runc wrapper that takes 4 s for
// each `create`): as the kubelet does, it retries RunPodSandbox and CreateContainer with the same
// metadata. The daemon either finished the first call (the retry finds its result: ALREADY_EXISTS
// and the object listed) or rolled it back (the retry makes it): one pod, one container, and after
// their removal nothing of them is left (no runc container, no process of the daemon's root).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { BulkheadError } from '../../src/errors.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import { findOnPath } from '../../src/util/which.ts';

let d: TestDaemon;
let images: TestImages;
let wrapper: string;

before(async () => {
  images = await buildAndPushTestImages(await sharedRegistry());
  // runc behind a wrapper that is slow to create
  wrapper = join(mkdtempSync(join(tmpdir(), 'bulkhead-slow-runc-')), 'runc');
  writeFileSync(wrapper, `#!/bin/sh\ncase " $* " in *" create "*) sleep 4;; esac\nexec ${findOnPath('runc')} "$@"\n`);
  chmodSync(wrapper, 0o755);
  d = await startTestDaemon({ name: 'bulkhead-cri-slow-', handlers: { runc: { backend: 'runc', binary: wrapper } } });
});
after(async () => {
  await d?.close();
  rmSync(dirname(wrapper), { recursive: true, force: true });
});

const isCode = (e: unknown, c: string): boolean => e instanceof BulkheadError && e.code === c;

test('a client deadline passing mid-RunPodSandbox and mid-CreateContainer on a slow runtime: the retry with the same metadata finds the result or makes it; nothing leaks', async () => {
  const c = d.client;
  await c.pullImage(images.busybox);
  const cfg: PodSandboxConfig = {
    metadata: { name: 'slow', namespace: 'slow', uid: randomUUID(), attempt: 0 },
    logDirectory: join(d.base, 'logs', 'slow'),
    linux: { securityContext: { namespaceOptions: { network: 'NODE' } } },
  };
  await assert.rejects(c.runPodSandbox(cfg, '', { timeoutMs: 1000 }), (e: unknown) => isCode(e, 'DeadlineExceeded') || isCode(e, 'Cancelled'));
  let pod: string;
  try { pod = await c.runPodSandbox(cfg, '', { timeoutMs: 120_000 }); } catch (e) {
    assert.ok(isCode(e, 'AlreadyExists'), String(e));
    pod = (await c.listPodSandbox()).find((p) => p.metadata?.name === 'slow')!.id;
  }
  const pods = (await c.listPodSandbox()).filter((p) => p.metadata?.name === 'slow');
  assert.deepEqual(pods.map((p) => [p.id, p.state]), [[pod, 'SANDBOX_READY']], 'one pod, ready');

  const ctr = { metadata: { name: 'main', attempt: 0 }, image: { image: images.busybox }, command: ['sleep', '3600'], logPath: 'main.log' };
  await assert.rejects(c.createContainer(pod, ctr, cfg, { timeoutMs: 1000 }), (e: unknown) => isCode(e, 'DeadlineExceeded') || isCode(e, 'Cancelled'));
  let id: string;
  try { id = await c.createContainer(pod, ctr, cfg, { timeoutMs: 120_000 }); } catch (e) {
    assert.ok(isCode(e, 'AlreadyExists'), String(e));
    id = (await c.listContainers()).find((x) => x.metadata?.name === 'main')!.id;
  }
  const ctrs = (await c.listContainers()).filter((x) => x.metadata?.name === 'main');
  assert.deepEqual(ctrs.map((x) => x.id), [id], 'one container');
  await c.startContainer(id, { timeoutMs: 60_000 });
  await c.removeContainer(id, { timeoutMs: 60_000 });
  await c.stopPodSandbox(pod, { timeoutMs: 60_000 });
  await c.removePodSandbox(pod, { timeoutMs: 60_000 });
  // nothing of either attempt left: no runc container of this daemon, no process naming its root
  const left = spawnSync('pgrep', ['-af', d.base], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l && !/bulkhead.*daemon|main\.ts/.test(l));
  assert.deepEqual(left, [], 'no process of the pod or container left');
  assert.deepEqual(await c.listContainers(), []);
  assert.deepEqual(await c.listPodSandbox(), []);
});
