// A removed pod leaves nothing behind: cgroup dirs, netns, mounts, conmon / runc / runsc
// processes, bundles, snapshots. Listed before and after, on runc and gVisor, with the engine's
// own cgroup parent and with a kubelet-style parent the engine does not own.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, mkdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../../src/util/log.ts';
import {
  netnsOf, testEnv, podConfig, containerConfig, waitFor, mountsUnder, procsWith, activeSnapshots, cgroupDirsUnder, type TestEnv,
} from './helpers.ts';
import type { Engine } from '../../src/engine/engine.ts';

async function dirEntries(dir: string): Promise<string[]> {
  try { return (await readdir(dir)).sort(); } catch { return []; }
}

describe('engine leaves nothing behind', () => {
  let env: TestEnv;
  let engine: Engine;
  const parent = `/bulkhead-test-${process.pid}`;
  /** A parent the engine is handed (like the kubelet's pod cgroup): it must stay, empty. */
  const kubeParent = `/bulkhead-test-${process.pid}-kube`;
  // /run/netns is shared with other tests and tenants: only netns of ids this engine logged count
  const logged = new Set<string>();
  const logger = createLogger({ level: 'debug', write: (line) => { for (const m of line.matchAll(/[0-9a-f]{64}/g)) logged.add(m[0]); } });
  async function ownNetns(): Promise<string[]> {
    const out: string[] = [];
    for (const id of logged) out.push(...await netnsOf(id));
    return out.sort();
  }
  before(async () => {
    env = await testEnv(['runc', 'gvisor']);
    engine = await env.engine({ logger });
  });
  after(async () => {
    await env?.cleanup();
    for (const h of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) await rmdir(join('/sys/fs/cgroup', h, kubeParent)).catch(() => undefined);
  });

  async function snapshot(podId?: string) {
    const procs = (await procsWith(env.runDir)).map((p) => p.cmd).sort();
    return {
      cgroups: (await cgroupDirsUnder(parent)).filter((d) => !d.endsWith(`:${parent}`)),
      kubeCgroups: (await cgroupDirsUnder(kubeParent)).filter((d) => !d.endsWith(`:${kubeParent}`)),
      netns: podId ? await netnsOf(podId) : await ownNetns(),
      mounts: await mountsUnder(env.runDir),
      procs,
      bundles: [...await dirEntries(join(env.runDir, 'runc', 'containers')), ...await dirEntries(join(env.runDir, 'gvisor', 'containers'))],
      containerDirs: await dirEntries(join(env.runDir, 'containers')),
      podDirs: await dirEntries(join(env.runDir, 'pods')),
      snapshots: await activeSnapshots(env.imagesDir),
    };
  }

  for (const handler of ['runc', 'gvisor']) {
    for (const kube of [false, true]) {
      it(`${handler}, ${kube ? 'kubelet-given' : 'engine-made'} cgroup parent: pod with a running, an exited and a created container`, async () => {
        if (kube) for (const h of ['memory', 'cpu,cpuacct', 'pids']) await mkdir(join('/sys/fs/cgroup', h, kubeParent)).catch(() => undefined);
        const before = await snapshot();
        const pod = podConfig(kube ? { linux: { cgroupParent: kubeParent } } : {});
        const podId = await engine.runPodSandbox(pod, handler);
        const running = await engine.createContainer(podId, containerConfig(env.busybox, 'running', ['sleep', '1000']), pod);
        await engine.startContainer(running);
        const done = await engine.createContainer(podId, containerConfig(env.busybox, 'done', ['true']), pod);
        await engine.startContainer(done);
        await engine.createContainer(podId, containerConfig(env.busybox, 'created', ['true']), pod);
        await waitFor(async () => (await engine.containerStatus(done)).status.state === 'CONTAINER_EXITED', 30_000, 'exit');
        const during = await snapshot(podId);
        assert.ok(during.procs.length > before.procs.length, 'the pod has processes while it runs');
        assert.ok(during.mounts.length > 0, 'rootfs mounts while it runs');
        assert.equal(during.netns.length, 1, 'the pod netns while it runs');
        assert.ok((kube ? during.kubeCgroups : during.cgroups).length > 0, 'cgroups while it runs');
        await engine.removePodSandbox(podId);
        const afterRemoval = await snapshot();
        assert.deepEqual(afterRemoval, before);
      });
    }
  }

  it('failed creations undo what they did (pod after its netns, container after its rootfs mount)', async () => {
    const before = await snapshot();
    // resolv.conf is written after the netns exists: a bad DNS token fails the pod there
    const n = logged.size;
    await assert.rejects(engine.runPodSandbox(podConfig({ dnsConfig: { servers: ['1.1.1.1 evil'] } }), 'runc'), { code: 'InvalidArgument' });
    assert.ok(logged.size > n, 'the failed pod id was logged (so its netns is looked for)');
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, 'runc');
    // the mount check runs after the rootfs is mounted
    await assert.rejects(engine.createContainer(podId, containerConfig(env.busybox, 'badmount', ['true'], {
      mounts: [{ containerPath: '/data', hostPath: join(env.dir, 'does-not-exist') }],
    }), pod), { code: 'InvalidArgument' });
    assert.deepEqual(engine.listContainers({ podSandboxId: podId }), []);
    assert.deepEqual(await mountsUnder(join(env.runDir, 'containers')), []);
    await engine.removePodSandbox(podId);
    assert.deepEqual(engine.listPodSandbox(), []);
    assert.deepEqual(await snapshot(), before);
  });
});
