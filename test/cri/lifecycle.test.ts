// Every RuntimeService and ImageService RPC over the real socket, against real runc + conmon and
// a real registry: images, a pod, containers through their whole life, exec, stats, events.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile, mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../../harness/daemon.ts';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildAndPushTestImages, type TestImages } from '../../harness/images.ts';
import { BulkheadError } from '../../src/errors.ts';
import type { ContainerEventResponse, ContainerConfig, PodSandboxConfig } from '../../src/api/cri.ts';

let d: TestDaemon;
let images: TestImages;
const events: ContainerEventResponse[] = [];
const eventsAbort = new AbortController();
let eventsDone: Promise<void>;

before(async () => {
  const reg = await sharedRegistry();
  images = await buildAndPushTestImages(reg);
  d = await startTestDaemon({ name: 'bulkhead-cri-life-' });
  eventsDone = (async () => {
    try {
      for await (const ev of d.client.getContainerEvents({ signal: eventsAbort.signal })) events.push(ev);
    } catch (err) {
      if (!eventsAbort.signal.aborted) throw err;
    }
  })();
});
after(async () => {
  eventsAbort.abort();
  await eventsDone?.catch(() => {});
  await d?.close();
});

function code(name: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BulkheadError, `expected a BulkheadError, got ${String(err)}`);
    assert.equal(err.code, name, `expected ${name}, got ${err.code}: ${err.message}`);
    return true;
  };
}

function podConfig(name: string, labels: Record<string, string> = {}): PodSandboxConfig {
  return {
    metadata: { name, namespace: 'cri-test', uid: randomUUID(), attempt: 0 },
    logDirectory: join(d.base, 'logs', name),
    labels: { app: name, ...labels },
    linux: {},
  };
}

