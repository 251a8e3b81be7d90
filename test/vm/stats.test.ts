// CRI stats where the kubelet reads them (ContainerStats, PodSandboxStats over the real socket) for
// each handler: runc and gVisor containers report CPU and memory; a gVisor pod reports its sandbox's
// host cgroup (the Sentry: memory once, not once per container); a microVM pod reports the VM's own
// usage on the host (QEMU's cgroup: guest RAM, vCPU and emulation threads), its containers the
// guest's figures. One VM boot (TCG) for the whole file.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { ASSETS, skipReason } from '../../harness/vm-assets.ts';
import { cgroupMounts } from '../../src/cgroup/mounts.ts';
import type { ContainerConfig, PodSandboxConfig, PodSandboxStats } from '../../src/api/cri.ts';

let d: TestDaemon;
let images: TestImages;

before(async () => {
  images = await buildAndPushTestImages(await sharedRegistry());
  d = await startTestDaemon({
    name: 'bulkhead-cri-stats-',
    handlers: {
      runc: { backend: 'runc' },
      gvisor: { backend: 'gvisor', runtime_args: ['--platform=ptrace'] },
      microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS] },
    },
  });
  await d.client.pullImage(images.busybox);
});
after(async () => { await d?.close(); });

function pod(name: string): PodSandboxConfig {
  return { metadata: { name, namespace: 'cri-stats', uid: randomUUID(), attempt: 0 }, logDirectory: join(d.base, 'logs', name), labels: { t: name }, linux: {} };
}
const ctr = (name: string, cmd: string[]): ContainerConfig => ({ metadata: { name, attempt: 0 }, image: { image: images.busybox }, command: cmd, logPath: `${name}.log` });
const BUSY = ['sh', '-c', 'while true; do :; done'];
const IDLE = ['sleep', '3600'];

async function poll<T>(f: () => Promise<T | undefined>, what: string, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Pids whose command line contains every one of `parts`. */
function pidsWith(...parts: string[]): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd = '';
    try { cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').replaceAll('\0', ' '); } catch { continue; }
    if (parts.every((p) => cmd.includes(p))) out.push(Number(e));
  }
  return out;
}

/** A process's memory cgroup usage, read from cgroupfs by the test itself (v1 memory controller or v2). */
function memoryCgroupUsage(pid: number): number {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  const mounts = cgroupMounts();
  if (v1) {
    const m = mounts.find((x) => x.version === 1 && x.controllers.includes('memory'))!;
    return Number(readFileSync(join(m.path, v1.split(':')[2]!, 'memory.usage_in_bytes'), 'utf8'));
  }
  const v2 = lines.find((l) => l.startsWith('0::'))!;
  const m = mounts.find((x) => x.version === 2)!;
  return Number(readFileSync(join(m.path, v2.slice(3), 'memory.current'), 'utf8'));
}

/** utime + stime of a process, in ns. */
function cpuNs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * (1e9 / 100);
}

const podCpu = (s: PodSandboxStats): number => s.linux?.cpu?.usageCoreNanoSeconds?.value ?? 0;
const podMem = (s: PodSandboxStats): number => s.linux?.memory?.usageBytes?.value ?? 0;
const MiB = 1024 * 1024;

