// Warm pools of microvm pods over the real CRI socket, real QEMU (TCG here): a pod adopted from the
// pool runs a container with its own hostname, /etc files, IP and cgroup (its cgroup_parent: QEMU and
// virtiofsd moved under it, the VM's cgroup record naming the new place) as a cold pod has them; the
// pool refills; a pod asking for what members lack starts cold with the reason; a daemon killed with
// a member ready, restarted, leaves nothing of it (VMM, supervisor, netns, cgroups, pod dirs, slots).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { ASSETS, skipReason } from '../../harness/vm-assets.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';
import type { WarmPoolInfo } from '../../src/api/cri-messages.ts';
import { netnsOf, procsWith, waitFor } from '../engine/helpers.ts';

const skip = skipReason();
const POLICY = `[policy]
default_trust = "untrusted"
[policy.levels.untrusted]
min_isolation = "vm"
allowed_sysctls = ["kernel.shm_rmid_forced"]
[policy.levels.plain]
min_isolation = "vm"
[policy.levels.clone]
min_isolation = "vm"
[[policy.rules]]
name = "pods whose members are template clones (no virtio-fs share)"
trust = "clone"
namespaces = ["vmpool-clone"]
[[policy.rules]]
name = "a level without a pool (cold pods to compare with)"
trust = "plain"
namespaces = ["vmpool-cold"]
`;

interface Member { id: string; sandbox: string; level: string }
interface Vm { id: string; podDir: string; vmmPid: number }

