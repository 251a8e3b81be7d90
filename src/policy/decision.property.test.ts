// Property tests of the policy decision: random, hostile PodSandboxConfig / ContainerConfig
// requests never get a decision weaker than their level. Untrusted never gets runc, host
// namespaces, privileged, added capabilities, host paths (but its own kubelet volumes), unconfined
// seccomp/AppArmor, an unmasked /proc or host ports; a trusted level never gets more than it
// lists. And a sandbox_config differing from the stored pod in a trust field is always caught.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PermissionDeniedError, FailedPreconditionError } from '../errors.ts';
import type { ContainerConfig, PodSandboxConfig } from '../api/cri.ts';
import { portAllowed } from './decision.ts';
import { asksUnmaskedProc, enforceContainer, enforcePod, type StoredPod } from './enforce.ts';
import { parsePolicyText } from './load.ts';
import { DEFAULT_CAPABILITIES } from './load.ts';
import { sandboxConfigMismatch } from './pod-identity.ts';
import { unifiedProblems } from './cgroup-unified.ts';
import { podInputFromK8s } from './k8s-pod.ts';
import { dangerousOverlap, decidePod, normalizeCapability, normalizeHostPath, type HandlerInfo } from './policy.ts';

const policy = parsePolicyText(`
default_trust = "untrusted"
[levels.trusted]
min_isolation = "process"
default_handler = "runc"
allow_host_network = true
host_paths = "safe"
allowed_capabilities = ["NET_ADMIN"]
allowed_host_ports = ["8000-8999"]
[[rules]]
name = "system"
trust = "trusted"
namespaces = ["kube-system"]
[[rules]]
name = "lowered by label"
trust = "untrusted"
labels = { tier = "sandbox" }
`, 'toml', 'property-test');

const HANDLERS: HandlerInfo[] = [
  { handler: 'runc', isolation: 'process', available: true },
  { handler: 'gvisor', isolation: 'user-kernel', available: true },
  { handler: 'microvm', isolation: 'vm', available: true },
];
const isolationOf = (h: string): string => HANDLERS.find((x) => x.handler === h)!.isolation;
const UID = '6b1e1c9a-0d1f-4b59-9f0a-1c2d3e4f5a6b';
const OWN = `/var/lib/kubelet/pods/${UID}/`;

// Hostile building blocks: names that look trusted, paths around the dangerous ones.
const namespace = fc.constantFrom('default', 'tenant', 'kube-system', 'kube-system ', 'KUBE-SYSTEM', 'kube-systemx', '');
const anyString = fc.constantFrom('', 'yes', 'trusted', 'kube-system', 'runc', 'true');
const strMap = fc.dictionary(fc.constantFrom('bulkhead.io/trust', 'bulkhead.io/trusted', 'tier', 'app', 'trust'), anyString, { maxKeys: 3 });
const nsMode = fc.constantFrom('POD', 'CONTAINER', 'NODE', 'TARGET', undefined);
const profile = fc.option(fc.record({ profileType: fc.constantFrom('RuntimeDefault', 'Unconfined', 'Localhost'), localhostRef: fc.constantFrom('', '/x.json') }), { nil: undefined });
const hostPath = fc.constantFrom(
  '/', '/etc', '/etc/', '/data', '/data/../etc', '/var', '/var/lib/kubelet', `${OWN}volumes/x`, `${OWN}..`, `${OWN}../other`,
  '/var/lib/kubelet/pods/other/volumes', '/run/bulkhead/cri.sock', '/proc/1/root', 'relative', '/tmp/x', '/dev/sda', '//etc', '/srv/data',
);
const cap = fc.constantFrom('SYS_ADMIN', 'CAP_SYS_ADMIN', 'cap_sys_admin', 'NET_ADMIN', 'ALL', 'CHOWN', 'NET_RAW', 'SYS_PTRACE', ' SYS_ADMIN ');
const port = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 65535 }), fc.constantFrom(8000, 8999, 9000, 7999, 18443));
const handler = fc.constantFrom('', 'runc', 'gvisor', 'microvm');
const procPaths = fc.option(fc.subarray(['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger', '/extra']), { nil: undefined });

