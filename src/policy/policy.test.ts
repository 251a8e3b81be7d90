import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decideContainer, decidePod, imageSource, type HandlerInfo, type PodInput, type Policy } from './policy.ts';
import { parsePolicyText } from './load.ts';

const POLICY = `
default_trust = "untrusted"

[levels.untrusted]
min_isolation = "user-kernel"

[levels.strict]
min_isolation = "user-kernel"
on_weak_handler = "deny"

[levels.hostile]
min_isolation = "vm"

[levels.trusted]
min_isolation = "process"
default_handler = "runc"
host_paths = "safe"
allowed_capabilities = ["NET_ADMIN"]
allowed_sysctls = ["net.core.somaxconn"]

[levels.internal]
min_isolation = "process"
registries = ["registry.internal", "docker.io/library"]

[[rules]]
name = "system namespace"
trust = "trusted"
namespaces = ["trusted-ns"]

[[rules]]
name = "ci may claim trust"
trust = "trusted"
namespaces = ["ci"]
annotations = { "bulkhead.io/trust" = "trusted" }

[[rules]]
name = "strict namespace"
trust = "strict"
namespaces = ["strict-ns"]

[[rules]]
name = "opt into a VM"
trust = "hostile"
labels = { "bulkhead.io/sandbox" = "vm" }

[[rules]]
name = "internal images"
trust = "internal"
namespaces = ["apps"]
images = ["registry.internal"]
`;

const policy: Policy = parsePolicyText(POLICY, 'toml', 'test');

const HANDLERS: HandlerInfo[] = [
  { handler: 'runc', isolation: 'process', available: true },
  { handler: 'gvisor', isolation: 'user-kernel', available: true },
  { handler: 'microvm', isolation: 'vm', available: false, reason: 'no /dev/kvm and TCG disabled' },
];
const WITH_VM: HandlerInfo[] = HANDLERS.map((h) => (h.handler === 'microvm' ? { handler: 'microvm', isolation: 'vm', available: true } : h));

function pod(over: Partial<PodInput> = {}): PodInput {
  return { namespace: 'default', name: 'p', labels: {}, annotations: {}, runtimeHandler: '', containers: [{ name: 'c', image: 'busybox' }], ...over };
}

interface Case {
  name: string;
  input: PodInput;
  handlers?: HandlerInfo[];
  allowed: boolean;
  trust: string;
  handler?: string;
  rule: string;
  moved?: boolean;
  message?: RegExp;
}

