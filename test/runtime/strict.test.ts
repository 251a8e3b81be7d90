// The strict handler through a real daemon, real runc, conmon and the seccomp agent: a training run
// (handler strict-learn) stores the image's profile; under `strict` the learned workload runs and
// a probe's unshare/mount/keyctl/bpf/ptrace/io_uring_setup get EPERM and show up in the daemon log;
// an image without a profile is refused with how to learn one; a profile annotation escaping the
// profile root by a symlink is refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { permissivePolicy, startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildLayer, busyboxLayers, pushImage } from '../../harness/images.ts';
import { run } from '../../src/util/exec.ts';
import { BulkheadError } from '../../src/errors.ts';
import { ProfileStore, profileDirOf } from '../../src/runtime/strict/profile-store.ts';
import { agentAlive, agentDirOf, agentFiles } from '../../src/runtime/strict/agent.ts';
import type { ContainerConfig, PodSandboxConfig } from '../../src/api/cri.ts';

let d: TestDaemon;
let image: string;
let other: string;
let sleeper: string;

before(async () => {
  const reg = await sharedRegistry();
  const bin = join(import.meta.dirname, '.syscall-probe');
  const cc = await run('gcc', ['-static', '-O2', '-o', bin, join(import.meta.dirname, 'syscall-probe.c')], { timeoutMs: 120_000 });
  assert.equal(cc.code, 0, cc.stderr);
  const probe = buildLayer([{ type: 'file', path: 'probe', mode: 0o755, content: await readFile(bin) }]);
  image = (await pushImage(reg, 'test/strict', 'latest', { layers: [...busyboxLayers(), probe] })).ref;
  // the same files, another manifest: an image nobody trained
  other = (await pushImage(reg, 'test/strict-untrained', 'latest', { layers: [...busyboxLayers(), probe], config: { Labels: { untrained: 'yes' } } })).ref;
  sleeper = (await pushImage(reg, 'test/strict-sleeper', 'latest', { layers: [...busyboxLayers(), probe], config: { Labels: { sleeper: 'yes' } } })).ref;
  d = await startTestDaemon({
    name: 'bulkhead-strict-',
    handlers: { runc: { backend: 'runc' }, strict: { backend: 'strict' }, 'strict-kill': { backend: 'strict-kill' }, 'strict-learn': { backend: 'strict-learn' } },
    registries: { insecure: [reg.host] },
    // namespace strict-fallback: a level that lets strict containers without a profile run as runc would
    policy: { toml: [permissivePolicy('runc'), '[policy.levels.lenient]', 'min_isolation = "process"', 'strict_fallback = "runc"',
      '[[policy.rules]]', 'name = "fallback namespace"', 'trust = "lenient"', 'namespaces = ["strict-fallback"]'].join('\n') },
  });
  await d.client.pullImage(image);
  await d.client.pullImage(other);
  await d.client.pullImage(sleeper);
});
after(async () => { await d?.close(); });

function pod(name: string, namespace = 'strict'): PodSandboxConfig {
  return { metadata: { name, namespace, uid: randomUUID(), attempt: 0 }, logDirectory: join(d.base, 'logs', name), labels: { t: name }, linux: {} };
}
function ctr(name: string, img: string, cmd: string[], annotations: Record<string, string> = {}): ContainerConfig {
  return { metadata: { name, attempt: 0 }, image: { image: img }, command: cmd, logPath: `${name}.log`, annotations };
}

