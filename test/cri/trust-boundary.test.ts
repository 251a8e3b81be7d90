// The trust boundary over the real CRI socket, as an attacker with a realistic policy would probe
// it (issue #11): default untrusted; kube-system trusted on runc with host network, "safe" host
// paths and a host port range. CreateContainer is judged by the daemon's stored pod (a lying
// sandbox_config is INVALID_ARGUMENT, an omitted one changes nothing), host ports are judged per
// level and never take over a port a host process serves, masked/readonly /proc paths are never
// dropped, and a level that allows host networking keeps the egress guard.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { TestDaemon } from '../../harness/daemon.ts';
import { policyBuilders, refused, removePod as removeAnyPod, startPolicyDaemon, type PolicyDaemon } from '../fixtures/policy-daemon.ts';
import { shortHash } from '../../src/network/config.ts';
import { KUBELET_MASKED_PATHS, KUBELET_READONLY_PATHS } from '../../src/policy/enforce.ts';
import { run } from '../../src/util/exec.ts';
import { cgroupMode } from '../../src/cgroup/hierarchy.ts';

const IMAGE = 'bulkhead.local/trust-boundary:latest';
const PORTS = { from: 18100, to: 18199 };
// Untrusted pods that name no handler get gVisor (not the microVM: TCG boots are slow here and the
// microVM has its own suites); what is tested is the judging, the same for every sandbox.
const POLICY = `[policy]
default_trust = "untrusted"
[policy.levels.untrusted]
min_isolation = "user-kernel"
default_handler = "gvisor"
[policy.levels.trusted]
min_isolation = "process"
default_handler = "runc"
allow_host_network = true
host_paths = "safe"
allowed_host_ports = ["${PORTS.from}-${PORTS.to}"]
[policy.levels.devices]
min_isolation = "process"
default_handler = "runc"
host_paths = "any"
[policy.levels.restricted]
min_isolation = "user-kernel"
default_handler = "gvisor"
require_run_as_non_root = true
[[policy.rules]]
name = "restricted"
trust = "restricted"
namespaces = ["secure"]
[[policy.rules]]
name = "system"
trust = "trusted"
namespaces = ["kube-system"]
[[policy.rules]]
name = "node devices"
trust = "devices"
namespaces = ["node-devices"]
`;

const { pod, ctr } = policyBuilders({ image: IMAGE, command: ['sleep', '60'], logPath: 'c.log', caseLabel: true });
let t: PolicyDaemon;
let d: TestDaemon;
let dir: string;
before(async () => {
  t = await startPolicyDaemon({ name: 'trust', image: IMAGE, policy: POLICY });
  ({ d, dir } = t);
  await mkdir(join(dir, 'data'));
});
after(async () => { await t?.close(); });

const removePod = (id: string): Promise<void> => removeAnyPod(d, id, { stopMayFail: true });