describe('warm pools of microvm pods (CRI daemon, QEMU)', { skip, timeout: 900_000 }, () => {
  let d: TestDaemon;
  let images: TestImages;
  const stateDir = (): string => join(d.runDir, 'runtime', 'microvm', 'state');

  before(async () => {
    images = await buildAndPushTestImages(await sharedRegistry());
    d = await startTestDaemon({
      name: 'bulkhead-vmpool-', policy: { toml: POLICY },
      handlers: { microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS] } },
      extraToml: '[pools]\n[pools.microvm]\nuntrusted = 1\nclone = { size = 1, volumes = "none" }\n', logLevel: 'debug',
    });
    await d.client.pullImage(images.busybox);
  });
  after(async () => {
    await d?.close();
    if (d) assert.equal(spawnSync('pgrep', ['-f', d.base], { encoding: 'utf8' }).stdout.trim(), '', 'no VMM or supervisor left behind');
  });

  async function members(): Promise<Map<string, Member>> {
    const out = new Map<string, Member>();
    for (const line of (await d.log()).split('\n')) {
      if (!line.includes('msg="warm pool member ready"')) continue;
      const f = (k: string): string => new RegExp(` ${k}=(\\S+)`).exec(line.slice(line.indexOf(' part=')))?.[1] ?? '';
      out.set(f('member'), { id: f('member'), sandbox: f('sandbox'), level: f('level') });
    }
    return out;
  }
  const pool = async (level = 'untrusted'): Promise<WarmPoolInfo> => ((await d.client.info()).warmPools ?? []).find((p) => p.handler === 'microvm' && p.level === level)!;
  const full = async (): Promise<void> => { await waitFor(async () => (await pool()).ready === 1 && (await pool('clone')).ready === 1, 300_000, 'the microvm pools full'); };

  /** The pod VMs bulkhead-vm knows (sandbox containers): id, VM pod dir, QEMU's pid. */
  async function vms(): Promise<Vm[]> {
    const out: Vm[] = [];
    for (const id of await readdir(stateDir()).catch(() => [] as string[])) {
      let rec: { sandbox?: boolean; podDir?: string };
      try { rec = JSON.parse(await readFile(join(stateDir(), id, 'state.json'), 'utf8')) as typeof rec; } catch { continue; }
      if (!rec.sandbox || !rec.podDir) continue;
      const pid = Number(await readFile(join(rec.podDir, 'vmm.pid'), 'utf8').catch(() => '0'));
      out.push({ id, podDir: rec.podDir, vmmPid: pid });
    }
    return out;
  }
  /** A process's cgroup path in a v1 hierarchy. */
  async function cgroupOf(pid: number, controller: string): Promise<string> {
    const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
    return lines.find((l) => l.split(':')[1]?.split(',').includes(controller))?.split(':')[2] ?? '';
  }

  function pod(name: string, namespace: string, extra: Partial<PodSandboxConfig> = {}): PodSandboxConfig {
    return { metadata: { name, namespace, uid: randomUUID(), attempt: 0 }, labels: { t: 'vmpool' }, linux: {}, ...extra };
  }

  /** What the pod gives a container in it. */
  async function facts(podId: string, cfg: PodSandboxConfig): Promise<Record<string, unknown>> {
    const c = d.client;
    const ctr = await c.createContainer(podId, { metadata: { name: 'probe' }, image: { image: images.busybox }, command: ['sleep', '600'] }, cfg, { timeoutMs: 120_000 });
    await c.startContainer(ctr, { timeoutMs: 120_000 });
    const sh = async (cmd: string): Promise<string> => {
      const r = await c.execSync(ctr, ['sh', '-c', cmd], 60);
      assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr.toString()}`);
      return r.stdout.toString().trim();
    };
    const ip = (await c.podSandboxStatus(podId)).status.network?.ip ?? '';
    const out = {
      hostname: await sh('hostname'),
      etcHostname: await sh('cat /etc/hostname'),
      hostsNamesPod: new RegExp(`${ip.replace(/\./g, '\\.')}\\s+${cfg.hostname}`).test(await sh('cat /etc/hosts')),
      resolv: (await sh('cat /etc/resolv.conf')).split('\n').filter((l) => l.startsWith('nameserver') || l.startsWith('search')),
      guestIp: (await sh('ip -4 -o addr show dev eth0')).includes(`inet ${ip}/`),
      netns: (await netnsOf(podId)).length,
    };
    await c.removeContainer(ctr);
    return out;
  }

  it('a pod adopted from the pool is what a cold pod is: hostname, /etc files, IP, its cgroup_parent with QEMU and virtiofsd; the pool refills', async () => {
    await full();
    const kube = `/kubepods/bulkhead-vmpool-test-${process.pid}`;
    for (const h of ['memory', 'cpu', 'cpuacct', 'pids', 'devices', 'cpuset', 'blkio', 'freezer', 'systemd']) await mkdir(join('/sys/fs/cgroup', h, kube), { recursive: true }).catch(() => undefined);
    try {
      const dns = { servers: ['10.9.8.7'], searches: ['vmpool.example'], options: [] };
      const warmCfg = pod('warm', 'vmpool-tenant', { hostname: 'warm-vm', dnsConfig: dns, linux: { cgroupParent: `${kube}/pod-warm` } });
      const t0 = performance.now();
      const warmId = await d.client.runPodSandbox(warmCfg, 'microvm', { timeoutMs: 240_000 });
      const warmMs = performance.now() - t0;
      const member = (await members()).get(warmId);
      assert.equal(member?.level, 'untrusted', `the pod took a member (last miss: ${(await pool()).lastMiss})`);
      assert.equal((await pool()).hits, 1);
      const coldCfg = pod('cold', 'vmpool-cold', { hostname: 'cold-vm', dnsConfig: dns, linux: { cgroupParent: `${kube}/pod-cold` } });
      const coldId = await d.client.runPodSandbox(coldCfg, 'microvm', { timeoutMs: 240_000 });
      assert.ok(!(await members()).has(coldId), 'a level without a pool starts cold');

      const warm = await facts(warmId, warmCfg);
      const cold = await facts(coldId, coldCfg);
      assert.equal(warm.hostname, 'warm-vm', `the adopting pod's hostname is set in the pooled VM: ${(await d.log()).split('\n').filter((l) => /hostname|adopt|warn|error/i.test(l)).join('\n').slice(-3000)}`);
      // an app container's /etc/hostname is its pod's, warm or cold
      assert.equal(warm.etcHostname, 'warm-vm');
      assert.equal(cold.etcHostname, 'cold-vm');
      assert.equal(cold.hostname, 'cold-vm');
      assert.deepEqual({ ...warm, hostname: '', etcHostname: '' }, { ...cold, hostname: '', etcHostname: '' }, 'the pooled pod has what the cold one has');
      assert.equal(warm.guestIp, true, 'the guest has the pod\'s IP');
      assert.equal(warm.hostsNamesPod, true);

      // QEMU (and virtiofsd) sit under the pod's cgroup_parent, as a cold pod's do
      const all = await vms();
      const warmVm = all.find((v) => v.id === member!.sandbox)!;
      assert.ok(warmVm?.vmmPid > 0, 'the member\'s VM runs');
      for (const ctl of ['memory', 'pids', 'cpu']) assert.equal(await cgroupOf(warmVm.vmmPid, ctl), `${kube}/pod-warm/${member!.sandbox}`, `${ctl}: QEMU moved under the pod's cgroup_parent`);
      const coldVm = (await Promise.all(all.map(async (v) => ({ v, cg: await cgroupOf(v.vmmPid, 'memory').catch(() => '') })))).find((x) => x.cg.startsWith(`${kube}/pod-cold/`));
      assert.ok(coldVm, 'the cold pod\'s QEMU is under its cgroup_parent');
      const fsds = (await procsWith('virtiofsd')).filter((p) => p.cmd.includes(warmVm.podDir));
      assert.ok(fsds.length >= 1, 'the member VM has its virtio-fs server');
      for (const p of fsds) assert.equal(await cgroupOf(p.pid, 'memory'), `${kube}/pod-warm/${member!.sandbox}`, 'virtiofsd moved with QEMU');
      const record = JSON.parse(await readFile(join(warmVm.podDir, 'cgroups.json'), 'utf8')) as string[];
      assert.ok(record.some((dir) => dir.endsWith(`${kube}/pod-warm/${member!.sandbox}`)), `the VM's cgroup record names the new place: ${record.join(', ')}`);
      assert.ok(!existsSync(`/sys/fs/cgroup/memory/bulkhead/pod-${warmId.slice(0, 16)}`), 'the member\'s own cgroup is gone');
      const stats = await d.client.podSandboxStats(warmId);
      assert.ok(Number(stats.linux?.memory?.workingSetBytes?.value ?? 0) > 0, 'pod stats read the moved cgroup');

      await waitFor(async () => (await pool()).ready === 1, 300_000, 'refill');
      assert.ok((await members()).size >= 2, 'a new member was made');
      console.log(`warm RunPodSandbox (through the test client): ${warmMs.toFixed(0)} ms`);
      for (const id of [warmId, coldId]) { await d.client.stopPodSandbox(id); await d.client.removePodSandbox(id); }
      for (const h of ['memory', 'pids', 'cpu', 'cpuacct']) {
        const dirs = (await readdir(join('/sys/fs/cgroup', h, kube), { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory()).map((e) => e.name);
        assert.deepEqual(dirs, [], `${h}: no cgroup left under the kubelet-style parent`);
      }
      assert.ok(!existsSync(warmVm.podDir), 'the VM pod dir is gone');
    } finally {
      for (const h of await readdir('/sys/fs/cgroup')) await rmdir(join('/sys/fs/cgroup', h, kube)).catch(() => undefined);
    }
  });

  it('a pod asking for what pool members lack (a sysctl set at VM start) takes the cold path, with the reason logged', async () => {
    await full();
    const before = await pool();
    const cfg = pod('sysctl', 'vmpool-tenant', { linux: { sysctls: { 'kernel.shm_rmid_forced': '1' } } });
    const id = await d.client.runPodSandbox(cfg, 'microvm', { timeoutMs: 240_000 });
    assert.ok(!(await members()).has(id), 'no member was taken');
    const after1 = await pool();
    assert.equal(after1.misses, before.misses + 1);
    assert.equal(after1.hits, before.hits);
    assert.match(after1.lastMiss, /sysctls/);
    assert.equal(after1.ready, 1, 'the member stays in the pool');
    assert.match(await d.log(), /msg="warm pool miss: cold start" part=engine handler=microvm level=untrusted reason="sysctls/);
    await d.client.stopPodSandbox(id);
    await d.client.removePodSandbox(id);
  });

  it('a pool of VMs without a virtio-fs share (volumes = "none", template clones of their level) serves only pods that bind no volumes; others start cold', async () => {
    await full();
    const before = await pool('clone');
    const may = pod('may-bind', 'vmpool-clone', { hostname: 'may-bind' });
    const coldId = await d.client.runPodSandbox(may, 'microvm', { timeoutMs: 240_000 });
    assert.ok(!(await members()).has(coldId), 'a pod that may bind volumes took no clone member');
    const mid = await pool('clone');
    assert.equal(mid.misses, before.misses + 1);
    assert.match(mid.lastMiss, /virtio-fs share/);
    assert.equal(mid.ready, 1, 'the member stays in its pool');

    const none = pod('no-volumes', 'vmpool-clone', { hostname: 'no-volumes', annotations: { 'io.bulkhead.vm.volumes': 'none' } });
    const warmId = await d.client.runPodSandbox(none, 'microvm', { timeoutMs: 240_000 });
    const member = (await members()).get(warmId);
    assert.equal(member?.level, 'clone', `the pod took a clone member (last miss: ${(await pool('clone')).lastMiss})`);
    const log = (await d.log()).split('\n');
    assert.ok(log.some((l) => l.includes('msg="pooled pod VM warmed up"') && l.includes(member!.sandbox)), 'the member ran its throwaway container (create, start, delete) before it was ready');
    assert.ok(!log.some((l) => l.includes('container warm-up failed')), log.filter((l) => l.includes('warm-up')).join('\n'));
    const vm = (await vms()).find((v) => v.id === member!.sandbox)!;
    const tpl = JSON.parse(await readFile(join(vm.podDir, 'template.json'), 'utf8')) as { key: string };
    const meta = JSON.parse(await readFile(join(stateDir(), 'templates', tpl.key, 'meta.json'), 'utf8')) as { inputs: { scope: string } };
    assert.equal(meta.inputs.scope, 'level:clone', 'the member VM is a clone of its own level\'s template');
    assert.equal((await procsWith('virtiofsd')).filter((p) => p.cmd.includes(vm.podDir)).length, 0, 'no file server for a clone');
    const f = await facts(warmId, none);
    assert.equal(f.hostname, 'no-volumes');
    assert.equal(f.guestIp, true, 'the clone has the pod\'s IP (its identity frame at the start)');
    for (const id of [coldId, warmId]) { await d.client.stopPodSandbox(id); await d.client.removePodSandbox(id); }
  });

  it('a daemon killed with a member ready, restarted, leaves nothing of it: VMM, supervisor, netns, cgroups, pod dirs, slot files', async () => {
    await full();
    const ready = [...(await members()).values()].filter((m) => existsSync(join(d.runDir, 'pool', `${m.id}.json`)) && m.level === 'untrusted');
    assert.equal(ready.length, 1);
    const m = ready[0]!;
    const vm = (await vms()).find((v) => v.id === m.sandbox)!;
    assert.ok(vm && vm.vmmPid > 0 && existsSync(`/proc/${vm.vmmPid}`), 'the member\'s VM runs');
    const slots = (await readdir(vm.podDir)).filter((n) => n.startsWith('slot'));
    assert.ok(slots.length > 0, `slot files exist (${(await readdir(vm.podDir)).join(', ')})`);
    await d.stop('SIGKILL');
    assert.ok(existsSync(`/proc/${vm.vmmPid}`), 'a member outlives a killed daemon');
    await d.restart();
    const left: string[] = [];
    if ((await procsWith(vm.podDir)).length > 0) left.push('processes of the VM (QEMU, supervisor, virtiofsd)');
    if (existsSync(`/proc/${vm.vmmPid}`)) left.push('QEMU');
    if ((await netnsOf(m.id)).length > 0) left.push('netns');
    for (const h of ['pids', 'memory', 'cpu', 'cpuacct']) if (existsSync(`/sys/fs/cgroup/${h}/bulkhead/pod-${m.id.slice(0, 16)}`)) left.push(`${h} cgroup`);
    if (existsSync(join(d.runDir, 'pods', m.id))) left.push('pod dir');
    if (existsSync(vm.podDir)) left.push(`VM pod dir (${(await readdir(vm.podDir).catch(() => [])).join(', ')})`);
    if (existsSync(join(stateDir(), m.sandbox))) left.push('VM state dir');
    if (existsSync(join(d.runDir, 'pool', `${m.id}.json`))) left.push('member record');
    assert.deepEqual(left, [], 'recovery removed the member the killed daemon left');
    assert.match(await d.log(), /removed a warm pool member left by an earlier daemon/);
    await full();
  });
});
