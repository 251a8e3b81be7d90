// Engine lifecycle on gVisor (runsc --platform=ptrace under conmon): one sandbox per pod — the
// pause container is the sandbox (runsc root container), app containers are runsc sub-containers
// inside it, each monitored by its own conmon through the sub-container shim
// (src/runtime/gvisor/subcontainer-shim.ts has the why). Real registry, real runsc.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { join } from 'node:path';
import {
  testEnv, podConfig, containerConfig, waitFor, mountsUnder, netnsOf, conmonsWith, procsWith, activeSnapshots,
  crashChild, cgroupDirsUnder, stopSignalAndGrace, execSyncBasics, type TestEnv,
} from './helpers.ts';
import type { Engine } from '../../src/engine/engine.ts';
import { run } from '../../src/util/exec.ts';

const handler = 'gvisor';

/** A cgroup's memory limit (v1 memory hierarchy, else unified). */
async function memoryLimit(cgroupPath: string): Promise<number> {
  const v1 = `/sys/fs/cgroup/memory${cgroupPath}/memory.limit_in_bytes`;
  if (existsSync(v1)) return Number((await readFile(v1, 'utf8')).trim());
  const v = (await readFile(`/sys/fs/cgroup${cgroupPath}/memory.max`, 'utf8')).trim();
  return v === 'max' ? Number.MAX_SAFE_INTEGER : Number(v);
}

/** A cgroup's CFS quota in µs per 100 ms period, -1 = none. */
async function cpuQuota(cgroupPath: string): Promise<number> {
  const v1 = `/sys/fs/cgroup/cpu${cgroupPath}/cpu.cfs_quota_us`;
  if (existsSync(v1)) return Number((await readFile(v1, 'utf8')).trim());
  const [q] = (await readFile(`/sys/fs/cgroup${cgroupPath}/cpu.max`, 'utf8')).trim().split(' ');
  return q === 'max' ? -1 : Number(q);
}