/** Runs one container to its end in a new pod on `handler`; returns exit code and log. */
async function runOnce(handler: string, name: string, img: string, cmd: string[], annotations: Record<string, string> = {}, extra: Partial<ContainerConfig> = {}, namespace = 'strict'): Promise<{ exitCode: number; log: string }> {
  const cfg = pod(name, namespace);
  const podId = await d.client.runPodSandbox(cfg, handler);
  try {
    const id = await d.client.createContainer(podId, { ...ctr(name, img, cmd, annotations), ...extra }, cfg);
    await d.client.startContainer(id);
    let st;
    for (let i = 0; i < 300; i++) {
      st = (await d.client.containerStatus(id)).status;
      if (st.state === 'CONTAINER_EXITED') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(st?.state, 'CONTAINER_EXITED', `${name} did not finish`);
    const log = await readFile(join(d.base, 'logs', name, `${name}.log`), 'utf8');
    await d.client.removeContainer(id);
    return { exitCode: st.exitCode, log: log.split('\n').map((l) => l.split(' ').slice(3).join(' ')).join('\n') };
  } finally {
    await d.client.stopPodSandbox(podId).catch(() => {});
    await d.client.removePodSandbox(podId).catch(() => {});
  }
}

async function manifestDigest(ref: string): Promise<string> {
  const st = await d.client.imageStatus(ref, false);
  const dg = st.image?.repoDigests.map((r) => r.split('@')[1]).find(Boolean);
  assert.ok(dg, 'image has a repo digest');
  return dg;
}

test('a learned `sh -c "echo hi"` runs under strict; the probe gets EPERM and the denials reach the daemon log', async () => {
  const learned = await runOnce('strict-learn', 'learn-echo', image, ['sh', '-c', 'echo hi']);
  assert.equal(learned.exitCode, 0);
  const store = new ProfileStore(profileDirOf(d.root));
  const profile = await store.get(await manifestDigest(image));
  assert.ok(profile, 'the training run stored a profile');
  console.log(`# learned for sh -c 'echo hi': ${profile.syscalls.length} system calls allowed: ${profile.syscalls.join(' ')}`);
  console.log(`# capabilities kept: ${profile.capabilities.join(' ')}; wrote rootfs: ${profile.wroteRootfs}`);
  assert.ok(profile.syscalls.length <= 40, `goal: at most 40 (got ${profile.syscalls.length})`);
  assert.ok(profile.syscalls.includes('execve') && !profile.syscalls.includes('mount'));
  assert.equal(profile.wroteRootfs, false);

  const ok = await runOnce('strict', 'strict-echo', image, ['sh', '-c', 'echo hi']);
  assert.equal(ok.exitCode, 0, ok.log);
  assert.match(ok.log, /^hi$/m);

  const probe = await runOnce('strict', 'strict-probe', image, ['/probe']);
  for (const name of ['unshare', 'mount', 'keyctl', 'bpf', 'ptrace', 'io_uring_setup']) {
    assert.match(probe.log, new RegExp(`^${name} EPERM$`, 'm'), `${name} under strict:\n${probe.log}`);
  }
  // strict-kill: the first call outside the list kills the process (SIGSYS: 128 + 31)
  const killed = await runOnce('strict-kill', 'kill-probe', image, ['/probe']);
  assert.equal(killed.exitCode, 159, killed.log);
  assert.doesNotMatch(killed.log, /unshare OK/);
  const dflt = await runOnce('runc', 'runc-probe', image, ['/probe'], {}, { linux: { securityContext: { seccomp: { profileType: 'RuntimeDefault' } } } });
  console.log(`# the same probe under runc's default profile: ${dflt.log.trim().split('\n').join(', ')}`);
  let log = '';
  for (let i = 0; i < 50 && !/system calls (its profile )?denied/.test(log); i++) { log = await d.log(); await new Promise((r) => setTimeout(r, 100)); }
  assert.match(log, /system calls (its profile )?denied/);
  assert.match(log, /io_uring_setup/);
});

test('an image without a profile is refused with how to learn one', async () => {
  const cfg = pod('unlearned');
  const podId = await d.client.runPodSandbox(cfg, 'strict');
  try {
    const err = await d.client.createContainer(podId, ctr('unlearned', other, ['true']), cfg).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BulkheadError, String(err));
    assert.equal(err.code, 'FailedPrecondition', err.message);
    assert.equal(err.reason, 'BH_STRICT_PROFILE_MISSING');
    assert.match(err.message, /bulkhead profile learn/);
  } finally {
    await d.client.stopPodSandbox(podId).catch(() => {});
    await d.client.removePodSandbox(podId).catch(() => {});
  }
});

