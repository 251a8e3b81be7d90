import assert from 'node:assert/strict';
import { readlink, stat } from 'node:fs/promises';
import { duplexPair } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Engine } from '../../src/engine/engine.ts';
import { containerConfig, podConfig, procsWith, testEnv, waitFor, type TestEnv } from '../engine/helpers.ts';
import { podSuite } from './pod-suite.ts';

podSuite('gvisor');

describe('gvisor port-forward with runsc --network=host', () => {
  let env: TestEnv;
  let engine: Engine;
  before(async () => {
    env = await testEnv(['gvisor']);
    engine = await env.engine();
  });
  after(async () => { await env?.cleanup(); });

  it('enters the pod netns (the pod\'s sockets are host sockets there), not a runsc exec in the sandbox', { timeout: 120_000 }, async () => {
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, 'gvisor');
    try {
      const info = JSON.parse((await engine.podSandboxStatus(podId, true)).info.info!) as { pauseId: string; netnsPath: string };
      const srv = await engine.createContainer(podId, containerConfig(env.busybox, 'srv', ['sh', '-c', 'while :; do (echo pong; sleep 30) | nc -l -p 8083; done']), pod);
      await engine.startContainer(srv);
      const ac = new AbortController();
      const got = await waitFor(async () => {
        const [mine, theirs] = duplexPair();
        const inner = new AbortController();
        const done = engine.portForward(podId, 8083, theirs, inner.signal).catch(() => undefined);
        const first = await new Promise<string>((resolve) => {
          mine.once('data', (b: Buffer) => resolve(b.toString()));
          mine.once('end', () => resolve(''));
          setTimeout(() => resolve(''), 5000).unref();
          mine.resume();
        });
        if (!first.includes('pong')) { inner.abort(); await done; return undefined; }
        return { inner, done };
      }, 30_000, 'the listener to answer through port-forward');
      // while the connection is open: what carries it
      // (nsenter has exec'd busybox nc: found by its command line and its network namespace)
      const podNet = `net:[${(await stat(info.netnsPath)).ino}]`;
      const carriers: number[] = [];
      for (const p of await procsWith('nc 127.0.0.1 8083')) {
        if (await readlink(`/proc/${p.pid}/ns/net`).catch(() => '') === podNet) carriers.push(p.pid);
      }
      const execs = (await procsWith(info.pauseId)).filter((p) => / exec /.test(p.cmd) && / nc /.test(p.cmd));
      got.inner.abort();
      await got.done;
      ac.abort();
      assert.equal(carriers.length, 1, 'one nc in the pod netns, started by nsenter, carries the forward');
      assert.deepEqual(execs, [], 'no runsc exec of nc in the sandbox');
    } finally {
      await engine.removePodSandbox(podId);
    }
  });
});