describe('engine on gVisor', () => {
  let env: TestEnv;
  let engine: Engine;
  before(async () => {
    env = await testEnv([handler]);
    engine = await env.engine();
  });
  after(async () => { await env?.cleanup(); });

  async function exited(e: Engine, id: string) {
    return await waitFor(async () => {
      const s = (await e.containerStatus(id)).status;
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    }, 60_000, `container ${id} to exit`);
  }

  /** runsc sandbox processes (the Sentry, `runsc-sandbox ...`) of this test's backend. */
  async function sandboxes(): Promise<string[]> {
    return (await procsWith(join(env.runDir, handler, 'state'))).filter((p) => p.cmd.startsWith('runsc-sandbox')).map((p) => p.cmd);
  }

  /** What `runsc state` says of a container, straight from runsc (not through the shim). */
  async function runscState(id: string): Promise<{ status: string; pid: number }> {
    const r = await run('/usr/bin/runsc', ['--root', join(env.runDir, handler, 'state'), '--platform=ptrace', 'state', id], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { status: string; pid: number };
  }

  it('one sandbox per pod: the containers are sub-containers of the pause sandbox and see each other\'s processes (PID POD, TARGET)', async () => {
    const shared = { linux: { securityContext: { namespaceOptions: { pid: 'POD' as const } } } };
    const pod = podConfig(shared);
    const podId = await engine.runPodSandbox(pod, handler);
    const info = JSON.parse((await engine.podSandboxStatus(podId, true)).info.info!) as { pauseId: string };
    assert.ok(info.pauseId, 'a gVisor pod starts its sandbox as the pause container');
    assert.equal((await sandboxes()).length, 1, 'the pod is one sandbox');

    const a = await engine.createContainer(podId, containerConfig(env.busybox, 'a', ['sleep', '4242'], shared), pod);
    const b = await engine.createContainer(podId, containerConfig(env.busybox, 'b', ['sleep', '4343'], shared), pod);
    await engine.startContainer(a);
    await engine.startContainer(b);
    // still one Sentry, and runsc reports both app containers running inside the pause's sandbox
    assert.equal((await sandboxes()).length, 1, 'app containers add no sandbox');
    const root = await runscState(info.pauseId);
    for (const id of [a, b]) {
      const st = await runscState(id);
      assert.equal(st.status, 'running');
      assert.equal(st.pid, root.pid, `${id} runs in the pause container's sandbox`);
    }
    // proof from inside: one container's ps lists the other's process (impossible across two
    // sandboxes, each has its own kernel), and the pod's pause process as PID 1
    const ps = (await engine.execSync(b, ['ps', '-o', 'pid,args'], 10)).stdout.toString();
    assert.match(ps, /sleep 4242/, ps);
    assert.match(ps, /^\s*1 \/bin\/busybox sh -c trap/m, ps);
    const ps2 = (await psOf(podId, pod, 'dbg', { pid: 'TARGET', targetId: a })).ps;
    assert.match(ps2, /sleep 4242/, ps2);
    assert.match(ps2, /sleep 4343/, ps2);
    // the pod's namespace is the parent of every container's own in one sandbox: no mixing
    await assert.rejects(engine.createContainer(podId, containerConfig(env.busybox, 'own', ['true']), pod), { code: 'InvalidArgument' });
    await engine.removePodSandbox(podId);

    // without PID POD each container has its own namespace; TARGET joins the target's
    const pod2 = podConfig();
    const pod2Id = await engine.runPodSandbox(pod2, handler);
    const c1 = await engine.createContainer(pod2Id, containerConfig(env.busybox, 'c1', ['sleep', '4444']), pod2);
    const c2 = await engine.createContainer(pod2Id, containerConfig(env.busybox, 'c2', ['sleep', '4545']), pod2);
    await engine.startContainer(c1);
    await engine.startContainer(c2);
    const own = (await engine.execSync(c2, ['ps', '-o', 'pid,args'], 10)).stdout.toString();
    assert.match(own, /^\s*1 sleep 4545$/m, own);
    assert.doesNotMatch(own, /sleep 4444/, own);
    const dbg = await psOf(pod2Id, pod2, 'dbg', { pid: 'TARGET', targetId: c1 });
    assert.match(dbg.ps, /^\s*1 sleep 4444$/m, dbg.ps);
    assert.doesNotMatch(dbg.ps, /sleep 4545/, dbg.ps);
    assert.equal((await runscState(dbg.id)).pid, (await runscState(c1)).pid, 'all in one sandbox');
    await assert.rejects(engine.createContainer(pod2Id, containerConfig(env.busybox, 'pod', ['true'], shared), pod2), { code: 'InvalidArgument' });

    await engine.removePodSandbox(pod2Id);
    assert.deepEqual(await sandboxes(), []);
    assert.deepEqual((await procsWith(env.runDir)).map((p) => p.cmd), [], 'no runsc, gofer, conmon or shim process is left');
    assert.deepEqual(await netnsOf(podId), []);
    assert.deepEqual(await netnsOf(pod2Id), []);
  });

  /** Starts a sleeping container with `ns` and returns its id and what ps shows inside it. */
  async function psOf(podId: string, pod: ReturnType<typeof podConfig>, name: string, ns: { pid: 'TARGET'; targetId: string }): Promise<{ id: string; ps: string }> {
    const id = await engine.createContainer(podId, containerConfig(env.busybox, name, ['sleep', '1000'], {
      linux: { securityContext: { namespaceOptions: ns } },
    }), pod);
    await engine.startContainer(id);
    return { id, ps: (await engine.execSync(id, ['ps', '-o', 'pid,args'], 10)).stdout.toString() };
  }

  it('records real exit codes (0, 3, 137) and CRI logs of sub-containers; removal leaves nothing behind', async () => {
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, handler);
    assert.equal((await engine.podSandboxStatus(podId)).status.state, 'SANDBOX_READY');

    const id = await engine.createContainer(podId, containerConfig(env.busybox, 'once', ['sh', '-c', 'echo hello; echo oops >&2; exit 3']), pod);
    assert.equal((await engine.containerStatus(id)).status.state, 'CONTAINER_CREATED');
    await engine.startContainer(id);
    const st = await exited(engine, id);
    assert.equal(st.exitCode, 3);
    assert.equal(st.reason, 'Error');
    const log = await readFile(st.logPath, 'utf8');
    assert.match(log, /^\S+ stdout F hello$/m);
    assert.match(log, /^\S+ stderr F oops$/m);

    const ok = await engine.createContainer(podId, containerConfig(env.busybox, 'zero', ['true']), pod);
    await engine.startContainer(ok);
    const s0 = await exited(engine, ok);
    assert.equal(s0.exitCode, 0);
    assert.equal(s0.reason, 'Completed');

    // SIGKILL from outside (runsc kill): 128 + 9
    const k = await engine.createContainer(podId, containerConfig(env.busybox, 'victim', ['sleep', '1000']), pod);
    await engine.startContainer(k);
    const kr = await run('/usr/bin/runsc', ['--root', join(env.runDir, handler, 'state'), '--platform=ptrace', 'kill', k, 'KILL'], { timeoutMs: 20_000 });
    assert.equal(kr.code, 0, kr.stderr);
    const sk = await exited(engine, k);
    assert.equal(sk.exitCode, 137);

    // a created container that is never started is removed cleanly (its shim waiter too)
    const never = await engine.createContainer(podId, containerConfig(env.busybox, 'never', ['true']), pod);
    assert.ok((await procsWith(never)).length > 0, 'conmon and the waiter exist for a created container');
    await engine.removeContainer(never);
    assert.deepEqual((await procsWith(never)).map((p) => p.cmd), []);

    // the pod keeps running after its containers ended
    assert.equal((await engine.podSandboxStatus(podId)).status.state, 'SANDBOX_READY');
    await engine.removePodSandbox(podId);
    assert.deepEqual(await netnsOf(podId), []);
    assert.deepEqual(await conmonsWith(id), []);
    assert.deepEqual((await procsWith(env.runDir)).map((p) => p.cmd), [], 'no runsc, gofer, conmon or shim process is left');
    assert.deepEqual(await mountsUnder(env.runDir), []);
    assert.deepEqual(await activeSnapshots(env.imagesDir), []);
  });

  it('attach: stdin reaches a sub-container through its conmon and the shim, its output comes back', async () => {
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, handler);
    const id = await engine.createContainer(podId, containerConfig(env.busybox, 'reader', ['sh', '-c', 'read l; echo "got:$l"; echo "err:$l" >&2; exit 6'], { stdin: true, stdinOnce: true }), pod);
    await engine.startContainer(id);
    const stdin = new PassThrough();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const stdout = new PassThrough().on('data', (b: Buffer) => out.push(b));
    const stderr = new PassThrough().on('data', (b: Buffer) => err.push(b));
    const ac = new AbortController();
    const done = engine.attach(id, { stdin, stdout, stderr, tty: false }, ac.signal);
    stdin.write('hello\n');
    const st = await exited(engine, id);
    assert.equal(st.exitCode, 6);
    await waitFor(() => Buffer.concat(out).toString().includes('got:hello') && Buffer.concat(err).toString().includes('err:hello'), 20_000, 'attach output');
    ac.abort();
    await done.catch(() => undefined);
    const log = await readFile(st.logPath, 'utf8');
    assert.match(log, /^\S+ stdout F got:hello$/m);
    assert.match(log, /^\S+ stderr F err:hello$/m);
    await engine.removePodSandbox(podId);
  });

  it('two containers of a pod share the network (localhost) and the hostname; exec sync; stats', async () => {
    const pod = podConfig({ hostname: 'gv-shared' });
    const podId = await engine.runPodSandbox(pod, handler);
    // port 80: the Sentry binds for the container with the pause's host capabilities
    const a = await engine.createContainer(podId, containerConfig(env.busybox, 'server', ['httpd', '-f', '-p', '127.0.0.1:80', '-h', '/etc']), pod);
    const b = await engine.createContainer(podId, containerConfig(env.busybox, 'client', ['sh', '-c', 'while true; do echo tick >/dev/null; done']), pod);
    await engine.startContainer(a);
    await engine.startContainer(b);
    const got = await waitFor(async () => {
      // (busybox wget fails inside gVisor's host-network mode with EAGAIN on read; nc works)
      const r = await engine.execSync(b, ['sh', '-c', 'printf "GET /hostname HTTP/1.0\\r\\n\\r\\n" | nc 127.0.0.1 80'], 10);
      return r.exitCode === 0 && r.stdout.length > 0 ? r.stdout.toString() : undefined;
    }, 30_000, 'the server container to answer on the pod loopback');
    assert.match(got, /^HTTP\/1\.[01] 200/);
    assert.match(got, /\r\n\r\ngv-shared\n$/);
    assert.equal((await engine.execSync(a, ['hostname'], 10)).stdout.toString().trim(), 'gv-shared');
    assert.match((await engine.execSync(b, ['cat', '/etc/hosts'], 10)).stdout.toString(), /gv-shared/);

    await execSyncBasics(engine, b);

    // per-container figures come from the Sentry: the busy container has used CPU, the idle
    // server much less
    const sb = await waitFor(async () => {
      const s = await engine.containerStats(b);
      return (s.cpu?.usageCoreNanoSeconds?.value ?? 0) > 200_000_000 ? s : undefined;
    }, 30_000, 'the busy container to use CPU');
    const sa = await engine.containerStats(a);
    assert.ok((sa.cpu?.usageCoreNanoSeconds?.value ?? 0) < (sb.cpu?.usageCoreNanoSeconds?.value ?? 0), 'CPU time is per container');
    assert.ok((sb.memory?.workingSetBytes?.value ?? 0) > 0, 'working set reported');
    const ps = await engine.podSandboxStats(podId);
    assert.equal(ps.linux?.containers.length, 2);
    assert.ok((ps.linux?.process?.processCount?.value ?? 0) >= 2);

    await engine.removePodSandbox(podId);
    await assert.rejects(engine.containerStatus(a), { code: 'NotFound' });
    assert.deepEqual((await procsWith(a)).concat(await procsWith(b)).map((p) => p.cmd), []);
    assert.deepEqual(await netnsOf(podId), []);
  });

  it('bounds the sandbox by the sum of its containers\' limits (pod-level, as the kubelet bounds a pod cgroup)', async () => {
    const MiB = 1024 * 1024;
    const headroom = (n: number) => (32 + 16 * n) * MiB; // sandboxHeadroom(n)
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, handler);
    const info = JSON.parse((await engine.podSandboxStatus(podId, true)).info.info!) as { pauseId: string };
    const sandboxCgroup = `/bulkhead-test-${process.pid}/pod-${podId.slice(0, 16)}/${info.pauseId}`;
    const limits = async () => ({ mem: await memoryLimit(sandboxCgroup), cpu: await cpuQuota(sandboxCgroup) });
    const unlimitedMem = (await limits()).mem;
    assert.ok(unlimitedMem > 1024 * 1024 * MiB, 'an empty pod sandbox is not bounded');

    const res = (mem: number, cpuQuotaUs: number) => ({ linux: { resources: { memoryLimitInBytes: mem, cpuQuota: cpuQuotaUs, cpuPeriod: 100_000 } } });
    const a = await engine.createContainer(podId, containerConfig(env.busybox, 'a', ['sleep', '1000'], res(64 * MiB, 50_000)), pod);
    assert.deepEqual(await limits(), { mem: 64 * MiB + headroom(1), cpu: 50_000 });
    const b = await engine.createContainer(podId, containerConfig(env.busybox, 'b', ['sleep', '1000'], res(32 * MiB, 25_000)), pod);
    await engine.startContainer(a);
    await engine.startContainer(b);
    assert.deepEqual(await limits(), { mem: 96 * MiB + headroom(2), cpu: 75_000 });
    await engine.updateContainerResources(b, { memoryLimitInBytes: 128 * MiB, cpuQuota: 100_000, cpuPeriod: 100_000 });
    assert.deepEqual(await limits(), { mem: 192 * MiB + headroom(2), cpu: 150_000 });
    assert.equal((await engine.containerStatus(b)).status.resources?.linux?.memoryLimitInBytes, 128 * MiB);
    // one container without limits: the pod is unbounded
    const c = await engine.createContainer(podId, containerConfig(env.busybox, 'c', ['sh', '-c', 'dd if=/dev/zero of=/dev/null bs=300M count=1 && echo fits']), pod);
    assert.deepEqual(await limits(), { mem: unlimitedMem, cpu: -1 });
    await engine.startContainer(c);
    const sc = await exited(engine, c);
    assert.equal(sc.exitCode, 0);
    assert.match(await readFile(sc.logPath, 'utf8'), /stdout F fits$/m);
    await engine.removeContainer(c);
    await engine.stopContainer(b, 0);
    await engine.removeContainer(b);
    assert.deepEqual(await limits(), { mem: 64 * MiB + headroom(1), cpu: 50_000 });
    // the workload really runs under the bound (a 300 MB buffer fits when the pod is unbounded,
    // see the unbounded container above); beyond it the host OOM-kills the sandbox: the whole pod
    const hog = await engine.createContainer(podId, containerConfig(env.busybox, 'hog', ['sh', '-c', 'dd if=/dev/zero of=/dev/null bs=300M count=1 && echo survived'], res(64 * MiB, 100_000)), pod);
    await engine.startContainer(hog);
    const sh = await exited(engine, hog);
    assert.equal(sh.exitCode, 137, 'the hog did not get 300 MB');
    assert.doesNotMatch(await readFile(sh.logPath, 'utf8').catch(() => ''), /survived/);
    assert.equal((await exited(engine, a)).exitCode, 137, 'its neighbour went with the sandbox');
    await waitFor(async () => (await engine.podSandboxStatus(podId)).status.state === 'SANDBOX_NOTREADY', 20_000, 'the pod to be not ready');
    await engine.removePodSandbox(podId);
    assert.deepEqual((await procsWith(env.runDir)).map((p) => p.cmd), []);
  });

  it('stops with the image stop signal, and kills after the grace period when it is ignored', async () => {
    await stopSignalAndGrace(env, engine, handler);
  });

  it('reattaches a running sub-container after the daemon is SIGKILLed; cleans a half-created one', async () => {
    const a = await crashChild(env, handler, 'run');
    const { podId, runner, quick } = a.out;
    assert.ok(podId && runner && quick, 'child reported its ids');
    await a.kill();
    // a second daemon dies right after runsc created a sub-container (record still 'creating')
    const b = await crashChild(env, handler, 'mid-container', { podId });
    assert.equal(await b.exited, 'SIGKILL');
    const half = b.out.killedAt!;
    assert.ok((await procsWith(half)).length > 0, 'the half-created container has its conmon and shim waiter');
    await new Promise((r) => setTimeout(r, 2500)); // "quick" exits (5) while no daemon runs

    const e2 = await env.engine();
    await assert.rejects(e2.containerStatus(half), { code: 'NotFound' });
    assert.deepEqual((await procsWith(half)).map((p) => p.cmd), [], 'the half-created container is gone');
    assert.deepEqual(await mountsUnder(`${env.runDir}/containers/${half}`), []);
    assert.equal((await e2.containerStatus(runner!)).status.state, 'CONTAINER_RUNNING');
    const q = await exited(e2, quick!);
    assert.equal(q.exitCode, 5);
    assert.equal((await e2.execSync(runner!, ['echo', 'alive'], 10)).stdout.toString(), 'alive\n');
    assert.equal((await sandboxes()).length, 1, 'the pod is still one sandbox');
    // the reattached container's exit is watched again
    await e2.stopContainer(runner!, 1);
    const r = (await e2.containerStatus(runner!)).status;
    assert.equal(r.state, 'CONTAINER_EXITED');
    assert.equal(r.exitCode, 143, 'sleep ends on the SIGTERM within the grace period');

    await e2.removePodSandbox(podId!);
    assert.deepEqual(await netnsOf(podId!), []);
    assert.deepEqual(await conmonsWith(env.runDir), []);
    assert.deepEqual((await procsWith(env.runDir)).map((p) => p.cmd), []);
    assert.deepEqual(await mountsUnder(env.runDir), []);
    assert.deepEqual(await cgroupDirsUnder(`bulkhead-test-${process.pid}/pod-${podId!.slice(0, 16)}`), []);
  });
});