test('a profile annotation is resolved beneath the profile root: a symlink out is refused, a real file is used', async () => {
  const root = profileDirOf(d.root);
  const digest = await manifestDigest(image);
  const store = new ProfileStore(root);
  const learned = await store.get(digest);
  assert.ok(learned);
  const outside = join(d.base, 'outside');
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, 'p.json'), JSON.stringify({ ...learned, manifestDigest: await manifestDigest(other) }));
  await symlink(outside, join(root, 'escape'));
  const cfg = pod('annotated');
  const podId = await d.client.runPodSandbox(cfg, 'strict');
  try {
    const err = await d.client.createContainer(podId, ctr('escape', other, ['true'], { 'io.bulkhead.strict.profile': join(root, 'escape', 'p.json') }), cfg).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BulkheadError, String(err));
    assert.equal(err.code, 'InvalidArgument', err.message);
    assert.match(err.message, /resolves through a symlink to a place outside/);
  } finally {
    await d.client.stopPodSandbox(podId).catch(() => {});
    await d.client.removePodSandbox(podId).catch(() => {});
  }
  await mkdir(join(root, 'cluster'), { recursive: true });
  await writeFile(join(root, 'cluster', 'untrained.json'), JSON.stringify({ ...learned, manifestDigest: await manifestDigest(other) }));
  const r = await runOnce('strict', 'annotated-ok', other, ['sh', '-c', 'echo hi'], { 'io.bulkhead.strict.profile': join(root, 'cluster', 'untrained.json') });
  assert.equal(r.exitCode, 0, r.log);
});

test('a level with strict_fallback = "runc" runs an image without a profile as runc would, and says so in the log', async () => {
  const r = await runOnce('strict', 'fallback', other, ['sh', '-c', 'echo fell back'], {}, {}, 'strict-fallback');
  assert.equal(r.exitCode, 0, r.log);
  assert.match(r.log, /^fell back$/m);
  assert.match(await d.log(), /no profile for the image; running under the runc default profile/);
  // the annotation a request could set is not the engine's: without the level it is still refused
  const cfg = pod('fallback-forged');
  const podId = await d.client.runPodSandbox(cfg, 'strict');
  try {
    const err = await d.client.createContainer(podId, ctr('forged', other, ['true'], { 'io.bulkhead.strict.fallback': 'runc' }), cfg).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BulkheadError, String(err));
    assert.equal(err.code, 'FailedPrecondition', err.message);
  } finally {
    await d.client.stopPodSandbox(podId).catch(() => {});
    await d.client.removePodSandbox(podId).catch(() => {});
  }
});

test('a strict container\'s deny agent outlives a daemon killed with SIGKILL and is ended when the container is removed; a stale agent directory is swept at restart', async () => {
  assert.equal((await runOnce('strict-learn', 'learn-sleep', sleeper, ['sleep', '0.2'])).exitCode, 0);
  const cfg = pod('sleeper');
  const podId = await d.client.runPodSandbox(cfg, 'strict');
  const id = await d.client.createContainer(podId, ctr('sleeper', sleeper, ['sleep', '60']), cfg);
  await d.client.startContainer(id);
  const strictRun = join(d.runDir, 'runtime', 'strict');
  const files = agentFiles(agentDirOf(strictRun, id));
  assert.ok(await agentAlive(files), 'the deny agent runs beside the container');
  const stale = agentFiles(agentDirOf(strictRun, 'gone-container'));
  await mkdir(stale.dir, { recursive: true });
  await writeFile(stale.pidFile, JSON.stringify({ pid: 999999, startTime: '1' }));
  await d.stop('SIGKILL');
  assert.ok(await agentAlive(files), 'the agent does not die with the daemon');
  await d.restart();
  assert.equal((await d.client.containerStatus(id)).status.state, 'CONTAINER_RUNNING');
  await assert.rejects(stat(stale.dir), /ENOENT/, 'the stale agent directory was swept at recovery');
  await d.client.stopContainer(id, 1);
  await d.client.removeContainer(id);
  assert.equal(await agentAlive(files), false, 'the agent ended with its container');
  await assert.rejects(stat(files.dir), /ENOENT/);
  await d.client.stopPodSandbox(podId);
  await d.client.removePodSandbox(podId);
});

test('training survives many execs: runc never waits on the agent before it has handed over the listener', async () => {
  // a call notified between runc installing an exec's filter and handing the listener to the
  // agent (a Go preemption signal's rt_sigreturn) waited forever: the floor is allowed in training
  const cfg = pod('learn-execs');
  const podId = await d.client.runPodSandbox(cfg, 'strict-learn');
  try {
    const id = await d.client.createContainer(podId, ctr('learn-execs', sleeper, ['sleep', '120']), cfg);
    await d.client.startContainer(id);
    for (let i = 0; i < 40; i++) {
      const r = await d.client.execSync(id, ['true'], 20);
      assert.equal(r.exitCode, 0, `exec ${i}`);
    }
    await d.client.stopContainer(id, 1);
    await d.client.removeContainer(id);
  } finally {
    await d.client.stopPodSandbox(podId).catch(() => {});
    await d.client.removePodSandbox(podId).catch(() => {});
  }
});
