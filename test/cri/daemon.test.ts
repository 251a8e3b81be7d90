// The daemon process: restart with containers kept running under conmon, and ensureDaemon
// starting a daemon in the background when none answers.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, configToml, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages } from '../../harness/images.ts';
import { ensureDaemon } from '../../src/cli/daemon.ts';
import type { GlobalOptions } from '../../src/cli/command.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => { for (const fn of cleanups.reverse()) await fn().catch(() => {}); });

test('a restarted daemon finds its running container again; it kept running meanwhile', async () => {
  const images = await buildAndPushTestImages(await sharedRegistry());
  const d: TestDaemon = await startTestDaemon({ name: 'bulkhead-cri-restart-' });
  cleanups.push(() => d.close());
  await d.client.pullImage(images.busybox);
  const pc = { metadata: { name: 'keep', namespace: 'cri-restart', uid: randomUUID(), attempt: 0 }, linux: {} };
  const podId = await d.client.runPodSandbox(pc, 'runc');
  const ctr = await d.client.createContainer(podId, { metadata: { name: 'sleeper' }, image: { image: images.busybox }, command: ['sh', '-c', 'echo $$ > /tmp/pid; exec sleep 3600'], logPath: 'sleeper.log' }, pc);
  await d.client.startContainer(ctr);
  const before = (await d.client.containerStatus(ctr)).status;
  const pidBefore = (await d.client.execSync(ctr, ['cat', '/tmp/pid'], 10)).stdout.toString();

  const oldPid = d.pid;
  await d.restart();
  assert.notEqual(d.pid, oldPid);
  const after = (await d.client.containerStatus(ctr)).status;
  assert.equal(after.state, 'CONTAINER_RUNNING');
  assert.equal(after.startedAt, before.startedAt, 'the same process, not a restarted one');
  assert.equal((await d.client.execSync(ctr, ['cat', '/tmp/pid'], 10)).stdout.toString(), pidBefore);
  assert.equal((await d.client.podSandboxStatus(podId)).status.state, 'SANDBOX_READY');
  assert.match(await d.log(), /shutting down \(containers keep running under conmon\)/);

  await d.client.stopContainer(ctr, 1);
  assert.equal((await d.client.containerStatus(ctr)).status.state, 'CONTAINER_EXITED');
});

test('ensureDaemon starts a daemon in the background when none answers, then reuses it', async () => {
  const base = await mkdtemp(join(tmpdir(), 'bulkhead-cri-ensure-'));
  const global: GlobalOptions = {
    root: join(base, 'root'), runDir: join(base, 'run'), socket: join(base, 'run', 'cri.sock'), config: join(base, 'config.toml'),
    json: false, debug: false,
  };
  await writeFile(global.config, configToml(global.root, global.runDir, global.socket, { handlers: { runc: { backend: 'runc' } } }));
  let startedPid = 0;
  cleanups.push(async () => {
    if (startedPid) {
      try { process.kill(startedPid, 'SIGTERM'); } catch { /* gone */ }
      for (let i = 0; i < 100; i++) { try { process.kill(startedPid, 0); } catch { break; } await new Promise((r) => setTimeout(r, 100)); }
    }
    await rm(base, { recursive: true, force: true });
  });

  const first = await ensureDaemon(global);
  assert.ok(first.started, 'nothing answered, so a daemon was started');
  startedPid = first.started.pid;
  assert.ok(startedPid > 0);
  assert.equal(first.started.log, join(global.root, 'daemon.log'));
  assert.equal((await first.client.info()).pid, startedPid);
  first.client.close();
  assert.match(await readFile(first.started.log, 'utf8'), /serving CRI on/);

  const second = await ensureDaemon(global);
  assert.equal(second.started, null, 'a daemon answers now: none started');
  assert.equal((await second.client.info()).pid, startedPid);
  second.client.close();
});
