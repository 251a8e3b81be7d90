// A pod on the gvisor handler (runsc, ptrace platform) through the CRI socket: the container runs
// on gVisor's kernel, exec works, teardown is clean. And a handler the host cannot run is a clear
// FAILED_PRECONDITION naming it, never a fallback to another handler.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { release } from 'node:os';
import { readFile } from 'node:fs/promises';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { freePort, sharedRegistry } from '../../harness/registry.ts';
import { connect } from 'node:net';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { BulkheadError } from '../../src/errors.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import { run } from '../../src/util/exec.ts';

let d: TestDaemon;
let images: TestImages;

before(async () => {
  images = await buildAndPushTestImages(await sharedRegistry());
  d = await startTestDaemon({
    name: 'bulkhead-cri-gvisor-',
    handlers: {
      runc: { backend: 'runc' },
      gvisor: { backend: 'gvisor', runtime_args: ['--platform=ptrace'] },
      // A handler whose runtime binary does not exist: configured, but unusable on this host.
      broken: { backend: 'runc', binary: '/nonexistent/bin/runc' },
    },
  });
});
after(async () => { await d?.close(); });

function pod(name: string): PodSandboxConfig {
  return { metadata: { name, namespace: 'cri-gvisor', uid: randomUUID(), attempt: 0 }, labels: { t: name }, linux: {} };
}

test('a gvisor pod runs its container on gVisor\'s kernel', async () => {
  const c = d.client;
  const info = await c.info();
  const gv = info.handlers.find((h) => h.name === 'gvisor');
  assert.ok(gv?.available, `gvisor probe: ${gv?.reason}`);
  assert.equal(gv.isolation, 'user-kernel');

  await c.pullImage(images.busybox);
  const pc = pod('gv');
  const podId = await c.runPodSandbox(pc, 'gvisor');
  assert.equal((await c.podSandboxStatus(podId)).status.runtimeHandler, 'gvisor');
  const ctr = await c.createContainer(podId, { metadata: { name: 'sleeper' }, image: { image: images.busybox }, command: ['sleep', '3600'], logPath: 'sleeper.log' }, pc);
  await c.startContainer(ctr, { timeoutMs: 120_000 });
  assert.equal((await c.containerStatus(ctr)).status.state, 'CONTAINER_RUNNING');
  const r = await c.execSync(ctr, ['uname', '-r'], 30);
  assert.equal(r.exitCode, 0, r.stderr.toString());
  const kernel = r.stdout.toString().trim();
  assert.notEqual(kernel, release(), 'the container must not see the host kernel');
  const fail = await c.execSync(ctr, ['sh', '-c', 'exit 5'], 30);
  assert.equal(fail.exitCode, 5);
  await c.stopContainer(ctr, 1);
  assert.equal((await c.containerStatus(ctr)).status.state, 'CONTAINER_EXITED');
  await c.removeContainer(ctr);
  await c.stopPodSandbox(podId);
  await c.removePodSandbox(podId);
  assert.deepEqual(await c.listPodSandbox(), []);
});

test('a configured handler the host cannot run is FAILED_PRECONDITION naming it and why', async () => {
  const err = await d.client.runPodSandbox(pod('broken'), 'broken').then(() => null, (e: unknown) => e);
  assert.ok(err instanceof BulkheadError, String(err));
  assert.equal(err.code, 'FailedPrecondition', err.message);
  assert.match(err.message, /runtime handler "broken"/);
  assert.match(err.message, /cannot run on this host: \S/);
  assert.deepEqual(await d.client.listPodSandbox({ labelSelector: { t: 'broken' } }), [], 'no pod was created on another handler');
  const st = await d.client.status(true);
  const broken = (JSON.parse(st.info.handlers!) as { name: string; available: boolean; reason: string }[]).find((h) => h.name === 'broken');
  assert.equal(broken?.available, false);
  assert.notEqual(broken?.reason, '');
  assert.ok(!st.runtimeHandlers.some((h) => h.name === 'broken'), 'unavailable handlers are not advertised');
});