/** A run of ports, in the trusted range, that nothing on this host listens on right now. */
async function freePort(): Promise<number> {
  for (let p = PORTS.from; p <= PORTS.to; p++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  throw new Error('no free port in the trusted range');
}

test('a CreateContainer whose sandbox_config lies about the pod is INVALID_ARGUMENT; nothing is created', async () => {
  const cfg = pod('liar', 'default');
  const id = await d.client.runPodSandbox(cfg, '');
  try {
    const lie = { ...cfg, metadata: { ...cfg.metadata!, namespace: 'kube-system' } };
    const hostDir = ctr({ mounts: [{ containerPath: '/data', hostPath: join(dir, 'data') }, { containerPath: '/state', hostPath: d.root }] });
    await refused(d.client.createContainer(id, hostDir, lie), 'InvalidArgument', 'namespace lie', /sandbox_config\.metadata\.namespace differs/);
    await refused(d.client.createContainer(id, hostDir, { ...cfg, labels: { case: 'other' } }), 'InvalidArgument', 'label lie', /sandbox_config\.labels differs/);
    const priv = { ...cfg, linux: { securityContext: { privileged: true } } };
    await refused(d.client.createContainer(id, ctr(), priv), 'InvalidArgument', 'privileged lie', /sandbox_config\.linux\.security_context\.privileged differs/);
    assert.deepEqual(await d.client.listContainers({ podSandboxId: id }), [], 'nothing was created');
    // The truth is still judged: the pod is untrusted, so no host paths.
    await refused(d.client.createContainer(id, hostDir, cfg), 'PermissionDenied', 'host dir in an untrusted pod', /denied by rule untrusted\/host-path/);
  } finally {
    await removePod(id);
  }
});

test('an omitted sandbox_config is judged by the stored pod: trusted stays trusted, untrusted stays untrusted', async () => {
  const sys = pod('sys', 'kube-system');
  const sysId = await d.client.runPodSandbox(sys, 'runc');
  const ten = pod('tenant', 'default');
  const tenId = await d.client.runPodSandbox(ten, '');
  try {
    const hostDir = ctr({ mounts: [{ containerPath: '/data', hostPath: join(dir, 'data') }] });
    const cid = await d.client.createContainer(sysId, hostDir, null);
    assert.ok(cid, 'the kube-system pod on runc gets its container without resending its config');
    await refused(d.client.createContainer(tenId, hostDir, null), 'PermissionDenied', 'untrusted pod, no config', /denied by rule untrusted\/host-path/);
  } finally {
    await removePod(sysId);
    await removePod(tenId);
  }
});

test('hostPort: untrusted refused, trusted refused for a port a host process serves (TCP and UDP), allowed in its range', async () => {
  const mapping = (hostPort: number, protocol: 'TCP' | 'UDP' = 'TCP') => ({ portMappings: [{ protocol, containerPort: 80, hostPort, hostIp: '' }] });
  await refused(d.client.runPodSandbox(pod('hp-untrusted', 'default', mapping(PORTS.from)), ''), 'PermissionDenied', 'untrusted hostPort', /denied by rule untrusted\/host-port .*host port 18100 is not allowed/);
  await refused(d.client.runPodSandbox(pod('hp-outside', 'kube-system', mapping(18443)), 'runc'), 'PermissionDenied', 'trusted, outside its range', /denied by rule trusted\/host-port .*18443/);

  const busy = await freePort();
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(busy, '127.0.0.1', resolve));
  const udp: UdpSocket = createSocket('udp6');
  await new Promise<void>((resolve) => udp.bind(busy + 1, '::1', resolve));
  try {
    await refused(d.client.runPodSandbox(pod('hp-busy', 'kube-system', mapping(busy)), 'runc'), 'PermissionDenied', 'TCP port in use', new RegExp(`denied by rule trusted/host-port-in-use .*host port ${busy}/tcp is already in use`));
    await refused(d.client.runPodSandbox(pod('hp-busy-udp', 'kube-system', mapping(busy + 1, 'UDP')), 'runc'), 'PermissionDenied', 'UDP port in use', new RegExp(`host port ${busy + 1}/udp is already in use`));
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    udp.close();
  }
  assert.deepEqual((await d.client.listPodSandbox()).filter((p) => p.metadata.name.startsWith('hp-')), [], 'nothing was created');
  const free = await freePort();
  const id = await d.client.runPodSandbox(pod('hp-ok', 'kube-system', mapping(free)), 'runc');
  try {
    // The same port for a second pod would be a second DNAT rule for one port: refused.
    await refused(d.client.runPodSandbox(pod('hp-twice', 'kube-system', mapping(free)), 'runc'), 'FailedPrecondition', 'a port another pod publishes', new RegExp(`host port ${free}/tcp is already published by pod kube-system/hp-ok`));
    // Another protocol on the same number is a different port.
    const udpId = await d.client.runPodSandbox(pod('hp-udp', 'kube-system', mapping(free, 'UDP')), 'runc');
    await removePod(udpId);
  } finally {
    await removePod(id);
  }
});

test('hostPort: two pods asking for one free host port at the same time: one is created, the other refused (rule host-port-taken)', async () => {
  const free = await freePort();
  const mapping = { portMappings: [{ protocol: 'TCP' as const, containerPort: 80, hostPort: free, hostIp: '' }] };
  for (let round = 0; round < 3; round++) {
    const results = await Promise.allSettled([0, 1, 2].map((i) => d.client.runPodSandbox(pod(`hp-race-${round}-${i}`, 'kube-system', mapping), 'runc')));
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    try {
      assert.equal(ok.length, 1, `exactly one pod publishes host port ${free} (round ${round}: ${results.map((r) => r.status === 'fulfilled' ? 'created' : String((r.reason as Error).message).slice(0, 120)).join(' | ')})`);
      for (const r of results) if (r.status === 'rejected') assert.match(String((r.reason as Error).message), /rule host-port-taken/);
    } finally {
      for (const id of ok) await removePod(id);
    }
  }
});

