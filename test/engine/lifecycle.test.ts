// Engine lifecycle against real runc + conmon, images from the real test registry.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/util/exec.ts';
import { testEnv, podConfig, containerConfig, waitFor, mountsUnder, netnsOf, conmonsWith, activeSnapshots, stopSignalAndGrace, execSyncBasics, type TestEnv } from './helpers.ts';
import type { Engine } from '../../src/engine/engine.ts';
import type { ContainerEventResponse } from '../../src/api/cri.ts';
import { decisionWith } from '../../src/policy/decision.ts';

const handler = process.env.BULKHEAD_ENGINE_HANDLER ?? 'runc';

describe(`engine lifecycle (${handler})`, () => {
  let env: TestEnv;
  let engine: Engine;
  before(async () => {
    env = await testEnv([handler]);
    engine = await env.engine({ pidsLimit: 64 });
  });
  after(async () => { await env?.cleanup(); });

  async function exited(id: string) {
    return await waitFor(async () => {
      const s = (await engine.containerStatus(id)).status;
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    }, 30_000, `container ${id} to exit`);
  }

  it('runs a pod, a container to completion, records exit code, reason and CRI logs', async () => {
    const events: ContainerEventResponse[] = [];
    const off = engine.onEvent((e) => events.push(e));
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, handler);
    assert.match(podId, /^[0-9a-f]{64}$/);
    const ps = await engine.podSandboxStatus(podId.slice(0, 12));
    assert.equal(ps.status.state, 'SANDBOX_READY');
    assert.equal(ps.status.metadata.name, pod.metadata!.name);
    assert.ok(ps.status.createdAt > 0);

    const id = await engine.createContainer(podId, containerConfig(env.busybox, 'once', ['sh', '-c', 'echo hello; echo oops >&2; exit 3'], { labels: { tier: 'x' } }), pod);
    assert.equal((await engine.containerStatus(id)).status.state, 'CONTAINER_CREATED');
    await engine.startContainer(id);
    const st = await exited(id);
    assert.equal(st.exitCode, 3);
    assert.equal(st.reason, 'Error');
    assert.ok(st.startedAt > 0 && st.finishedAt >= st.startedAt, 'finishedAt after startedAt');
    const log = await readFile(st.logPath, 'utf8');
    assert.match(log, /^\S+ stdout F hello$/m);
    assert.match(log, /^\S+ stderr F oops$/m);

    const ok = await engine.createContainer(podId, containerConfig(env.busybox, 'zero', ['true']), pod);
    await engine.startContainer(ok);
    const st0 = await exited(ok);
    assert.equal(st0.exitCode, 0);
    assert.equal(st0.reason, 'Completed');

    // list filters
    assert.deepEqual(engine.listContainers({ labelSelector: { tier: 'x' } }).map((c) => c.id), [id]);
    assert.equal(engine.listContainers({ id: id.slice(0, 10) }).length, 1);
    assert.equal(engine.listContainers({ podSandboxId: podId, state: { state: 'CONTAINER_EXITED' } }).length, 2);
    assert.equal(engine.listContainers({ state: { state: 'CONTAINER_RUNNING' }, podSandboxId: podId }).length, 0);
    assert.ok(engine.listPodSandbox({ labelSelector: { app: 'engine-test' } }).some((p) => p.id === podId));
    assert.equal(engine.listPodSandbox({ id: podId, state: { state: 'SANDBOX_NOTREADY' } }).length, 0);

    // an image that was never pulled: NotFound from the real image service's `undefined`
    await assert.rejects(engine.createContainer(podId, containerConfig(`${env.registry.host}/test/never-pulled:latest`, 'nope', ['true']), pod), { code: 'NotFound' });

    // name conflict
    await assert.rejects(engine.createContainer(podId, containerConfig(env.busybox, 'once', ['true']), pod), { code: 'AlreadyExists' });
    await assert.rejects(engine.runPodSandbox(pod, handler), { code: 'AlreadyExists' });

    await engine.removeContainer(id);
    await assert.rejects(engine.containerStatus(id), { code: 'NotFound' });
    await engine.removeContainer(id); // idempotent
    await engine.stopContainer(id, 1); // idempotent on a missing container
    off();
    const kinds = events.filter((e) => e.containerId === id).map((e) => e.containerEventType);
    assert.deepEqual(kinds, ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT', 'CONTAINER_DELETED_EVENT']);

    await engine.stopPodSandbox(podId);
    assert.equal((await engine.podSandboxStatus(podId)).status.state, 'SANDBOX_NOTREADY');
    await engine.stopPodSandbox(podId);
    await engine.removePodSandbox(podId);
    await engine.removePodSandbox(podId);
    await assert.rejects(engine.podSandboxStatus(podId), { code: 'NotFound' });
    assert.deepEqual(engine.listContainers({ podSandboxId: podId }), []);
    assert.deepEqual(await mountsUnder(env.runDir), []);
    assert.deepEqual(await netnsOf(podId), []);
    assert.deepEqual(await activeSnapshots(env.imagesDir), []);
  });

  it('shares net, ipc and uts between two containers of a pod; exec sync with output, exit code, timeout', async () => {
    const pod = podConfig({ hostname: 'shared-host' });
    const podId = await engine.runPodSandbox(pod, handler);
    const a = await engine.createContainer(podId, containerConfig(env.busybox, 'a', ['sleep', '1000']), pod);
    const b = await engine.createContainer(podId, containerConfig(env.busybox, 'b', ['sleep', '1000']), pod);
    await engine.startContainer(a);
    await engine.startContainer(b);
    const ns = async (id: string, kind: string) => (await engine.execSync(id, ['readlink', `/proc/self/ns/${kind}`], 10)).stdout.toString().trim();
    for (const kind of ['net', 'ipc', 'uts']) {
      const na = await ns(a, kind);
      assert.match(na, new RegExp(`^${kind}:\\[\\d+\\]$`));
      assert.equal(na, await ns(b, kind), `${kind} namespace shared`);
    }
    assert.notEqual(await ns(a, 'mnt'), await ns(b, 'mnt'));
    const h = await engine.execSync(b, ['hostname'], 10);
    assert.equal(h.stdout.toString().trim(), 'shared-host');
    assert.equal(h.exitCode, 0);
    const hosts = await engine.execSync(a, ['cat', '/etc/hosts'], 10);
    assert.match(hosts.stdout.toString(), /shared-host/);

    await execSyncBasics(engine, a);

    const stats = await engine.containerStats(a);
    assert.ok((stats.memory?.workingSetBytes?.value ?? 0) > 0, 'working set reported');
    assert.ok((stats.cpu?.usageCoreNanoSeconds?.value ?? 0) > 0, 'cpu reported');
    const ps = await engine.podSandboxStats(podId);
    assert.equal(ps.linux?.containers.length, 2);
    assert.ok((ps.linux?.process?.processCount?.value ?? 0) >= 2);
    assert.equal((await engine.listContainerStats({ podSandboxId: podId })).length, 2);

    await engine.removePodSandbox(podId); // removes running containers too
    await assert.rejects(engine.containerStatus(a), { code: 'NotFound' });
    assert.deepEqual(await conmonsWith(a), []);
    assert.deepEqual(await mountsUnder(env.runDir), []);
  });

  it('stops with the image stop signal, and kills after the grace period when it is ignored', async () => {
    await stopSignalAndGrace(env, engine, handler);
  });

  it('reports OOMKilled and holds a fork bomb with the pids limit', async () => {
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, handler);
    const hog = await engine.createContainer(podId, containerConfig(env.busybox, 'hog', ['sh', '-c', 'x=a; while true; do x="$x$x"; done'], {
      linux: { resources: { memoryLimitInBytes: 32 * 1024 * 1024 } },
    }), pod);
    await engine.startContainer(hog);
    const st = await exited(hog);
    assert.equal(st.reason, 'OOMKilled');
    assert.equal(st.exitCode, 137);

    // The container's shell forks once, before any bomb exists (the subshell), then execs its sleep:
    // a fork of its own after the bomb took every pid fails, and the shell (the container) exits with
    // "can't fork" (seen under load: no stats, not running). The bomb's own pipeline is two forks
    // (`f | f &`), so it runs in the subshell: with the bomb started by the shell itself, a first `f`
    // that filled the limit before the shell's second fork killed the container (shown with
    // pids.max 2: `f() { f | f & }; f; exec sleep 1000` exits 2, this form stays as its sleep).
    const bomb = await engine.createContainer(podId, containerConfig(env.busybox, 'bomb', ['sh', '-c', '(f() { f | f & }; f); exec sleep 1000'], {
      linux: { resources: { memoryLimitInBytes: 256 * 1024 * 1024 } },
    }), pod);
    await engine.startContainer(bomb);
    await new Promise((r) => setTimeout(r, 2000));
    const bs = (await engine.containerStatus(bomb)).status;
    assert.equal(bs.state, 'CONTAINER_RUNNING', `the bomb's container runs on, its pids held (exit ${bs.exitCode}, ${bs.reason})`);
    const s = await engine.containerStats(bomb);
    assert.ok(s.memory !== null);
    const pids = (await engine.podSandboxStats(podId)).linux?.process?.processCount?.value ?? 0;
    assert.ok(pids > 0 && pids <= 64 + 1, `pids held at the limit (saw ${pids})`);
    await engine.removePodSandbox(podId);
  });
  it('security defaults: hardened unless the pod\'s defaults say otherwise; explicit requests win', async () => {
    const status = async (podId: string, pod: ReturnType<typeof podConfig>, name: string, over: Parameters<typeof containerConfig>[3] = {}): Promise<string> => {
      const id = await engine.createContainer(podId, containerConfig(env.busybox, name, ['sleep', '600'], over), pod);
      await engine.startContainer(id);
      const out = (await engine.execSync(id, ['grep', '-E', '^(Seccomp|NoNewPrivs):', '/proc/self/status'], 10)).stdout.toString();
      return out.replace(/\s+/g, ' ').trim();
    };
    const hardPod = podConfig();
    const hard = await engine.runPodSandbox(hardPod, handler);
    assert.equal(await status(hard, hardPod, 'unset'), 'NoNewPrivs: 1 Seccomp: 2', 'nothing asked: RuntimeDefault, no_new_privs on');
    const k8sPod = podConfig();
    const k8s = await engine.runPodSandbox(k8sPod, handler, { decision: decisionWith({ seccompDefault: 'Unconfined', honorNoNewPrivs: true }) });
    assert.equal(await status(k8s, k8sPod, 'unset'), 'NoNewPrivs: 0 Seccomp: 0', 'Kubernetes defaults: unconfined, escalation allowed');
    assert.equal(await status(k8s, k8sPod, 'asked', { linux: { securityContext: { noNewPrivs: true, seccomp: { profileType: 'RuntimeDefault' } } } }), 'NoNewPrivs: 1 Seccomp: 2');
    await engine.removePodSandbox(hard);
    await engine.removePodSandbox(k8s);
  });

  it('a bidirectional (rshared) mount propagates mounts both ways', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulkhead-prop-'));
    const src = join(dir, 'src');
    await mkdir(join(src, 'from-host'), { recursive: true });
    await mkdir(join(dir, 'hostfiles'));
    await writeFile(join(dir, 'hostfiles', 'flag'), '');
    const mounted: string[] = [];
    try {
      assert.equal((await run('mount', ['--bind', src, src])).code, 0);
      mounted.push(src);
      assert.equal((await run('mount', ['--make-rshared', src])).code, 0);
      const pod = podConfig({ linux: { securityContext: { privileged: true } } });
      const podId = await engine.runPodSandbox(pod, handler);
      const id = await engine.createContainer(podId, containerConfig(env.busybox, 'prop', ['sleep', '600'], {
        mounts: [{ containerPath: '/vol', hostPath: src, propagation: 'PROPAGATION_BIDIRECTIONAL' }],
        linux: { securityContext: { privileged: true } },
      }), pod);
      await engine.startContainer(id);
      // host -> container
      assert.equal((await run('mount', ['--bind', join(dir, 'hostfiles'), join(src, 'from-host')])).code, 0);
      mounted.unshift(join(src, 'from-host'));
      assert.equal((await engine.execSync(id, ['ls', '/vol/from-host'], 10)).stdout.toString().trim(), 'flag');
      // container -> host
      const r = await engine.execSync(id, ['sh', '-c', 'mkdir -p /vol/from-ctr && mount -t tmpfs -o size=1m none /vol/from-ctr && touch /vol/from-ctr/made-inside'], 10);
      assert.equal(r.exitCode, 0, r.stderr.toString());
      mounted.unshift(join(src, 'from-ctr'));
      assert.deepEqual(await readdir(join(src, 'from-ctr')), ['made-inside'], 'the container\'s mount is visible on the host');
      await engine.removePodSandbox(podId);
    } finally {
      for (const m of mounted) await run('umount', ['-l', m]);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