const podConfig: fc.Arbitrary<PodSandboxConfig> = fc.record({
  metadata: fc.record({ name: fc.constantFrom('web', 'x'), namespace, uid: fc.constant(UID), attempt: fc.constant(0) }),
  labels: strMap,
  annotations: strMap,
  portMappings: fc.array(fc.record({ protocol: fc.constantFrom('TCP', 'UDP', 'SCTP'), containerPort: fc.integer({ min: 1, max: 65535 }), hostPort: port, hostIp: fc.constant('') }), { maxLength: 3 }),
  linux: fc.record({
    securityContext: fc.record({
      namespaceOptions: fc.record({ network: nsMode, pid: nsMode, ipc: nsMode }),
      privileged: fc.boolean(),
      seccomp: profile,
      apparmor: profile,
      seccompProfilePath: fc.constantFrom(undefined, '', 'unconfined', 'runtime/default'),
    }, { requiredKeys: [] }),
    sysctls: fc.dictionary(fc.constantFrom('kernel.shm_rmid_forced', 'kernel.core_pattern', 'net.ipv4.ip_forward', 'net.core.somaxconn'), fc.constantFrom('1', '0', '|/x'), { maxKeys: 2 }),
  }, { requiredKeys: [] }),
}, { requiredKeys: ['metadata'] }) as fc.Arbitrary<PodSandboxConfig>;

/** Pods a kubelet would start (so most are allowed and their containers get judged). */
const plainPod: fc.Arbitrary<PodSandboxConfig> = fc.record({
  metadata: fc.record({ name: fc.constant('web'), namespace: fc.constantFrom('default', 'kube-system'), uid: fc.constant(UID), attempt: fc.constant(0) }),
  labels: strMap,
  annotations: strMap,
});

const containerConfig: fc.Arbitrary<ContainerConfig> = fc.record({
  metadata: fc.record({ name: fc.constantFrom('app', 'c'), attempt: fc.constant(0) }),
  image: fc.record({ image: fc.constantFrom('busybox', 'sha256:' + 'd'.repeat(64)) }),
  mounts: fc.array(fc.record({ containerPath: fc.constant('/m'), hostPath, propagation: fc.constantFrom('PROPAGATION_PRIVATE', 'PROPAGATION_HOST_TO_CONTAINER', 'PROPAGATION_BIDIRECTIONAL', undefined) }, { requiredKeys: ['containerPath', 'hostPath'] }), { maxLength: 3 }),
  devices: fc.array(fc.record({ containerPath: fc.constant('/dev/x'), hostPath, permissions: fc.constantFrom('rwm', 'rw', 'r', '', 'm', 'rx') }), { maxLength: 2 }),
  linux: fc.record({
    resources: fc.record({ unified: fc.dictionary(fc.constantFrom('memory.max', 'cpu.weight', 'cgroup.procs', 'memory.min', '../memory.max', 'hugetlb.2MB.max'), fc.constantFrom('100', 'max', '-1', '1\n2'), { maxKeys: 2 }) }),
    securityContext: fc.record({
      privileged: fc.boolean(),
      capabilities: fc.record({ addCapabilities: fc.array(cap, { maxLength: 2 }), addAmbientCapabilities: fc.array(cap, { maxLength: 1 }) }, { requiredKeys: [] }),
      namespaceOptions: fc.record({ network: nsMode, pid: nsMode, ipc: nsMode }),
      seccomp: profile,
      apparmor: profile,
      seccompProfilePath: fc.constantFrom(undefined, 'unconfined'),
      apparmorProfile: fc.constantFrom(undefined, 'unconfined'),
      maskedPaths: procPaths,
      readonlyPaths: procPaths,
    }, { requiredKeys: [] }),
  }, { requiredKeys: [] }),
}, { requiredKeys: ['metadata', 'image'] }) as fc.Arbitrary<ContainerConfig>;

