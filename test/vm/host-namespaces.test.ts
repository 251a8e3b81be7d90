// Host-namespace specs on the microvm handler, through the real engine (test/engine/helpers.ts: real
// registry, conmon, bulkhead-vm, QEMU): a pod asking for the node's network, IPC or PID namespace is
// refused at RunPodSandbox before a VM boots (a guest has its own kernel); a privileged container is
// privileged inside its VM (it may make a bridge in the pod's guest network, as critest's brctl
// spec does), not on the node.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Engine } from '../../src/engine/engine.ts';
import type * as cri from '../../src/api/cri.ts';
import { containerConfig, podConfig, testEnv, type TestEnv } from '../engine/helpers.ts';
import { run } from '../../src/util/exec.ts';
import { skipReason } from '../../harness/vm-assets.ts';

const skip = skipReason();

describe('microvm: host namespaces refused, privileged emulated in the guest', { skip, timeout: 600_000 }, () => {
  let env: TestEnv;
  let engine: Engine;
  before(async () => {
    env = await testEnv(['microvm']);
    engine = await env.engine();
  });
  after(async () => { await env?.cleanup(); });

  for (const [what, ns, rx] of [
    ['hostNetwork', { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' }, /node's network \(hostNetwork\) namespace, which a microVM cannot share/],
    ['hostIPC', { network: 'POD', pid: 'CONTAINER', ipc: 'NODE' }, /node's IPC \(hostIPC\) namespace/],
    ['hostPID', { network: 'POD', pid: 'NODE', ipc: 'POD' }, /node's PID \(hostPID\) namespace/],
  ] as const) {
    it(`${what}: RunPodSandbox is FailedPrecondition naming it; no pod and no VM are left`, async () => {
      const before = (await engine.listPodSandbox()).length;
      await assert.rejects(engine.runPodSandbox(podConfig({ linux: { securityContext: { namespaceOptions: ns as cri.NamespaceOption } } }), 'microvm'),
        (e: Error & { code?: string }) => e.code === 'FailedPrecondition' && rx.test(e.message));
      assert.equal((await engine.listPodSandbox()).length, before);
      const qemu = await run('pgrep', ['-f', `qemu-system-x86_64.*${env.dir}`], { timeoutMs: 5000 });
      assert.equal(qemu.stdout.trim(), '', 'no VMM was started');
    });
  }

  it('a privileged container makes a bridge in its VM (brctl addbr), which the node never sees', async () => {
    const pod = podConfig({ linux: { securityContext: { privileged: true, namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } } });
    const podId = await engine.runPodSandbox(pod, 'microvm');
    const br = `bhtest${process.pid % 100000}`;
    try {
      const id = await engine.createContainer(podId, containerConfig(env.busybox, 'priv', ['sleep', '1000'], { linux: { securityContext: { privileged: true } } }), pod);
      await engine.startContainer(id);
      const r = await engine.execSync(id, ['sh', '-c', `brctl addbr ${br} && ip link show ${br}`], 60);
      assert.equal(r.exitCode, 0, r.stderr.toString());
      assert.match(r.stdout.toString(), new RegExp(`${br}:`));
      const host = await run('ip', ['link', 'show', br], { timeoutMs: 5000 });
      assert.notEqual(host.code, 0, 'the bridge is not on the node');
    } finally {
      await engine.removePodSandbox(podId);
    }
  });
});