test('a gvisor pod is one sandbox: its containers share the pause\'s PID namespace (PID POD), exit codes and logs are their own', async () => {
  const c = d.client;
  await c.pullImage(images.busybox);
  const pc: PodSandboxConfig = { ...pod('gv-two'), linux: { securityContext: { namespaceOptions: { pid: 'POD' } } } };
  const podId = await c.runPodSandbox(pc, 'gvisor');
  const shared = { linux: { securityContext: { namespaceOptions: { pid: 'POD' as const } } } };
  const a = await c.createContainer(podId, { metadata: { name: 'a' }, image: { image: images.busybox }, command: ['sleep', '5151'], ...shared }, pc);
  const b = await c.createContainer(podId, {
    metadata: { name: 'b' }, image: { image: images.busybox }, ...shared,
    command: ['sh', '-c', 'echo to-out; echo to-err >&2; while ! ps -o args | grep -q "^sleep 5151"; do sleep 0.2; done; echo saw-a; exit 3'],
  }, pc);
  await c.startContainer(a, { timeoutMs: 120_000 });
  await c.startContainer(b, { timeoutMs: 120_000 });
  let st = (await c.containerStatus(b)).status;
  for (let i = 0; i < 300 && st.state !== 'CONTAINER_EXITED'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    st = (await c.containerStatus(b)).status;
  }
  assert.equal(st.state, 'CONTAINER_EXITED');
  assert.equal(st.exitCode, 3, 'b saw a\'s process and exited with its own code');
  const log = await readFile(st.logPath, 'utf8');
  assert.match(log, /^\S+ stdout F to-out$/m);
  assert.match(log, /^\S+ stderr F to-err$/m);
  assert.match(log, /^\S+ stdout F saw-a$/m);
  assert.equal((await c.containerStatus(a)).status.state, 'CONTAINER_RUNNING');
  await c.stopContainer(a, 0);
  const sa = (await c.containerStatus(a)).status;
  assert.equal(sa.state, 'CONTAINER_EXITED');
  assert.equal(sa.exitCode, 137);
  await c.stopPodSandbox(podId);
  await c.removePodSandbox(podId);
  assert.deepEqual(await c.listContainers({ podSandboxId: podId }), []);
});

