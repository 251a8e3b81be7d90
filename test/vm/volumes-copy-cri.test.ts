// Copied volumes through the daemon (CRI over its socket), the way the kubelet drives a pod: the
// microvm handler copies by default (`--volumes copy` in its runtime_args), RunPodSandbox names no
// volumes, CreateContainer brings kubelet's mounts (a ConfigMap in its atomic-writer layout, an
// emptyDir, the termination log). The pod takes a member of the level's warm pool, whose members
// follow the handler's mode (template clones without a share); the containers read the ConfigMap, share the emptyDir, and the termination
// message reaches the host file; a read-write host directory is FAILED_PRECONDITION naming its
// destination; a pod that opts out (`share`) takes no member and boots with its share. `bulkhead run
// -v` there: a read-only volume copied, a read-write one shared (its writes reach the host).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { ASSETS, skipReason } from '../../harness/vm-assets.ts';
import { runCli } from '../fixtures/cli.ts';
import { BulkheadError } from '../../src/errors.ts';
import type { ContainerConfig, Mount, PodSandboxConfig } from '../../src/api/cri.ts';
import type { WarmPoolInfo } from '../../src/api/cri-messages.ts';

const skip = skipReason();
let d: TestDaemon;
let images: TestImages;
let kubelet: string;

before(async () => {
  if (skip) return;
  images = await buildAndPushTestImages(await sharedRegistry());
  d = await startTestDaemon({
    name: 'bulkhead-cri-copyvol-',
    handlers: { microvm: { backend: 'microvm', runtime_args: ['--assets', ASSETS, '--volumes', 'copy'] } },
    // the permissive policy's one level; a pool that names no volume mode takes the handler's (copy)
    extraToml: '[pools]\n[pools.microvm]\ntrusted = 1\n',
  });
  await d.client.pullImage(images.busybox);
});
after(async () => { await d?.close(); });

/** Files named `name` under `dir` (a few levels down). */
function find(dir: string, name: string, depth = 6): string[] {
  if (depth < 0 || !existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === name) out.push(join(dir, e.name));
    if (e.isDirectory()) out.push(...find(join(dir, e.name), name, depth - 1));
  }
  return out;
}

const pool = async (): Promise<WarmPoolInfo> => ((await d.client.info()).warmPools ?? []).find((p) => p.handler === 'microvm')!;
async function poolReady(): Promise<WarmPoolInfo> {
  for (let i = 0; i < 1500; i++) {
    const p = await pool();
    if (p.ready === 1) return p;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the copy pool did not fill');
}

async function exited(id: string): Promise<{ exitCode: number; message: string }> {
  for (let i = 0; i < 600; i++) {
    const s = (await d.client.containerStatus(id)).status;
    if (s?.state === 'CONTAINER_EXITED') return { exitCode: s.exitCode ?? -1, message: s.message ?? '' };
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`container ${id} did not exit`);
}

test('a kubelet-style pod on a copying microvm handler: a template clone whose containers get their ConfigMap, emptyDir and termination log', { skip, timeout: 900_000 }, async () => {
  const uid = randomUUID();
  const podDir = join(d.base, 'kubelet/pods', uid);
  kubelet = podDir;
  const cfg = join(podDir, 'volumes/kubernetes.io~configmap/cfg');
  mkdirSync(join(cfg, '..2026_01_01_00_00_00.1'), { recursive: true });
  writeFileSync(join(cfg, '..2026_01_01_00_00_00.1/app.conf'), 'color=red\n');
  symlinkSync('..2026_01_01_00_00_00.1', join(cfg, '..data'));
  symlinkSync('..data/app.conf', join(cfg, 'app.conf'));
  const empty = join(podDir, 'volumes/kubernetes.io~empty-dir/cache');
  mkdirSync(empty, { recursive: true });
  mkdirSync(join(podDir, 'containers/writer'), { recursive: true });
  const term = join(podDir, 'containers/writer/7c1e');
  writeFileSync(term, '');
  const pod: PodSandboxConfig = { metadata: { name: 'cv', namespace: 'copyvol', uid, attempt: 0 }, logDirectory: join(d.base, 'logs', 'cv'), linux: {} };
  const before = await poolReady();
  const podId = await d.client.runPodSandbox(pod, 'microvm');
  try {
    assert.equal((await pool()).hits, before.hits + 1, `the pod (mode copy: the handler's default) took the copy pool's member (last miss: ${(await pool()).lastMiss})`);
    const clones = find(d.base, 'template.json').concat(find(d.runDir, 'template.json'));
    assert.ok(clones.length >= 1, 'the pod VM is a template clone');
    assert.equal(find(d.base, 'shares', 4).filter((p) => readdirSync(p).length > 0).length, 0, 'no virtio-fs share');
    const mounts: Mount[] = [
      { containerPath: '/etc/cfg', hostPath: cfg, readonly: true },
      { containerPath: '/cache', hostPath: empty, readonly: false },
      { containerPath: '/dev/termination-log', hostPath: term, readonly: false },
    ];
    const ctr = (name: string, script: string): ContainerConfig => ({ metadata: { name, attempt: 0 }, image: { image: images.busybox }, command: ['sh', '-c', script], logPath: `${name}.log`, mounts });
    const w = await d.client.createContainer(podId, ctr('writer', 'cat /etc/cfg/app.conf; echo from-writer > /cache/f; echo "writer: finished" > /dev/termination-log'), pod);
    await d.client.startContainer(w);
    assert.equal((await exited(w)).exitCode, 0);
    assert.equal(readFileSync(term, 'utf8'), 'writer: finished\n', 'the termination message reached the host file');
    assert.match(readFileSync(join(pod.logDirectory!, 'writer.log'), 'utf8'), /stdout F color=red\n/);
    const r = await d.client.createContainer(podId, ctr('reader', 'cat /cache/f'), pod);
    await d.client.startContainer(r);
    assert.equal((await exited(r)).exitCode, 0);
    assert.match(readFileSync(join(pod.logDirectory!, 'reader.log'), 'utf8'), /stdout F from-writer\n/, 'the second container sees the first one\'s emptyDir file');
    assert.ok(!existsSync(join(empty, 'f')), 'the emptyDir stays in the guest');
    // a read-write host directory cannot be copied: refused, naming the destination and what to do
    const err = await d.client.createContainer(podId, { ...ctr('rw', 'true'), mounts: [{ containerPath: '/host', hostPath: join(d.base, 'kubelet/pods', uid, 'volumes'), readonly: false }] }, pod).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BulkheadError, String(err));
    assert.equal(err.code, 'FailedPrecondition', err.message);
    assert.match(err.message, /mount \/host: a read-write host directory cannot be copied.*without volumes=copy/);
  } finally {
    await d.client.stopPodSandbox(podId);
    await d.client.removePodSandbox(podId);
  }
  assert.deepEqual(await d.client.listPodSandbox(), []);
  assert.ok(existsSync(kubelet), 'the host volumes stay');
});

