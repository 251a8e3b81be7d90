import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sharesToWeight, v1Writes, v2Writes } from './limits.ts';

describe('cgroup resource writes', () => {
  it('maps cpu shares to v2 weight at the ends and the default', () => {
    assert.equal(sharesToWeight(2), 1);
    assert.equal(sharesToWeight(262144), 10000);
    assert.equal(sharesToWeight(1024), 39);
  });

  it('v2: swap is memory+swap minus memory, quota without period uses 100 ms', () => {
    const w = v2Writes({ memory: { limit: 100, swap: 150 }, cpu: { quota: 50000 }, pids: { limit: 0 } });
    assert.deepEqual(w.map((x) => [x.file, x.value]), [
      ['memory.max', '100'], ['memory.swap.max', '50'], ['cpu.max', '50000 100000'], ['pids.max', 'max'],
    ]);
  });

  it('v2: rejects unified keys that could leave the cgroup dir', () => {
    assert.throws(() => v2Writes({ unified: { '../cgroup.procs': '1' } }), (e: Error & { code?: string }) => e.code === 'InvalidArgument');
  });

  it('v1: cpu, cpuset and pids files', () => {
    const w = v1Writes({ cpu: { shares: 512, quota: -1, period: 20000, cpus: '0' }, pids: { limit: 40 } });
    assert.deepEqual(w.map((x) => `${x.controller}/${x.file}=${x.value}`), [
      'cpu/cpu.shares=512', 'cpu/cpu.cfs_period_us=20000', 'cpu/cpu.cfs_quota_us=-1', 'cpuset/cpuset.cpus=0', 'pids/pids.max=40',
    ]);
  });
});
