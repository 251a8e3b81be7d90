// A full disk must not take the daemon down (issue #12): its root (state database, images,
// writable layers, pod logs, its own log) on a 64 MiB tmpfs, a container that fills its rootfs
// with `head -c`. The daemon stays up (Version answers), ps works, the container's log up to the
// full disk is kept, rm works and frees the space, and the daemon restarts on a full disk.
// Real daemon, real runc/runsc/conmon, real tmpfs.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { open, readFile, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { runCli } from '../fixtures/cli.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import type { ContainerConfig, PodSandboxConfig } from '../../src/api/cri.ts';

const MiB = 1024 * 1024;

describe('a full disk under the daemon\'s root', () => {
  let d: TestDaemon;
  let images: TestImages;
  before(async () => {
    images = await buildAndPushTestImages(await sharedRegistry());
    d = await startTestDaemon({ name: 'bulkhead-cri-full-', rootTmpfsMb: 64, logLevel: 'debug',
      // the pull reserve would refuse the pull on so small a filesystem
      extraToml: '[images]\nreserve_bytes = "0"\nreserve_percent = 0' });
    await d.client.pullImage(images.busybox);
  });
  after(async () => { await d?.close(); });
  /** Pods a failed test left behind go, so that the next one starts with room and a whole reserve. */
  afterEach(async () => {
    for (const p of await d.client.listPodSandbox().catch(() => [])) {
      await d.client.stopPodSandbox(p.id).catch(() => {});
      await d.client.removePodSandbox(p.id).catch(() => {});
    }
    await waitFor('the disk reserve to be made again', async () => (await stat(join(d.root, 'disk-reserve')).catch(() => undefined))?.size === 8 * MiB || undefined, 30_000).catch(() => {});
  });

  const free = async (): Promise<number> => { const s = await statfs(d.root); return s.bavail * s.bsize; };
  /** Free space counting the daemon's disk reserve (released and made again as room comes and goes) as free. */
  const room = async (): Promise<number> => (await free()) + ((await stat(join(d.root, 'disk-reserve')).catch(() => undefined))?.size ?? 0);

  function podConfig(name: string): PodSandboxConfig {
    return { metadata: { name, namespace: 'disk-full', uid: randomUUID(), attempt: 0 }, linux: {} };
  }
  function ctrConfig(name: string, cmd: string[]): ContainerConfig {
    return { metadata: { name, attempt: 0 }, image: { image: images.busybox }, command: cmd };
  }

  async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * Starts a pod with one container that writes a line, fills its rootfs, then runs `then`.
   * `first` runs in the pod before the filler is created: once it starts, the disk may be full
   * at any moment, and a create then fails with RESOURCE_EXHAUSTED as it should.
   */
  async function filler(handler: string, then: string, first?: (podId: string, pod: PodSandboxConfig) => Promise<void>): Promise<{ podId: string; id: string; pod: PodSandboxConfig }> {
    const pod = podConfig(`fill-${handler}-${Date.now()}`);
    const podId = await d.client.runPodSandbox(pod, handler);
    await first?.(podId, pod);
    const id = await d.client.createContainer(podId, ctrConfig('fill', ['sh', '-c', `echo before-the-fill; head -c 200m /dev/zero > /fill; ${then}`]), pod);
    await d.client.startContainer(id);
    return { podId, id, pod };
  }

  for (const handler of ['runc', 'gvisor']) {
    it(`${handler}: a container filling its rootfs: the daemon stays up, ps works, its log is kept, rm frees the space`, async () => {
      const before = await room();
      const { podId, id } = await filler(handler, 'exit 3');
      const st = await waitFor('the filler to exit', async () => {
        const s = (await d.client.containerStatus(id)).status;
        return s?.state === 'CONTAINER_EXITED' ? s : undefined;
      });
      // full, but for the disk reserve the daemon released to record the exit
      assert.ok(await free() < 10 * MiB, `the filesystem is full (${await free()} bytes free)`);
      assert.equal(st.exitCode, 3);
      assert.ok((await d.client.version()).runtimeName, 'the daemon answers');
      assert.ok((await d.client.listContainers()).some((c) => c.id === id), 'ps works');
      assert.match(await readFile(st.logPath, 'utf8'), /before-the-fill/, 'the log written before the disk filled is kept');
      await d.client.removeContainer(id);
      await d.client.stopPodSandbox(podId);
      await d.client.removePodSandbox(podId);
      assert.deepEqual((await d.client.listPodSandbox()).filter((p) => p.id === podId), []);
      assert.ok(await room() > before - 4 * MiB, `rm freed the space (${await room()} free, ${before} before)`);
    });
  }

  it('bulkhead run --rm of a container filling its rootfs: its output up to the full disk, its exit code, no pod left', async () => {
    const before = await room();
    const r = await runCli(d, ['run', '--rm', '--network', 'none', images.busybox, 'sh', '-c', 'echo before-the-fill; head -c 200m /dev/zero > /fill; exit 3']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /^before-the-fill$/m);
    assert.deepEqual(await d.client.listPodSandbox(), [], '--rm removed the pod on the full disk');
    assert.ok((await d.client.version()).runtimeName, 'the daemon answers');
    assert.ok(await room() > before - 4 * MiB, `--rm freed the space (${await room()} free, ${before} before)`);
  });

  it('the daemon restarts on a full disk after an exit used part of the reserve; ps and rm work, the space comes back', async () => {
    const before = await room();
    let runner = '';
    const { podId, id } = await filler('runc', 'exit 3', async (p, pod) => {
      runner = await d.client.createContainer(p, ctrConfig('runner', ['sleep', '1000']), pod);
      await d.client.startContainer(runner);
    });
    await waitFor('the filler to exit', async () => (await d.client.containerStatus(id)).status?.state === 'CONTAINER_EXITED' || undefined);
    // part of it, however many writes met the full disk: the last quarter stays for the restart
    const left = (await stat(join(d.root, 'disk-reserve')).catch(() => ({ size: 0 }))).size;
    assert.ok(left < 8 * MiB, 'recording the exit on the full disk used the reserve');
    assert.ok(left >= 2 * MiB, `the last quarter of the reserve is kept for a restart (${left} bytes left)`);
    await d.stop();
    // what the reserve gave is used up too (another writer), not a byte free
    const fh = await open(join(d.root, 'test-fill'), 'w');
    try { for (;;) await fh.write(Buffer.alloc(MiB)); } catch (err) { assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC'); }
    try { for (;;) await fh.write(Buffer.alloc(4096)); } catch { /* the last pages */ }
    await fh.close();
    await d.restart();
    assert.ok((await d.client.version()).runtimeName, 'the restarted daemon answers');
    const ps = await d.client.listContainers();
    assert.equal(ps.find((x) => x.id === runner)?.state, 'CONTAINER_RUNNING');
    assert.equal(ps.find((x) => x.id === id)?.state, 'CONTAINER_EXITED');
    await d.client.stopPodSandbox(podId);
    await d.client.removePodSandbox(podId);
    assert.deepEqual((await d.client.listContainers()).filter((x) => x.id === id || x.id === runner), []);
    await rm(join(d.root, 'test-fill'));
    assert.ok(await room() > before - 4 * MiB, `rm freed the space (${await room()} free, ${before} before)`);
    await waitFor('the disk reserve to be made again', async () => (await stat(join(d.root, 'disk-reserve')).catch(() => undefined))?.size === 8 * MiB || undefined);
    assert.match(await d.log(), /released part of the disk reserve/);
    assert.doesNotMatch(await d.log(), /uncaught|unhandled/i);
  });
});
