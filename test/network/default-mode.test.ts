// `[network] default_mode = "none"` gives pods that do not ask for the host network a loopback-only
// network namespace even though the bridge network is configured (the key was parsed and never
// read: every pod got the bridge). Real daemon, real CNI, over the CRI socket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';

let d: TestDaemon;
before(async () => { d = await startTestDaemon({ name: 'bulkhead-netmode-', extraToml: '[network]\ndefault_mode = "none"\n' }); });
after(async () => { await d?.close(); });

test('default_mode = "none": a pod gets no bridge address', async () => {
  const name = `netmode-${randomUUID().slice(0, 8)}`;
  const cfg: PodSandboxConfig = { metadata: { name, namespace: 'netmode', uid: randomUUID(), attempt: 0 }, logDirectory: join(d.base, 'logs', name), linux: {} };
  const id = await d.client.runPodSandbox(cfg, 'runc');
  try {
    const st = (await d.client.podSandboxStatus(id)).status;
    assert.equal(st.state, 'SANDBOX_READY');
    assert.equal(st.network?.ip ?? '', '', 'no address: the pod is on loopback only');
  } finally {
    await d.client.stopPodSandbox(id).catch(() => {});
    await d.client.removePodSandbox(id).catch(() => {});
  }
});
