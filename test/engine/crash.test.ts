// Crash safety: daemon-like child processes own an Engine and are SIGKILLed (by us, and at chosen
// points by themselves); a new Engine on the same root must reattach, report, clean up, leak nothing.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { testEnv, crashChild, waitFor, mountsUnder, netnsOf, conmonsWith, activeSnapshots, type TestEnv } from './helpers.ts';

const handler = process.env.BULKHEAD_ENGINE_HANDLER ?? 'runc';

describe(`engine crash safety (${handler})`, () => {
  let env: TestEnv;
  before(async () => { env = await testEnv([handler]); });
  after(async () => { await env?.cleanup(); });

  it('reattaches running containers, reports exits, cleans half-created work, leaks nothing', async () => {
    const a = await crashChild(env, handler, 'run');
    const { podId, runner, quick } = a.out;
    assert.ok(podId && runner && quick, 'child reported its ids');
    await a.kill(); // SIGKILL mid-run

    const b = await crashChild(env, handler, 'mid-container', { podId });
    assert.ok(b.out.killedAt, 'child killed itself after the runtime created the container');
    assert.equal(await b.exited, 'SIGKILL');
    const half = b.out.killedAt!;

    const c = await crashChild(env, handler, 'mid-pod');
    assert.equal(await c.exited, 'SIGKILL');
    const halfPod = c.out.podId!;
    assert.ok((await netnsOf(halfPod)).length > 0, 'the half-created pod left a netns behind');
    assert.ok((await conmonsWith(half)).length > 0, 'the half-created container has a conmon');

    // "quick" exits while no daemon runs: its conmon writes the exit code and ends (a fixed wait
    // of 2.5 s could end before the exit on a loaded host)
    await waitFor(async () => (await conmonsWith(quick!)).length === 0, 60_000, 'quick to exit while no daemon runs');

    const engine = await env.engine();
    const r = (await engine.containerStatus(runner!)).status;
    assert.equal(r.state, 'CONTAINER_RUNNING');
    const q = (await engine.containerStatus(quick!)).status;
    assert.equal(q.state, 'CONTAINER_EXITED');
    assert.equal(q.exitCode, 5);
    assert.equal(q.reason, 'Error');
    await assert.rejects(engine.containerStatus(half), { code: 'NotFound' });
    await assert.rejects(engine.podSandboxStatus(halfPod), { code: 'NotFound' });
    assert.deepEqual(await netnsOf(halfPod), []);
    assert.deepEqual(await conmonsWith(half), []);
    assert.deepEqual(await conmonsWith(halfPod), []);
    assert.deepEqual(await mountsUnder(join(env.runDir, 'containers', half)), []);
    assert.equal(engine.listPodSandbox().length, 1);

    // the reattached container's exit is watched again
    await engine.execSync(runner!, ['kill', '1'], 5).catch(() => undefined);
    await engine.stopContainer(runner!, 1);
    assert.equal((await engine.containerStatus(runner!)).status.state, 'CONTAINER_EXITED');

    await engine.removePodSandbox(podId!);
    assert.deepEqual(await mountsUnder(env.runDir), []);
    assert.deepEqual(await netnsOf(podId!), []);
    assert.deepEqual(await conmonsWith(env.runDir), []);
    assert.deepEqual(await activeSnapshots(env.imagesDir), []);
  });

  it('after a restart a container that exits is noticed by the exit monitor', async () => {
    const a = await crashChild(env, handler, 'run');
    await a.kill();
    const engine = await env.engine();
    await waitFor(async () => (await engine.containerStatus(a.out.quick!)).status.state === 'CONTAINER_EXITED', 20_000, 'quick to exit');
    assert.equal((await engine.containerStatus(a.out.quick!)).status.exitCode, 5);
    await engine.removePodSandbox(a.out.podId!);
    assert.deepEqual(await conmonsWith(env.runDir), []);
  });
});
