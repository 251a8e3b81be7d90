// Pod networking with real netns, real CNI plugins (Debian's /usr/lib/cni), real nftables.
// Every name is unique per run (netns, bridge, nft table, veth, routing table), so this file can
// run beside others; all traffic stays on this machine.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CniPodNetwork } from '../../src/network/cni-pod-network.ts';
import type { PodNetworkResult } from '../../src/network/pod-network.ts';
import { exists } from '../../src/network/host.ts';
import { run } from '../../src/util/exec.ts';
import { hostLinks, httpGet, inNs, makeRoot, openNetwork, pod, Procs, rand, removeRoot, sig, type NetRoot } from './helpers.ts';

const ip = async (...args: string[]): Promise<void> => {
  const r = await run('ip', args, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
};

describe('CniPodNetwork: bridge pods, hostPort, egress guard, restart', () => {
  let root: NetRoot;
  let net: CniPodNetwork;
  const procs = new Procs();
  const tag = rand();
  const ids = { a: `nta${tag}`, b: `ntb${tag}`, c: `ntc${tag}` };
  let a: PodNetworkResult;
  let b: PodNetworkResult;
  let gw = '';
  let subnet = '';
  const hostPort = 20000 + Math.floor(Math.random() * 20000);
  // A fake metadata service: a netns of our own with 169.254.169.254 on a dummy interface,
  // reached from our pod subnet only (policy routing rule), never a real one.
  const meta = { ns: `bhmeta-${tag}`, hostIf: `bhmh${tag}`, nsIf: `bhmn${tag}`, table: String(20000 + Math.floor(Math.random() * 40000)), pref: String(10000 + Math.floor(Math.random() * 20000)), net: `198.18.${Math.floor(Math.random() * 250)}` };
  let metaUp = false;

  before(async () => {
    root = await makeRoot();
    net = await openNetwork(root, { routed: ['169.254.169.254/32'] });
    const conf = JSON.parse(await readFile(join(root.cni.confDir, '10-bulkhead.conflist'), 'utf8')) as { bulkhead: { gateway: string } };
    gw = conf.bulkhead.gateway.split('/')[0]!;
    subnet = `${gw.split('.').slice(0, 3).join('.')}.0/24`;
    a = await net.setup(pod(ids.a, { trust: 'trusted', portMappings: [{ protocol: 'tcp', containerPort: 80, hostPort, hostIp: '' }] }), sig());
    b = await net.setup(pod(ids.b, { trust: 'untrusted' }), sig());
    await procs.httpd(a.netnsPath, '0.0.0.0:80', `pod-a-${tag}`, root.dir);
    await procs.httpd(b.netnsPath, '0.0.0.0:80', `pod-b-${tag}`, root.dir);
    await procs.httpd(null, `${gw}:8099`, `node-${tag}`, root.dir);
    // metadata netns
    await ip('netns', 'add', meta.ns);
    metaUp = true;
    await ip('link', 'add', meta.hostIf, 'type', 'veth', 'peer', 'name', meta.nsIf, 'netns', meta.ns);
    await ip('addr', 'add', `${meta.net}.1/30`, 'dev', meta.hostIf);
    await ip('link', 'set', meta.hostIf, 'up');
    await run('sysctl', ['-qw', `net.ipv4.conf.${meta.hostIf}.forwarding=1`]);
    await ip('-n', meta.ns, 'link', 'set', 'lo', 'up');
    await ip('-n', meta.ns, 'addr', 'add', `${meta.net}.2/30`, 'dev', meta.nsIf);
    await ip('-n', meta.ns, 'link', 'set', meta.nsIf, 'up');
    // This kernel has no dummy link type; lo of the test's own netns holds the address instead.
    await ip('-n', meta.ns, 'addr', 'add', '169.254.169.254/32', 'dev', 'lo');
    await ip('-n', meta.ns, 'route', 'add', subnet, 'via', `${meta.net}.1`);
    await ip('route', 'add', '169.254.169.254/32', 'via', `${meta.net}.2`, 'table', meta.table);
    await ip('rule', 'add', 'from', subnet, 'to', '169.254.169.254/32', 'table', meta.table, 'pref', meta.pref);
    // Before any packet is sent: the pods' route to 169.254.169.254 must lead into our netns.
    const bridge = (JSON.parse(await readFile(join(root.cni.confDir, '10-bulkhead.conflist'), 'utf8')) as { bulkhead: { bridge: string } }).bulkhead.bridge;
    const how = await run('ip', ['route', 'get', '169.254.169.254', 'from', a.ips[0]!, 'iif', bridge]);
    assert.match(how.stdout, new RegExp(`dev ${meta.hostIf} `), `route to the fake metadata service: ${how.stdout}${how.stderr}`);
    await procs.httpd(`/run/netns/${meta.ns}`, '169.254.169.254:80', `meta-${tag}`, root.dir);
  });

  after(async () => {
    await procs.killAll();
    if (metaUp) {
      await run('ip', ['rule', 'del', 'pref', meta.pref]);
      await run('ip', ['route', 'flush', 'table', meta.table]);
      await run('ip', ['link', 'del', meta.hostIf]);
      await run('ip', ['netns', 'del', meta.ns]);
    }
    if (net) {
      for (const id of await net.list()) await net.teardown(id, sig());
      await net.close(sig());
    }
    if (root) await removeRoot(root);
  });

  it('gives each pod its own named netns under /run/netns with one IP in the subnet', async () => {
    for (const r of [a, b]) {
      assert.match(r.netnsPath ?? '', /^\/run\/netns\/bulkhead-nt[abc][0-9a-f]{6}/);
      assert.ok(await exists(r.netnsPath!));
      assert.equal(r.ips.length, 1);
      assert.equal(r.ips[0]!.split('.').slice(0, 3).join('.'), gw.split('.').slice(0, 3).join('.'));
    }
    assert.notEqual(a.ips[0], b.ips[0]);
    assert.deepEqual(await net.status(ids.b), { ...b, trust: 'untrusted', ifName: 'eth0' });
  });

  it('pods reach each other over the bridge (httpd by IP, both directions)', async () => {
    assert.equal(await httpGet(b.netnsPath, a.ips[0]!, 80), `pod-a-${tag}`);
    assert.equal(await httpGet(a.netnsPath, b.ips[0]!, 80), `pod-b-${tag}`);
  });

  it('forwards a hostPort from host addresses to the pod', async () => {
    assert.equal(await httpGet(null, gw, hostPort), `pod-a-${tag}`);
    assert.equal(await httpGet(null, '127.0.0.1', hostPort), `pod-a-${tag}`);
  });

  it('the node reaches an untrusted pod (replies are not blocked)', async () => {
    assert.equal(await httpGet(null, b.ips[0]!, 80), `pod-b-${tag}`);
  });

  it('blocks an untrusted pod from the node address and 169.254.169.254; a trusted pod gets through', async () => {
    assert.equal(await httpGet(a.netnsPath, gw, 8099), `node-${tag}`);
    assert.equal(await httpGet(a.netnsPath, '169.254.169.254', 80), `meta-${tag}`);
    assert.equal(await httpGet(b.netnsPath, gw, 8099), null);
    assert.equal(await httpGet(b.netnsPath, '169.254.169.254', 80), null);
    // and a hostPort through the node's address is the node too
    assert.equal(await httpGet(b.netnsPath, gw, hostPort), null);
  });

  it('an untrusted pod that changes its IP (spoofing) is cut off', async () => {
    const c = await net.setup(pod(ids.c, { trust: 'untrusted' }), sig());
    assert.equal(await httpGet(c.netnsPath, a.ips[0]!, 80), `pod-a-${tag}`);
    const spoofed = `${gw.split('.').slice(0, 3).join('.')}.250`;
    assert.equal((await inNs(c.netnsPath!, ['ip', 'addr', 'flush', 'dev', 'eth0'])).code, 0);
    assert.equal((await inNs(c.netnsPath!, ['ip', 'addr', 'add', `${spoofed}/24`, 'dev', 'eth0'])).code, 0);
    assert.equal(await httpGet(c.netnsPath, a.ips[0]!, 80), null);
    // CNI CHECK notices that the pod's address is not what ADD gave it
    await assert.rejects(net.check(ids.c, sig()), /CNI plugin "bridge" CHECK/);
    await net.teardown(ids.c, sig());
  });

  // Pods with hostPorts are not CHECKed here: Debian's portmap 1.1.1 fails CHECK on IPv4-only
  // pods (containernetworking/plugins#819).
  it('CNI CHECK passes on a ready pod', async () => {
    await net.check(ids.b, sig());
  });

  it('tears down after a restart (new instance, same dirs) and leaves nothing behind', async () => {
    const before = await hostLinks();
    const vethOf = async (r: PodNetworkResult): Promise<string> => {
      const out = JSON.parse((await inNs(r.netnsPath!, ['ip', '-j', 'link', 'show', 'eth0'])).stdout) as { link_index: number }[];
      const links = JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as { ifindex: number; ifname: string }[];
      return links.find((l) => l.ifindex === out[0]!.link_index)!.ifname;
    };
    const vethA = await vethOf(a);
    const vethB = await vethOf(b);
    assert.ok(before.includes(vethA) && before.includes(vethB));
    assert.match(await net.guard.dump(sig()), new RegExp(vethB));
    await procs.killAll();

    const again = await openNetwork(root, { routed: ['169.254.169.254/32'] });
    assert.deepEqual((await again.list()).sort(), [ids.a, ids.b].sort());
    // the first write of a pod's record cut short (the daemon killed in it) left only its temporary file: it goes with the pod's teardown
    await writeFile(join(root.cni.cacheDir, 'pods', `ntx${tag}.json.tmp`), '{"podId":');
    await again.teardown(`ntx${tag}`, sig());
    await again.teardown(ids.a, sig());
    await again.teardown(ids.b, sig());
    await again.teardown(ids.b, sig()); // idempotent
    assert.deepEqual(await readdir(join(root.cni.cacheDir, 'pods')), [], 'no pod record (nor a half-written one) left');
    assert.deepEqual(await again.list(), []);
    assert.equal(await again.status(ids.a), undefined);

    const links = await hostLinks();
    assert.ok(!links.includes(vethA) && !links.includes(vethB), 'veths gone');
    assert.ok(!(await exists(a.netnsPath!)) && !(await exists(b.netnsPath!)), 'netns gone');
    const ipam = await readdir(join(root.cni.cacheDir, 'ipam', 'bulkhead'));
    assert.ok(!ipam.includes(a.ips[0]!) && !ipam.includes(b.ips[0]!), `IPs released: ${ipam.join(',')}`);
    const dump = await again.guard.dump(sig());
    assert.doesNotMatch(dump, new RegExp(vethB));
    assert.doesNotMatch(dump, new RegExp(b.ips[0]!.replaceAll('.', '\\.')));
    const nat = (await run('iptables-save', ['-t', 'nat'])).stdout;
    assert.doesNotMatch(nat, new RegExp(`${a.ips[0]!.replaceAll('.', '\\.')}[/:]`), 'no portmap rule for the pod');
    assert.doesNotMatch(nat, new RegExp(`--dport ${hostPort}\\b`), 'no hostPort rule');
    await again.close(sig());
    assert.equal(await again.guard.dump(sig()), '', 'nft tables removed');
    const conf = JSON.parse(await readFile(join(root.cni.confDir, '10-bulkhead.conflist'), 'utf8')) as { bulkhead: { bridge: string } };
    assert.ok(!(await hostLinks()).includes(conf.bulkhead.bridge), 'bridge removed');
  });
});

describe('CniPodNetwork: modes and failures', () => {
  let root: NetRoot;
  let net: CniPodNetwork;
  const tag = rand();

  before(async () => {
    root = await makeRoot();
    net = await openNetwork(root);
  });
  after(async () => {
    if (net) {
      for (const id of await net.list()) await net.teardown(id, sig());
      await net.close(sig());
    }
    if (root) await removeRoot(root);
  });

  it('mode none: a netns with only lo, up', async () => {
    const r = await net.setup(pod(`nn${tag}`, { mode: 'none', trust: 'untrusted' }), sig());
    assert.deepEqual(r.ips, []);
    const links = JSON.parse((await inNs(r.netnsPath!, ['ip', '-j', 'link', 'show'])).stdout) as { ifname: string; flags: string[] }[];
    assert.deepEqual(links.map((l) => l.ifname), ['lo']);
    assert.ok(links[0]!.flags.includes('UP'));
    await net.teardown(`nn${tag}`, sig());
    assert.ok(!(await exists(r.netnsPath!)));
  });

  it('mode host: no netns for a trusted pod, refused for an untrusted one', async () => {
    assert.deepEqual(await net.setup(pod(`nh${tag}`, { mode: 'host' }), sig()), { netnsPath: null, ips: [], mode: 'host' });
    await net.teardown(`nh${tag}`, sig());
    await assert.rejects(net.setup(pod(`nu${tag}`, { mode: 'host', trust: 'untrusted' }), sig()), { code: 'PermissionDenied' });
  });

  it('rejects bad requests before touching the host', async () => {
    await assert.rejects(net.setup(pod(`nb${tag}`, { name: 'a;b' }), sig()), { code: 'InvalidArgument' });
    await assert.rejects(net.setup(pod(`nb${tag}`, { portMappings: [{ protocol: 'tcp', containerPort: 0, hostPort: 1, hostIp: '' }] }), sig()), { code: 'InvalidArgument' });
  });

  it('a broken plugin config fails with an error naming the plugin, and nothing is left', async () => {
    const other = await makeRoot();
    try {
      const { mkdir, writeFile } = await import('node:fs/promises');
      await mkdir(other.cni.confDir, { recursive: true });
      await writeFile(join(other.cni.confDir, '00-broken.conflist'), JSON.stringify({
        cniVersion: '1.0.0', name: 'broken',
        plugins: [{ type: 'bridge', bridge: `bhx${tag}`, ipam: { type: 'host-local', ranges: [[{ subnet: 'not-a-subnet' }]], dataDir: join(other.dir, 'ipam') } }],
      }));
      const bad = await openNetwork(other);
      const err = await bad.setup(pod(`nx${tag}`), sig()).then(() => null, (e: unknown) => e as Error & { code: string });
      assert.ok(err, 'setup must fail');
      assert.match(err.message, /CNI plugin "bridge" ADD for network "broken" failed/);
      assert.match(err.message, /subnet/);
      assert.deepEqual(await bad.list(), []);
      assert.ok(!(await readdir('/run/netns')).some((n) => n.startsWith(`bulkhead-nx${tag}`)), 'netns removed after the failure');
      await run('ip', ['link', 'del', `bhx${tag}`]);
      await bad.close(sig());
    } finally {
      await removeRoot(other);
    }
  });

  it('a missing plugin makes ready() false and names it', async () => {
    const other = await makeRoot();
    try {
      const { mkdir, writeFile } = await import('node:fs/promises');
      await mkdir(other.cni.confDir, { recursive: true });
      await writeFile(join(other.cni.confDir, '00-x.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [{ type: 'no-such-plugin' }] }));
      const bad = await openNetwork(other);
      const r = await bad.ready();
      assert.equal(r.ready, false);
      assert.match(r.reason ?? '', /no-such-plugin/);
      assert.deepEqual(await net.ready(), { ready: true });
    } finally {
      await removeRoot(other);
    }
  });
});
