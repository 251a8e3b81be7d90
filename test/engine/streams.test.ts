// The engine's streaming side (what stream/ calls): interactive exec and attach with tty and
// resize, port-forward into a pod; plus updateContainerResources and the pod files a container
// sees. Real runc and runsc under conmon, images from the real test registry.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, duplexPair } from 'node:stream';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { testEnv, podConfig, containerConfig, waitFor, type TestEnv } from './helpers.ts';
import type { Engine } from '../../src/engine/engine.ts';

// both handlers unless one is named: gVisor runs the same streams through runsc
const handlers = process.env.BULKHEAD_ENGINE_HANDLER ? [process.env.BULKHEAD_ENGINE_HANDLER] : ['runc', 'gvisor'];

/** Yields `sizes`, then stays open until `signal` aborts (like a client's resize channel). */
async function* resizes(sizes: { width: number; height: number }[], signal: AbortSignal): AsyncGenerator<{ width: number; height: number }> {
  for (const s of sizes) yield s;
  await new Promise<void>((r) => { if (signal.aborted) r(); else signal.addEventListener('abort', () => r(), { once: true }); });
}

function collector(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (b: Buffer) => chunks.push(b));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

/** Reads a cgroup memory limit of a cgroupfs path (v1 memory hierarchy, else unified). */
async function memoryLimit(cgroupPath: string): Promise<number> {
  const v1 = `/sys/fs/cgroup/memory${cgroupPath}/memory.limit_in_bytes`;
  if (existsSync(v1)) return Number((await readFile(v1, 'utf8')).trim());
  return Number((await readFile(`/sys/fs/cgroup${cgroupPath}/memory.max`, 'utf8')).trim());
}

