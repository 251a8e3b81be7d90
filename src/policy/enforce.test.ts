import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FailedPreconditionError, PermissionDeniedError } from '../errors.ts';
import { createLogger } from '../util/log.ts';
import type { ContainerConfig, PodSandboxConfig } from '../api/cri.ts';
import { decisionWith } from './decision.ts';
import { createCounters, enforceContainer, enforcePod, KUBELET_MASKED_PATHS, KUBELET_READONLY_PATHS, NodePolicy, type StoredPod } from './enforce.ts';
import { parsePolicyText } from './load.ts';
import type { HandlerInfo } from './policy.ts';

const policy = parsePolicyText(`
[levels.trusted]
min_isolation = "process"
default_handler = "runc"
host_paths = "safe"
[[rules]]
name = "system"
trust = "trusted"
namespaces = ["kube-system"]
`, 'toml', 'test');

const HANDLERS: HandlerInfo[] = [
  { handler: 'runc', isolation: 'process', available: true },
  { handler: 'gvisor', isolation: 'user-kernel', available: true },
  { handler: 'microvm', isolation: 'vm', available: false, reason: 'qemu-system-x86_64 not found' },
];
const UID = '6b1e1c9a-0d1f-4b59-9f0a-1c2d3e4f5a6b';

function podConfig(over: Partial<PodSandboxConfig> = {}, ns = 'default'): PodSandboxConfig {
  return { metadata: { name: 'web', namespace: ns, uid: UID, attempt: 0 }, labels: {}, annotations: {}, linux: null, ...over };
}
function containerConfig(over: Partial<ContainerConfig> = {}): ContainerConfig {
  return { metadata: { name: 'app', attempt: 0 }, image: { image: 'sha256:' + 'd'.repeat(64), userSpecifiedImage: 'busybox:latest' }, mounts: [], devices: [], linux: null, ...over };
}

/** The pod as the engine stores it, with the decision enforcePod gives it. */
function stored(config: PodSandboxConfig, handler: string): StoredPod {
  const { record } = enforcePod(policy, { config, runtimeHandler: handler }, HANDLERS);
  return { config, handler, decision: { ...record, handler } };
}

function capture(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ write: (l) => lines.push(l) }) };
}

