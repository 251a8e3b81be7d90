// Issue #11 (paths): host paths, logs, localhost seccomp profiles and cgroup parents over the real
// CRI socket with a realistic policy (untrusted by default; kube-system trusted on runc with the
// host network and "safe" host paths). Each case is one the issue found open on main: a symlink
// to / under the pod's own kubelet dir, another pod's volume, the daemon's own root/run dir/socket,
// a path swapped for a symlink between check and mount, log_directory=/etc, hostile localhost
// profiles, cgroup_parent outside the roots, and pod log / cgroup dirs left after removal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { TestDaemon } from '../../harness/daemon.ts';
import { policyBuilders, refused, removePod as removeAnyPod, startPolicyDaemon, type PolicyDaemon } from '../fixtures/policy-daemon.ts';
import { BulkheadError } from '../../src/errors.ts';
import { defaultSeccompProfile, MAX_PROFILE_BYTES } from '../../src/runtime/seccomp.ts';
import { run } from '../../src/util/exec.ts';
import type { PodSandboxConfig } from '../../src/api/cri.ts';

const IMAGE = 'bulkhead.local/paths-test:latest';

const { pod, ctr } = policyBuilders({ image: IMAGE, command: ['sleep', '30'] });
let t: PolicyDaemon;
let d: TestDaemon;
let dir: string;
let kubelet: string;
/** Untrusted by default; kube-system trusted on runc with "safe" host paths; ops "listed". */
async function policyIn(testDir: string): Promise<string> {
  const kubeletRoot = join(testDir, 'kubelet');
  await mkdir(join(kubeletRoot, 'seccomp'), { recursive: true });
  return `[policy]
default_trust = "untrusted"
kubelet_root = ${JSON.stringify(kubeletRoot)}
[policy.levels.trusted]
min_isolation = "process"
allow_host_network = true
host_paths = "safe"
[policy.levels.listed]
min_isolation = "process"
host_paths = "listed"
allowed_host_paths = [${JSON.stringify(join(testDir, 'allowed'))}]
[[policy.rules]]
name = "system namespace"
trust = "trusted"
namespaces = ["kube-system"]
[[policy.rules]]
name = "ops namespace"
trust = "listed"
namespaces = ["ops"]
`;
}

before(async () => {
  t = await startPolicyDaemon({ name: 'paths', image: IMAGE, policy: policyIn });
  ({ d, dir } = t);
  kubelet = join(dir, 'kubelet');
});
after(async () => { await t?.close(); });

const removePod = (id: string): Promise<void> => removeAnyPod(d, id);

/** A trusted (kube-system, runc) pod with its kubelet pod directory. */
async function trustedPod(name: string, extra: Partial<PodSandboxConfig> = {}): Promise<{ id: string; cfg: PodSandboxConfig; podDir: string }> {
  const cfg = pod(name, 'kube-system', extra);
  const podDir = join(kubelet, 'pods', cfg.metadata!.uid!);
  await mkdir(join(podDir, 'volumes'), { recursive: true });
  const id = await d.client.runPodSandbox(cfg, 'runc');
  return { id, cfg, podDir };
}