describe('CRI stats by handler', { timeout: 900_000 }, () => {
  it('runc: containers report CPU and memory; the pod is their sum', async () => {
    const c = d.client;
    const cfg = pod('runc');
    const p = await c.runPodSandbox(cfg, 'runc');
    const busy = await c.createContainer(p, ctr('busy', BUSY), cfg);
    await c.startContainer(busy);
    const s = await poll(async () => {
      const x = await c.containerStats(busy);
      return (x.cpu?.usageCoreNanoSeconds?.value ?? 0) > 100_000_000 ? x : undefined;
    }, 'the busy container to use CPU', 30_000);
    assert.ok((s.memory?.workingSetBytes?.value ?? 0) > 0, 'working set');
    const ps = await c.podSandboxStats(p);
    assert.equal(ps.linux?.containers.length, 1);
    assert.ok(podCpu(ps) >= (s.cpu?.usageCoreNanoSeconds?.value ?? 0), 'pod CPU covers the container');
    assert.ok(podMem(ps) > 0);
    await c.stopPodSandbox(p);
    await c.removePodSandbox(p);
  });

  it('gVisor: containers report CPU and memory from the Sentry; the pod reports its sandbox cgroup once', async () => {
    const c = d.client;
    const cfg = pod('gvisor');
    const p = await c.runPodSandbox(cfg, 'gvisor');
    const a = await c.createContainer(p, ctr('busy', BUSY), cfg);
    const b = await c.createContainer(p, ctr('idle', IDLE), cfg);
    await c.startContainer(a);
    await c.startContainer(b);
    const sa = await poll(async () => {
      const x = await c.containerStats(a);
      return (x.cpu?.usageCoreNanoSeconds?.value ?? 0) > 100_000_000 ? x : undefined;
    }, 'the busy container to use CPU', 60_000);
    const sb = await c.containerStats(b);
    for (const x of [sa, sb]) assert.ok((x.memory?.workingSetBytes?.value ?? 0) > 0, 'working set');
    const sentry = pidsWith('runsc-sandbox', d.base);
    assert.equal(sentry.length, 1, 'one Sentry for the pod');
    const direct = memoryCgroupUsage(sentry[0]!);
    const ps = await c.podSandboxStats(p);
    assert.equal(ps.linux?.containers.length, 2);
    // the pod's memory is the sandbox cgroup's (read by the test a moment ago), not each container's copy of it added up
    assert.ok(Math.abs(podMem(ps) - direct) <= Math.max(8 * MiB, direct * 0.25), `pod ${podMem(ps)} vs sandbox cgroup ${direct}`);
    assert.ok(podCpu(ps) >= (sa.cpu?.usageCoreNanoSeconds?.value ?? 0), 'the sandbox ran the busy container');
    await c.stopPodSandbox(p);
    await c.removePodSandbox(p);
  });

  it('microvm: the pod reports the VM\'s own host usage (QEMU\'s cgroup); its containers the guest\'s', { skip: skipReason() }, async () => {
    const c = d.client;
    const cfg = pod('vm');
    const p = await c.runPodSandbox(cfg, 'microvm', { timeoutMs: 240_000 });
    const ctrId = await c.createContainer(p, ctr('idle', IDLE), cfg, { timeoutMs: 120_000 });
    await c.startContainer(ctrId, { timeoutMs: 120_000 });
    const cs = await poll(async () => {
      const x = await c.containerStats(ctrId, { timeoutMs: 60_000 });
      return (x.memory?.workingSetBytes?.value ?? 0) > 0 ? x : undefined;
    }, 'guest figures for the container', 60_000);
    const qemu = pidsWith('qemu-system-x86_64', d.base);
    assert.equal(qemu.length, 1, 'one VMM for the pod');
    const qemuCpu = cpuNs(qemu[0]!);
    const direct = memoryCgroupUsage(qemu[0]!);
    const ps = await c.podSandboxStats(p, { timeoutMs: 60_000 });
    assert.equal(ps.linux?.containers.length, 1);
    assert.equal(ps.linux?.containers[0]?.attributes.id, ctrId);
    // QEMU's CPU (booting a guest under TCG costs seconds) is in the pod's figure, read after it
    assert.ok(podCpu(ps) >= qemuCpu * 0.9, `pod CPU ${podCpu(ps)} covers QEMU's ${qemuCpu}`);
    // memory: QEMU's cgroup, far more than what the guest says its container uses
    assert.ok(Math.abs(podMem(ps) - direct) <= Math.max(8 * MiB, direct * 0.25), `pod ${podMem(ps)} vs QEMU cgroup ${direct}`);
    assert.ok(podMem(ps) > (cs.memory?.usageBytes?.value ?? 0), `VM ${podMem(ps)} > guest container ${cs.memory?.usageBytes?.value}`);
    await c.stopPodSandbox(p, { timeoutMs: 120_000 });
    await c.removePodSandbox(p, { timeoutMs: 120_000 });
  });
});
