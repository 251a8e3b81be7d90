// Warm pools over the real CRI socket, real runsc: pools per (handler, trust level) fill; a pod
// adopted from one is what a cold pod is (hostname, /etc files, its own IP, its cgroup) and runs a
// container; the pool refills; a member never goes to a pod of another trust level or handler; a
// pod asking for what members lack starts cold with the reason logged; a daemon killed with
// members, restarted, removes them, and a daemon shut down removes its own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { run } from '../../src/util/exec.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import type { WarmPoolInfo } from '../../src/api/cri-messages.ts';
import { netnsOf, procsWith, waitFor } from '../engine/helpers.ts';

const POLICY = `[policy]
default_trust = "untrusted"
[policy.levels.untrusted]
min_isolation = "user-kernel"
allowed_sysctls = ["kernel.shm_rmid_forced"]
[policy.levels.trusted]
min_isolation = "process"
[policy.levels.plain]
min_isolation = "user-kernel"
[[policy.rules]]
name = "trusted namespace"
trust = "trusted"
namespaces = ["pool-trusted"]
[[policy.rules]]
name = "a level without a pool (cold pods to compare with)"
trust = "plain"
namespaces = ["pool-cold"]
`;
const POOLS = `[pools]
[pools.gvisor]
untrusted = 2
trusted = 1
[pools.broken]
untrusted = 1
`;

let d: TestDaemon;
let images: TestImages;
let metricsUrl = '';
const BULKHEAD = new URL('../../bin/bulkhead', import.meta.url).pathname;