test('host paths under the pod\'s own kubelet dir: a symlink to / is refused; another pod\'s uid is refused (a sandbox_config claiming it too)', async () => {
  const a = await trustedPod('own-a');
  const b = await trustedPod('own-b');
  try {
    await symlink('/', join(a.podDir, 'volumes', 'root'));
    await refused(d.client.createContainer(a.id, ctr({ mounts: [{ containerPath: '/h', hostPath: join(a.podDir, 'volumes', 'root') }] }), a.cfg),
      'PermissionDenied', 'symlink to / under the own pod dir', /host-path/);
    // a relative symlink climbing out of the pod dir into a neighbour's
    await mkdir(join(b.podDir, 'volumes', 'secret'), { recursive: true });
    await writeFile(join(b.podDir, 'volumes', 'secret', 'token'), 'b-secret');
    await symlink('../../' + b.cfg.metadata!.uid + '/volumes/secret', join(a.podDir, 'volumes', 'up'));
    await refused(d.client.createContainer(a.id, ctr({ mounts: [{ containerPath: '/s', hostPath: join(a.podDir, 'volumes', 'up') }] }), a.cfg),
      'PermissionDenied', 'relative symlink into another pod', /host-path/);
    // B's volume by name, from pod A, with A's request claiming to be B
    await refused(d.client.createContainer(a.id, ctr({ mounts: [{ containerPath: '/s', hostPath: join(b.podDir, 'volumes', 'secret') }] }), b.cfg),
      'InvalidArgument', 'another pod\'s volume with a spoofed sandbox_config', /sandbox_config/);
    await refused(d.client.createContainer(a.id, ctr({ mounts: [{ containerPath: '/s', hostPath: join(b.podDir, 'volumes', 'secret') }] }), a.cfg),
      'PermissionDenied', 'another pod\'s volume', /host-path/);
    assert.deepEqual(await d.client.listContainers({ podSandboxId: a.id }), [], 'nothing was created');
    // the pod's own plain volume still works, read-only where asked
    await mkdir(join(a.podDir, 'volumes', 'data'));
    await writeFile(join(a.podDir, 'volumes', 'data', 'mine'), 'a-data');
    const cid = await d.client.createContainer(a.id, ctr({ mounts: [{ containerPath: '/data', hostPath: join(a.podDir, 'volumes', 'data'), readonly: true }] }), a.cfg);
    await d.client.startContainer(cid);
    const r = await d.client.execSync(cid, ['sh', '-c', 'cat /data/mine; echo; touch /data/x 2>/dev/null && echo writable || echo readonly'], 10);
    assert.equal(r.stdout.toString(), 'a-data\nreadonly\n');
  } finally {
    await removePod(a.id);
    await removePod(b.id);
  }
});

test('the daemon\'s own root, run dir and socket (and a parent, and a symlink to one) are refused for a "safe" level', async () => {
  const a = await trustedPod('daemon-dirs');
  try {
    const link = join(dir, 'innocent');
    await symlink(d.runDir, link);
    for (const hostPath of [d.root, d.runDir, d.socket, join(d.root, 'state.db'), dirname(d.root), link]) {
      await refused(d.client.createContainer(a.id, ctr({ mounts: [{ containerPath: '/x', hostPath }] }), a.cfg), 'PermissionDenied', `hostPath ${hostPath}`, /host-path.*protected path/);
    }
    assert.deepEqual(await d.client.listContainers({ podSandboxId: a.id }), []);
  } finally {
    await removePod(a.id);
  }
});

/**
 * Creates `attempts` containers (named `<prefix><i>`) in the pod, each mounting `target` at /v,
 * while `target` is swapped every millisecond between a symlink to `good` (a dir holding only
 * MARKER) and one to `bad`. Each attempt must be refused as a host-path violation or mount the
 * good dir (`onlyGood` says why). Returns how many mounted and how many were refused.
 */