test('masked/readonly /proc paths: a list dropping a default is refused; extra paths are added to the defaults, never replace them', async () => {
  const cfg = pod('proc', 'kube-system');
  const id = await d.client.runPodSandbox(cfg, 'runc');
  try {
    const noSys = ctr({ linux: { securityContext: { readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sysrq-trigger'] } } });
    await refused(d.client.createContainer(id, noSys, cfg), 'PermissionDenied', 'readonly paths without /proc/sys', /denied by rule trusted\/proc-mount/);
    await refused(d.client.createContainer(id, ctr({ linux: { securityContext: { maskedPaths: ['/proc/kcore'] } } }), cfg), 'PermissionDenied', 'masked paths without most defaults', /trusted\/proc-mount/);
    // The kubelet's own lists (which lack /sys/dev/block) plus one extra path: all of ours stay.
    const kubelet = ctr({ linux: { securityContext: { maskedPaths: [...KUBELET_MASKED_PATHS, '/proc/cmdline'], readonlyPaths: [...KUBELET_READONLY_PATHS] } } });
    const cid = await d.client.createContainer(id, kubelet, cfg);
    await d.client.startContainer(cid);
    const r = await d.client.execSync(cid, ['sh', '-c', 'cat /proc/cmdline | wc -c; grep -c " /sys/dev/block " /proc/self/mountinfo; grep " /proc/sys " /proc/self/mountinfo | grep -c " ro,"'], 10);
    assert.deepEqual(r.stdout.toString().trim().split(/\s+/), ['0', '1', '1'], `extra path masked, default /sys/dev/block masked, /proc/sys read-only: ${r.stdout.toString()}${r.stderr.toString()}`);
  } finally {
    await removePod(id);
  }
});

test('Bidirectional mount propagation needs a privileged container, even where host paths are allowed', async () => {
  const cfg = pod('rshared', 'kube-system');
  const id = await d.client.runPodSandbox(cfg, 'runc');
  try {
    const shared = ctr({ mounts: [{ containerPath: '/data', hostPath: join(dir, 'data'), propagation: 'PROPAGATION_BIDIRECTIONAL' }] });
    await refused(d.client.createContainer(id, shared, cfg), 'PermissionDenied', 'rshared host dir', /denied by rule trusted\/mount-propagation .*\/data/);
    const slave = ctr({ mounts: [{ containerPath: '/data', hostPath: join(dir, 'data'), propagation: 'PROPAGATION_HOST_TO_CONTAINER' }] });
    assert.ok(await d.client.createContainer(id, slave, cfg), 'host-to-container propagation is fine');
  } finally {
    await removePod(id);
  }
});

test('the egress guard stays on for a level that allows host network', async () => {
  const id = await d.client.runPodSandbox(pod('guarded', 'kube-system'), 'runc');
  try {
    const ip = (await d.client.podSandboxStatus(id)).status.network?.ip ?? '';
    assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/, 'the pod has a bridge address');
    const table = `bulkhead_${shortHash(join(d.root, 'cni', 'cache'), 10)}`;
    const r = await run('nft', ['-j', 'list', 'set', 'inet', table, 'untrusted4'], { timeoutMs: 10_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(`"${ip}"`), `pod ${ip} is in the guarded set`);
  } finally {
    await removePod(id);
  }
});

test('untrusted gVisor pods on netstack, under the egress guard: one reaches another at its IP (netstack\'s ARP and frames carry the pinned MAC and IP)', async () => {
  const a = await d.client.runPodSandbox(pod('gv-guard-a', 'default'), '');
  const b = await d.client.runPodSandbox(pod('gv-guard-b', 'default'), '');
  try {
    assert.equal((await d.client.podSandboxStatus(a)).status.runtimeHandler, 'gvisor');
    const serve = "printf '#!/bin/sh\\necho guarded-hello\\n' > /tmp/serve && chmod +x /tmp/serve && exec nc -ll -p 8080 -e /tmp/serve";
    const srv = await d.client.createContainer(a, ctr({ command: ['sh', '-c', serve] }), null);
    await d.client.startContainer(srv, { timeoutMs: 120_000 });
    const cli = await d.client.createContainer(b, ctr({ command: ['sleep', '600'] }), null);
    await d.client.startContainer(cli, { timeoutMs: 120_000 });
    const ip = (await d.client.podSandboxStatus(a)).status.network?.ip ?? '';
    assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/);
    const info = JSON.parse((await d.client.podSandboxStatus(a, true)).info.info ?? '{}') as { decision?: { egressGuard?: boolean } };
    assert.equal(info.decision?.egressGuard, true, 'the pods are guarded');
    let got = '';
    for (let i = 0; i < 50 && !got.includes('guarded-hello'); i++) {
      got = (await d.client.execSync(cli, ['sh', '-c', `nc -w 3 ${ip} 8080 </dev/null`], 30)).stdout.toString();
      if (!got.includes('guarded-hello')) await new Promise((r) => setTimeout(r, 200));
    }
    assert.match(got, /guarded-hello/);
  } finally {
    await removePod(a);
    await removePod(b);
  }
});

test('the stored decision is shown in verbose status and survives a daemon restart', async () => {
  const cfg = pod('restart', 'kube-system');
  const id = await d.client.runPodSandbox(cfg, 'runc');
  try {
    const info = JSON.parse((await d.client.podSandboxStatus(id, true)).info.info ?? '{}') as { decision?: Record<string, unknown> };
    assert.equal(info.decision?.level, 'trusted');
    assert.equal(info.decision?.trustRule, 'system');
    assert.equal(info.decision?.egressGuard, true);
    assert.deepEqual(info.decision?.allowedHostPorts, [`${PORTS.from}-${PORTS.to}`]);
    await d.restart();
    const cid = await d.client.createContainer(id, ctr({ mounts: [{ containerPath: '/data', hostPath: join(dir, 'data') }] }), null);
    assert.ok(cid, 'judged by the decision read back from state.db');
  } finally {
    await removePod(id);
  }
});

test('linux.resources.unified: UpdateContainerResources and CreateContainer refuse cgroup files beyond the self-limits for a level without privileged', async () => {
  const tenId = await d.client.runPodSandbox(pod('unified', 'default'), '');
  try {
    await refused(d.client.createContainer(tenId, ctr({ linux: { resources: { unified: { 'cgroup.subtree_control': '+memory' } } } }), null),
      'PermissionDenied', 'create with cgroup.subtree_control', /denied by rule untrusted\/cgroup-unified/);
    const cid = await d.client.createContainer(tenId, ctr(), null);
    for (const unified of [{ 'cgroup.procs': '1' }, { '../../memory.max': 'max' }, { 'hugetlb.2MB.max': 'max' }, { 'memory.max': '1\nmax' }]) {
      await refused(d.client.updateContainerResources(cid, { unified }), 'PermissionDenied', `update ${JSON.stringify(unified)}`, /untrusted\/cgroup-unified/);
    }
    const st = await d.client.containerStatus(cid);
    assert.ok(st, 'the container is still there after the refused updates');
  } finally {
    await removePod(tenId);
  }
});

test('device permissions: only r/w/m, m (also the default of empty permissions) only for a privileged level; CDI_devices refused (policy, or Unimplemented: no CDI registry)', async () => {
  const devId = await d.client.runPodSandbox(pod('devices', 'node-devices'), '');
  const tenId = await d.client.runPodSandbox(pod('cdi', 'default'), '');
  try {
    const dev = (permissions: string): ReturnType<typeof ctr> => ctr({ devices: [{ containerPath: '/dev/xnull', hostPath: '/dev/null', permissions }] });
    for (const p of ['rwm', 'm', '', 'rx', 'rrw', 'RW']) {
      await refused(d.client.createContainer(devId, dev(p), null), 'PermissionDenied', `permissions ${JSON.stringify(p)}`, /denied by rule devices\/device-permissions/);
    }
    const cid = await d.client.createContainer(devId, dev('rw'), null);
    assert.ok(cid, '"rw" on a level that may mount any host path is allowed');
    const cdi = ctr({ CDIDevices: [{ name: 'vendor.com/gpu=0' }] });
    await refused(d.client.createContainer(tenId, cdi, null), 'PermissionDenied', 'CDI for untrusted', /denied by rule untrusted\/cdi-devices/);
    await refused(d.client.createContainer(devId, cdi, null), 'Unimplemented', 'CDI where the level allows host devices', /no CDI registry/);
  } finally {
    await removePod(devId);
    await removePod(tenId);
  }
});

test('port mapping host_ip: an address that is not the node\'s (another host, loopback, metadata) is refused even where the host port is allowed', async () => {
  for (const hostIp of ['203.0.113.9', '127.0.0.1', '169.254.169.254']) {
    const p = pod('hostip', 'kube-system', { portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: PORTS.to, hostIp }] });
    await refused(d.client.runPodSandbox(p, 'runc'), 'PermissionDenied', `host_ip ${hostIp}`, /denied by rule trusted\/host-ip.*is not an address of this node/);
  }
});

test('userns_options: a pod or container asking for its own user namespace is Unimplemented (never run as the host\'s root); mode NODE runs', async () => {
  const maps = [{ hostId: 100000, containerId: 0, length: 65536 }];
  const podUserns = pod('userns', 'default', { linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: 'POD', uids: maps, gids: maps } } } } });
  await refused(d.client.runPodSandbox(podUserns, ''), 'Unimplemented', 'pod userns POD', /namespace_options\.userns_options \(mode POD, with uid\/gid mappings\) is not supported/);
  const id = await d.client.runPodSandbox(pod('userns-node', 'default', { linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: 'NODE' } } } } }), '');
  try {
    const c = ctr({ linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: 'POD', uids: maps, gids: maps } } } } });
    await refused(d.client.createContainer(id, c, null), 'Unimplemented', 'container userns POD', /container c: namespace_options\.userns_options/);
    assert.ok(await d.client.createContainer(id, ctr({ linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: 'NODE' } } } } }), null));
  } finally {
    await removePod(id);
  }
});

