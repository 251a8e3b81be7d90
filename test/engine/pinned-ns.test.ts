// Pods without a pause container: runc pods whose IPC/UTS (and loopback netns) are pinned to files
// by bulkhead-pinns, against real runc + conmon. Also the cases that keep a pause container, the
// sysctl guard, and a daemon killed right after pinning.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testEnv, podConfig, containerConfig, mountsUnder, netnsOf, crashChild, type TestEnv } from './helpers.ts';
import type { Engine } from '../../src/engine/engine.ts';
import type * as cri from '../../src/api/cri.ts';
import { ensurePinns } from '../../src/runtime/helpers/pinns.ts';
import { decisionWith } from '../../src/policy/decision.ts';
import { SINGLE_CONTAINER_ANNOTATION } from '../../src/api/annotations.ts';

const OWN_PID = { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } as const;

describe('pods without a pause container (runc, pinned namespaces)', () => {
  let env: TestEnv;
  let engine: Engine;
  before(async () => {
    env = await testEnv(['runc']);
    engine = await env.engine();
  });
  after(async () => { await env?.cleanup(); });

  const nsOf = async (id: string, kind: string): Promise<string> => (await engine.execSync(id, ['readlink', `/proc/self/ns/${kind}`], 10)).stdout.toString().trim();
  const sandboxRecords = async (podId: string) => (await env.backends().get('runc')!.list()).filter((r) => r.podId === podId && r.role === 'sandbox');
  async function sleeper(podId: string, pod: cri.PodSandboxConfig, name: string): Promise<string> {
    // as the kubelet does: the container carries the pod's namespace options
    const namespaceOptions = pod.linux?.securityContext?.namespaceOptions ?? {};
    const id = await engine.createContainer(podId, containerConfig(env.busybox, name, ['sleep', '1000'], { linux: { securityContext: { namespaceOptions } } }), pod);
    await engine.startContainer(id);
    return id;
  }

  it('containers join the pinned IPC/UTS/net namespaces; hostname and sysctls land there; removal leaves nothing', async () => {
    const hostShmmax = await readFile('/proc/sys/kernel/shmmax', 'utf8');
    const pod = podConfig({
      hostname: 'pinned-host',
      linux: { sysctls: { 'kernel.shmmax': '123456789', 'net.ipv4.ip_unprivileged_port_start': '99' }, securityContext: { namespaceOptions: OWN_PID } },
    });
    const podId = await engine.runPodSandbox(pod, 'runc');
    const podDir = join(env.runDir, 'pods', podId);
    assert.deepEqual(await sandboxRecords(podId), [], 'no pause container');
    const a = await sleeper(podId, pod, 'a');
    const b = await sleeper(podId, pod, 'b');
    for (const kind of ['ipc', 'uts']) {
      const pinned = `${kind}:[${(await stat(join(podDir, 'ns', kind))).ino}]`;
      assert.equal(await nsOf(a, kind), pinned, `${kind} of a is the pinned one`);
      assert.equal(await nsOf(b, kind), pinned, `${kind} of b is the pinned one`);
    }
    assert.equal(await nsOf(a, 'net'), await nsOf(b, 'net'));
    assert.notEqual(await nsOf(a, 'pid'), await nsOf(b, 'pid'), 'pid CONTAINER: one PID namespace each');
    assert.equal((await engine.execSync(b, ['hostname'], 10)).stdout.toString().trim(), 'pinned-host');
    assert.equal((await engine.execSync(a, ['cat', '/proc/sys/kernel/shmmax'], 10)).stdout.toString().trim(), '123456789');
    assert.equal((await engine.execSync(b, ['cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start'], 10)).stdout.toString().trim(), '99');
    assert.equal(await readFile('/proc/sys/kernel/shmmax', 'utf8'), hostShmmax, 'the host keeps its own value');

    await engine.stopPodSandbox(podId);
    assert.equal((await engine.podSandboxStatus(podId)).status.state, 'SANDBOX_NOTREADY');
    await engine.removePodSandbox(podId);
    assert.deepEqual(await mountsUnder(env.runDir), []);
    assert.deepEqual(await netnsOf(podId), []);
    assert.equal(existsSync(podDir), false);
  });

  it('a pod sharing one PID namespace keeps a pause container', async () => {
    const pod = podConfig({ linux: { securityContext: { namespaceOptions: { ...OWN_PID, pid: 'POD' } } } });
    const podId = await engine.runPodSandbox(pod, 'runc');
    assert.equal((await sandboxRecords(podId)).length, 1, 'a pause container holds the PID namespace');
    const a = await sleeper(podId, pod, 'a');
    const b = await sleeper(podId, pod, 'b');
    assert.equal(await nsOf(a, 'pid'), await nsOf(b, 'pid'));
    await engine.removePodSandbox(podId);
    assert.deepEqual(await sandboxRecords(podId), []);
    assert.deepEqual(await mountsUnder(env.runDir), []);
  });

  it('a one-shot pod (run --rm) pins nothing: its container makes its own IPC, UTS (with the pod\'s hostname) and loopback-only netns (lo up); no port-forward; with sysctls it pins as any pod', async () => {
    const oneShot = { [SINGLE_CONTAINER_ANNOTATION]: 'true' };
    const pod = podConfig({ hostname: 'one-shot-host', annotations: oneShot, linux: { securityContext: { namespaceOptions: OWN_PID } } });
    const podId = await engine.runPodSandbox(pod, 'runc');
    const podDir = join(env.runDir, 'pods', podId);
    try {
      assert.deepEqual(await sandboxRecords(podId), [], 'no pause container');
      assert.equal(existsSync(join(podDir, 'ns')), false, 'no namespace pinned');
      const a = await sleeper(podId, pod, 'a');
      for (const kind of ['ipc', 'uts']) assert.notEqual(await nsOf(a, kind), await readlink(`/proc/self/ns/${kind}`), `a ${kind} namespace of its own, not the host's`);
      assert.equal((await engine.execSync(a, ['hostname'], 10)).stdout.toString().trim(), 'one-shot-host');
      // the loopback-only network of the test engine ('none'): the container's own netns, lo up, nothing else
      assert.deepEqual(await netnsOf(podId), [], 'no pod netns made');
      assert.notEqual(await nsOf(a, 'net'), await readlink('/proc/self/ns/net'), 'a netns of its own, not the host\'s');
      const links = (await engine.execSync(a, ['sh', '-c', 'ls /sys/class/net; cat /sys/class/net/lo/flags'], 10)).stdout.toString().trim().split('\n');
      assert.deepEqual(links.slice(0, -1), ['lo'], 'loopback only');
      assert.equal(Number(links.at(-1)) & 1, 1, 'lo is up (IFF_UP)');
      // port-forward is refused (the host's loopback is not the pod's)
      await assert.rejects(engine.portForward(podId, 80, new PassThrough(), AbortSignal.timeout(10_000)), { code: 'Unimplemented' });
    } finally {
      await engine.removePodSandbox(podId);
    }
    assert.deepEqual(await mountsUnder(env.runDir), []);
    assert.deepEqual(await netnsOf(podId), []);
    assert.equal(existsSync(podDir), false);

    const withSysctls = podConfig({ annotations: oneShot, linux: { sysctls: { 'kernel.shmmax': '123456789' }, securityContext: { namespaceOptions: OWN_PID } } });
    const pinnedId = await engine.runPodSandbox(withSysctls, 'runc');
    try {
      assert.ok(existsSync(join(env.runDir, 'pods', pinnedId, 'ns', 'ipc')), 'the helper sets sysctls in a pinned namespace');
    } finally {
      await engine.removePodSandbox(pinnedId);
    }
    assert.deepEqual(await mountsUnder(env.runDir), []);
  });

  it('refuses sysctls that are not the pod\'s own before anything is made', async () => {
    const swappiness = await readFile('/proc/sys/vm/swappiness', 'utf8');
    const before = engine.listPodSandbox().length;
    const nodeWide = podConfig({ linux: { sysctls: { 'vm.swappiness': '1' }, securityContext: { namespaceOptions: OWN_PID } } });
    await assert.rejects(engine.runPodSandbox(nodeWide, 'runc'), (e: Error & { code?: string }) => e.code === 'InvalidArgument' && /vm\.swappiness/.test(e.message));
    const slashed = podConfig({ linux: { sysctls: { 'vm/swappiness': '1' }, securityContext: { namespaceOptions: OWN_PID } } });
    await assert.rejects(engine.runPodSandbox(slashed, 'runc'), { code: 'InvalidArgument' });
    const hostNet = podConfig({ linux: { sysctls: { 'net.ipv4.ip_forward': '1' }, securityContext: { namespaceOptions: { ...OWN_PID, network: 'NODE' } } } });
    await assert.rejects(engine.runPodSandbox(hostNet, 'runc', { decision: decisionWith({ hostNetwork: true }) }), { code: 'InvalidArgument' });
    assert.equal(await readFile('/proc/sys/vm/swappiness', 'utf8'), swappiness);
    assert.equal(engine.listPodSandbox().length, before);
    assert.deepEqual(await mountsUnder(env.runDir), []);
  });

  it('without the helper (it cannot be built) pods fall back to a pause container', async () => {
    const e = await env.engine({ helperDir: '/dev/null/bulkhead-helpers' });
    const pod = podConfig({ linux: { securityContext: { namespaceOptions: OWN_PID } } });
    const podId = await e.runPodSandbox(pod, 'runc');
    assert.equal((await sandboxRecords(podId)).length, 1);
    const id = await e.createContainer(podId, containerConfig(env.busybox, 'c', ['hostname']), pod);
    await e.startContainer(id);
    await e.removePodSandbox(podId);
    assert.deepEqual(await mountsUnder(env.runDir), []);
    assert.deepEqual(await netnsOf(podId), []);
  });

  it('a daemon killed right after pinning leaves nothing once restarted', async () => {
    // a wrapper in place of the helper: pins for real, then SIGKILLs the engine's process
    const helperDir = await mkdtemp(join(tmpdir(), 'bulkhead-pinns-'));
    try {
      const real = await ensurePinns();
      const wrapper = join(helperDir, real.split('/').pop()!);
      await writeFile(wrapper, [
        '#!/bin/sh',
        `"${real}" "$@" || exit $?`,
        'case " $* " in *" --ipc "*) ;; *) exit 0 ;; esac',
        'kill -9 $PPID',
        'sleep 10',
      ].join('\n') + '\n');
      await chmod(wrapper, 0o755);
      const c = await crashChild(env, 'runc', 'mid-pin', { helperDir });
      assert.equal(await c.exited, 'SIGKILL');
      const left = (await mountsUnder(join(env.runDir, 'pods'))).filter((m) => m.endsWith('/ns/ipc'));
      assert.equal(left.length, 1, 'the killed daemon left pinned namespaces');
      const podId = left[0]!.split('/').at(-3)!;
      assert.equal((await netnsOf(podId)).length, 1, 'and the pod netns');

      const fresh = await env.engine();
      await assert.rejects(fresh.podSandboxStatus(podId), { code: 'NotFound' });
      assert.deepEqual(await mountsUnder(join(env.runDir, 'pods')), []);
      assert.deepEqual(await netnsOf(podId), []);
    } finally {
      await rm(helperDir, { recursive: true, force: true });
    }
  });
});