before(async () => {
  images = await buildAndPushTestImages(await sharedRegistry());
  d = await startTestDaemon({
    name: 'bulkhead-warm-pool-', policy: { toml: POLICY },
    handlers: {
      runc: { backend: 'runc' },
      gvisor: { backend: 'gvisor', runtime_args: ['--platform=ptrace'] },
      // a gVisor handler whose runsc does not exist: its pool can never fill
      broken: { backend: 'gvisor', binary: '/nonexistent/bin/runsc' },
    },
    // port 0: the kernel picks a free one at the daemon's bind; the daemon logs the URL
    extraToml: `${POOLS}\n[metrics]\naddress = "127.0.0.1:0"\n`, logLevel: 'info' });
  for (let i = 0; i < 100 && !metricsUrl; i++) {
    metricsUrl = /msg="metrics listening".* url="?(http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(await d.log())?.[1] ?? '';
    if (!metricsUrl) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(metricsUrl, 'the daemon logged where /metrics is');
  await d.client.pullImage(images.busybox);
});
after(async () => { await d?.close(); });

interface Member { id: string; sandbox: string; level: string }

/** Every member the daemon made so far (from its log: `warm pool member ready`), by id. */
async function members(): Promise<Map<string, Member>> {
  const out = new Map<string, Member>();
  for (const line of (await d.log()).split('\n')) {
    if (!line.includes('msg="warm pool member ready"')) continue;
    const f = (k: string): string => new RegExp(` ${k}=(\\S+)`).exec(line.slice(line.indexOf(' part=')))?.[1] ?? '';
    out.set(f('member'), { id: f('member'), sandbox: f('sandbox'), level: f('level') });
  }
  return out;
}

/** The gvisor handler's pools (the broken handler's never fills). */
async function pools(): Promise<WarmPoolInfo[]> {
  return ((await d.client.info()).warmPools ?? []).filter((p) => p.handler === 'gvisor');
}
const poolOf = async (level: string): Promise<WarmPoolInfo> => (await pools()).find((p) => p.handler === 'gvisor' && p.level === level)!;

async function full(): Promise<void> {
  await waitFor(async () => (await pools()).every((p) => p.ready === p.target), 180_000, 'warm pools full');
}

function pod(name: string, namespace: string, extra: Partial<PodSandboxConfig> = {}): PodSandboxConfig {
  return { metadata: { name, namespace, uid: randomUUID(), attempt: 0 }, labels: { t: 'warm-pool' }, linux: {}, ...extra };
}

/** What a pod gives its container, as the container and the host see it. */
async function facts(podId: string, cfg: PodSandboxConfig): Promise<Record<string, unknown>> {
  const c = d.client;
  const ctr = await c.createContainer(podId, { metadata: { name: 'probe' }, image: { image: images.busybox }, command: ['sleep', '600'] }, cfg);
  await c.startContainer(ctr, { timeoutMs: 120_000 });
  const sh = async (cmd: string): Promise<string> => {
    const r = await c.execSync(ctr, ['sh', '-c', cmd], 30);
    assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr.toString()}`);
    return r.stdout.toString().trim();
  };
  const st = (await c.podSandboxStatus(podId)).status;
  const ip = st.network?.ip ?? '';
  const hosts = await sh('cat /etc/hosts');
  // the pod's cgroup, under the daemon's own parent: the sandbox's processes are in it
  const cg = join('/sys/fs/cgroup/pids/bulkhead', `pod-${podId.slice(0, 16)}`);
  const cgProcs = existsSync(cg) ? (await readdir(cg, { withFileTypes: true })).filter((e) => e.isDirectory()).length : -1;
  const out = {
    state: st.state,
    hostname: await sh('hostname'),
    etcHostname: await sh('cat /etc/hostname'),
    hostsNamesPod: hosts.includes(`${ip}\t${cfg.hostname}`) || new RegExp(`${ip.replace(/\./g, '\\.')}\\s+${cfg.hostname}`).test(hosts),
    resolv: (await sh('cat /etc/resolv.conf')).split('\n').filter((l) => l.startsWith('nameserver') || l.startsWith('search')),
    hasIp: /^\d+\.\d+\.\d+\.\d+$/.test(ip),
    // the sandbox's own network stack holds the pod IP (gVisor's netstack took it from the member's netns)
    ipInside: ip !== '' && (await sh('ip -4 addr')).includes(`inet ${ip}/`),
    netns: (await netnsOf(podId)).length,
    ownCgroup: cgProcs > 0,
  };
  await c.removeContainer(ctr);
  return out;
}

test('pools fill to their targets; bulkhead info (table and --json) and /metrics show them', async () => {
  await full();
  const ps = await pools();
  assert.deepEqual(ps.map((p) => [p.handler, p.level, p.target]).sort(), [['gvisor', 'trusted', 1], ['gvisor', 'untrusted', 2]]);
  const m = [...(await members()).values()];
  assert.equal(m.filter((x) => x.level === 'untrusted').length, 2);
  assert.equal(m.filter((x) => x.level === 'trusted').length, 1);
  const text = await (await fetch(metricsUrl)).text();
  assert.match(text, /^bulkhead_warm_pool_ready\{handler="gvisor",level="untrusted"\} 2$/m);
  assert.match(text, /^bulkhead_warm_pool_target\{handler="gvisor",level="trusted"\} 1$/m);
  assert.match(text, /^bulkhead_warm_pool_hits_total\{handler="gvisor",level="untrusted"\} 0$/m);
  const cli = await run(BULKHEAD, ['--socket', d.socket, '--root', d.root, '--run-dir', d.runDir, 'info'], { timeoutMs: 30_000 });
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /^gvisor\s+untrusted\s+2\s+2\s+0\s+0\s+0\s+0/m, cli.stdout);
  const json = await run(BULKHEAD, ['--socket', d.socket, '--root', d.root, '--run-dir', d.runDir, '--json', 'info'], { timeoutMs: 30_000 });
  const listed = (JSON.parse(json.stdout) as { warmPools: WarmPoolInfo[] }).warmPools;
  assert.deepEqual(listed.filter((p) => p.handler === 'gvisor').map((p) => [p.level, p.ready, p.target]).sort(), [['trusted', 1, 1], ['untrusted', 2, 2]]);
});

test('a pod adopted from the pool is what a cold pod is: hostname, /etc files, its own IP and netns, its cgroup; the pool refills', async () => {
  await full();
  const dns = { servers: ['10.9.8.7'], searches: ['pool.example'], options: [] };
  const warmCfg = pod('warm', 'pool-tenant', { hostname: 'warm-host', dnsConfig: dns });
  const before = await poolOf('untrusted');
  const warmId = await d.client.runPodSandbox(warmCfg, 'gvisor');
  const m = await members();
  assert.equal(m.get(warmId)?.level, 'untrusted', 'the pod took a member of its level\'s pool');
  const after1 = await poolOf('untrusted');
  assert.equal(after1.hits, before.hits + 1);
  assert.match(await (await fetch(metricsUrl)).text(), new RegExp(`^bulkhead_warm_pool_hits_total\\{handler="gvisor",level="untrusted"\\} ${after1.hits}$`, 'm'));

  const coldCfg = pod('cold', 'pool-cold', { hostname: 'cold-host', dnsConfig: dns });
  const coldId = await d.client.runPodSandbox(coldCfg, 'gvisor');
  assert.ok(!(await members()).has(coldId), 'a level without a pool starts cold');

  const warm = await facts(warmId, warmCfg);
  const cold = await facts(coldId, coldCfg);
  assert.equal(warm.hostname, 'warm-host');
  assert.equal(warm.etcHostname, 'warm-host');
  assert.deepEqual({ ...warm, hostname: '', etcHostname: '' }, { ...cold, hostname: '', etcHostname: '' }, 'the pooled pod has what the cold one has');
  assert.equal(warm.hasIp, true);
  assert.equal(warm.ipInside, true, 'the adopted sandbox answers for its pod IP');
  const ips = await Promise.all([warmId, coldId].map(async (id) => (await d.client.podSandboxStatus(id)).status.network?.ip));
  assert.notEqual(ips[0], ips[1]);

  // the pool makes a new member for the one taken
  await waitFor(async () => (await poolOf('untrusted')).ready === 2, 180_000, 'refill');
  const refilled = [...(await members()).values()].filter((x) => x.level === 'untrusted');
  assert.ok(refilled.length >= 3, 'a new member was made');
  for (const id of [warmId, coldId]) { await d.client.stopPodSandbox(id); await d.client.removePodSandbox(id); }
});

test('a pooled sandbox is never handed to another trust level or handler', async () => {
  await full();
  const made: { id: string; level: string; handler: string }[] = [];
  // more pods than members, interleaved: some take members, the rest start cold
  for (let i = 0; i < 3; i++) {
    for (const [ns, level] of [['pool-tenant', 'untrusted'], ['pool-trusted', 'trusted']] as const) {
      const id = await d.client.runPodSandbox(pod(`x-${level}-${i}`, ns, { hostname: `x-${i}` }), 'gvisor');
      made.push({ id, level, handler: 'gvisor' });
    }
  }
  // a trusted pod on runc: its level has a gvisor pool, never a runc one
  made.push({ id: await d.client.runPodSandbox(pod('x-runc', 'pool-trusted'), 'runc'), level: 'trusted', handler: 'runc' });
  const m = await members();
  let hits = 0;
  for (const p of made) {
    const member = m.get(p.id);
    if (!member) continue;
    hits++;
    assert.equal(p.handler, 'gvisor', 'only gvisor pods take gvisor members');
    assert.equal(member.level, p.level, `pod ${p.id.slice(0, 12)} of level ${p.level} took a member of level ${member.level}`);
  }
  assert.ok(made.some((p) => p.level === 'untrusted' && m.has(p.id)), 'an untrusted pod took an untrusted member');
  assert.ok(made.some((p) => p.level === 'trusted' && m.has(p.id)), 'a trusted pod took a trusted member');
  assert.ok(hits < made.length, 'some started cold');
  for (const p of made) { await d.client.stopPodSandbox(p.id); await d.client.removePodSandbox(p.id); }
});

test('a pool whose members cannot be made backs off (a handler whose runsc is missing): failures counted, never more than its target', async () => {
  const broken = async (): Promise<WarmPoolInfo> => ((await d.client.info()).warmPools ?? []).find((p) => p.handler === 'broken')!;
  await waitFor(async () => (await broken()).failures >= 2, 30_000, 'two failed fills');
  const a = await broken();
  assert.equal(a.ready, 0);
  assert.ok(a.filling <= 1);
  assert.match(a.lastError, /broken/);
  // backoff doubles from 1 s: over the next 3 s at most two more attempts (without it: hundreds)
  await new Promise((r) => setTimeout(r, 3000));
  const b = await broken();
  assert.ok(b.failures - a.failures <= 2, `${b.failures - a.failures} attempts in 3 s`);
  assert.match(await d.log(), /msg="warm pool member could not be made; backing off" part=engine handler=broken/);
});

/** Per hierarchy, the cgroups directly under `parent` that hold processes, with their device list (devices) or process count. */
async function cgroupsUnder(parent: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const h of (await readdir('/sys/fs/cgroup', { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name)) {
    const dir = join('/sys/fs/cgroup', h, parent);
    const rows: string[] = [];
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory()) continue;
      const procs = (await readFile(join(dir, e.name, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
      if (procs.length === 0) continue;
      rows.push(h === 'devices' ? (await readFile(join(dir, e.name, 'devices.list'), 'utf8')).trim() : 'procs');
    }
    if (rows.length > 0) out[h] = rows.sort();
  }
  return out;
}

test('a pod with a cgroup_parent (as the kubelet gives) takes a member: its sandbox is moved under it, with its device list, as a cold pod\'s is', async () => {
  await full();
  const kube = `/kubepods/bulkhead-pool-test-${process.pid}`;
  for (const h of ['memory', 'cpu', 'cpuacct', 'pids', 'devices', 'cpuset', 'blkio', 'freezer', 'systemd']) await mkdir(join('/sys/fs/cgroup', h, kube), { recursive: true }).catch(() => undefined);
  try {
    const warmCfg = pod('cg-warm', 'pool-tenant', { hostname: 'cg-warm', linux: { cgroupParent: `${kube}/pod-warm` } });
    const coldCfg = pod('cg-cold', 'pool-cold', { hostname: 'cg-cold', linux: { cgroupParent: `${kube}/pod-cold` } });
    const warmId = await d.client.runPodSandbox(warmCfg, 'gvisor');
    const member = (await members()).get(warmId);
    assert.equal(member?.level, 'untrusted', `the pod took a member (last miss: ${(await poolOf('untrusted')).lastMiss})`);
    const coldId = await d.client.runPodSandbox(coldCfg, 'gvisor');
    const warmCg = await cgroupsUnder(`${kube}/pod-warm`);
    const coldCg = await cgroupsUnder(`${kube}/pod-cold`);
    assert.ok(Object.keys(warmCg).length >= 4, JSON.stringify(warmCg));
    assert.deepEqual(warmCg, coldCg, 'the pooled sandbox sits under its cgroup_parent as a cold one does, with the same device list');
    assert.ok((await leftOf([member!])).every((x) => !x.includes('cgroup')), 'the member\'s own cgroup is gone');
    assert.equal((await facts(warmId, warmCfg)).hostname, 'cg-warm');
    assert.equal((await facts(coldId, coldCfg)).hostname, 'cg-cold');
    for (const id of [warmId, coldId]) { await d.client.stopPodSandbox(id); await d.client.removePodSandbox(id); }
    assert.deepEqual(await cgroupsUnder(kube), {}, 'nothing is left under the kubelet-style parent');
    for (const h of ['memory', 'pids', 'devices']) {
      const dirs = (await readdir(join('/sys/fs/cgroup', h, kube), { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
      assert.deepEqual(dirs, [], `${h}: no cgroup dir left`);
    }
  } finally {
    for (const h of await readdir('/sys/fs/cgroup')) await rmdir(join('/sys/fs/cgroup', h, kube)).catch(() => undefined);
  }
});

/** `pids` and every process under them (by the parent pid in /proc/<pid>/stat). */
async function withDescendants(pids: number[]): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const st = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
    if (st) parent.set(Number(p), ppid);
  }
  const out = new Set(pids);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, pp] of parent) if (out.has(pp) && !out.has(pid)) { out.add(pid); grew = true; }
  }
  return [...out];
}

test('when RunPodSandbox returns a pod adopted under a cgroup_parent, every process of its sandbox is in the pod\'s cgroup in every v1 hierarchy and the member\'s cgroup is gone', async () => {
  await full();
  const kube = `/kubepods/bulkhead-pool-procs-${process.pid}`;
  const v1 = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => / - cgroup cgroup /.test(l)).map((l) => l.split(' ')[4]!);
  for (const m of v1) await mkdir(join(m, kube), { recursive: true });
  try {
    for (let i = 0; i < 2; i++) {
      await full();
      // the waiting members' processes, as their cgroups hold them (pids hierarchy) before the pod comes
      const waiting = new Map<string, number[]>();
      for (const m of (await members()).values()) {
        const procs = await readFile(join('/sys/fs/cgroup/pids/bulkhead', `pod-${m.id.slice(0, 16)}`, m.sandbox, 'cgroup.procs'), 'utf8').catch(() => '');
        if (procs) waiting.set(m.id, procs.split('\n').filter(Boolean).map(Number));
      }
      const id = await d.client.runPodSandbox(pod(`procs-${i}`, 'pool-tenant', { hostname: `procs-${i}`, linux: { cgroupParent: `${kube}/pod-${i}` } }), 'gvisor');
      // at once: READY means the pod is in its cgroup (its limits are part of the answer)
      const member = (await members()).get(id);
      assert.ok(member, `the pod took a member (last miss: ${(await poolOf('untrusted')).lastMiss})`);
      const before = waiting.get(member.id) ?? [];
      assert.ok(before.length >= 3, `the member's sandbox, gofer and ptrace stubs: ${before.length}`);
      const target = `${kube}/pod-${i}/${member.sandbox}`;
      const inTarget = v1.flatMap((m) => readFileSync(join(m, target, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
      // what the member's cgroup held, what the pod's holds anywhere, and whatever these started since
      const procs = await withDescendants([...new Set([...before, ...inTarget])]);
      const wrong: string[] = [];
      for (const pid of procs) {
        const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '')).split('\n').filter((l) => l && !l.startsWith('0::'));
        // one exiting meanwhile (PF_EXITING: its v1 cgroups read '/' once the kernel took it out) is no process of the pod any more
        const st = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
        if (!st || (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[6]) & 0x4) !== 0) continue;
        for (const l of lines) if (l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1) !== target) wrong.push(`${pid} ${l}`);
      }
      const left = v1.filter((m) => existsSync(join(m, 'bulkhead', `pod-${member.id.slice(0, 16)}`)));
      await d.client.stopPodSandbox(id);
      await d.client.removePodSandbox(id);
      assert.deepEqual(wrong, [], 'no process of the pod is anywhere but its cgroup');
      assert.deepEqual(left, [], 'the member\'s cgroup is gone in every hierarchy');
    }
  } finally {
    const rmAll = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) await rmAll(join(dir, e.name));
      await rmdir(dir).catch(() => undefined);
    };
    for (const m of v1) await rmAll(join(m, kube));
  }
});