test('require_run_as_non_root: the image\'s own user (root) and uid 0 are refused; a non-zero runAsUser runs', async () => {
  const id = await d.client.runPodSandbox(pod('restricted', 'secure'), '');
  try {
    const imageUser = d.client.createContainer(id, ctr(), null).then((cid) => d.client.startContainer(cid));
    await refused(imageUser, 'PermissionDenied', 'image user root', /run-as-non-root rule: the container would run as uid 0 \(the image names no user\)/);
    await refused(d.client.createContainer(id, ctr({ linux: { securityContext: { runAsUser: { value: 0 } } } }), null), 'PermissionDenied', 'runAsUser 0', /denied by rule restricted\/run-as-non-root/);
    const cid = await d.client.createContainer(id, ctr({ metadata: { name: 'nonroot', attempt: 0 }, linux: { securityContext: { runAsUser: { value: 1000 } } } }), null);
    await d.client.startContainer(cid);
    const r = await d.client.execSync(cid, ['id', '-u'], 10);
    assert.equal(r.stdout.toString().trim(), '1000');
  } finally {
    await removePod(id);
  }
});

test('selinux_options on a node without SELinux: accepted and give no label (as containerd and CRI-O); the level\'s other rules still apply', async () => {
  const se = { user: 'system_u', role: 'system_r', type: 'spc_t', level: 's0' };
  const id = await d.client.runPodSandbox(pod('selinux', 'default', { linux: { securityContext: { selinuxOptions: se } } }), '');
  try {
    const cid = await d.client.createContainer(id, ctr({ linux: { securityContext: { selinuxOptions: se } } }), null);
    assert.ok(cid);
    await refused(d.client.createContainer(id, ctr({ metadata: { name: 'p', attempt: 0 }, linux: { securityContext: { selinuxOptions: se, privileged: true } } }), null), 'PermissionDenied', 'spc_t does not stand for privileged', /untrusted\/privileged/);
  } finally {
    await removePod(id);
  }
});

test('linux.resources.unified on a cgroup v1 node: even an allowed self-limit is FailedPrecondition at create and update, never silently dropped', async (t) => {
  if ((await cgroupMode()) !== 'v1') { t.skip('this node runs cgroup v2: unified is applied there'); return; }
  const id = await d.client.runPodSandbox(pod('unified-v1', 'default'), '');
  try {
    const limit = { 'memory.max': '104857600' };
    await refused(d.client.createContainer(id, ctr({ linux: { resources: { unified: limit } } }), null), 'FailedPrecondition', 'create', /linux\.resources\.unified sets cgroup v2 files, but this node runs cgroup v1/);
    const cid = await d.client.createContainer(id, ctr(), null);
    await refused(d.client.updateContainerResources(cid, { unified: limit }), 'FailedPrecondition', 'update', /this node runs cgroup v1/);
  } finally {
    await removePod(id);
  }
});