describe('enforcePod (RunPodSandbox)', () => {
  it('moves an untrusted pod asking for runc to gvisor, logs and counts it', () => {
    const { lines, logger } = capture();
    const counters = createCounters();
    const r = enforcePod(policy, { config: podConfig(), runtimeHandler: 'runc' }, HANDLERS, { logger, counters });
    assert.equal(r.handler, 'gvisor');
    assert.deepEqual(counters.pods, { allowed: 1, denied: 0, moved: 1 });
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /msg="policy decision".*allowed=true.*handler=gvisor requested=runc moved=true/);
  });

  it('refuses a privileged sandbox with PermissionDenied naming the rule', () => {
    const { lines, logger } = capture();
    const counters = createCounters();
    const config = podConfig({ linux: { securityContext: { privileged: true } } });
    assert.throws(() => enforcePod(policy, { config, runtimeHandler: '' }, HANDLERS, { logger, counters }), (err: unknown) => {
      assert.ok(err instanceof PermissionDeniedError);
      assert.match(err.message, /pod default\/web denied by rule untrusted\/privileged \(trust "untrusted" from the default\)/);
      return true;
    });
    assert.deepEqual(counters.pods, { allowed: 0, denied: 1, moved: 0 });
    assert.deepEqual(counters.deniedByRule, { 'untrusted/privileged': 1 });
    assert.match(lines[0]!, /level=warn .*allowed=false/);
  });

  const denied: { name: string; config: PodSandboxConfig; rule: RegExp }[] = [
    { name: 'host network (namespaceOptions.network NODE)', config: podConfig({ linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'POD', ipc: 'POD' } } } }), rule: /untrusted\/host-network/ },
    { name: 'host PID', config: podConfig({ linux: { securityContext: { namespaceOptions: { network: 'POD', pid: 'NODE', ipc: 'POD' } } } }), rule: /untrusted\/host-pid/ },
    { name: 'host IPC', config: podConfig({ linux: { securityContext: { namespaceOptions: { ipc: 'NODE' } } } }), rule: /untrusted\/host-ipc/ },
    { name: 'unsafe sysctl', config: podConfig({ linux: { sysctls: { 'kernel.core_pattern': '|/tmp/x' } } }), rule: /untrusted\/sysctl/ },
    { name: 'smuggled sysctl name', config: podConfig({ linux: { sysctls: { 'kernel.shm_rmid_forced=1\nkernel.core_pattern': '|/x' } } }), rule: /untrusted\/sysctl/ },
    { name: 'seccomp Unconfined', config: podConfig({ linux: { securityContext: { seccomp: { profileType: 'Unconfined', localhostRef: '' } } } }), rule: /untrusted\/seccomp.*--seccomp-default/ },
    { name: 'legacy seccomp path unconfined', config: podConfig({ linux: { securityContext: { seccompProfilePath: 'unconfined' } } }), rule: /untrusted\/seccomp/ },
    { name: 'spoofed trust annotation asking for runc is moved, but privileged is still refused', config: podConfig({ annotations: { 'bulkhead.io/trust': 'trusted' }, linux: { securityContext: { privileged: true } } }), rule: /untrusted\/privileged/ },
  ];
  for (const c of denied) {
    it(`refuses ${c.name}`, () => {
      assert.throws(() => enforcePod(policy, { config: c.config, runtimeHandler: 'gvisor' }, HANDLERS), (err: unknown) => {
        assert.ok(err instanceof PermissionDeniedError, String(err));
        assert.match(err.message, c.rule);
        return true;
      });
    });
  }

  it('proto-loader defaults (RuntimeDefault seccomp, POD namespaces) pass', () => {
    const config = podConfig({ linux: { cgroupParent: '', sysctls: {}, securityContext: { privileged: false, namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', targetId: '' }, seccomp: { profileType: 'RuntimeDefault', localhostRef: '' }, apparmor: null, seccompProfilePath: '' } } });
    assert.equal(enforcePod(policy, { config, runtimeHandler: '' }, HANDLERS).handler, 'gvisor');
  });

  it('a trusted-namespace pod asking for runc gets runc, but a privileged one is refused (the level does not allow it)', () => {
    assert.equal(enforcePod(policy, { config: podConfig({}, 'kube-system'), runtimeHandler: 'runc' }, HANDLERS).handler, 'runc');
    assert.throws(() => enforcePod(policy, { config: podConfig({ linux: { securityContext: { privileged: true } } }, 'kube-system'), runtimeHandler: 'runc' }, HANDLERS), /trusted\/privileged/);
  });

  it('an unavailable requested handler is FailedPrecondition, not a fallback', () => {
    assert.throws(() => enforcePod(policy, { config: podConfig(), runtimeHandler: 'microvm' }, HANDLERS), (err: unknown) => {
      assert.ok(err instanceof FailedPreconditionError, String(err));
      assert.match(err.message, /qemu-system-x86_64 not found/);
      return true;
    });
  });
});

describe('enforceContainer (CreateContainer)', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-policy-enforce-'));
    await symlink('/etc', join(dir, 'innocent'));
    await symlink('/run/bulkhead', join(dir, 'sock-dir'));
    await mkdir(join(dir, 'data'));
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('allows a plain container in an untrusted gVisor pod, with its own kubelet volumes', () => {
    const config = containerConfig({ mounts: [
      { containerPath: '/etc/hosts', hostPath: `/var/lib/kubelet/pods/${UID}/etc-hosts` },
      { containerPath: '/cache', hostPath: `/var/lib/kubelet/pods/${UID}/volumes/kubernetes.io~empty-dir/cache` },
    ] });
    const d = enforceContainer(policy, { config, pod: stored(podConfig(), 'gvisor') }, HANDLERS);
    assert.equal(d.allowed, true);
  });

  const denied: { name: string; config: () => ContainerConfig; rule: RegExp; handler?: string; ns?: string }[] = [
    { name: 'privileged', config: () => containerConfig({ linux: { securityContext: { privileged: true } } }), rule: /untrusted\/privileged/ },
    { name: 'CAP_SYS_ADMIN', config: () => containerConfig({ linux: { securityContext: { capabilities: { addCapabilities: ['CAP_SYS_ADMIN'], dropCapabilities: [] } } } }), rule: /untrusted\/capabilities.*CAP_SYS_ADMIN/ },
    { name: 'ambient SYS_PTRACE', config: () => containerConfig({ linux: { securityContext: { capabilities: { addAmbientCapabilities: ['SYS_PTRACE'] } } } }), rule: /untrusted\/capabilities/ },
    { name: 'hostPath /', config: () => containerConfig({ mounts: [{ containerPath: '/host', hostPath: '/' }] }), rule: /untrusted\/host-path/ },
    { name: 'another pod\'s volume', config: () => containerConfig({ mounts: [{ containerPath: '/x', hostPath: '/var/lib/kubelet/pods/other/volumes' }] }), rule: /untrusted\/host-path/ },
    { name: 'a host device', config: () => containerConfig({ devices: [{ containerPath: '/dev/xda', hostPath: '/dev/sda', permissions: 'rwm' }] }), rule: /untrusted\/host-path/ },
    { name: 'host PID via container namespaceOptions', config: () => containerConfig({ linux: { securityContext: { namespaceOptions: { pid: 'NODE' } } } }), rule: /untrusted\/host-pid/ },
    { name: 'AppArmor unconfined', config: () => containerConfig({ linux: { securityContext: { apparmor: { profileType: 'Unconfined' } } } }), rule: /untrusted\/apparmor/ },
    { name: 'a container of an untrusted pod that somehow runs on runc', config: () => containerConfig(), handler: 'runc', rule: /untrusted\/handler-not-allowed/ },
    // Trusted pods (host_paths = safe): protected paths even through symlinks
    { name: 'trusted: the runtime socket dir', ns: 'kube-system', handler: 'runc', config: () => containerConfig({ mounts: [{ containerPath: '/s', hostPath: '/run/bulkhead/cri.sock' }] }), rule: /trusted\/host-path.*\/run\/bulkhead/ },
    { name: 'trusted: a symlink to /etc', ns: 'kube-system', handler: 'runc', config: () => containerConfig({ mounts: [{ containerPath: '/x', hostPath: join(dir, 'innocent') }] }), rule: /trusted\/host-path.*\/etc/ },
    { name: 'trusted: /var/lib/kubelet itself', ns: 'kube-system', handler: 'runc', config: () => containerConfig({ mounts: [{ containerPath: '/k', hostPath: '/var/lib/kubelet' }] }), rule: /trusted\/host-path/ },
  ];
  for (const c of denied) {
    it(`refuses ${c.name}`, () => {
      assert.throws(() => enforceContainer(policy, { config: c.config(), pod: stored(podConfig({}, c.ns), c.handler ?? 'gvisor') }, HANDLERS), (err: unknown) => {
        assert.ok(err instanceof PermissionDeniedError, String(err));
        assert.match(err.message, c.rule);
        return true;
      });
    });
  }

  it('trusted: a harmless host dir is allowed', () => {
    const d = enforceContainer(policy, { config: containerConfig({ mounts: [{ containerPath: '/d', hostPath: join(dir, 'data') }] }), pod: stored(podConfig({}, 'kube-system'), 'runc') }, HANDLERS);
    assert.equal(d.allowed, true);
  });

  it('own kubelet volumes are resolved too: a symlink out (to /) is judged as its target; a symlinked kubelet root is still the pod\'s own', async () => {
    const realRoot = join(dir, 'real-kubelet');
    const own = join(realRoot, 'pods', UID, 'volumes');
    await mkdir(join(own, 'data'), { recursive: true });
    await symlink('/', join(own, 'root'));
    await symlink(realRoot, join(dir, 'kubelet'));
    const p = parsePolicyText(`kubelet_root = ${JSON.stringify(join(dir, 'kubelet'))}`, 'toml', 'test');
    const pod = { config: podConfig(), handler: 'gvisor', decision: enforcePod(p, { config: podConfig(), runtimeHandler: 'gvisor' }, HANDLERS).record };
    const vol = (name: string): ContainerConfig => containerConfig({ mounts: [{ containerPath: '/v', hostPath: join(dir, 'kubelet', 'pods', UID, 'volumes', name) }] });
    assert.equal(enforceContainer(p, { config: vol('data'), pod }, HANDLERS).allowed, true, 'own volume through the symlinked kubelet root');
    assert.throws(() => enforceContainer(p, { config: vol('root'), pod }, HANDLERS), /untrusted\/host-path.*host path \/ /);
  });

  it('a stored pod with no decision (older state.db) is judged as the default level, whatever its namespace', () => {
    const pod = { config: podConfig({}, 'kube-system'), handler: 'runc', decision: undefined };
    assert.throws(() => enforceContainer(policy, { config: containerConfig(), pod }, HANDLERS), /untrusted\/handler-not-allowed/);
  });

  it('masked/readonly paths that drop a default unmask /proc: refused unless the level allows it', () => {
    const noSys = containerConfig({ linux: { securityContext: { readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sysrq-trigger'] } } });
    assert.throws(() => enforceContainer(policy, { config: noSys, pod: stored(podConfig({}, 'kube-system'), 'runc') }, HANDLERS), /trusted\/proc-mount/);
    const fewMasked = containerConfig({ linux: { securityContext: { maskedPaths: ['/proc/kcore'] } } });
    assert.throws(() => enforceContainer(policy, { config: fewMasked, pod: stored(podConfig(), 'gvisor') }, HANDLERS), /untrusted\/proc-mount/);
    // The kubelet's own lists (procMount Default), with extra paths, are fine.
    const kubelet = containerConfig({ linux: { securityContext: { maskedPaths: [...KUBELET_MASKED_PATHS, '/proc/extra'], readonlyPaths: [...KUBELET_READONLY_PATHS] } } });
    assert.equal(enforceContainer(policy, { config: kubelet, pod: stored(podConfig(), 'gvisor') }, HANDLERS).allowed, true);
  });
});

describe('NodePolicy (the CriPolicy the CRI server calls)', () => {
  it('asks for the handlers each time, counts decisions and rejects with PermissionDenied', async () => {
    let calls = 0;
    const np = new NodePolicy({ policy, logger: capture().logger, handlers: async () => { calls++; return HANDLERS; } });
    const np2 = new NodePolicy({ policy, logger: capture().logger, handlers: async () => { calls++; return HANDLERS; }, hostPortInUse: () => false });
    const r = await np2.enforcePod(podConfig(), 'runc');
    assert.equal(r.handler, 'gvisor');
    assert.deepEqual({ ...r.record }, decisionWith({ level: 'untrusted', trustRule: 'default', handler: 'gvisor', requestedHandler: 'runc', hostPathsNone: true }));
    calls = 0;
    await np.enforcePod(podConfig(), 'runc');
    await np.enforceContainer(stored(podConfig(), 'gvisor'), containerConfig());
    await assert.rejects(np.enforceContainer(stored(podConfig(), 'gvisor'), containerConfig({ linux: { securityContext: { privileged: true } } })), PermissionDeniedError);
    assert.equal(calls, 3);
    assert.deepEqual(np.counters, { pods: { allowed: 1, denied: 0, moved: 1 }, containers: { allowed: 1, denied: 1 }, deniedByRule: { 'untrusted/privileged': 1 } });
  });
});

describe('handlerInfoFromStatuses', () => {
  it('maps CRI handler statuses and drops unknown isolation classes', async () => {
    const { handlerInfoFromStatuses } = await import('./enforce.ts');
    assert.deepEqual(handlerInfoFromStatuses([
      { name: 'runc', isolation: 'process', probe: { available: true } },
      { name: 'microvm', isolation: 'vm', probe: { available: false, reason: 'no kvm' } },
      { name: 'odd', isolation: 'hypervisor', probe: { available: true } },
    ]), [
      { handler: 'runc', isolation: 'process', available: true },
      { handler: 'microvm', isolation: 'vm', available: false, reason: 'no kvm' },
    ]);
  });
});

describe('linux.resources.unified (cgroup v2 files)', () => {
  const priv = parsePolicyText(`
[levels.admin]
min_isolation = "process"
allow_privileged = true
[[rules]]
name = "admin"
trust = "admin"
namespaces = ["admin"]
`, 'toml', 'test');
  const hostile: Record<string, string>[] = [
    { 'cgroup.procs': '1' }, { 'cgroup.subtree_control': '+memory' }, { '../memory.max': '1' }, { 'x/memory.max': '1' },
    { 'memory.min': '1000000000' }, { 'hugetlb.2MB.max': 'max' }, { 'rdma.max': 'mlx4_0 hca_handle=2' }, { 'io.max': '8:0 rbps=max' },
    { 'devices.allow': 'a *:* rwm' }, { 'memory.max': '-1' }, { 'memory.max': '1\n2' }, { 'cpu.max': '10 100000' }, { 'pids.max': '0' },
  ];

  it('an untrusted container, pod resources or pod overhead may set only self-limits with valid values (rule cgroup-unified); a privileged level any', () => {
    for (const u of hostile) {
      assert.throws(() => enforceContainer(policy, { config: containerConfig({ linux: { resources: { unified: u } } }), pod: stored(podConfig(), 'gvisor') }, HANDLERS),
        (e: unknown) => e instanceof PermissionDeniedError && /untrusted\/cgroup-unified/.test(e.message), JSON.stringify(u));
      // the trusted level does not allow privileged: the same rule
      assert.throws(() => enforceContainer(policy, { config: containerConfig({ linux: { resources: { unified: u } } }), pod: stored(podConfig({}, 'kube-system'), 'runc') }, HANDLERS), /trusted\/cgroup-unified/);
      assert.throws(() => enforcePod(policy, { config: podConfig({ linux: { overhead: { unified: u } } }), runtimeHandler: '' }, HANDLERS), /linux\.overhead\.unified.*untrusted\/|untrusted\/cgroup-unified/);
      assert.throws(() => enforcePod(policy, { config: podConfig({ linux: { resources: { unified: u } } }), runtimeHandler: '' }, HANDLERS), /untrusted\/cgroup-unified/);
      const admin = podConfig({ linux: { resources: { unified: u } } }, 'admin');
      const { record } = enforcePod(priv, { config: admin, runtimeHandler: 'runc' }, HANDLERS);
      assert.equal(record.unifiedAny, true);
      assert.equal(enforceContainer(priv, { config: containerConfig({ linux: { resources: { unified: u } } }), pod: { config: admin, handler: 'runc', decision: record } }, HANDLERS).allowed, true);
    }
    const own = { 'memory.max': '104857600', 'memory.high': 'max', 'cpu.max': 'max 100000', 'cpu.weight': '100', 'pids.max': '64', 'io.weight': 'default 100' };
    assert.equal(enforceContainer(policy, { config: containerConfig({ linux: { resources: { unified: own } } }), pod: stored(podConfig(), 'gvisor') }, HANDLERS).allowed, true);
    const { record } = enforcePod(policy, { config: podConfig({ linux: { resources: { unified: own }, overhead: { unified: { 'memory.max': '1000' } } } }), runtimeHandler: '' }, HANDLERS);
    assert.equal(record.unifiedAny, undefined);
  });
});

describe('devices: permissions and CDI_devices', () => {
  const lv = parsePolicyText(`
[levels.hw]
min_isolation = "process"
host_paths = "any"
[levels.admin]
min_isolation = "process"
host_paths = "any"
allow_privileged = true
[[rules]]
name = "hw"
trust = "hw"
namespaces = ["hw"]
[[rules]]
name = "admin"
trust = "admin"
namespaces = ["admin"]
`, 'toml', 'test');
  const run = (ns: string, c: ContainerConfig): unknown => {
    const config = podConfig({}, ns);
    const { record } = enforcePod(lv, { config, runtimeHandler: 'runc' }, HANDLERS);
    return enforceContainer(lv, { config: c, pod: { config, handler: 'runc', decision: record } }, HANDLERS);
  };
  const dev = (permissions: string): ContainerConfig => containerConfig({ devices: [{ containerPath: '/dev/x', hostPath: '/dev/null', permissions }] });

  it('permissions are a combination of r, w, m (every level); m, or empty (= rwm), only for a privileged level', () => {
    for (const p of ['rx', 'rrw', 'RW', ' r', 'rwmm', 'a']) {
      assert.throws(() => run('admin', dev(p)), /admin\/device-permissions.*not a combination/, p);
      assert.throws(() => run('hw', dev(p)), /hw\/device-permissions/, p);
    }
    for (const p of ['rwm', 'm', 'mr', '']) {
      assert.throws(() => run('hw', dev(p)), (e: unknown) => e instanceof PermissionDeniedError && /hw\/device-permissions.*mknod/.test(e.message), p);
      assert.doesNotThrow(() => run('admin', dev(p)), p);
    }
    for (const p of ['r', 'w', 'rw', 'wr']) assert.doesNotThrow(() => run('hw', dev(p)), p);
  });

  it('CDI_devices are refused unless the level may mount any host path', () => {
    const cdi = containerConfig({ CDIDevices: [{ name: 'vendor.com/gpu=0' }] });
    assert.throws(() => enforceContainer(policy, { config: cdi, pod: stored(podConfig(), 'gvisor') }, HANDLERS), /untrusted\/cdi-devices/);
    assert.throws(() => enforceContainer(policy, { config: cdi, pod: stored(podConfig({}, 'kube-system'), 'runc') }, HANDLERS), /trusted\/cdi-devices/);
    assert.doesNotThrow(() => run('hw', cdi), 'the policy lets it through; the engine refuses it (Unimplemented: no CDI registry)');
  });
});

describe('port mapping host_ip (RunPodSandbox)', () => {
  it('a host_ip that is not an address of this node is refused for every level (rule host-ip)', () => {
    const addrs = new Set(['192.0.2.2']);
    const pm = (hostIp: string, ns = 'default'): PodSandboxConfig => podConfig({ portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 0, hostIp }] }, ns);
    for (const ip of ['203.0.113.9', '127.0.0.1', '169.254.169.254', 'not-an-ip']) {
      assert.throws(() => enforcePod(policy, { config: pm(ip), runtimeHandler: '' }, HANDLERS, { nodeAddresses: addrs }), /untrusted\/host-ip/, ip);
      assert.throws(() => enforcePod(policy, { config: pm(ip, 'kube-system'), runtimeHandler: '' }, HANDLERS, { nodeAddresses: addrs }),
        (e: unknown) => e instanceof PermissionDeniedError && /trusted\/host-ip/.test(e.message), ip);
    }
    for (const ip of ['', '0.0.0.0', '192.0.2.2']) assert.doesNotThrow(() => enforcePod(policy, { config: pm(ip), runtimeHandler: '' }, HANDLERS, { nodeAddresses: addrs }), ip);
  });
});

describe('require_run_as_non_root (RunPodSandbox, CreateContainer)', () => {
  const lv = parsePolicyText(`
[levels.restricted]
min_isolation = "user-kernel"
require_run_as_non_root = true
[[rules]]
name = "restricted"
trust = "restricted"
namespaces = ["secure"]
`, 'toml', 'test');
  it('uid 0 or user "root" asked for is refused (rule run-as-non-root); the record carries the flag for the image user', () => {
    const config = podConfig({}, 'secure');
    const { record } = enforcePod(lv, { config, runtimeHandler: '' }, HANDLERS);
    assert.equal(record.runAsNonRoot, true);
    const pod: StoredPod = { config, handler: 'gvisor', decision: record };
    const sc = (s: object): ContainerConfig => containerConfig({ linux: { securityContext: s } });
    for (const s of [{ runAsUser: { value: 0 } }, { runAsUsername: 'root' }, { runAsUsername: '0' }]) {
      assert.throws(() => enforceContainer(lv, { config: sc(s), pod }, HANDLERS), (e: unknown) => e instanceof PermissionDeniedError && /restricted\/run-as-non-root/.test(e.message), JSON.stringify(s));
    }
    for (const s of [{ runAsUser: { value: 1000 } }, { runAsUsername: 'nobody' }, {}]) assert.doesNotThrow(() => enforceContainer(lv, { config: sc(s), pod }, HANDLERS), JSON.stringify(s));
    assert.throws(() => enforcePod(lv, { config: podConfig({ linux: { securityContext: { runAsUser: { value: 0 } } } }, 'secure'), runtimeHandler: '' }, HANDLERS), /restricted\/run-as-non-root/);
    // off by default: the built-in levels allow root
    assert.equal(enforceContainer(policy, { config: sc({ runAsUser: { value: 0 } }), pod: stored(podConfig(), 'gvisor') }, HANDLERS).allowed, true);
    assert.equal(enforcePod(policy, { config: podConfig(), runtimeHandler: '' }, HANDLERS).record.runAsNonRoot, undefined);
  });
});
