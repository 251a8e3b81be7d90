// A microvm pod on the pod network, through the CRI daemon: the guest's eth0 has the pod's IP and
// the pod interface's MAC, it reaches a busybox httpd in a runc pod on the same bridge, and the host
// reaches a listener inside the guest by the pod's IP. One VM boot (TCG) for the whole file.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { spawnSync } from 'node:child_process';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import { ASSETS, skipReason } from '../../harness/vm-assets.ts';

const skip = skipReason();

/** Polls `f` until it gives a value (every 500 ms). */
async function poll<T>(f: () => Promise<T | undefined>, what: string, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

function pod(name: string, annotations: Record<string, string> = {}): PodSandboxConfig {
  return { metadata: { name, namespace: 'vm-net', uid: randomUUID(), attempt: 0 }, labels: { t: name }, annotations, linux: {} };
}

/** Reads what a TCP server at ip:port sends until it closes or `want` shows up; rejects on connect errors. */
function readFrom(ip: string, port: number, want: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: ip, port, timeout: 5000 });
    let got = '';
    s.on('data', (b: Buffer) => { got += b.toString(); if (got.includes(want)) { s.destroy(); resolve(got); } });
    s.on('timeout', () => { s.destroy(); resolve(got); });
    s.on('error', reject);
    s.on('close', () => resolve(got));
  });
}

describe('microvm pods on the pod network (CRI daemon)', { skip, timeout: 600_000 }, () => {
  let d: TestDaemon;
  let images: TestImages;
  const tag = randomUUID().slice(0, 8);

  before(async () => {
    images = await buildAndPushTestImages(await sharedRegistry());
    d = await startTestDaemon({
      name: 'bulkhead-vm-net-',
      handlers: { runc: { backend: 'runc' }, microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS] } },
    });
  });
  after(async () => {
    await d?.close();
    if (d) assert.equal(spawnSync('pgrep', ['-f', d.base], { encoding: 'utf8' }).stdout.trim(), '', 'no VMM or supervisor left behind');
  });

  it('the guest has the pod IP and MAC, reaches a runc pod by IP, and is reachable from the host', async () => {
    const c = d.client;
    const vmHandler = (await c.info()).handlers.find((h) => h.name === 'microvm');
    assert.ok(vmHandler?.available, `microvm probe: ${vmHandler?.reason}`);
    await c.pullImage(images.busybox);

    // runc pod: busybox httpd on 8080
    const webCfg = pod('web');
    const webPod = await c.runPodSandbox(webCfg, 'runc');
    const webIp = (await c.podSandboxStatus(webPod)).status.network?.ip;
    assert.ok(webIp, 'the runc pod has an IP');
    const web = await c.createContainer(webPod, {
      metadata: { name: 'httpd' }, image: { image: images.busybox }, logPath: 'httpd.log',
      command: ['sh', '-c', `mkdir -p /tmp/www && echo hello-runc-${tag} > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www`],
    }, webCfg);
    await c.startContainer(web);

    // microvm pod: a listener that answers every connection on 9000
    const vmCfg = pod('vm');
    const vmPod = await c.runPodSandbox(vmCfg, 'microvm', { timeoutMs: 240_000 });
    const vmIp = (await c.podSandboxStatus(vmPod)).status.network?.ip;
    assert.ok(vmIp, 'the microvm pod has an IP');
    assert.notEqual(vmIp, webIp);
    const ctr = await c.createContainer(vmPod, {
      metadata: { name: 'listener' }, image: { image: images.busybox }, logPath: 'listener.log',
      command: ['sh', '-c', `while true; do echo hello-vm-${tag} | nc -l -p 9000; done`],
    }, vmCfg, { timeoutMs: 120_000 });
    await c.startContainer(ctr, { timeoutMs: 120_000 });

    const addr = await c.execSync(ctr, ['ip', 'addr', 'show', 'dev', 'eth0'], 60);
    assert.equal(addr.exitCode, 0, addr.stderr.toString());
    assert.match(addr.stdout.toString(), new RegExp(`inet ${vmIp.replace(/\./g, '\\.')}/\\d+`), 'the guest eth0 has the pod IP');
    const route = await c.execSync(ctr, ['ip', 'route'], 60);
    assert.match(route.stdout.toString(), /^default via \S+ dev eth0/m, 'the guest has the pod default route');

    // The guest NIC has the MAC of the pod's veth (the VMM runs in the pod netns: read eth0's MAC there).
    const qemuPid = spawnSync('pgrep', ['-f', `qemu-system-x86_64.*${d.base}`], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
    assert.ok(qemuPid, 'the pod VMM runs');
    const podMac = (JSON.parse(spawnSync('nsenter', [`--net=/proc/${qemuPid}/ns/net`, 'ip', '-j', 'link', 'show', 'eth0'], { encoding: 'utf8' }).stdout) as { address: string }[])[0]?.address;
    const guestMac = (await c.execSync(ctr, ['cat', '/sys/class/net/eth0/address'], 60)).stdout.toString().trim();
    assert.ok(podMac);
    assert.equal(guestMac, podMac, 'the guest uses the pod interface MAC');

    // guest → runc pod
    const got = await poll(async () => {
      const r = await c.execSync(ctr, ['wget', '-q', '-O-', `http://${webIp}:8080/`], 60);
      return r.exitCode === 0 ? r.stdout.toString() : undefined;
    }, 'the runc httpd to answer the microvm pod', 60_000);
    assert.equal(got.trim(), `hello-runc-${tag}`);

    // host → guest listener by the pod IP
    const reply = await poll(async () => {
      const r = await readFrom(vmIp, 9000, `hello-vm-${tag}`).catch(() => '');
      return r.includes(`hello-vm-${tag}`) ? r : undefined;
    }, 'the guest listener to answer on the pod IP', 60_000);
    assert.match(reply, new RegExp(`hello-vm-${tag}`));

    for (const p of [vmPod, webPod]) {
      await c.stopPodSandbox(p, { timeoutMs: 120_000 });
      await c.removePodSandbox(p, { timeoutMs: 120_000 });
    }
    assert.deepEqual(await c.listPodSandbox(), []);
    await poll(async () => spawnSync('pgrep', ['-f', `qemu-system-x86_64.*${d.base}`]).status !== 0 || undefined, 'the pod VM to stop', 30_000);
  });

  it('a pod without network (io.bulkhead.network=none) boots a VM with no NIC', async () => {
    const c = d.client;
    const cfg = pod('none', { 'io.bulkhead.network': 'none' });
    const p = await c.runPodSandbox(cfg, 'microvm', { timeoutMs: 240_000 });
    const ctr = await c.createContainer(p, { metadata: { name: 'sleeper' }, image: { image: images.busybox }, logPath: 'sleeper.log', command: ['sleep', '3600'] }, cfg, { timeoutMs: 120_000 });
    await c.startContainer(ctr, { timeoutMs: 120_000 });
    const links = await c.execSync(ctr, ['ls', '/sys/class/net'], 60);
    assert.equal(links.exitCode, 0, links.stderr.toString());
    assert.deepEqual(links.stdout.toString().trim().split(/\s+/), ['lo'], 'only loopback in the guest');
    await c.stopPodSandbox(p, { timeoutMs: 120_000 });
    await c.removePodSandbox(p, { timeoutMs: 120_000 });
  });
});
