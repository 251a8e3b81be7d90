// attachTap (microVM helper) and recovery from a daemon killed in the middle of setup().
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CniPodNetwork } from '../../src/network/cni-pod-network.ts';
import { attachTap } from '../../src/network/tap.ts';
import { run } from '../../src/util/exec.ts';
import { hostLinks, httpGet, inNs, makeRoot, openNetwork, pod, Procs, rand, removeRoot, sig, type NetRoot } from './helpers.ts';

describe('attachTap', () => {
  let root: NetRoot;
  let net: CniPodNetwork;
  const procs = new Procs();
  const tag = rand();

  before(async () => { root = await makeRoot(); net = await openNetwork(root); });
  after(async () => {
    await procs.killAll();
    if (net) { for (const id of await net.list()) await net.teardown(id, sig()); await net.close(sig()); }
    if (root) await removeRoot(root);
  });

  it('joins a tap in the pod netns to eth0 with tc mirred redirects: traffic for the pod goes to the tap', async () => {
    const vm = await net.setup(pod(`tv${tag}`, { trust: 'untrusted' }), sig());
    const peer = await net.setup(pod(`tp${tag}`), sig());
    await procs.httpd(vm.netnsPath, '0.0.0.0:80', `vm-${tag}`, root.dir);
    assert.equal(await httpGet(peer.netnsPath, vm.ips[0]!, 80), `vm-${tag}`, 'reachable before the tap takes over');

    const t = await attachTap(vm.netnsPath!, 'tap0', { signal: sig() });
    const eth0 = JSON.parse((await inNs(vm.netnsPath!, ['ip', '-j', 'link', 'show', 'eth0'])).stdout) as { address: string; mtu: number }[];
    assert.equal(t.mac, eth0[0]!.address);
    assert.deepEqual(t.addresses, [`${vm.ips[0]}/24`]);
    assert.match(t.gateway ?? '', /^\d+\.\d+\.\d+\.1$/);
    const links = JSON.parse((await inNs(vm.netnsPath!, ['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
    assert.ok(links.some((l) => l.ifname === 'tap0'));
    for (const [dev, to] of [['eth0', 'tap0'], ['tap0', 'eth0']]) {
      const f = (await inNs(vm.netnsPath!, ['tc', 'filter', 'show', 'dev', dev!, 'ingress'])).stdout;
      assert.match(f, /matchall|u32/);
      assert.match(f, new RegExp(`mirred \\(Egress Redirect to device ${to}\\)`));
    }
    // The netns's own stack no longer sees the pod's traffic: it is redirected into the tap
    // (which has no VM behind it here), so the httpd in the netns is unreachable now.
    assert.equal(await httpGet(peer.netnsPath, vm.ips[0]!, 80), null);
    const stats = (await inNs(vm.netnsPath!, ['tc', '-s', 'filter', 'show', 'dev', 'eth0', 'ingress'])).stdout;
    assert.match(stats, /Sent [1-9]\d* bytes [1-9]\d* pkt/, 'frames hit the redirect');
  });

  // deferRedirect (the pod VM supervisor: the tc rules go in while QEMU starts): the tap is up when
  // attachTap returns, `redirected` settles once the rules are in; when they cannot go in, it
  // rejects with the tap already undone.
  it('with deferRedirect returns the tap up at once and redirects when `redirected` settles; a redirect that fails undoes the tap', async () => {
    const ok = await net.setup(pod(`td${tag}`), sig());
    const t = await attachTap(ok.netnsPath!, 'tap1', { signal: sig(), deferRedirect: true });
    const up = JSON.parse((await inNs(ok.netnsPath!, ['ip', '-j', 'link', 'show', 'tap1'])).stdout) as { flags: string[] }[];
    assert.ok(up[0]!.flags.includes('UP'), 'the tap is up before the redirect');
    assert.ok(t.redirected, 'a deferred redirect is returned');
    await t.redirected;
    for (const [dev, to] of [['eth0', 'tap1'], ['tap1', 'eth0']]) {
      assert.match((await inNs(ok.netnsPath!, ['tc', 'filter', 'show', 'dev', dev!, 'ingress'])).stdout, new RegExp(`Redirect to device ${to}`));
    }

    // eth0 already has an ingress qdisc: the redirect's `qdisc add` fails
    const bad = await net.setup(pod(`tf${tag}`), sig());
    await inNs(bad.netnsPath!, ['tc', 'qdisc', 'add', 'dev', 'eth0', 'ingress']);
    const f = await attachTap(bad.netnsPath!, 'tap2', { signal: sig(), deferRedirect: true });
    await assert.rejects(f.redirected!, /qdisc/);
    const links = JSON.parse((await inNs(bad.netnsPath!, ['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
    assert.ok(!links.some((l) => l.ifname === 'tap2'), 'the tap is undone');
  });
});

describe('recovery after a daemon killed during setup()', () => {
  let root: NetRoot;
  const tag = rand();
  before(async () => { root = await makeRoot(); });
  after(async () => { if (root) await removeRoot(root); });

  it('a new instance tears the half-made pod down completely, wherever setup() stopped', async () => {
    // A child process runs setup() and is SIGKILLed as soon as its netns exists.
    const script = `
      import { openNetwork, pod } from ${JSON.stringify(new URL('./helpers.ts', import.meta.url).href)};
      const root = JSON.parse(process.argv[1]);
      const net = await openNetwork(root);
      await net.setup(pod('kc${tag}', { trust: 'untrusted' }), AbortSignal.timeout(60000));
      process.stdout.write('done');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(root)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let killed = false;
    // polled until the child ends by itself, however long its start takes (a cap of 400 polls, ~2 s,
    // could run out before a slow Node.js start under load reached setup())
    while (child.exitCode === null && child.signalCode === null) {
      if ((await readdir('/run/netns').catch(() => [] as string[])).some((n) => n.startsWith(`bulkhead-kc${tag}`))) {
        child.kill('SIGKILL');
        killed = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r));
    assert.ok(killed, 'the child was killed mid-way');

    const net = await openNetwork(root);
    assert.deepEqual(await net.list(), [`kc${tag}`]);
    await net.teardown(`kc${tag}`, sig());
    assert.deepEqual(await net.list(), []);
    assert.ok(!(await readdir('/run/netns')).some((n) => n.startsWith(`bulkhead-kc${tag}`)), 'netns gone');
    const ipam = await readdir(join(root.cni.cacheDir, 'ipam', 'bulkhead')).catch(() => [] as string[]);
    assert.deepEqual(ipam.filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)), [], 'no IP allocation left');
    const bridge = (JSON.parse(await readFile(join(root.cni.confDir, '10-bulkhead.conflist'), 'utf8')) as { bulkhead: { bridge: string } }).bulkhead.bridge;
    const ports = await run('ip', ['-j', 'link', 'show', 'master', bridge]);
    assert.deepEqual(ports.code === 0 ? JSON.parse(ports.stdout || '[]') : [], [], 'no veth left on the bridge');
    await net.close(sig());
    assert.equal(await net.guard.dump(sig()), '');
    assert.ok(!(await hostLinks()).includes(bridge), 'bridge removed');
  });
});
