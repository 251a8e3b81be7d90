// The truth about processes when a container's monitor dies (issue #12): conmon SIGKILLed while
// its workload runs must not make the container look exited (it did: 255 "exit code unknown",
// exec refused, stop a no-op while the workload ran on). The engine asks the runtime and watches
// the workload's pid itself; stop and exec work through the runtime; a daemon restart finds it
// again. And the other way round for gVisor: a killed sandbox process means exited, not running.
// Real runc, runsc and conmon.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { testEnv, podConfig, containerConfig, waitFor, conmonsWith, procsWith, type TestEnv } from './helpers.ts';
import type { Engine } from '../../src/engine/engine.ts';
import { run } from '../../src/util/exec.ts';

const handlers = ['runc', 'gvisor'] as const;

describe('engine: a container whose conmon died', () => {
  let env: TestEnv;
  let engine: Engine;
  before(async () => {
    env = await testEnv([...handlers]);
    engine = await env.engine();
  });
  after(async () => { await env?.cleanup(); });

  /** What the runtime itself (not through the backend) says of a container. */
  async function runtimeStatus(handler: string, id: string): Promise<string> {
    const [bin, extra] = handler === 'gvisor' ? ['/usr/bin/runsc', ['--platform=ptrace']] : ['/usr/sbin/runc', []];
    const r = await run(bin, ['--root', join(env.runDir, handler, 'state'), ...extra, 'state', id], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { status: string }).status;
  }

  async function killConmonOf(id: string): Promise<void> {
    const pids = await conmonsWith(id);
    assert.equal(pids.length, 1, `one conmon for ${id}`);
    process.kill(pids[0]!, 'SIGKILL');
    await waitFor(async () => (await conmonsWith(id)).length === 0, 10_000, 'conmon to die');
  }

  async function exited(e: Engine, id: string) {
    return await waitFor(async () => {
      const s = (await e.containerStatus(id)).status;
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    }, 60_000, `container ${id} to be reported exited`);
  }

  /** Host pid of a container's workload as the engine recorded it (verbose status). */
  async function workloadPid(e: Engine, id: string): Promise<number> {
    const info = JSON.parse((await e.containerStatus(id, true)).info.info!) as { pid: number };
    return info.pid;
  }

  function gone(pid: number): Promise<boolean> {
    return readFile(`/proc/${pid}/stat`, 'utf8').then((s) => /\) [ZX] /.test(s), () => true);
  }

  for (const handler of handlers) {
    it(`${handler}: kill -9 of conmon leaves the container RUNNING; exec works; after a daemon restart stop really stops it`, async () => {
      const pod = podConfig();
      const podId = await engine.runPodSandbox(pod, handler);
      const id = await engine.createContainer(podId, containerConfig(env.busybox, 'loop', ['sh', '-c', 'while true; do sleep 0.2; done']), pod);
      await engine.startContainer(id);
      const pid = await workloadPid(engine, id);
      await killConmonOf(id);
      // the old exit monitor gave up on a missing conmon after ~5 s and recorded exit 255
      await new Promise((r) => setTimeout(r, 7000));
      assert.equal((await engine.containerStatus(id)).status.state, 'CONTAINER_RUNNING');
      assert.equal(await runtimeStatus(handler, id), 'running');
      assert.equal((await engine.execSync(id, ['echo', 'still here'], 20)).stdout.toString(), 'still here\n');

      // a restarted daemon finds it again (no conmon to ask)
      await engine.close();
      engine = await env.engine();
      await new Promise((r) => setTimeout(r, 1500)); // a few sweeps
      assert.equal((await engine.containerStatus(id)).status.state, 'CONTAINER_RUNNING');
      assert.equal((await engine.execSync(id, ['echo', 'after restart'], 20)).stdout.toString(), 'after restart\n');

      await engine.stopContainer(id, 1);
      const st = (await engine.containerStatus(id)).status;
      assert.equal(st.state, 'CONTAINER_EXITED');
      assert.match(st.message, /monitor \(conmon\) died; exit code unknown/);
      assert.equal(await runtimeStatus(handler, id), 'stopped');
      assert.ok(await gone(pid), 'the workload process is gone');
      await engine.stopContainer(id, 1); // idempotent
      await engine.removePodSandbox(podId);
      assert.deepEqual((await procsWith(id)).map((p) => p.cmd), []);
    });

    it(`${handler}: a workload that ends by itself after its conmon died is reported exited, exit code unknown`, async () => {
      const pod = podConfig();
      const podId = await engine.runPodSandbox(pod, handler);
      // it ends once told to (a file an exec makes), after its conmon is gone: a fixed 'sleep 4'
      // could run out while a loaded host was still finding and killing the conmon
      const id = await engine.createContainer(podId, containerConfig(env.busybox, 'short', ['sh', '-c', 'while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 3']), pod);
      await engine.startContainer(id);
      await killConmonOf(id);
      assert.equal((await engine.containerStatus(id)).status.state, 'CONTAINER_RUNNING');
      assert.equal((await engine.execSync(id, ['touch', '/tmp/go'], 30)).exitCode, 0);
      const st = await exited(engine, id);
      assert.equal(st.exitCode, 255);
      assert.match(st.message, /monitor \(conmon\) died; exit code unknown/);
      assert.equal(await runtimeStatus(handler, id), 'stopped');
      await engine.removePodSandbox(podId);
    });
  }

  it('gvisor: kill -9 of the runsc sandbox process: its containers are reported exited, also one whose conmon died before', async () => {
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, 'gvisor');
    const a = await engine.createContainer(podId, containerConfig(env.busybox, 'a', ['sh', '-c', 'while true; do sleep 0.2; done']), pod);
    const b = await engine.createContainer(podId, containerConfig(env.busybox, 'b', ['sh', '-c', 'while true; do sleep 0.2; done']), pod);
    await engine.startContainer(a);
    await engine.startContainer(b);
    await killConmonOf(b);
    const info = JSON.parse((await engine.podSandboxStatus(podId, true)).info.info!) as { pauseId: string };
    const sandbox = (await procsWith(join(env.runDir, 'gvisor', 'state'))).filter((p) => p.cmd.startsWith('runsc-sandbox') && p.cmd.includes(info.pauseId));
    assert.equal(sandbox.length, 1, 'one sandbox process for the pod');
    process.kill(sandbox[0]!.pid, 'SIGKILL');
    const sa = await exited(engine, a);
    assert.equal(sa.exitCode, 137, 'died with its sandbox');
    const sb = await exited(engine, b);
    assert.match(sb.message, /exit code unknown/);
    await waitFor(async () => (await engine.podSandboxStatus(podId)).status.state === 'SANDBOX_NOTREADY', 30_000, 'the pod to be not ready');
    await engine.removePodSandbox(podId);
    assert.deepEqual((await procsWith(podId)).map((p) => p.cmd), []);
  });
});
