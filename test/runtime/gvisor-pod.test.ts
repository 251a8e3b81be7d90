import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GvisorBackend } from '../../src/runtime/gvisor/gvisor-backend.ts';
import { silentLogger } from '../../src/util/log.ts';
import { duplexPair } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Engine } from '../../src/engine/engine.ts';
import { containerConfig, podConfig, procsWith, testEnv, waitFor, type TestEnv } from '../engine/helpers.ts';
import { podSuite } from './pod-suite.ts';
import { run } from '../../src/util/exec.ts';

podSuite('gvisor');

describe('gvisor pod network: gVisor\'s netstack (runsc --network=sandbox)', () => {
  let env: TestEnv;
  let engine: Engine;
  before(async () => {
    env = await testEnv(['gvisor']);
    engine = await env.engine();
  });
  after(async () => { await env?.cleanup(); });

  it('a pod\'s listening socket is netstack\'s, not a host socket in the pod netns; port-forward reaches it through nc exec\'d in the sandbox', { timeout: 120_000 }, async () => {
    const pod = podConfig();
    const podId = await engine.runPodSandbox(pod, 'gvisor');
    try {
      const info = JSON.parse((await engine.podSandboxStatus(podId, true)).info.info!) as { pauseId: string; netnsPath: string };
      const srv = await engine.createContainer(podId, containerConfig(env.busybox, 'srv', ['sh', '-c', "printf '#!/bin/sh\\necho pong\\nread x\\n' > /tmp/serve && chmod +x /tmp/serve && exec nc -ll -p 8083 -e /tmp/serve"]), pod);
      await engine.startContainer(srv);
      // the workload's own kernel lists its listener (0x1F93 = 8083) ...
      await waitFor(async () => (/:1F93 /.test((await engine.execSync(srv, ['cat', '/proc/net/tcp', '/proc/net/tcp6'], 10)).stdout.toString()) ? true : undefined), 30_000, 'the listener in the sandbox');
      // ... the host kernel's tables of the pod netns do not: with --network=host it was a host socket there
      const host = await run('nsenter', [`--net=${info.netnsPath}`, '/bin/busybox', 'cat', '/proc/net/tcp', '/proc/net/tcp6'], { timeoutMs: 10_000 });
      assert.equal(host.code, 0, host.stderr);
      assert.doesNotMatch(host.stdout, /:1F93 /, 'no host socket on port 8083 in the pod netns');
      // the server answers, then holds the connection until the client ends its side
      const [mine, theirs] = duplexPair();
      const done = engine.portForward(podId, 8083, theirs, AbortSignal.timeout(60_000)).catch(() => undefined);
      const first = await new Promise<string>((resolve) => {
        mine.once('data', (b: Buffer) => resolve(b.toString()));
        mine.once('end', () => resolve(''));
        setTimeout(() => resolve(''), 15_000).unref();
        mine.resume();
      });
      // while the connection is open: what carries it
      const podNet = `net:[${(await stat(info.netnsPath)).ino}]`;
      const inNetns: number[] = [];
      for (const p of await procsWith('nc 127.0.0.1 8083')) {
        if (await readlink(`/proc/${p.pid}/ns/net`).catch(() => '') === podNet) inNetns.push(p.pid);
      }
      // runsc exec sessions in the sandbox, by the argv of their process.json
      const execs: string[][] = [];
      for (const p of (await procsWith(info.pauseId)).filter((x) => / exec /.test(x.cmd))) {
        const file = / --process (\S+)/.exec(p.cmd)?.[1];
        if (file) execs.push((JSON.parse(await readFile(file, 'utf8')) as { args: string[] }).args);
      }
      mine.end();
      await done;
      assert.match(first, /pong/, 'port-forward reaches the listener');
      assert.deepEqual(inNetns, [], 'no nc entered the pod netns (no host socket could reach netstack\'s listener)');
      assert.deepEqual(execs, [['/bin/busybox', 'nc', '127.0.0.1', '8083']], 'one runsc exec of nc in the sandbox carries the forward');
    } finally {
      await engine.removePodSandbox(podId);
    }
  });

  it('the probe (no cached result) finds netstack usable, plain or with /proc/sys/net hidden from runsc, and says which', { timeout: 120_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulkhead-gvnet-probe-'));
    try {
      const b = new GvisorBackend({ runDir: join(dir, 'run'), cacheDir: join(dir, 'cache'), logger: silentLogger, binary: '/usr/bin/runsc' });
      // `runsc do` leaves its bundle (runsc-do<n>) in $TMPDIR: a probe per daemon start filled /tmp
      // (traversable as /tmp is: the sandbox's unprivileged side reaches the bundle through it)
      const tmp = await mkdtemp('/tmp/bhT');
      await chmod(tmp, 0o711);
      const savedTmp = process.env.TMPDIR;
      process.env.TMPDIR = tmp;
      const p = await b.probe().finally(() => { if (savedTmp === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = savedTmp; });
      const left = await readdir(tmp);
      await rm(tmp, { recursive: true, force: true });
      assert.deepEqual(left.filter((n) => n.startsWith('runsc')), [], 'the probe left nothing of runsc\'s in $TMPDIR');
      assert.ok(p.available, p.reason);
      assert.match(p.details.network ?? '', /^sandbox \(gVisor netstack in the pod netns/, JSON.stringify(p.details));
      const saved = JSON.parse(await readFile(join(dir, 'run', 'platform.json'), 'utf8')) as { network: string; launch: string; version: string };
      assert.equal(saved.network, 'sandbox');
      // this host's runsc (2022) on a 6.x kernel needs the workaround; a newer runsc would not
      if (saved.launch === 'hide-proc-sys-net') assert.match(p.details.networkNote ?? '', /root network namespace.*\/proc\/sys\/net hidden/);
      else assert.equal(saved.launch, 'plain');
      await b.close();
      // a daemon restarted after an upgrade finds an older Bulkhead's weaker result for this boot in
      // its run dir (no key, no launch, --network=host): it detects again (here from the node-wide
      // cache the first probe wrote) instead of keeping it until the node reboots
      const run2 = join(dir, 'run2');
      await mkdir(run2, { recursive: true });
      const stale = { platform: 'ptrace', version: saved.version, tried: {}, ociSeccomp: true, network: 'host', networkNote: 'an older detection' };
      await writeFile(join(run2, 'platform.json'), JSON.stringify(stale));
      const b2 = new GvisorBackend({ runDir: run2, cacheDir: join(dir, 'cache'), logger: silentLogger, binary: '/usr/bin/runsc' });
      const p2 = await b2.probe();
      assert.ok(p2.available, p2.reason);
      assert.match(p2.details.network ?? '', /^sandbox /, JSON.stringify(p2.details));
      const saved2 = JSON.parse(await readFile(join(run2, 'platform.json'), 'utf8')) as { network: string; key?: string };
      assert.equal(saved2.network, 'sandbox');
      assert.ok(saved2.key, 'the run dir\'s result carries the key it is valid for');
      await b2.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