test('a pod that opts out of copying (io.bulkhead.vm.volumes=share) takes no copy member: it boots with its virtio-fs share', { skip, timeout: 900_000 }, async () => {
  const before = await poolReady();
  const pod: PodSandboxConfig = { metadata: { name: 'sh', namespace: 'copyvol', uid: randomUUID(), attempt: 0 }, annotations: { 'io.bulkhead.vm.volumes': 'share' }, linux: {} };
  const podId = await d.client.runPodSandbox(pod, 'microvm');
  try {
    const after = await pool();
    assert.equal(after.misses, before.misses + 1);
    assert.match(after.lastMiss, /pool volumes = "copy"/);
    assert.equal(after.ready, 1, 'the member stays in its pool');
    assert.ok(find(d.base, 'virtiofsd.sock').length >= 1, 'the pod VM has its share');
  } finally {
    await d.client.stopPodSandbox(podId);
    await d.client.removePodSandbox(podId);
  }
});

test('bulkhead run -v on a copying microvm handler: a read-only volume is copied, a read-write one is shared (what the container writes reaches the host), a copy that cannot be made names --vm-volumes share', { skip, timeout: 900_000 }, async () => {
  const host = join(d.base, 'cli-vols');
  mkdirSync(join(host, 'ro'), { recursive: true });
  mkdirSync(join(host, 'rw'), { recursive: true });
  writeFileSync(join(host, 'ro/in.txt'), 'from-host\n');
  writeFileSync(join(host, 'out.txt'), '');
  const run = (args: string[]): ReturnType<typeof runCli> => runCli(d, ['run', '--rm', '--network', 'none', '--isolation', 'microvm', ...args], { timeoutMs: 300_000 });
  const ro = await run(['-v', `${join(host, 'ro')}:/in:ro`, images.busybox, 'cat', '/in/in.txt']);
  assert.equal(ro.code, 0, ro.stderr);
  assert.equal(ro.stdout, 'from-host\n');
  const rw = await run(['-v', `${join(host, 'rw')}:/out`, '-v', `${join(host, 'out.txt')}:/out.txt`, images.busybox, 'sh', '-c', 'echo dir > /out/f; echo file > /out.txt']);
  assert.equal(rw.code, 0, rw.stderr);
  assert.equal(readFileSync(join(host, 'rw/f'), 'utf8'), 'dir\n', 'a write to a read-write directory reaches the host');
  assert.equal(readFileSync(join(host, 'out.txt'), 'utf8'), 'file\n', 'and to a read-write file');
  // asked to copy what cannot be copied: refused, naming the flag that shares it instead
  const refused = await run(['--vm-volumes', 'copy', '-v', `${join(host, 'rw')}:/out`, images.busybox, 'true']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /mount \/out: a read-write host directory cannot be copied.*--vm-volumes share/s);
  assert.deepEqual(await d.client.listPodSandbox(), []);
});