function ctrConfig(name: string, image: string, cmd: string[], labels: Record<string, string> = {}): ContainerConfig {
  return { metadata: { name, attempt: 0 }, image: { image }, command: cmd, logPath: `${name}.log`, labels: { ctr: name, ...labels } };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

test('images: pull, list, status (verbose), fs info, remove', async () => {
  const c = d.client;
  const ref = await c.pullImage(images.busybox);
  assert.match(ref, /^sha256:[0-9a-f]{64}$/);
  const all = await c.listImages();
  const img = all.find((i) => i.id === ref);
  assert.ok(img, 'pulled image listed');
  assert.ok(img.repoTags.includes(images.busybox), JSON.stringify(img.repoTags));
  assert.ok(img.size > 0);
  const filtered = await c.listImages(images.busybox);
  assert.deepEqual(filtered.map((i) => i.id), [ref]);
  const st = await c.imageStatus(images.busybox, true);
  assert.equal(st.image?.id, ref);
  const info = JSON.parse(st.info.info!) as { imageSpec: { config: { Cmd?: string[] } } };
  assert.deepEqual(info.imageSpec.config.Cmd, ['sh']);
  // By id too.
  assert.equal((await c.imageStatus(ref)).image?.id, ref);

  const user = await c.pullImage(images.user);
  assert.equal((await c.imageStatus(user)).image?.uid?.value, 1000);

  const fs = await c.imageFsInfo();
  assert.equal(fs.imageFilesystems.length, 1);
  assert.ok((fs.imageFilesystems[0]!.usedBytes?.value ?? 0) > 0, JSON.stringify(fs));

  await c.removeImage(images.user);
  assert.equal((await c.imageStatus(images.user)).image, null);
  await c.removeImage(images.user); // idempotent
});

test('PullImageWithProgress streams layer events and ends with done', async () => {
  const evs = [];
  for await (const ev of d.client.pullImageWithProgress(images.zstd)) evs.push(ev);
  const last = evs.at(-1);
  assert.ok(last?.done, JSON.stringify(last));
  assert.match(last.done.imageId, /^sha256:/);
  assert.ok(last.done.repoTags.includes(images.zstd));
  const layers = evs.filter((e) => e.layer);
  assert.ok(layers.length >= 2, `layer events: ${layers.length}`);
  assert.ok(layers.every((e) => e.layer!.id !== '' && e.layer!.status !== ''));
  await assert.rejects(async () => { for await (const _ of d.client.pullImageWithProgress('127.0.0.1:1/nope:latest')) { /* drain */ } }, (err: unknown) => err instanceof BulkheadError);
});

test('pod and container lifecycle on runc, with exec, stats, filters and events', async () => {
  const c = d.client;
  await c.pullImage(images.busybox);
  const pc = podConfig('life', { tier: 'a' });
  await mkdir(pc.logDirectory!, { recursive: true });
  const podId = await c.runPodSandbox(pc, 'runc');
  assert.match(podId, /^[0-9a-f]{64}$/);
  await assert.rejects(c.runPodSandbox(pc, 'runc'), code('AlreadyExists'));

  const ps = await c.podSandboxStatus(podId, true);
  assert.equal(ps.status.state, 'SANDBOX_READY');
  assert.equal(ps.status.runtimeHandler, 'runc');
  assert.equal(ps.status.metadata.name, 'life');
  assert.ok(Object.keys(ps.info).length > 0, 'verbose info present');
  for (const v of Object.values(ps.info)) JSON.parse(v);
  // Prefix lookup, as crictl does.
  assert.equal((await c.podSandboxStatus(podId.slice(0, 12))).status.id, podId);

  assert.deepEqual((await c.listPodSandbox({ id: podId })).map((p) => p.id), [podId]);
  assert.deepEqual((await c.listPodSandbox({ labelSelector: { tier: 'a' } })).map((p) => p.id), [podId]);
  assert.deepEqual(await c.listPodSandbox({ labelSelector: { tier: 'b' } }), []);
  assert.deepEqual(await c.listPodSandbox({ state: { state: 'SANDBOX_NOTREADY' } }), []);

  const sleeper = await c.createContainer(podId, ctrConfig('sleeper', images.busybox, ['sh', '-c', 'echo started; exec sleep 3600']), pc);
  assert.equal((await c.containerStatus(sleeper)).status.state, 'CONTAINER_CREATED');
  await c.startContainer(sleeper);
  const cs = await c.containerStatus(sleeper, true);
  assert.equal(cs.status.state, 'CONTAINER_RUNNING');
  assert.ok(cs.status.startedAt > 0);
  assert.equal(cs.status.logPath, join(pc.logDirectory!, 'sleeper.log'));

  const hi = await c.execSync(sleeper, ['sh', '-c', 'echo hi; echo err >&2; exit 3'], 10);
  assert.equal(hi.stdout.toString(), 'hi\n');
  assert.equal(hi.stderr.toString(), 'err\n');
  assert.equal(hi.exitCode, 3);
  // The (permissive) policy's level allows unconfined seccomp and privileged pods, so a container
  // that asks for nothing gets Kubernetes' defaults: unconfined, no_new_privs as sent (false).
  const sec = await c.execSync(sleeper, ['grep', '-E', '^(Seccomp|NoNewPrivs):', '/proc/self/status'], 10);
  assert.equal(sec.stdout.toString().replace(/\s+/g, ' ').trim(), 'NoNewPrivs: 0 Seccomp: 0');

  const exiter = await c.createContainer(podId, ctrConfig('exiter', images.busybox, ['sh', '-c', 'echo out; exit 7'], { kind: 'batch' }), pc);
  await c.startContainer(exiter);
  const done = await waitFor('exiter to exit', async () => {
    const s = (await c.containerStatus(exiter)).status;
    return s.state === 'CONTAINER_EXITED' ? s : undefined;
  });
  assert.equal(done.exitCode, 7);
  assert.ok(done.finishedAt >= done.startedAt);
  assert.match(await readFile(join(pc.logDirectory!, 'exiter.log'), 'utf8'), /^\S+ stdout F out$/m);

  // Filters.
  const running = await c.listContainers({ state: { state: 'CONTAINER_RUNNING' } });
  assert.deepEqual(running.map((x) => x.id), [sleeper]);
  assert.deepEqual((await c.listContainers({ labelSelector: { kind: 'batch' } })).map((x) => x.id), [exiter]);
  assert.deepEqual((await c.listContainers({ podSandboxId: podId })).map((x) => x.id).sort(), [sleeper, exiter].sort());
  assert.deepEqual((await c.listContainers({ id: sleeper })).map((x) => x.id), [sleeper]);

  // Stats.
  const st = await c.containerStats(sleeper);
  assert.equal(st.attributes.id, sleeper);
  assert.ok((st.memory?.workingSetBytes?.value ?? 0) > 0, JSON.stringify(st.memory));
  assert.ok((await c.listContainerStats({ podSandboxId: podId })).some((s) => s.attributes.id === sleeper));
  const pst = await c.podSandboxStats(podId);
  assert.equal(pst.attributes.id, podId);
  assert.ok((await c.listPodSandboxStats()).some((s) => s.attributes.id === podId));

  await c.updateContainerResources(sleeper, { cpuShares: 512, memoryLimitInBytes: 64 * 1024 * 1024 });
  // Log rotation as the kubelet does it: move the file away, reopen; the new file is there on return.
  const sleeperLog = join(pc.logDirectory!, 'sleeper.log');
  await rename(sleeperLog, sleeperLog + '.1');
  await c.reopenContainerLog(sleeper);
  assert.ok((await stat(sleeperLog)).isFile(), 'ReopenContainerLog returns once the new log file exists');
  assert.match(await readFile(sleeperLog + '.1', 'utf8'), /stdout F started/);
  await assert.rejects(c.reopenContainerLog(exiter), (err: unknown) => err instanceof BulkheadError && err.code !== 'Internal');

  // Streaming RPCs hand out URLs of the streaming server.
  const url = await c.exec({ containerId: sleeper, cmd: ['sh'], stdin: true, stdout: true, stderr: true });
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\//);
  assert.match(await c.attach({ containerId: sleeper, stdout: true, stderr: true }), /^http:\/\/127\.0\.0\.1:\d+\//);
  assert.match(await c.portForward(podId, [80]), /^http:\/\/127\.0\.0\.1:\d+\//);
  await assert.rejects(c.exec({ containerId: exiter, cmd: ['sh'], stdout: true }), code('FailedPrecondition'));

  // Stop with a grace period, then remove; both idempotent.
  await c.stopContainer(sleeper, 2);
  assert.equal((await c.containerStatus(sleeper)).status.state, 'CONTAINER_EXITED');
  await c.stopContainer(sleeper, 2);
  await c.removeContainer(sleeper);
  await c.removeContainer(sleeper);
  await assert.rejects(c.startContainer(sleeper), code('NotFound'));
  await assert.rejects(c.containerStatus(sleeper), code('NotFound'));

  // A container from an image that is not present.
  await assert.rejects(c.createContainer(podId, ctrConfig('nope', '127.0.0.1:1/absent:latest', ['true']), pc), code('NotFound'));

  await c.stopPodSandbox(podId);
  assert.equal((await c.podSandboxStatus(podId)).status.state, 'SANDBOX_NOTREADY');
  assert.deepEqual((await c.listPodSandbox({ state: { state: 'SANDBOX_NOTREADY' } })).map((p) => p.id), [podId]);
  await c.removePodSandbox(podId);
  await c.removePodSandbox(podId);
  assert.deepEqual(await c.listPodSandbox(), []);
  assert.deepEqual(await c.listContainers(), [], 'removing the pod removed its containers');
  await assert.rejects(c.createContainer(podId, ctrConfig('late', images.busybox, ['true']), pc), code('NotFound'));

  // GetContainerEvents saw the sleeper's whole life.
  const seen = await waitFor('deleted event', async () => {
    const mine = events.filter((e) => e.containerId === sleeper).map((e) => e.containerEventType);
    return mine.includes('CONTAINER_DELETED_EVENT') ? mine : undefined;
  });
  for (const t of ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT', 'CONTAINER_DELETED_EVENT']) {
    assert.ok(seen.includes(t as never), `saw ${t} in ${seen.join(',')}`);
  }
  assert.ok(seen.indexOf('CONTAINER_CREATED_EVENT') < seen.indexOf('CONTAINER_DELETED_EVENT'));
});
