// Pure parts of the gVisor backend, table by table: the pod sandbox's limits from its app
// containers' limits, and the `runsc events --stats` parser. (The backend with real runsc is
// tested in test/runtime/gvisor.test.ts and test/engine/gvisor.test.ts.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseStatsEvent, podLimits, removeStaleProbeNetns, rootAppFits, sandboxHeadroom, withNetworkFlag } from './gvisor-backend.ts';
import { SINGLE_CONTAINER_ANNOTATION, type PodSandboxSpec } from '../sandbox/pod-sandbox.ts';
import { spawnSync } from 'node:child_process';
import { run } from '../../util/exec.ts';
import type { OciLinuxResources } from '../../oci/spec.ts';

const MiB = 1024 * 1024;
const r = (mem?: number, quota?: number, period?: number): OciLinuxResources => ({
  ...(mem !== undefined ? { memory: { limit: mem } } : {}),
  ...(quota !== undefined ? { cpu: { quota, ...(period !== undefined ? { period } : {}) } } : {}),
});

describe('podLimits', () => {
  const cases: { name: string; own: OciLinuxResources; members: OciLinuxResources[]; mem: number; quota: number }[] = [
    { name: 'no app container: unbounded', own: {}, members: [], mem: -1, quota: -1 },
    { name: 'no app container: the sandbox spec\'s own limits', own: r(100 * MiB, 20_000), members: [], mem: 100 * MiB, quota: 20_000 },
    { name: 'one container', own: {}, members: [r(64 * MiB, 50_000)], mem: 64 * MiB + sandboxHeadroom(1), quota: 50_000 },
    { name: 'two containers add up', own: r(1 * MiB), members: [r(64 * MiB, 50_000), r(32 * MiB, 25_000)], mem: 96 * MiB + sandboxHeadroom(2), quota: 75_000 },
    { name: 'quotas over other periods are normalised to 100 ms', own: {}, members: [r(8 * MiB, 10_000, 50_000), r(8 * MiB, 100_000, 200_000)], mem: 16 * MiB + sandboxHeadroom(2), quota: 70_000 },
    { name: 'one container without a memory limit: memory unbounded', own: {}, members: [r(64 * MiB, 50_000), r(undefined, 50_000)], mem: -1, quota: 100_000 },
    { name: 'one container without a quota: CPU unbounded', own: {}, members: [r(64 * MiB, 50_000), r(64 * MiB)], mem: 128 * MiB + sandboxHeadroom(2), quota: -1 },
    { name: 'a non-positive limit counts as none', own: {}, members: [r(0, -1)], mem: -1, quota: -1 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = podLimits(c.own, c.members);
      assert.deepEqual(got.memory, { limit: c.mem, swap: c.mem });
      assert.equal(got.cpu?.quota, c.quota);
      assert.equal(got.cpu?.period, 100_000);
    });
  }
  it('headroom grows with the number of containers', () => {
    assert.ok(sandboxHeadroom(3) > sandboxHeadroom(1));
  });
});

describe('withNetworkFlag', () => {
  it('replaces the network flag as the shim\'s set_network does, adding one in front when there is none', () => {
    assert.deepEqual(withNetworkFlag(['--root', '/s', '--platform=ptrace', '--network=sandbox', '--oci-seccomp'], 'none'), ['--root', '/s', '--platform=ptrace', '--network=none', '--oci-seccomp']);
    assert.deepEqual(withNetworkFlag(['--root', '/s'], 'none'), ['--network=none', '--root', '/s']);
  });
});

describe('parseStatsEvent', () => {
  it('reads runsc 2022 output', () => {
    const out = '{"type":"stats","id":"s9","data":{"cpu":{"usage":{"total":3159700251}},"memory":{"usage":{"limit":0,"usage":14610432,"failcnt":0}},"pids":{"current":5}}}\n';
    assert.deepEqual(parseStatsEvent(out), { cpu: { usage: { total: 3159700251 } }, memory: { usage: { limit: 0, usage: 14610432, failcnt: 0 } }, pids: { current: 5 } });
  });
  it('skips noise and other events; undefined without stats', () => {
    assert.equal(parseStatsEvent(''), undefined);
    assert.equal(parseStatsEvent('not json\n{"type":"oom","id":"x"}\n'), undefined);
    assert.equal(parseStatsEvent('warning\n{"type":"stats","data":{"pids":{"current":2}}}')?.pids?.current, 2);
  });
});

it('removeStaleProbeNetns: deletes the probe netns of a dead daemon, keeps a live one\'s and every other name', async () => {
  const dead = spawnSync('true').pid;
  const tag = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0');
  const names = [`bh-gvprobe-${dead}-${tag}`, `bh-gvprobe-${process.pid}-${tag}`, `bh-gvprobe-x${tag}`];
  for (const n of names) assert.equal((await run('ip', ['netns', 'add', n])).code, 0);
  try {
    const removed = await removeStaleProbeNetns();
    assert.ok(removed.includes(names[0]!), `the dead daemon's netns was removed (${removed.join(', ')})`);
    const left = (await run('ip', ['netns', 'list'])).stdout;
    assert.ok(!left.includes(names[0]!));
    assert.ok(left.includes(names[1]!), 'a live daemon\'s probe netns stays');
    assert.ok(left.includes(names[2]!), 'a name of another form stays');
  } finally {
    for (const n of names) await run('ip', ['netns', 'delete', n]).catch(() => undefined);
  }
});

describe('rootAppFits: a one-shot pod\'s container is its sandbox only where the Sentry holds no host capabilities', () => {
  const base: PodSandboxSpec = {
    podId: 'p', podDir: '/x', netnsPath: '/run/netns/x', hostNetwork: false, hostname: 'h', ipc: 'POD', pid: 'CONTAINER',
    sysctls: {}, pinNamespaces: true, annotations: { [SINGLE_CONTAINER_ANNOTATION]: 'true' }, networkMode: 'none',
  };
  const cases: { name: string; pod: Partial<Record<keyof PodSandboxSpec, unknown>>; netstack: boolean; fits: boolean }[] = [
    { name: 'asked, network none', pod: {}, netstack: false, fits: true },
    { name: 'asked, network none, netstack in force', pod: {}, netstack: true, fits: true },
    { name: 'not asked', pod: { annotations: {} }, netstack: true, fits: false },
    { name: 'asked with another value', pod: { annotations: { [SINGLE_CONTAINER_ANNOTATION]: 'yes' } }, netstack: true, fits: false },
    { name: 'the pod network on netstack', pod: { networkMode: 'pod' }, netstack: true, fits: true },
    { name: 'the pod network without netstack (--network=host: the Sentry would hold the app\'s capabilities on the host)', pod: { networkMode: 'pod' }, netstack: false, fits: false },
    { name: 'the host network', pod: { networkMode: 'host', hostNetwork: true, netnsPath: '' }, netstack: true, fits: false },
    { name: 'no network mode stored', pod: { networkMode: undefined }, netstack: true, fits: false },
    { name: 'sysctls (a pause carries them)', pod: { sysctls: { 'kernel.shm_rmid_forced': '1' } }, netstack: true, fits: false },
    { name: 'host IPC', pod: { ipc: 'NODE' }, netstack: true, fits: false },
    { name: 'host PID', pod: { pid: 'NODE' }, netstack: true, fits: false },
  ];
  for (const c of cases) it(c.name, () => { assert.equal(rootAppFits({ ...base, ...c.pod } as PodSandboxSpec, c.netstack), c.fits); });
});
