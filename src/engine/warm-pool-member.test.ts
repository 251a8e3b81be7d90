import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adoptionMismatch, comparablePauseSpec, firstDifference, type PoolMember } from './warm-pool-member.ts';
import type { PodSandboxConfig } from '../api/cri.ts';

const member: PoolMember = {
  id: 'a'.repeat(64), sandboxId: 'b'.repeat(64), handler: 'gvisor', level: 'untrusted', mode: 'bridge', netnsPath: '/run/netns/x', ips: ['10.0.0.2'],
  cgroupParent: '/bulkhead/pod-aaaaaaaaaaaaaaaa', podDir: '/run/bulkhead/pods/' + 'a'.repeat(64), egressGuard: true, hostNetwork: false, pauseSpec: '{}',
};
const pod = (extra: Partial<PodSandboxConfig> = {}): PodSandboxConfig => ({ metadata: { name: 'p', namespace: 'n', uid: 'u', attempt: 0 }, ...extra });

test('adoptionMismatch: what is fixed at sandbox start sends the pod the cold way, with the reason', () => {
  const cases: [string, PodSandboxConfig, Parameters<typeof adoptionMismatch>[1], boolean, boolean, RegExp | undefined][] = [
    ['plain pod', pod({ hostname: 'h', dnsConfig: { servers: ['1.1.1.1'] } }), 'bridge', true, false, undefined],
    ['cgroup_parent (moved at adoption)', pod({ linux: { cgroupParent: '/kubepods/x' } }), 'bridge', true, false, undefined],
    ['port mapping without a host port', pod({ portMappings: [{ containerPort: 80 }] }), 'bridge', true, false, undefined],
    ['other network mode', pod(), 'none', true, false, /network mode none/],
    ['host IPC', pod({ linux: { securityContext: { namespaceOptions: { ipc: 'NODE' } } } }), 'bridge', true, false, /host IPC or PID/],
    ['host PID', pod({ linux: { securityContext: { namespaceOptions: { pid: 'NODE' } } } }), 'bridge', true, false, /host IPC or PID/],
    ['sysctls', pod({ linux: { sysctls: { 'kernel.shm_rmid_forced': '1' } } }), 'bridge', true, false, /sysctls/],
    ['host port', pod({ portMappings: [{ containerPort: 80, hostPort: 8080 }] }), 'bridge', true, false, /port mappings/],
    ['egress guard differs', pod(), 'bridge', false, false, /network settings/],
    ['host network permission differs', pod(), 'bridge', true, true, /network settings/],
  ];
  for (const [what, cfg, mode, guard, hostNet, want] of cases) {
    const got = adoptionMismatch(cfg, mode, guard, hostNet, member);
    if (want) assert.match(got ?? '', want, what);
    else assert.equal(got, undefined, what);
  }
});

test('adoptionMismatch: a pool of VMs without a share serves only pods whose volume mode fits (none: none; copy: copy or none)', () => {
  const none: PoolMember = { ...member, handler: 'microvm', volumes: 'none' };
  const copy: PoolMember = { ...member, handler: 'microvm', volumes: 'copy' };
  const ann = (v?: string): PodSandboxConfig => pod(v ? { annotations: { 'io.bulkhead.vm.volumes': v } } : {});
  const cases: [string, PodSandboxConfig, PoolMember, string | undefined, RegExp | undefined][] = [
    ['none member, none pod', ann('none'), none, undefined, undefined],
    ['none member, copy pod', ann('copy'), none, undefined, /pool volumes = "none"/],
    ['none member, pod without a mode', ann(), none, undefined, /pool volumes = "none"/],
    ['copy member, copy pod', ann('copy'), copy, undefined, undefined],
    ['copy member, none pod', ann('none'), copy, undefined, undefined],
    ['copy member, pod without a mode', ann(), copy, undefined, /pool volumes = "copy"/],
    ['copy member, an unknown annotation value', ann('all'), copy, undefined, /pool volumes = "copy"/],
    ['copy member, the handler copies by default', ann(), copy, 'copy', undefined],
    ['copy member, the pod says share under a copying handler', ann('share'), copy, undefined, /pool volumes = "copy"/],
    ['share member serves any pod', ann('copy'), member, undefined, undefined],
  ];
  for (const [what, cfg, m, handlerMode, want] of cases) {
    const got = adoptionMismatch(cfg, 'bridge', true, false, m, handlerMode);
    if (want) assert.match(got ?? '', want, what);
    else assert.equal(got, undefined, what);
  }
});

test('comparablePauseSpec leaves out only the hostname and its HOSTNAME variable; firstDifference names the field', () => {
  const base = { ociVersion: '1.0.2', process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/', env: ['PATH=/bin', 'HOSTNAME=a'] }, hostname: 'a', linux: { cgroupsPath: '/a' } };
  const other = { ...base, hostname: 'b', process: { ...base.process, env: ['PATH=/bin', 'HOSTNAME=b'] } };
  assert.equal(comparablePauseSpec(base), comparablePauseSpec(other));
  const sysctl = { ...base, linux: { cgroupsPath: '/b' } };
  assert.notEqual(comparablePauseSpec(base), comparablePauseSpec(sysctl));
  assert.equal(firstDifference(comparablePauseSpec(base), comparablePauseSpec(sysctl)), 'linux.cgroupsPath');
  assert.equal(firstDifference('{"a":1}', '{"a":1}'), '');
  const path = { ...base, process: { ...base.process, env: ['PATH=/usr/bin'] } };
  assert.equal(firstDifference(comparablePauseSpec(base), comparablePauseSpec(path)), 'process.env.0');
});