async function createWhileSwapping(
  pod: { id: string; cfg: PodSandboxConfig }, target: string, links: { good: string; bad: string },
  attempts: number, prefix: string, onlyGood: string,
): Promise<{ mounted: number; refusedCount: number }> {
  let flip = false;
  let swapping = true;
  const swapper = (async () => {
    while (swapping) {
      flip = !flip;
      const tmp = join(dirname(target), `t-${flip ? 1 : 0}`);
      await rm(tmp, { force: true });
      await symlink(flip ? links.bad : links.good, tmp);
      await rename(tmp, target);
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  let mounted = 0;
  let refusedCount = 0;
  try {
    for (let i = 0; i < attempts; i++) {
      let cid: string;
      try {
        cid = await d.client.createContainer(pod.id, ctr({ metadata: { name: `${prefix}${i}`, attempt: 0 }, mounts: [{ containerPath: '/v', hostPath: target }] }), pod.cfg);
      } catch (err) {
        assert.ok(err instanceof BulkheadError && err.code === 'PermissionDenied', `refused as a host-path violation: ${String(err)}`);
        refusedCount++;
        continue;
      }
      mounted++;
      await d.client.startContainer(cid);
      const r = await d.client.execSync(cid, ['ls', '/v'], 10);
      assert.equal(r.stdout.toString(), 'MARKER\n', onlyGood);
      await d.client.removeContainer(cid);
    }
  } finally {
    swapping = false;
    await swapper;
  }
  return { mounted, refusedCount };
}

test('a host path swapped for a symlink to / between the check and the mount never exposes the host\'s /', async () => {
  const a = await trustedPod('swap');
  const vols = join(a.podDir, 'volumes');
  const real = join(vols, 'real');
  await mkdir(real);
  await writeFile(join(real, 'MARKER'), 'x');
  await symlink('/', join(vols, 'evil'));
  const target = join(vols, 'v');
  await symlink('real', target); // start as a harmless (in-dir) symlink
  // swap v between "real" (inside) and "/" (out) every millisecond while containers are created
  let counts: { mounted: number; refusedCount: number };
  try {
    counts = await createWhileSwapping(a, target, { good: 'real', bad: '/' }, 24, 'c', 'what got mounted is the pod\'s own directory, never the host /');
  } finally {
    await removePod(a.id);
  }
  const { mounted, refusedCount } = counts;
  assert.ok(mounted + refusedCount === 24);
  // where the engine saw the symlink it refused; the other attempts mounted the real dir
  assert.ok(refusedCount > 0, `some attempts met the symlink to / (mounted ${mounted}, refused ${refusedCount})`);
});

test('a "listed" level: a listed path swapped for a symlink to an unlisted dir never mounts the unlisted dir', async () => {
  const allowed = join(dir, 'allowed');
  const elsewhere = join(dir, 'elsewhere');
  await mkdir(join(allowed, 'real'), { recursive: true });
  await mkdir(elsewhere, { recursive: true });
  await writeFile(join(allowed, 'real', 'MARKER'), 'x');
  await writeFile(join(elsewhere, 'OTHER'), 'x');
  const target = join(allowed, 'v');
  await symlink(join(allowed, 'real'), target);
  const cfg = pod('listed', 'ops');
  const id = await d.client.runPodSandbox(cfg, 'runc');
  // by name and real path at check time: a path outside the list is refused
  await refused(d.client.createContainer(id, ctr({ mounts: [{ containerPath: '/e', hostPath: elsewhere }] }), cfg), 'PermissionDenied', 'unlisted path', /host-path/);
  let counts: { mounted: number; refusedCount: number };
  try {
    counts = await createWhileSwapping({ id, cfg }, target, { good: join(allowed, 'real'), bad: elsewhere }, 16, 'l', 'only the listed directory is ever mounted');
  } finally {
    await removePod(id);
  }
  const { mounted, refusedCount } = counts;
  assert.ok(refusedCount > 0 && mounted + refusedCount === 16, `mounted ${mounted}, refused ${refusedCount}`);
});

test('log_directory outside the pod-log roots, log_path with .. and a symlinked log dir are INVALID_ARGUMENT; nothing is written', async () => {
  const marker = `bulkhead-paths-${process.pid}.log`;
  await refused(d.client.runPodSandbox(pod('etc-logs', 'kube-system', { logDirectory: '/etc' }), 'runc'), 'InvalidArgument', 'log_directory=/etc', /log_directory.*pod_log_root/);
  await refused(d.client.runPodSandbox(pod('dotdot-logs', 'kube-system', { logDirectory: join(d.base, 'logs', '..', '..', 'x') }), 'runc'), 'InvalidArgument', 'log_directory with ..', /log_directory/);
  const away = join(dir, 'away');
  await mkdir(away);
  await mkdir(join(d.base, 'logs'), { recursive: true });
  await symlink(away, join(d.base, 'logs', 'evil'));
  await refused(d.client.runPodSandbox(pod('link-logs', 'kube-system', { logDirectory: join(d.base, 'logs', 'evil', 'pod') }), 'runc'), 'InvalidArgument', 'symlink under the log root', /symlink/);
  assert.deepEqual(await readdir(away), [], 'nothing was created through the symlink');
  const a = await trustedPod('log-path', { logDirectory: join(d.base, 'logs', `kube-system_log-path_${randomUUID()}`) });
  try {
    await refused(d.client.createContainer(a.id, ctr({ logPath: `../../../../../../../etc/${marker}` }), a.cfg), 'InvalidArgument', 'log_path with ..', /log_path|logPath/);
    await refused(d.client.createContainer(a.id, ctr({ logPath: `/etc/${marker}` }), a.cfg), 'InvalidArgument', 'absolute log_path', /log_path|logPath/);
    assert.equal(existsSync(join('/etc', marker)), false);
  } finally {
    await removePod(a.id);
  }
});

test('a pod log directory Bulkhead created goes with the pod; one that existed before stays', async () => {
  const made = join(d.base, 'logs', `kube-system_made_${randomUUID()}`);
  const a = await trustedPod('made-logs', { logDirectory: made });
  const cid = await d.client.createContainer(a.id, ctr({ command: ['echo', 'hi'], logPath: 'c/0.log' }), a.cfg);
  await d.client.startContainer(cid);
  assert.ok(existsSync(join(made, 'c')), 'the log dir and the container\'s subdirectory exist while the pod does');
  await removePod(a.id);
  assert.equal(existsSync(made), false, 'removed with the pod');

  const kept = join(d.base, 'logs', `kube-system_kept_${randomUUID()}`);
  await mkdir(kept, { recursive: true });
  const b = await trustedPod('kept-logs', { logDirectory: kept });
  await removePod(b.id);
  assert.equal(existsSync(kept), true, 'a directory the kubelet made is the kubelet\'s');
});

test('localhost seccomp profiles: outside the root, devices, a FIFO, oversized, a symlink, allow-all for an untrusted pod — refused fast, nothing echoed, daemon fine; a good one and the pod\'s own volume work in its sandbox', async () => {
  const root = join(kubelet, 'seccomp');
  const fifo = join(root, 'fifo.json');
  assert.equal((await run('mkfifo', [fifo])).code, 0);
  await writeFile(join(root, 'big.json'), Buffer.alloc(MAX_PROFILE_BYTES + 10, 0x20));
  await writeFile(join(root, 'allow-all.json'), JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW' }));
  await writeFile(join(root, 'sneaky.json'), JSON.stringify({ ...defaultSeccompProfile(), syscalls: [...defaultSeccompProfile().syscalls!, { names: ['mount', 'bpf'], action: 'SCMP_ACT_ALLOW' }] }));
  await writeFile(join(root, 'not-json.json'), 'root:$6$secretsalt$hash:19000:0:99999:7:::\n');
  await writeFile(join(root, 'good.json'), JSON.stringify(defaultSeccompProfile()));
  await symlink('/etc/shadow', join(root, 'link.json'));
  const cfg = pod('seccomp', 'tenant');
  // gVisor asked for (allowed for untrusted); with none named the strongest handler (a microVM,
  // which does not carry host bind mounts into its guest) would be chosen
  const id = await d.client.runPodSandbox(cfg, 'gvisor');
  try {
    const cases: [string, RegExp, string][] = [
      ['/etc/shadow', /under .*seccomp/, 'InvalidArgument'],
      ['/dev/zero', /under .*seccomp/, 'InvalidArgument'],
      ['/dev/kmsg', /under .*seccomp/, 'InvalidArgument'],
      [`${root}/../../../etc/shadow`, /\.\./, 'InvalidArgument'],
      [fifo, /not a regular file/, 'InvalidArgument'],
      [join(root, 'big.json'), /larger than/, 'InvalidArgument'],
      [join(root, 'link.json'), /symlink/, 'InvalidArgument'],
      [join(root, 'not-json.json'), /not valid JSON/, 'InvalidArgument'],
      [join(root, 'allow-all.json'), /seccomp rule.*SCMP_ACT_ALLOW/, 'PermissionDenied'],
      [join(root, 'sneaky.json'), /seccomp rule.*allows (mount|bpf)/, 'PermissionDenied'],
    ];
    for (const [ref, rule, code] of cases) {
      const t0 = performance.now();
      const err = await refused(d.client.createContainer(id, ctr({ linux: { securityContext: { seccomp: { profileType: 'Localhost', localhostRef: ref } } } }), cfg), code, `profile ${ref}`, rule);
      const ms = performance.now() - t0;
      assert.ok(ms < 3000, `${ref} answered in ${Math.round(ms)} ms`);
      assert.doesNotMatch(err.message, /root:|secretsalt|\$6\$/, `${ref}: no file content in the message`);
    }
    // the deprecated field takes the same road
    await refused(d.client.createContainer(id, ctr({ linux: { securityContext: { seccompProfilePath: `localhost/${fifo}` } } }), cfg), 'InvalidArgument', 'legacy field, FIFO', /not a regular file/);
    assert.ok((await d.client.version()).runtimeName, 'the daemon still answers');
    assert.deepEqual(await d.client.listContainers({ podSandboxId: id }), []);
    // a profile no looser than the built-in one is fine for the untrusted pod, and so is its own
    // kubelet volume (staged like every host path) in its gVisor sandbox
    const vol = join(kubelet, 'pods', cfg.metadata!.uid!, 'volumes', 'data');
    await mkdir(vol, { recursive: true });
    await writeFile(join(vol, 'f'), 'own-volume');
    const cid = await d.client.createContainer(id, ctr({
      mounts: [{ containerPath: '/data', hostPath: vol, readonly: true }],
      linux: { securityContext: { seccomp: { profileType: 'Localhost', localhostRef: join(root, 'good.json') } } },
    }), cfg);
    await d.client.startContainer(cid);
    const r = await d.client.execSync(cid, ['cat', '/data/f'], 20);
    assert.equal(r.stdout.toString(), 'own-volume', r.stderr.toString());
  } finally {
    await removePod(id);
  }
});

async function cgroupDirs(rel: string): Promise<string[]> {
  const out: string[] = [];
  for (const h of await readdir('/sys/fs/cgroup')) if (existsSync(join('/sys/fs/cgroup', h, rel))) out.push(h);
  return out;
}

test('cgroup_parent outside the cgroup roots (or with ..) is refused; the dirs Bulkhead made under a kubelet-style parent go with the pod', async () => {
  for (const cp of ['/evil', '/', '/kubepods', '/kubepods/../evil', 'kubepods/x', '/bulkhead/../../x']) {
    await refused(d.client.runPodSandbox(pod('cg', 'kube-system', { linux: { cgroupParent: cp } }), 'runc'), 'InvalidArgument', `cgroup_parent ${cp}`, /cgroup_parent/);
  }
  const top = `/kubepods/bulkhead-paths-${process.pid}`;
  const existed = await cgroupDirs('/kubepods');
  const parent = `${top}/pod${randomUUID()}`;
  const a = await trustedPod('cg-ok', { linux: { cgroupParent: parent } });
  try {
    const cid = await d.client.createContainer(a.id, ctr(), a.cfg);
    await d.client.startContainer(cid);
    assert.ok((await cgroupDirs(parent)).includes('memory'), 'the container runs under the requested parent');
  } finally {
    await removePod(a.id);
  }
  assert.deepEqual(await cgroupDirs(parent), [], 'the pod\'s parent is gone in every hierarchy');
  assert.deepEqual(await cgroupDirs(top), [], 'and the level above it Bulkhead made');
  assert.deepEqual(await cgroupDirs('/kubepods'), existed, '/kubepods as it was before (kept where it existed)');
});

async function mountsUnder(prefix: string): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(prefix + '/'));
}

test('staged host-path mounts survive a daemon crash while their container exists, go with it, and an orphan bundle\'s are swept at start', async () => {
  const a = await trustedPod('crash');
  await mkdir(join(a.podDir, 'volumes', 'data'));
  await writeFile(join(a.podDir, 'volumes', 'data', 'f'), 'x');
  const cid = await d.client.createContainer(a.id, ctr({ mounts: [{ containerPath: '/data', hostPath: join(a.podDir, 'volumes', 'data') }] }), a.cfg);
  const staged = join(d.runDir, 'containers', cid, 'mounts');
  assert.equal((await mountsUnder(staged)).length, 1, 'one staged mount for the one host path');
  // an orphan: a bundle with a staged bind of a host dir and no record
  const orphan = join(d.runDir, 'containers', 'f'.repeat(64));
  const victim = join(dir, 'victim');
  await mkdir(join(orphan, 'mounts', '0'), { recursive: true });
  await mkdir(victim, { recursive: true });
  await writeFile(join(victim, 'keep'), 'host data');
  assert.equal((await run('mount', ['--bind', victim, join(orphan, 'mounts', '0')])).code, 0);
  await d.stop('SIGKILL');
  await d.restart();
  try {
    assert.equal((await mountsUnder(staged)).length, 1, 'the live container keeps its staged mount');
    assert.deepEqual(await mountsUnder(orphan), [], 'the orphan bundle\'s mount is gone');
    assert.equal(existsSync(orphan), false, 'and the orphan bundle');
    assert.equal(existsSync(join(victim, 'keep')), true, 'without touching the host directory it had mounted');
    await d.client.removeContainer(cid);
    assert.deepEqual(await mountsUnder(staged), [], 'removed with the container');
  } finally {
    await removePod(a.id);
  }
});
