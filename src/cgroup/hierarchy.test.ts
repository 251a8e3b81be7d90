import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cleanCgroupPath, controllerDir, describeLayout, hierarchies, hierarchyKey, layoutOf } from './hierarchy.ts';
import { parseCgroupMounts } from './mounts.ts';

const line = (id: number, path: string, fstype: string, opts: string): string => `${id} 23 0:${id} / ${path} rw,relatime - ${fstype} ${fstype} ${opts}`;
const V2 = [line(31, '/sys/fs/cgroup', 'cgroup2', 'rw,nsdelegate')].join('\n');
// this host: separate cpu and cpuacct, a named systemd hierarchy, v2 at unified
const HYBRID = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  line(32, '/sys/fs/cgroup/cpu', 'cgroup', 'rw,cpu'), line(33, '/sys/fs/cgroup/cpuacct', 'cgroup', 'rw,cpuacct'),
  line(35, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'), line(39, '/sys/fs/cgroup/pids', 'cgroup', 'rw,pids'),
  line(40, '/sys/fs/cgroup/systemd', 'cgroup', 'rw,xattr,name=systemd'), line(41, '/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
].join('\n');
// a common pure-v1 layout: cpu and cpuacct mounted together
const V1 = [line(32, '/sys/fs/cgroup/cpu,cpuacct', 'cgroup', 'rw,cpu,cpuacct'), line(35, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory')].join('\n');

describe('cgroup layout and hierarchies (from the mount table)', () => {
  it('tells v2, v1 hybrid, v1 and none apart, and says so in words', () => {
    for (const [name, info, layout, words] of [
      ['v2', V2, 'v2', 'v2 unified'],
      ['hybrid', HYBRID, 'v1-hybrid', 'v1 hybrid (v1 controllers + v2 at /sys/fs/cgroup/unified)'],
      ['v1', V1, 'v1', 'v1'],
      ['none', '31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw', 'none', 'none (no cgroup filesystem mounted)'],
      ['v2 elsewhere only', line(41, '/run/cg2', 'cgroup2', 'rw'), 'v2', 'v2 unified'],
    ] as const) {
      const m = parseCgroupMounts(info);
      assert.equal(layoutOf(m), layout, name);
      assert.equal(describeLayout(m), words, name);
    }
  });

  it('finds a controller\'s directory by its mount, not by a directory name', () => {
    const hy = parseCgroupMounts(HYBRID);
    assert.equal(controllerDir('cpuacct', 'bulkhead/x', hy), '/sys/fs/cgroup/cpuacct/bulkhead/x');
    assert.equal(controllerDir('memory', 'bulkhead/x', hy), '/sys/fs/cgroup/memory/bulkhead/x');
    assert.equal(controllerDir('cpuset', 'bulkhead/x', hy), undefined); // not mounted: no guessed path
    const v1 = parseCgroupMounts(V1);
    assert.equal(controllerDir('cpuacct', 'bulkhead/x', v1), '/sys/fs/cgroup/cpu,cpuacct/bulkhead/x');
    assert.equal(controllerDir('memory', 'p', parseCgroupMounts(V2)), '/sys/fs/cgroup/p');
  });

  it('hierarchies: each mount once, v1 ones filtered by controller, v2 kept; keys as pod records name them', () => {
    const hy = parseCgroupMounts(`${HYBRID}\n${line(50, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory')}`);
    assert.deepEqual(hierarchies({ mounts: hy }).map((h) => h.path), ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpuacct', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified']);
    assert.deepEqual(hierarchies({ mounts: hy, controllers: ['memory', 'pids'] }).map((h) => h.path), ['/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/unified']);
    assert.deepEqual(hierarchies({ mounts: [...hy, ...parseCgroupMounts(V2), ...parseCgroupMounts(line(60, '/run/x/cg', 'cgroup2', 'rw'))] }).map(hierarchyKey).slice(-3), ['unified', '', undefined]);
  });

  it('cleanCgroupPath: relative and normalized, nothing that climbs out', () => {
    for (const [p, want] of [
      ['/bulkhead/pod/sb', 'bulkhead/pod/sb'], ['bulkhead-vm/x/', 'bulkhead-vm/x'], ['/a/./b', 'a/b'], ['a/b/../c', 'a/c'],
      ['', undefined], ['/', undefined], ['../x', undefined], ['a/../../b', undefined], ['.', undefined], ['a/./..', undefined], ['a\0b', undefined],
    ] as const) assert.equal(cleanCgroupPath(p), want, JSON.stringify(p));
  });
});