test('a pod asking for what pool members lack (a sysctl set at sandbox start) takes the cold path, with the reason logged', async () => {
  await full();
  const before = await poolOf('untrusted');
  const cfg = pod('sysctl', 'pool-tenant', { linux: { sysctls: { 'kernel.shm_rmid_forced': '1' } } });
  const id = await d.client.runPodSandbox(cfg, 'gvisor');
  assert.ok(!(await members()).has(id), 'no member was taken');
  const after1 = await poolOf('untrusted');
  assert.equal(after1.misses, before.misses + 1);
  assert.equal(after1.hits, before.hits);
  assert.match(after1.lastMiss, /sysctls/);
  assert.equal(after1.ready, 2, 'the members stay in the pool');
  assert.match(await d.log(), /msg="warm pool miss: cold start" part=engine handler=gvisor level=untrusted reason="sysctls/);
  const st = await facts(id, { ...cfg, hostname: '' });
  assert.equal(st.state, 'SANDBOX_READY');
  await d.client.stopPodSandbox(id);
  await d.client.removePodSandbox(id);
});

test('a pod refused after it took a member (a log_directory outside the roots) gives the member back to its pool', async () => {
  await full();
  const before = [...(await members()).keys()];
  const bad = pod('bad-logdir', 'pool-tenant', { hostname: 'bad', logDirectory: '/etc/bulkhead-pool-test' });
  await assert.rejects(d.client.runPodSandbox(bad, 'gvisor'), { code: 'InvalidArgument' });
  await new Promise((r) => setTimeout(r, 1500));
  const p = await poolOf('untrusted');
  assert.equal(p.ready, 2, 'the member is ready again');
  assert.equal(p.filling, 0);
  assert.deepEqual([...(await members()).keys()], before, 'no member was made to replace it');
});

/** What is left on the host of these members: processes, netns, cgroups, pod dirs, member records. */
async function leftOf(ms: Member[]): Promise<string[]> {
  const left: string[] = [];
  for (const m of ms) {
    if ((await procsWith(m.sandbox)).length > 0) left.push(`processes of ${m.sandbox}`);
    if ((await netnsOf(m.id)).length > 0) left.push(`netns of ${m.id}`);
    for (const h of ['pids', 'memory', 'cpu,cpuacct']) if (existsSync(`/sys/fs/cgroup/${h}/bulkhead/pod-${m.id.slice(0, 16)}`)) left.push(`${h} cgroup of ${m.id}`);
    if (existsSync(join(d.runDir, 'pods', m.id))) left.push(`pod dir of ${m.id}`);
    if (existsSync(join(d.runDir, 'pool', `${m.id}.json`))) left.push(`record of ${m.id}`);
    if (existsSync(join(d.runDir, 'runtime', 'gvisor', 'containers', m.sandbox))) left.push(`bundle of ${m.sandbox}`);
  }
  return left;
}

/** IP leases the host-local IPAM holds (files named by an address) under the daemon's root. */
async function leases(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (/^\d+\.\d+\.\d+\.\d+$/.test(e.name)) out.push(`${e.name}: ${(await readFile(join(dir, e.name), 'utf8').catch(() => '')).split('\n')[0]}`);
    }
  };
  await walk(join(d.root, 'cni'));
  return out.sort();
}