test('gvisor pods on the bridge run on gVisor\'s netstack: the pod IP is the sandbox\'s (its veth keeps no host address), reported, reached from another pod and through a hostPort; resolv.conf is the pod\'s; the probe says which mode', async () => {
  const c = d.client;
  const gv = (await c.info()).handlers.find((h) => h.name === 'gvisor');
  assert.match(gv?.details.network ?? '', /^sandbox \(gVisor netstack/, JSON.stringify(gv?.details));
  await c.pullImage(images.busybox);
  const serve = "printf '#!/bin/sh\\necho hello-from-a\\n' > /tmp/serve && chmod +x /tmp/serve && exec nc -ll -p 8080 -e /tmp/serve";
  const hostPort = await freePort();
  const pa: PodSandboxConfig = { ...pod('gv-net-a'), portMappings: [{ protocol: 'TCP', containerPort: 8080, hostPort, hostIp: '' }] };
  const a = await c.runPodSandbox(pa, 'gvisor');
  const pb = pod('gv-net-b');
  const b = await c.runPodSandbox(pb, 'gvisor');
  try {
    const srv = await c.createContainer(a, { metadata: { name: 'srv' }, image: { image: images.busybox }, command: ['sh', '-c', serve] }, pa);
    await c.startContainer(srv, { timeoutMs: 120_000 });
    const cli = await c.createContainer(b, { metadata: { name: 'cli' }, image: { image: images.busybox }, command: ['sleep', '600'] }, pb);
    await c.startContainer(cli, { timeoutMs: 120_000 });
    const ip = (await c.podSandboxStatus(a)).status.network?.ip ?? '';
    assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/, 'PodSandboxStatus reports the pod IP');
    // netstack owns the address: the sandbox's interface has it, the host kernel's veth has none
    const inner = await c.execSync(srv, ['ip', '-4', 'addr'], 30);
    assert.match(inner.stdout.toString(), new RegExp(`inet ${ip.replace(/\./g, '\\.')}/`), inner.stdout.toString());
    const { netnsPath } = JSON.parse((await c.podSandboxStatus(a, true)).info.info ?? '{}') as { netnsPath?: string };
    assert.ok(netnsPath, 'the pod has a netns');
    const host = await run('nsenter', [`--net=${netnsPath}`, 'ip', '-4', 'addr', 'show', 'dev', 'eth0'], { timeoutMs: 10_000 });
    assert.equal(host.code, 0, host.stderr);
    assert.doesNotMatch(host.stdout, /inet /, `the host kernel holds no address of the pod: ${host.stdout}`);
    // pod to pod over the bridge, netstack to netstack
    let got = '';
    for (let i = 0; i < 50 && !got.includes('hello-from-a'); i++) {
      got = (await c.execSync(cli, ['sh', '-c', `nc -w 3 ${ip} 8080 </dev/null`], 30)).stdout.toString();
      if (!got.includes('hello-from-a')) await new Promise((r) => setTimeout(r, 200));
    }
    assert.match(got, /hello-from-a/, 'pod b reaches pod a at its IP');
    // the node reaches it through its hostPort (CNI portmap's DNAT to the pod IP, answered by netstack)
    const viaHostPort = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: hostPort });
      let buf = '';
      s.on('data', (x) => { buf += x.toString(); });
      s.on('close', () => resolve(buf));
      s.on('error', () => resolve(''));
      s.setTimeout(5000, () => s.destroy());
    });
    assert.match(viaHostPort, /hello-from-a/, 'the hostPort reaches pod a');
    const resolv = (await c.execSync(cli, ['cat', '/etc/resolv.conf'], 30)).stdout.toString();
    assert.match(resolv, /^nameserver \S+$/m, resolv);
  } finally {
    for (const p of [a, b]) { await c.stopPodSandbox(p); await c.removePodSandbox(p); }
  }
});

test('a host-network gvisor pod runs with runsc --network=host (never netstack over the node\'s interfaces): its listener on 127.0.0.1 is the node\'s', async () => {
  const c = d.client;
  await c.pullImage(images.busybox);
  const port = await freePort();
  const pc: PodSandboxConfig = { ...pod('gv-hostnet'), linux: { securityContext: { namespaceOptions: { network: 'NODE' } } } };
  const p = await c.runPodSandbox(pc, 'gvisor');
  try {
    const ctr = await c.createContainer(p, {
      metadata: { name: 'srv' }, image: { image: images.busybox },
      command: ['sh', '-c', `mkdir -p /tmp/www && echo hello-host > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:${port} -h /tmp/www`],
    }, pc);
    await c.startContainer(ctr, { timeoutMs: 120_000 });
    let got = '';
    for (let i = 0; i < 50 && !got.includes('hello-host'); i++) {
      got = await new Promise<string>((resolve) => {
        const s = connect({ host: '127.0.0.1', port }, () => s.write('GET / HTTP/1.0\r\n\r\n'));
        let buf = '';
        s.on('data', (b) => { buf += b.toString(); });
        s.on('close', () => resolve(buf));
        s.on('error', () => resolve(''));
        s.setTimeout(3000, () => s.destroy());
      });
      if (!got.includes('hello-host')) await new Promise((r) => setTimeout(r, 200));
    }
    assert.match(got, /hello-host/, 'the node reaches the pod\'s listener on its own loopback');
  } finally {
    await c.stopPodSandbox(p);
    await c.removePodSandbox(p);
  }
});