/** A path the given level must not see (normalized host path outside its allowance). */
function hostPathAllowed(level: 'untrusted' | 'trusted', raw: string): boolean {
  const p = normalizeHostPath(raw);
  if (p === undefined) return false;
  if (p.startsWith(OWN)) return true;
  if (level === 'untrusted') return false;
  return dangerousOverlap(p, policy.protectedPaths) === undefined;
}

function decide<T>(f: () => T): T | undefined {
  try { return f(); } catch (err) {
    if (err instanceof PermissionDeniedError || err instanceof FailedPreconditionError) return undefined;
    throw err;
  }
}

describe('policy decision (property)', () => {
  it('RunPodSandbox: an allowed pod never gets more than its level', () => {
    const seen = { untrusted: 0, trusted: 0, denied: 0 };
    fc.assert(fc.property(podConfig, handler, (config, requested) => {
      const r = decide(() => enforcePod(policy, { config, runtimeHandler: requested }, HANDLERS, { hostPortInUse: () => false }));
      if (!r) { seen.denied++; return; }
      seen[r.record.level as 'untrusted' | 'trusted']++;
      const sc = config.linux?.securityContext;
      const ns = sc?.namespaceOptions;
      const level = r.record.level;
      assert.ok(level === 'untrusted' || level === 'trusted');
      if (config.metadata?.namespace !== 'kube-system') assert.equal(level, 'untrusted', 'only the namespace can raise trust');
      const lv = policy.levels[level]!;
      // The record is the level's, not weaker.
      assert.equal(r.record.egressGuard, lv.egressGuard);
      assert.equal(r.record.hostNetwork, lv.allowHostNetwork);
      assert.deepEqual(r.record.allowedHostPorts, lv.allowedHostPorts);
      assert.equal(r.record.unmaskedProc, lv.allowUnmaskedProc);
      assert.equal(r.record.honorNoNewPrivs, lv.allowPrivileged);
      assert.equal(r.record.seccompDefault, lv.allowUnconfinedSeccomp ? 'Unconfined' : 'RuntimeDefault');
      if (level === 'untrusted') {
        assert.notEqual(isolationOf(r.handler), 'process', 'untrusted never runs on runc');
        assert.equal(ns?.network === 'NODE', false);
        for (const m of config.portMappings ?? []) assert.equal(m.hostPort ?? 0, 0, 'untrusted publishes no host port');
      } else {
        if (ns?.network !== 'NODE') for (const m of config.portMappings ?? []) if (m.hostPort) assert.ok(portAllowed(m.hostPort, lv.allowedHostPorts), `port ${m.hostPort}`);
      }
      assert.equal(ns?.pid === 'NODE' || ns?.ipc === 'NODE', false, 'no level here allows host PID/IPC');
      assert.equal(Boolean(sc?.privileged), false);
      assert.equal(sc?.seccomp?.profileType === 'Unconfined' || sc?.seccompProfilePath === 'unconfined', false);
      assert.equal(sc?.apparmor?.profileType === 'Unconfined', false);
    }), { numRuns: 2000 });
    // Not vacuous: both levels were allowed and refused many times.
    assert.ok(seen.untrusted > 50 && seen.trusted > 20 && seen.denied > 200, JSON.stringify(seen));
  });

  it('a host port a host process serves is refused for every level', () => {
    fc.assert(fc.property(podConfig, (config) => {
      const ports = (config.portMappings ?? []).filter((m) => m.hostPort);
      const r = decide(() => enforcePod(policy, { config, runtimeHandler: 'runc' }, HANDLERS, { hostPortInUse: () => true }));
      if (ports.length > 0 && config.linux?.securityContext?.namespaceOptions?.network !== 'NODE') assert.equal(r, undefined);
    }), { numRuns: 1000 });
  });

  it('CreateContainer: a container allowed in a stored pod never gets more than the pod\'s level', () => {
    const seen = { untrusted: 0, trusted: 0, denied: 0 };
    fc.assert(fc.property(fc.oneof(plainPod, podConfig), handler, containerConfig, fc.boolean(), (pc, requested, cc, dropDecision) => {
      const pod = decide(() => enforcePod(policy, { config: pc, runtimeHandler: requested }, HANDLERS, { hostPortInUse: () => false }));
      if (!pod) return;
      const stored: StoredPod = { config: pc, handler: pod.handler, decision: dropDecision ? undefined : pod.record };
      const d = decide(() => enforceContainer(policy, { config: cc, pod: stored }, HANDLERS, { resolvePath: (p) => p }));
      if (!d) { seen.denied++; return; }
      const level = d.trust as 'untrusted' | 'trusted';
      seen[level]++;
      if (dropDecision || pod.record.level === 'untrusted') assert.equal(level, 'untrusted', 'no stored decision: the default level');
      if (level === 'untrusted') assert.notEqual(isolationOf(pod.handler), 'process');
      const sc = cc.linux?.securityContext;
      assert.equal(Boolean(sc?.privileged), false);
      assert.equal(sc?.namespaceOptions?.pid === 'NODE' || sc?.namespaceOptions?.ipc === 'NODE', false);
      if (level === 'untrusted') assert.equal(sc?.namespaceOptions?.network === 'NODE', false);
      const allowedCaps = level === 'untrusted' ? DEFAULT_CAPABILITIES : ['NET_ADMIN'];
      for (const c of [...(sc?.capabilities?.addCapabilities ?? []), ...(sc?.capabilities?.addAmbientCapabilities ?? [])]) {
        assert.ok(allowedCaps.includes(normalizeCapability(c)), `capability ${c} for ${level}`);
      }
      for (const m of [...(cc.mounts ?? []), ...(cc.devices ?? [])]) assert.ok(hostPathAllowed(level, m.hostPath ?? ''), `host path ${m.hostPath} for ${level}`);
      assert.equal(sc?.seccomp?.profileType === 'Unconfined' || sc?.seccompProfilePath === 'unconfined', false);
      assert.equal(sc?.apparmor?.profileType === 'Unconfined' || sc?.apparmorProfile === 'unconfined', false);
      assert.equal(asksUnmaskedProc(sc), false, 'no level here allows an unmasked /proc');
      assert.equal((cc.mounts ?? []).some((m) => m.propagation === 'PROPAGATION_BIDIRECTIONAL'), false, 'Bidirectional needs privileged, which no level here allows');
      for (const dv of cc.devices ?? []) assert.match(dv.permissions ?? '', /^[rw]{1,2}$/, 'device permissions: r/w only without privileged (empty means rwm)');
      assert.deepEqual(unifiedProblems(cc.linux?.resources?.unified), [], 'only self-limit cgroup files without privileged');
    }), { numRuns: 4000 });
    assert.ok(seen.untrusted > 5 && seen.trusted > 5 && seen.denied > 200, JSON.stringify(seen));
  });

  it('a sandbox_config differing from the stored pod in a trust field is always caught; an identical copy never', () => {
    const mutations: ((c: PodSandboxConfig) => PodSandboxConfig)[] = [
      (c) => ({ ...c, metadata: { ...c.metadata, namespace: `${c.metadata?.namespace ?? ''}x` } }),
      (c) => ({ ...c, metadata: { ...c.metadata, uid: 'other' } }),
      (c) => ({ ...c, metadata: { ...c.metadata, name: `${c.metadata?.name ?? ''}x` } }),
      (c) => ({ ...c, labels: { ...c.labels, injected: 'x' } }),
      (c) => ({ ...c, annotations: { ...c.annotations, 'bulkhead.io/trusted': `${c.annotations?.['bulkhead.io/trusted'] ?? ''}x` } }),
      (c) => ({ ...c, linux: { ...c.linux, securityContext: { ...c.linux?.securityContext, privileged: !c.linux?.securityContext?.privileged } } }),
      (c) => ({ ...c, linux: { ...c.linux, securityContext: { ...c.linux?.securityContext, namespaceOptions: { ...c.linux?.securityContext?.namespaceOptions, network: c.linux?.securityContext?.namespaceOptions?.network === 'NODE' ? 'POD' : 'NODE' } } } }),
      (c) => ({ ...c, portMappings: [...(c.portMappings ?? []), { protocol: 'TCP', containerPort: 1, hostPort: 1, hostIp: '' }] }),
    ];
    fc.assert(fc.property(podConfig, fc.integer({ min: 0, max: mutations.length - 1 }), (pc, i) => {
      assert.equal(sandboxConfigMismatch(pc, structuredClone(pc)), undefined);
      assert.notEqual(sandboxConfigMismatch(pc, mutations[i]!(pc)), undefined);
    }), { numRuns: 1000 });
  });
});