for (const handler of handlers) describe(`engine streams, resources, pod files (${handler})`, () => {
  let env: TestEnv;
  let engine: Engine;
  let podId: string;
  let sleeper: string;
  const pod = podConfig({ hostname: 'files-pod', dnsConfig: { servers: ['10.96.0.10'], searches: ['svc.test'], options: ['ndots:2'] } });
  before(async () => {
    env = await testEnv([handler]);
    engine = await env.engine();
    podId = await engine.runPodSandbox(pod, handler);
    sleeper = await engine.createContainer(podId, containerConfig(env.busybox, 'sleeper', ['sleep', '1000'], {
      linux: { resources: { memoryLimitInBytes: 64 * 1024 * 1024 } },
    }), pod);
    await engine.startContainer(sleeper);
  });
  after(async () => { await env?.cleanup(); });

  it('exec without a tty: stdin in, stdout and stderr apart, exit code', async () => {
    const ac = new AbortController();
    const stdin = new PassThrough();
    const out = collector();
    const err = collector();
    const done = engine.exec(sleeper, ['sh', '-c', 'cat; echo e >&2; exit 2'], { stdin, stdout: out.stream, stderr: err.stream, tty: false }, ac.signal);
    stdin.end('hello through stdin\n');
    assert.equal(await done, 2);
    assert.equal(out.text(), 'hello through stdin\n');
    assert.equal(err.text(), 'e\n');
  });

  it('exec with a tty follows resize events and returns the exit code', async () => {
    const ac = new AbortController();
    const out = collector();
    const code = await engine.exec(sleeper, ['sh', '-c', 'while [ "$(stty size)" != "40 100" ]; do sleep 0.1; done; echo tty-$((2+3)); exit 3'], {
      stdout: out.stream, tty: true, resize: resizes([{ width: 100, height: 40 }], ac.signal),
    }, ac.signal);
    ac.abort();
    assert.equal(code, 3);
    assert.match(out.text(), /tty-5/);
    await assert.rejects(engine.exec(sleeper, [], { tty: false }, ac.signal), { code: 'InvalidArgument' });
  });

  it('attach to a tty container: input reaches its shell, resize reaches its terminal, detach leaves it running', async () => {
    const id = await engine.createContainer(podId, containerConfig(env.busybox, 'console', ['sh'], { tty: true, stdin: true }), pod);
    await engine.startContainer(id);
    const ac = new AbortController();
    const stdin = new PassThrough();
    const out = collector();
    const done = engine.attach(id, { stdin, stdout: out.stream, tty: true, resize: resizes([{ width: 90, height: 30 }], ac.signal) }, ac.signal);
    stdin.write('while [ "$(stty size)" != "30 90" ]; do sleep 0.1; done; echo resized-$((1+1))\n');
    await waitFor(() => /resized-2/.test(out.text()), 20_000, 'the resize to reach the container terminal');
    stdin.write('echo marker-$((40+2))\n');
    await waitFor(() => /marker-42/.test(out.text()), 20_000, 'attached input to be echoed back');
    ac.abort();
    await done;
    assert.equal((await engine.containerStatus(id)).status.state, 'CONTAINER_RUNNING', 'detaching does not stop the container');
    await engine.removeContainer(id);
  });

  it('port-forwards into the pod network namespace to a busybox httpd', async () => {
    const web = await engine.createContainer(podId, containerConfig(env.busybox, 'web', ['httpd', '-f', '-p', '127.0.0.1:8080', '-h', '/etc']), pod);
    await engine.startContainer(web);
    const forward = async (): Promise<string> => {
      const [mine, theirs] = duplexPair();
      const ac = new AbortController();
      const done = engine.portForward(podId.slice(0, 12), 8080, theirs, ac.signal);
      mine.end('GET /hostname HTTP/1.0\r\n\r\n');
      const chunks: Buffer[] = [];
      for await (const c of mine) chunks.push(c as Buffer);
      await done;
      return Buffer.concat(chunks).toString();
    };
    const reply = await waitFor(async () => { const r = await forward(); return r.length > 0 ? r : undefined; }, 20_000, 'httpd to answer');
    assert.match(reply, /^HTTP\/1\.[01] 200/);
    assert.match(reply, /\r\n\r\nfiles-pod\n$/);
    const [, s] = duplexPair();
    await assert.rejects(engine.portForward(podId, 0, s, new AbortController().signal), { code: 'InvalidArgument' });
    await engine.removeContainer(web);
  });

  it('updateContainerResources changes the memory limit (in the container\'s cgroup on runc)', async () => {
    // gVisor enforces limits on the pod's sandbox cgroup (the sum of its containers'), not on a
    // container's own cgroup, which holds no process: test/engine/gvisor.test.ts checks that one
    const ownCgroup = handler !== 'gvisor';
    const info = JSON.parse((await engine.containerStatus(sleeper, true)).info.info!) as { cgroupsPath: string };
    if (ownCgroup) assert.equal(await memoryLimit(info.cgroupsPath), 64 * 1024 * 1024);
    await engine.updateContainerResources(sleeper, { memoryLimitInBytes: 96 * 1024 * 1024 });
    if (ownCgroup) assert.equal(await memoryLimit(info.cgroupsPath), 96 * 1024 * 1024);
    assert.equal((await engine.containerStatus(sleeper)).status.resources?.linux?.memoryLimitInBytes, 96 * 1024 * 1024);
    const done = await engine.createContainer(podId, containerConfig(env.busybox, 'done', ['true']), pod);
    await engine.startContainer(done);
    await waitFor(async () => (await engine.containerStatus(done)).status.state === 'CONTAINER_EXITED', 20_000, 'exit');
    await assert.rejects(engine.updateContainerResources(done, { memoryLimitInBytes: 96 * 1024 * 1024 }), { code: 'FailedPrecondition' });
    await engine.removeContainer(done);
  });

  it('a container sees the pod hostname, hosts and resolv.conf (read-only)', async () => {
    const cat = async (path: string) => (await engine.execSync(sleeper, ['cat', path], 10)).stdout.toString();
    assert.equal(await cat('/etc/hostname'), 'files-pod\n');
    assert.equal(await cat('/etc/resolv.conf'), 'search svc.test\nnameserver 10.96.0.10\noptions ndots:2\n');
    assert.match(await cat('/etc/hosts'), /^\S+\tfiles-pod$/m);
    assert.equal((await engine.execSync(sleeper, ['hostname'], 10)).stdout.toString(), 'files-pod\n');
    const w = await engine.execSync(sleeper, ['sh', '-c', 'echo 6.6.6.6 evil >> /etc/hosts'], 10);
    assert.notEqual(w.exitCode, 0, 'pod files are mounted read-only');
  });
});