const cases: Case[] = [
  // Handler choice
  { name: 'untrusted pod asking for runc is moved to the strongest available sandbox (gVisor)', input: pod({ runtimeHandler: 'runc' }), allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler', moved: true },
  { name: 'untrusted pod asking for runc is moved to the microVM when it is available', input: pod({ runtimeHandler: 'runc' }), handlers: WITH_VM, allowed: true, trust: 'untrusted', handler: 'microvm', rule: 'untrusted/handler', moved: true },
  { name: 'level with on_weak_handler=deny refuses runc instead of moving', input: pod({ namespace: 'strict-ns', runtimeHandler: 'runc' }), allowed: false, trust: 'strict', rule: 'strict/handler-not-allowed', message: /needs at least the user-kernel/ },
  { name: 'untrusted pod with no handler gets the strongest available one', input: pod(), allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler' },
  { name: 'untrusted pod with no handler gets the microVM when available', input: pod(), handlers: WITH_VM, allowed: true, trust: 'untrusted', handler: 'microvm', rule: 'untrusted/handler' },
  { name: 'an unavailable requested handler is refused, never swapped', input: pod({ runtimeHandler: 'microvm' }), allowed: false, trust: 'untrusted', rule: 'untrusted/handler-unavailable', message: /no \/dev\/kvm/ },
  { name: 'an unknown handler is refused', input: pod({ runtimeHandler: 'kata' }), allowed: false, trust: 'untrusted', rule: 'untrusted/handler-unknown' },
  { name: 'a level needing a VM with no VM available is refused', input: pod({ labels: { 'bulkhead.io/sandbox': 'vm' } }), allowed: false, trust: 'hostile', rule: 'hostile/no-handler', message: /microvm: no \/dev\/kvm/ },
  { name: 'untrusted gvisor request runs as asked', input: pod({ runtimeHandler: 'gvisor' }), handlers: WITH_VM, allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler', moved: false },
  // Trusted
  { name: 'trusted pod asking for runc runs on runc', input: pod({ namespace: 'trusted-ns', runtimeHandler: 'runc' }), allowed: true, trust: 'trusted', handler: 'runc', rule: 'trusted/handler' },
  { name: 'trusted pod with no handler gets its level default (runc)', input: pod({ namespace: 'trusted-ns' }), handlers: WITH_VM, allowed: true, trust: 'trusted', handler: 'runc', rule: 'trusted/handler' },
  { name: 'trusted pod may mount a harmless host path and add NET_ADMIN', input: pod({ namespace: 'trusted-ns', runtimeHandler: 'runc', security: { hostPaths: ['/data/cache'] }, containers: [{ name: 'c', security: { addedCapabilities: ['CAP_NET_ADMIN'] } }] }), allowed: true, trust: 'trusted', handler: 'runc', rule: 'trusted/handler' },
  // Spoofing
  { name: 'a trust annotation a pod sets on itself is ignored', input: pod({ runtimeHandler: 'runc', annotations: { 'bulkhead.io/trust': 'trusted' } }), allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler', moved: true },
  { name: 'a trusted label a pod sets on itself is ignored', input: pod({ runtimeHandler: 'runc', labels: { trusted: 'true' } }), allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler', moved: true },
  { name: 'the trust annotation counts in the namespace a rule names', input: pod({ namespace: 'ci', runtimeHandler: 'runc', annotations: { 'bulkhead.io/trust': 'trusted' } }), allowed: true, trust: 'trusted', handler: 'runc', rule: 'trusted/handler' },
  { name: 'a label may lower trust (opt into a VM) without a namespace', input: pod({ labels: { 'bulkhead.io/sandbox': 'vm' } }), handlers: WITH_VM, allowed: true, trust: 'hostile', handler: 'microvm', rule: 'hostile/handler' },
  // Dangerous settings for untrusted pods
  { name: 'privileged container', input: pod({ containers: [{ name: 'c', security: { privileged: true } }] }), allowed: false, trust: 'untrusted', rule: 'untrusted/privileged', message: /container c: privileged mode/ },
  { name: 'privileged pod (sandbox)', input: pod({ security: { privileged: true } }), allowed: false, trust: 'untrusted', rule: 'untrusted/privileged' },
  { name: 'host network', input: pod({ security: { hostNetwork: true } }), allowed: false, trust: 'untrusted', rule: 'untrusted/host-network' },
  { name: 'host PID', input: pod({ security: { hostPID: true } }), allowed: false, trust: 'untrusted', rule: 'untrusted/host-pid' },
  { name: 'host IPC', input: pod({ security: { hostIPC: true } }), allowed: false, trust: 'untrusted', rule: 'untrusted/host-ipc' },
  { name: 'hostPath / (untrusted)', input: pod({ security: { hostPaths: ['/'] } }), allowed: false, trust: 'untrusted', rule: 'untrusted/host-path' },
  { name: 'hostPath of a harmless dir is still refused for untrusted (host_paths = none)', input: pod({ security: { hostPaths: ['/data'] } }), allowed: false, trust: 'untrusted', rule: 'untrusted/host-path', message: /allows no host paths/ },
  { name: 'CAP_SYS_ADMIN', input: pod({ containers: [{ name: 'c', security: { addedCapabilities: ['CAP_SYS_ADMIN'] } }] }), allowed: false, trust: 'untrusted', rule: 'untrusted/capabilities', message: /CAP_SYS_ADMIN/ },
  { name: 'SYS_ADMIN without the CAP_ prefix, lower case', input: pod({ containers: [{ name: 'c', security: { addedCapabilities: ['sys_admin'] } }] }), allowed: false, trust: 'untrusted', rule: 'untrusted/capabilities' },
  { name: 'adding ALL capabilities', input: pod({ containers: [{ name: 'c', security: { addedCapabilities: ['ALL'] } }] }), allowed: false, trust: 'untrusted', rule: 'untrusted/capabilities', message: /adding capability ALL/ },
  { name: 'adding a default capability is harmless', input: pod({ containers: [{ name: 'c', security: { addedCapabilities: ['NET_BIND_SERVICE', 'CAP_CHOWN'] } }] }), allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler' },
  { name: 'unconfined seccomp', input: pod({ security: { seccompUnconfined: true } }), allowed: false, trust: 'untrusted', rule: 'untrusted/seccomp' },
  { name: 'unconfined AppArmor', input: pod({ containers: [{ name: 'c', security: { apparmorUnconfined: true } }] }), allowed: false, trust: 'untrusted', rule: 'untrusted/apparmor' },
  { name: 'unmasked /proc', input: pod({ containers: [{ name: 'c', security: { unmaskedProc: true } }] }), allowed: false, trust: 'untrusted', rule: 'untrusted/proc-mount' },
  { name: 'safe sysctl is allowed', input: pod({ security: { sysctls: { 'net.ipv4.ip_local_port_range': '1024 65000', 'kernel.shm_rmid_forced': '1' } } }), allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler' },
  { name: 'unsafe sysctl kernel.core_pattern', input: pod({ security: { sysctls: { 'kernel.core_pattern': '|/tmp/x' } } }), allowed: false, trust: 'untrusted', rule: 'untrusted/sysctl', message: /kernel\.core_pattern is not in the safe set/ },
  { name: 'core_pattern smuggled in a sysctl name with a newline', input: pod({ security: { sysctls: { 'kernel.shm_rmid_forced=1\nkernel.core_pattern=|/x': '1' } } }), allowed: false, trust: 'untrusted', rule: 'untrusted/sysctl', message: /not a plain dotted name/ },
  { name: 'core_pattern smuggled through a slash path', input: pod({ security: { sysctls: { 'net.ipv4.ip_local_port_range/../../kernel/core_pattern': '|/x' } } }), allowed: false, trust: 'untrusted', rule: 'untrusted/sysctl' },
  { name: 'core_pattern smuggled in a safe sysctl value', input: pod({ security: { sysctls: { 'kernel.shm_rmid_forced': '1\nkernel.core_pattern=|/x' } } }), allowed: false, trust: 'untrusted', rule: 'untrusted/sysctl', message: /value/ },
  { name: 'trusted level: allowed extra sysctl', input: pod({ namespace: 'trusted-ns', security: { sysctls: { 'net.core.somaxconn': '1024' } } }), allowed: true, trust: 'trusted', handler: 'runc', rule: 'trusted/handler' },
  { name: 'trusted level: core_pattern is still refused', input: pod({ namespace: 'trusted-ns', security: { sysctls: { 'kernel.core_pattern': 'core' } } }), allowed: false, trust: 'trusted', rule: 'trusted/sysctl' },
  // Protected host paths even for trusted pods (host_paths = safe)
  { name: 'trusted: hostPath /', input: pod({ namespace: 'trusted-ns', security: { hostPaths: ['/'] } }), allowed: false, trust: 'trusted', rule: 'trusted/host-path', message: /host path \/ is not allowed: it is the protected path \// },
  { name: 'trusted: hostPath of the Bulkhead CRI socket', input: pod({ namespace: 'trusted-ns', security: { hostPaths: ['/run/bulkhead/cri.sock'] } }), allowed: false, trust: 'trusted', rule: 'trusted/host-path', message: /is under the protected path \/run\/bulkhead/ },
  { name: 'trusted: hostPath of the docker socket', input: pod({ namespace: 'trusted-ns', security: { hostPaths: ['/var/run/docker.sock'] } }), allowed: false, trust: 'trusted', rule: 'trusted/host-path' },
  { name: 'trusted: hostPath /var contains /var/lib/kubelet', input: pod({ namespace: 'trusted-ns', security: { hostPaths: ['/var/'] } }), allowed: false, trust: 'trusted', rule: 'trusted/host-path', message: /contains the protected path/ },
  { name: 'trusted: hostPath with .. that lands on /etc', input: pod({ namespace: 'trusted-ns', security: { hostPaths: ['/data/../etc/shadow'] } }), allowed: false, trust: 'trusted', rule: 'trusted/host-path', message: /\/etc\/shadow/ },
  { name: 'trusted: relative hostPath', input: pod({ namespace: 'trusted-ns', security: { hostPaths: ['etc'] } }), allowed: false, trust: 'trusted', rule: 'trusted/host-path', message: /not a clean absolute path/ },
  { name: 'trusted: CAP_SYS_ADMIN not in its allow-list', input: pod({ namespace: 'trusted-ns', containers: [{ name: 'c', security: { addedCapabilities: ['SYS_ADMIN'] } }] }), allowed: false, trust: 'trusted', rule: 'trusted/capabilities' },
  // Image sources
  { name: 'image rule: every image from the internal registry → internal level', input: pod({ namespace: 'apps', runtimeHandler: 'runc', containers: [{ name: 'c', image: 'registry.internal/team/app:1' }] }), allowed: true, trust: 'internal', handler: 'runc', rule: 'internal/handler' },
  { name: 'image rule: one image from elsewhere → default trust', input: pod({ namespace: 'apps', runtimeHandler: 'runc', containers: [{ name: 'a', image: 'registry.internal/team/app:1' }, { name: 'b', image: 'evil.example/x' }] }), allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler', moved: true },
  { name: 'image rule: a look-alike host does not match', input: pod({ namespace: 'apps', runtimeHandler: 'runc', containers: [{ name: 'c', image: 'registry.internal.evil.example/app' }] }), allowed: true, trust: 'untrusted', handler: 'gvisor', rule: 'untrusted/handler', moved: true },
];

describe('decidePod', () => {
  for (const c of cases) {
    it(c.name, () => {
      const d = decidePod(policy, c.input, c.handlers ?? HANDLERS);
      const got = { allowed: d.allowed, trust: d.trust, rule: d.rule, handler: d.allowed ? d.handler : undefined };
      assert.deepEqual(got, { allowed: c.allowed, trust: c.trust, rule: c.rule, handler: c.allowed ? c.handler : undefined }, JSON.stringify(d, null, 1));
      if (c.moved !== undefined) assert.equal(d.moved, c.moved);
      if (c.message) assert.match(d.violations.map((v) => v.message).join('\n'), c.message);
      if (!c.allowed) assert.ok(d.violations.length > 0);
      else assert.deepEqual(d.violations, []);
    });
  }

  it('explains a move and an ignored trust annotation in its reasons', () => {
    const d = decidePod(policy, pod({ runtimeHandler: 'runc', annotations: { 'bulkhead.io/trust': 'trusted' } }), HANDLERS);
    const text = d.reasons.join('\n');
    assert.match(text, /moved from handler "runc" \(process\) to "gvisor" \(user-kernel\)/);
    assert.match(text, /annotation bulkhead\.io\/trust ignored/);
  });

  it('reports every violation, not only the first', () => {
    const d = decidePod(policy, pod({ security: { privileged: true, hostNetwork: true, hostPaths: ['/'] } }), HANDLERS);
    assert.deepEqual(d.violations.map((v) => v.rule), ['privileged', 'host-network', 'host-path']);
  });

  it('a pod may mount its own kubelet volume directory, not another pod\'s', () => {
    const uid = '0f6a3f3e-8d7b-4f7e-9c1a-2b9d1f7e6a10';
    const own = `/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~empty-dir/cache`;
    const ok = decidePod(policy, pod({ uid, containers: [{ name: 'c', security: { hostPaths: [own, `/var/lib/kubelet/pods/${uid}/etc-hosts`] } }] }), HANDLERS);
    assert.equal(ok.allowed, true, JSON.stringify(ok.violations));
    const other = decidePod(policy, pod({ uid, containers: [{ name: 'c', security: { hostPaths: ['/var/lib/kubelet/pods/another-pod/volumes'] } }] }), HANDLERS);
    assert.equal(other.allowed, false);
    const escape = decidePod(policy, pod({ uid, containers: [{ name: 'c', security: { hostPaths: [`/var/lib/kubelet/pods/${uid}/../../pki`] } }] }), HANDLERS);
    assert.equal(escape.allowed, false);
    const badUid = decidePod(policy, pod({ uid: '../..', containers: [{ name: 'c', security: { hostPaths: ['/var/lib/kubelet/pods/../../x'] } }] }), HANDLERS);
    assert.equal(badUid.allowed, false);
  });

  it('is pure: the same input gives the same decision and is not modified', () => {
    const input = pod({ runtimeHandler: 'runc', security: { sysctls: { 'kernel.shm_rmid_forced': '1' } } });
    const before = JSON.stringify(input);
    assert.deepEqual(decidePod(policy, input, HANDLERS), decidePod(policy, input, HANDLERS));
    assert.equal(JSON.stringify(input), before);
  });
});

describe('decideContainer', () => {
  const trustedPod = { namespace: 'trusted-ns', name: 'p', labels: {}, annotations: {} };
  it('a trusted pod on runc may create its containers', () => {
    const d = decideContainer(policy, { pod: trustedPod, podHandler: 'runc', container: { name: 'c', image: 'busybox' } }, HANDLERS);
    assert.equal(d.allowed, true, JSON.stringify(d));
    assert.equal(d.trust, 'trusted');
  });
  it('an untrusted pod on runc (started before policy) gets no containers', () => {
    const d = decideContainer(policy, { pod: { namespace: 'default', name: 'p' }, podHandler: 'runc', container: { name: 'c', image: 'busybox' } }, HANDLERS);
    assert.equal(d.allowed, false);
    assert.equal(d.rule, 'untrusted/handler-not-allowed');
  });
  it('a container with CAP_SYS_ADMIN in an untrusted gVisor pod is refused', () => {
    const d = decideContainer(policy, { pod: { namespace: 'default', name: 'p' }, podHandler: 'gvisor', container: { name: 'c', image: 'busybox', security: { addedCapabilities: ['CAP_SYS_ADMIN'] } } }, HANDLERS);
    assert.equal(d.rule, 'untrusted/capabilities');
  });
  it('the internal level refuses an image from another registry', () => {
    const d = decideContainer(policy, { pod: { namespace: 'apps', name: 'p' }, podHandler: 'gvisor', container: { name: 'c', image: 'registry.internal/app' } }, HANDLERS);
    assert.equal(d.allowed, true, JSON.stringify(d));
    assert.equal(d.trust, 'internal');
  });
  it('an image ID with no name cannot satisfy a registry rule', () => {
    const id = 'sha256:' + 'a'.repeat(64);
    const d = decideContainer(policy, { pod: { namespace: 'apps', name: 'p' }, podHandler: 'gvisor', container: { name: 'c', image: id } }, HANDLERS);
    assert.equal(d.trust, 'untrusted');
  });
});

describe('imageSource', () => {
  const table: [string, string | undefined][] = [
    ['busybox', 'docker.io/library/busybox'],
    ['busybox:1.36', 'docker.io/library/busybox'],
    ['library/busybox@sha256:' + 'b'.repeat(64), 'docker.io/library/busybox'],
    ['127.0.0.1:5000/test/busybox:latest', '127.0.0.1:5000/test/busybox'],
    ['localhost/x', 'localhost/x'],
    ['registry.internal/team/app:1', 'registry.internal/team/app'],
    ['sha256:' + 'c'.repeat(64), undefined],
  ];
  for (const [ref, want] of table) it(`${ref} → ${String(want)}`, () => assert.equal(imageSource(ref), want));
});

describe('the strict isolation class (a per-image system call allow-list)', () => {
  const p = parsePolicyText(`
default_trust = "allowlisted"
[levels.allowlisted]
min_isolation = "strict"
on_weak_handler = "deny"
[levels.lax]
min_isolation = "process"
[[rules]]
name = "lax namespace"
trust = "lax"
namespaces = ["lax-ns"]
`, 'toml', 'test');
  const handlers: HandlerInfo[] = [
    { handler: 'runc', isolation: 'process', available: true },
    { handler: 'strict-learn', isolation: 'process', available: true },
    { handler: 'strict', isolation: 'strict', available: true },
    { handler: 'gvisor', isolation: 'user-kernel', available: true },
  ];
  it('ranks between process and user-kernel: a level requiring it accepts strict and gvisor, refuses runc and training runs', () => {
    assert.equal(decidePod(p, pod({ runtimeHandler: 'strict' }), handlers).handler, 'strict');
    assert.equal(decidePod(p, pod({ runtimeHandler: 'gvisor' }), handlers).handler, 'gvisor');
    for (const weak of ['runc', 'strict-learn']) {
      const d = decidePod(p, pod({ runtimeHandler: weak }), handlers);
      assert.equal(d.allowed, false, weak);
      assert.match(d.violations[0]?.message ?? '', /needs at least the strict isolation class/);
    }
  });
  it('a process-class level may train (strict-learn) and run strict', () => {
    assert.equal(decidePod(p, pod({ namespace: 'lax-ns', runtimeHandler: 'strict-learn' }), handlers).handler, 'strict-learn');
    assert.equal(decidePod(p, pod({ namespace: 'lax-ns', runtimeHandler: 'strict' }), handlers).handler, 'strict');
  });
});