test('a daemon killed with members ready, restarted, removes them; one shut down removes its own; no IP lease stays', async () => {
  await full();
  const leasesBefore = await leases();
  const first = [...(await members()).values()].filter((m) => existsSync(join(d.runDir, 'pool', `${m.id}.json`)));
  assert.equal(first.length, 3, 'three members wait');
  assert.equal(leasesBefore.length, 3, `one lease per member: ${leasesBefore.join('; ')}`);
  assert.ok((await procsWith(first[0]!.sandbox)).length > 0, 'a member\'s sandbox runs');
  await d.stop('SIGKILL');
  assert.ok((await procsWith(first[0]!.sandbox)).length > 0, 'members outlive a killed daemon');
  await d.restart();
  assert.deepEqual(await leftOf(first), [], 'recovery removed every member the killed daemon left');
  assert.match(await d.log(), /removed a warm pool member left by an earlier daemon/);
  await full();
  const second = [...(await members()).values()].filter((m) => !first.some((f) => f.id === m.id) && existsSync(join(d.runDir, 'pool', `${m.id}.json`)));
  assert.equal(second.length, 3);
  await d.stop('SIGTERM');
  assert.deepEqual(await leftOf(second), [], 'shutdown removed the members');
  assert.deepEqual(await leases(), [], 'no IP lease is left');
  await d.restart();
});
