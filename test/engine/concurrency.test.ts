// Many pods created, used and removed at once: unique ids, no errors, nothing left behind.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { testEnv, podConfig, containerConfig, mountsUnder, conmonsWith, netnsOf, type TestEnv } from './helpers.ts';

const handler = process.env.BULKHEAD_ENGINE_HANDLER ?? 'runc';

describe(`engine concurrency (${handler})`, () => {
  let env: TestEnv;
  before(async () => { env = await testEnv([handler]); });
  after(async () => { await env?.cleanup(); });

  it('runs and removes 8 pods in parallel', async () => {
    const engine = await env.engine();
    const N = 8;
    const made = await Promise.all(Array.from({ length: N }, async () => {
      const pod = podConfig();
      const podId = await engine.runPodSandbox(pod, handler);
      const cid = await engine.createContainer(podId, containerConfig(env.busybox, 'main', ['sleep', '1000']), pod);
      await engine.startContainer(cid);
      return { podId, cid };
    }));
    assert.equal(new Set(made.map((m) => m.podId)).size, N);
    assert.equal(new Set(made.map((m) => m.cid)).size, N);
    assert.equal(engine.listContainers({ state: { state: 'CONTAINER_RUNNING' } }).length, N);
    // stop and remove concurrently, twice each (idempotent under races)
    await Promise.all(made.flatMap((m) => [engine.stopPodSandbox(m.podId), engine.stopPodSandbox(m.podId)]));
    assert.equal(engine.listContainers({ state: { state: 'CONTAINER_EXITED' } }).length, N);
    await Promise.all(made.flatMap((m) => [engine.removePodSandbox(m.podId), engine.removePodSandbox(m.podId), engine.removeContainer(m.cid)]));
    assert.deepEqual(engine.listPodSandbox(), []);
    assert.deepEqual(engine.listContainers(), []);
    assert.deepEqual(await mountsUnder(env.runDir), []);
    assert.deepEqual(await conmonsWith(env.runDir), []);
    for (const m of made) assert.deepEqual(await netnsOf(m.podId), []);
  });
});