describe('admission webhook decision (property)', () => {
  const rarely = fc.constantFrom(false, false, false, false, true);
  const container = fc.record({
    name: fc.constantFrom('app', 'side'),
    image: fc.constantFrom('busybox', 'registry.example.com/x'),
    ports: fc.array(fc.record({ containerPort: fc.integer({ min: 1, max: 65535 }), hostPort: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: port }) }), { maxLength: 2 }),
    volumeMounts: fc.array(fc.record({ name: fc.constant('v'), mountPath: fc.constant('/v'), mountPropagation: fc.constantFrom('None', 'HostToContainer', 'Bidirectional') }), { maxLength: 1 }),
    securityContext: fc.record({
      privileged: rarely,
      procMount: fc.constantFrom('Default', 'Default', 'Default', 'Unmasked'),
      capabilities: fc.record({ add: fc.array(cap, { maxLength: 1 }) }),
      seccompProfile: fc.record({ type: fc.constantFrom('RuntimeDefault', 'RuntimeDefault', 'Unconfined') }),
    }, { requiredKeys: [] }),
  }, { requiredKeys: ['name', 'image'] });
  const k8sPod = fc.record({
    kind: fc.constant('Pod'),
    metadata: fc.record({ name: fc.constant('p'), namespace: namespace, uid: fc.constantFrom(UID, 'x'), labels: strMap, annotations: strMap }, { requiredKeys: ['name'] }),
    spec: fc.record({
      runtimeClassName: fc.constantFrom('runc', 'gvisor', 'microvm'),
      hostNetwork: rarely, hostPID: rarely, hostIPC: rarely,
      volumes: fc.oneof({ weight: 2, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.record({ name: fc.constant('v'), hostPath: fc.record({ path: hostPath }) }), { maxLength: 2 }) }),
      containers: fc.array(container, { minLength: 1, maxLength: 2 }),
    }, { requiredKeys: ['containers'] }),
  });

  it('a pod admitted in a namespace no rule trusts never asks for more than untrusted allows', () => {
    const seen = { allowed: 0, denied: 0 };
    fc.assert(fc.property(k8sPod, fc.constantFrom('default', 'tenant'), (p, ns) => {
      const d = decidePod(policy, podInputFromK8s(p, { namespace: ns }), HANDLERS);
      if (!d.allowed) { seen.denied++; return; }
      seen.allowed++;
      assert.equal(d.trust, 'untrusted', 'metadata.namespace never stands in for the request namespace');
      assert.notEqual(isolationOf(d.handler!), 'process');
      const s = p.spec;
      assert.equal(Boolean(s.hostNetwork || s.hostPID || s.hostIPC), false);
      assert.deepEqual(s.volumes ?? [], [], 'no host paths (metadata.uid grants nothing)');
      for (const c of s.containers) {
        assert.equal(Boolean(c.securityContext?.privileged), false);
        assert.notEqual(c.securityContext?.procMount, 'Unmasked');
        assert.notEqual(c.securityContext?.seccompProfile?.type, 'Unconfined');
        for (const x of c.securityContext?.capabilities?.add ?? []) assert.ok(DEFAULT_CAPABILITIES.includes(normalizeCapability(x)), x);
        for (const pt of c.ports ?? []) assert.equal(pt.hostPort, 0, 'no host ports');
        for (const m of c.volumeMounts ?? []) assert.notEqual(m.mountPropagation, 'Bidirectional');
      }
    }), { numRuns: 2000 });
    assert.ok(seen.allowed > 20 && seen.denied > 200, JSON.stringify(seen));
  });
});
