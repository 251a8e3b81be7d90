// The engine's recovery decisions as a table: records as a killed daemon left them in state.db,
// a runtime (the in-memory backend) saying what really exists, and what recover() makes of each.
// Real backends' recovery runs for real in crash.test.ts; this covers every branch cheaply.
// Also: PodSandboxStats asks the backend for each running container's figures once.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/util/log.ts';
import { Engine, type EngineImages } from '../../src/engine/engine.ts';
import { StateStore, type PodRecord, type ContainerRecord, type PodPhase, type ContainerPhase } from '../../src/engine/store.ts';
import type { ContainerState } from '../../src/runtime/backend.ts';
import { MemoryBackend } from './memory-backend.ts';

const noImages: EngineImages = {
  get: async () => undefined,
  prepareRootfs: async () => { throw new Error('no images in this test'); },
  removeRootfs: async () => undefined,
};

let seq = 0;
function hexId(): string {
  seq++;
  return seq.toString(16).padStart(4, '0').repeat(16);
}

/** A host-network pod record (nothing outside but its dirs) as the engine writes one. */
function podRecord(dir: string, phase: PodPhase, over: { pauseId?: string } = {}): PodRecord {
  const id = hexId();
  return {
    id, name: `p${seq}`, namespace: 'ns', uid: `u${seq}`, attempt: 0, handler: 'mem', phase, createdAt: Date.now() * 1e6,
    config: { metadata: { name: `p${seq}`, namespace: 'ns', uid: `u${seq}`, attempt: 0 }, linux: { securityContext: { namespaceOptions: { network: 'NODE' } } } },
    runtime: {
      netnsPath: '', networkMode: 'host', ips: [], podDir: join(dir, 'run', 'pods', id), logDirectory: join(dir, 'logs', id),
      cgroupParent: `/bulkhead-recovery-test/pod-${id.slice(0, 16)}`, pauseId: over.pauseId ?? '', namespacePaths: {},
      engine: { mode: 'host', ownCgroup: false, cgroupMade: {}, ownLogDir: true, logDirMade: join(dir, 'logs', id) },
    },
  };
}

function containerRecord(dir: string, podId: string, phase: ContainerPhase): ContainerRecord {
  const id = hexId();
  const bundleDir = join(dir, 'run', 'containers', id);
  return {
    id, podId, name: `c${seq}`, attempt: 0, phase, createdAt: Date.now() * 1e6, startedAt: phase === 'running' ? Date.now() * 1e6 : 0,
    finishedAt: 0, exitCode: 0, reason: '', message: '', imageRef: 'img@sha256:1', imageId: 'sha256:1', logPath: join(dir, 'logs', `${id}.log`),
    config: { metadata: { name: `c${seq}`, attempt: 0 }, image: { image: 'img' } },
    runtime: {
      bundleDir, rootfsDir: join(bundleDir, 'rootfs'), rootfsPrepared: false,
      pid: 0, cgroupPath: `/bulkhead-recovery-test/${id}`, stopSignal: 'SIGTERM',
    },
  };
}

/** What the runtime says of a container: a status, or 'missing' (NotFound). */
type RuntimeSays = ContainerState['status'] | 'stopped:0' | 'stopped:137' | 'missing';

interface ContainerRow {
  name: string;
  record: ContainerPhase;
  runtime: RuntimeSays;
  /** After recover(): the CRI state, or 'gone' (record removed). */
  state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'gone';
  exitCode?: number;
  reason?: string;
  message?: RegExp;
  /** Still watched: a later exit in the runtime is recorded without any call. */
  watched?: boolean;
  /** The runtime no longer holds it. */
  deleted?: boolean;
}

const CONTAINER_ROWS: ContainerRow[] = [
  { name: 'running, runtime running → still running and watched again', record: 'running', runtime: 'running', state: 'CONTAINER_RUNNING', watched: true },
  { name: 'running, runtime exited 0 → exit applied, Completed', record: 'running', runtime: 'stopped:0', state: 'CONTAINER_EXITED', exitCode: 0, reason: 'Completed' },
  { name: 'running, runtime exited 137 → exit applied, Error', record: 'running', runtime: 'stopped:137', state: 'CONTAINER_EXITED', exitCode: 137, reason: 'Error' },
  { name: 'running, runtime stopped without an exit code → exited 255, code unknown', record: 'running', runtime: 'stopped', state: 'CONTAINER_EXITED', exitCode: 255, message: /exit code unknown/ },
  { name: 'running, runtime does not know the id → exited 255, state lost', record: 'running', runtime: 'missing', state: 'CONTAINER_EXITED', exitCode: 255, reason: 'Error', message: /lost while the daemon was down/ },
  { name: 'running, runtime status unknown → exited 255, state lost', record: 'running', runtime: 'unknown', state: 'CONTAINER_EXITED', exitCode: 255, message: /lost/ },
  { name: 'running, runtime says created (start interrupted) → created', record: 'running', runtime: 'created', state: 'CONTAINER_CREATED' },
  { name: 'created, runtime running (start acted, record not written) → running and watched', record: 'created', runtime: 'running', state: 'CONTAINER_RUNNING', watched: true },
  { name: 'created, runtime stopped without an exit code → still created', record: 'created', runtime: 'stopped', state: 'CONTAINER_CREATED' },
  { name: 'created, runtime exited 0 → exit applied', record: 'created', runtime: 'stopped:0', state: 'CONTAINER_EXITED', exitCode: 0 },
  { name: 'exited stays exited (the runtime is not asked)', record: 'exited', runtime: 'stopped:0', state: 'CONTAINER_EXITED', exitCode: 0 },
  { name: 'creating (interrupted create) → undone, record gone, runtime deleted', record: 'creating', runtime: 'created', state: 'gone', deleted: true },
  { name: 'removing (interrupted remove) → finished, record gone, runtime deleted', record: 'removing', runtime: 'stopped:0', state: 'gone', deleted: true },
];

function seedRuntime(be: MemoryBackend, id: string, podId: string, says: RuntimeSays): void {
  if (says === 'missing') return;
  if (says === 'stopped:0' || says === 'stopped:137') be.put(id, 'stopped', { podId, exitCode: Number(says.slice(8)) });
  else be.put(id, says, { podId });
}

describe('engine recovery decisions (in-memory backend)', () => {
  let dir: string;
  let engine: Engine;
  const be = new MemoryBackend();
  const rows = new Map<string, { row: ContainerRow; id: string }>();
  let readyPod: PodRecord;
  let pausedPod: PodRecord;
  let deadPausePod: PodRecord;
  let creatingPod: PodRecord;
  let removingPod: PodRecord;
  let orphanOfGonePod: ContainerRecord;
  let creatingPodChild: ContainerRecord;
  const orphanRuntimeId = 'f'.repeat(64);
  const orphanBundle = 'e'.repeat(64);
  let stateCallsForExited = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-recovery-'));
    const store = new StateStore(join(dir, 'root', 'state.db'));
    readyPod = podRecord(dir, 'ready');
    store.insertPod(readyPod);
    for (const row of CONTAINER_ROWS) {
      const c = containerRecord(dir, readyPod.id, row.record);
      if (row.record === 'exited') { c.exitCode = 0; c.reason = 'Completed'; c.finishedAt = Date.now() * 1e6; }
      store.insertContainer(c);
      await mkdir(c.runtime.rootfsDir, { recursive: true });
      seedRuntime(be, c.id, readyPod.id, row.runtime);
      rows.set(row.name, { row, id: c.id });
    }
    // pods with a pause: one whose pause still runs, one whose pause is gone
    pausedPod = podRecord(dir, 'ready', { pauseId: hexId() });
    store.insertPod(pausedPod);
    be.put(pausedPod.runtime.pauseId, 'running', { podId: pausedPod.id, role: 'sandbox' });
    deadPausePod = podRecord(dir, 'ready', { pauseId: hexId() });
    store.insertPod(deadPausePod);
    // interrupted pod creation / removal: undone with everything they own
    creatingPod = podRecord(dir, 'creating', { pauseId: hexId() });
    store.insertPod(creatingPod);
    be.put(creatingPod.runtime.pauseId, 'created', { podId: creatingPod.id, role: 'sandbox' });
    creatingPodChild = containerRecord(dir, creatingPod.id, 'created');
    store.insertContainer(creatingPodChild);
    be.put(creatingPodChild.id, 'created', { podId: creatingPod.id });
    removingPod = podRecord(dir, 'removing');
    store.insertPod(removingPod);
    for (const p of [creatingPod, removingPod]) {
      await mkdir(p.runtime.podDir, { recursive: true });
      await mkdir(p.runtime.logDirectory, { recursive: true });
    }
    // a container whose pod record is gone
    orphanOfGonePod = containerRecord(dir, 'd'.repeat(64), 'running');
    store.insertContainer(orphanOfGonePod);
    be.put(orphanOfGonePod.id, 'running', { podId: 'd'.repeat(64) });
    store.close();
    // what no record names: a runtime container and a bundle dir
    be.put(orphanRuntimeId, 'running');
    await mkdir(join(dir, 'run', 'containers', orphanBundle, 'rootfs'), { recursive: true });
    await writeFile(join(dir, 'run', 'containers', orphanBundle, 'config.json'), '{}');
    await mkdir(join(dir, 'run', 'containers', 'not-an-id'), { recursive: true });

    const exitedId = [...rows.values()].find((r) => r.row.record === 'exited')!.id;
    const state = be.state.bind(be);
    be.state = async (id: string) => { if (id === exitedId) stateCallsForExited++; return await state(id); };
    engine = new Engine({
      root: join(dir, 'root'), runDir: join(dir, 'run'), logger: silentLogger, images: noImages,
      backends: new Map([['mem', be]]), defaultHandler: 'mem', pinNamespaces: false, diskReserveBytes: 0,
      sweepIntervalMs: 3_600_000, podLogRoots: [join(dir, 'logs')],
    });
    await engine.recover();
  });

  after(async () => {
    await engine?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const row of CONTAINER_ROWS) {
    it(row.name, async () => {
      const { id } = rows.get(row.name)!;
      if (row.state === 'gone') {
        await assert.rejects(engine.containerStatus(id), /not found/);
        assert.equal(engine.listContainers({ id }).length, 0);
      } else {
        const { status } = await engine.containerStatus(id);
        assert.equal(status.state, row.state);
        if (row.exitCode !== undefined) assert.equal(status.exitCode, row.exitCode);
        if (row.reason !== undefined) assert.equal(status.reason, row.reason);
        if (row.message) assert.match(status.message, row.message);
        if (status.state === 'CONTAINER_EXITED') assert.ok(status.finishedAt >= status.startedAt, 'never finished before started');
      }
      if (row.deleted) assert.equal(be.has(id), false, 'the runtime still holds it');
      if (row.watched) {
        be.exit(id, 3);
        for (let i = 0; i < 100 && (await engine.containerStatus(id)).status.state === 'CONTAINER_RUNNING'; i++) await new Promise((r) => setTimeout(r, 10));
        const { status } = await engine.containerStatus(id);
        assert.equal(status.state, 'CONTAINER_EXITED', 'the exit monitor did not watch it again');
        assert.equal(status.exitCode, 3);
      }
      if (row.record === 'exited') assert.equal(stateCallsForExited, 0);
    });
  }

  it('a pod whose pause still runs stays ready and is watched: its pause dying makes it NOTREADY', async () => {
    assert.equal((await engine.podSandboxStatus(pausedPod.id)).status.state, 'SANDBOX_READY');
    be.exit(pausedPod.runtime.pauseId, 0);
    for (let i = 0; i < 100 && (await engine.podSandboxStatus(pausedPod.id)).status.state === 'SANDBOX_READY'; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await engine.podSandboxStatus(pausedPod.id)).status.state, 'SANDBOX_NOTREADY');
  });

  it('a pod whose pause the runtime no longer has is NOTREADY', async () => {
    assert.equal((await engine.podSandboxStatus(deadPausePod.id)).status.state, 'SANDBOX_NOTREADY');
  });

  it('a ready pod without a pause (namespaces pinned or host) stays ready', async () => {
    assert.equal((await engine.podSandboxStatus(readyPod.id)).status.state, 'SANDBOX_READY');
  });

  it('an interrupted pod creation is undone: record, containers, pause, pod dir and the log dir it made are gone', async () => {
    assert.equal(engine.listPodSandbox({ id: creatingPod.id }).length, 0);
    await assert.rejects(engine.podSandboxStatus(creatingPod.id), /not found/);
    assert.equal(be.has(creatingPod.runtime.pauseId), false);
    assert.equal(be.has(creatingPodChild.id), false);
    await assert.rejects(engine.containerStatus(creatingPodChild.id), /not found/);
    assert.equal(existsSync(creatingPod.runtime.podDir), false);
    assert.equal(existsSync(creatingPod.runtime.logDirectory), false);
  });

  it('an interrupted pod removal is finished', async () => {
    await assert.rejects(engine.podSandboxStatus(removingPod.id), /not found/);
    assert.equal(existsSync(removingPod.runtime.podDir), false);
    assert.equal(existsSync(removingPod.runtime.logDirectory), false);
  });

  it('a container whose pod record is gone is removed from the store and the runtime', async () => {
    await assert.rejects(engine.containerStatus(orphanOfGonePod.id), /not found/);
    assert.equal(be.has(orphanOfGonePod.id), false);
  });

  it('a runtime container no record names is deleted; a known pod\'s pause is not', () => {
    assert.equal(be.has(orphanRuntimeId), false);
    // the paused pod's pause was only exited by the test above, never deleted by recovery
    assert.equal(be.has(pausedPod.runtime.pauseId), true);
  });

  it('an orphan bundle dir is swept; a known container\'s bundle and a non-id name stay', async () => {
    assert.equal(existsSync(join(dir, 'run', 'containers', orphanBundle)), false);
    const known = [...rows.values()].find((r) => r.row.state !== 'gone')!.id;
    assert.equal(existsSync(join(dir, 'run', 'containers', known)), true);
    assert.equal(existsSync(join(dir, 'run', 'containers', 'not-an-id')), true);
  });
});

describe('PodSandboxStats (in-memory backend)', () => {
  let dir: string;
  let engine: Engine;
  const be = new MemoryBackend();
  let pod: PodRecord;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-podstats-'));
    const store = new StateStore(join(dir, 'root', 'state.db'));
    pod = podRecord(dir, 'ready');
    store.insertPod(pod);
    const pids = [3, 4];
    for (const n of pids) {
      const c = containerRecord(dir, pod.id, 'running');
      store.insertContainer(c);
      be.put(c.id, 'running', { podId: pod.id, stats: { pids: n, cpuUsageNs: 5_000_000, memoryWorkingSetBytes: 1000, memoryUsageBytes: 2000 } });
    }
    const exited = containerRecord(dir, pod.id, 'exited');
    store.insertContainer(exited);
    be.put(exited.id, 'stopped', { podId: pod.id, exitCode: 0 });
    store.close();
    engine = new Engine({
      root: join(dir, 'root'), runDir: join(dir, 'run'), logger: silentLogger, images: noImages,
      backends: new Map([['mem', be]]), defaultHandler: 'mem', pinNamespaces: false, diskReserveBytes: 0, sweepIntervalMs: 3_600_000,
    });
  });

  after(async () => {
    await engine?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('asks the backend once per running container (one runsc events each on gVisor), and sums its figures', async () => {
    be.calls.clear();
    const s = await engine.podSandboxStats(pod.id);
    assert.equal(be.calls.get('stats'), 2, 'backend.stats calls for two running containers');
    assert.equal(s.linux?.process?.processCount?.value, 7);
    assert.equal(s.linux?.cpu?.usageCoreNanoSeconds?.value, 10_000_000);
    assert.equal(s.linux?.memory?.workingSetBytes?.value, 2000);
    assert.equal(s.linux?.memory?.usageBytes?.value, 4000);
    assert.equal(s.linux?.containers.length, 2);
    be.calls.clear();
    const all = await engine.listPodSandboxStats();
    assert.equal(all.length, 1);
    assert.equal(be.calls.get('stats'), 2);
  });
});

describe('records of the previous schema (untyped backendState, dead fields)', () => {
  let dir: string;
  let engine: Engine;
  const be = new MemoryBackend();
  const ids = { a: hexId(), a1: hexId(), b: hexId(), c: hexId() };
  const decision = {
    version: 1, level: 'trusted', trustRule: 'ns', handler: 'mem', requestedHandler: '', egressGuard: false, hostNetwork: true,
    allowedHostPorts: [], seccompDefault: 'RuntimeDefault', honorNoNewPrivs: true, unmaskedProc: false,
  };
  const paths = (id: string): { podDir: string; logDirectory: string } => ({ podDir: join(dir, 'run', 'pods', id), logDirectory: join(dir, 'logs', id) });
  /** A pod's runtime column as the previous version wrote it. */
  const oldPodRuntime = (id: string, backendState: unknown): string => JSON.stringify({
    netnsPath: '', ownNetns: true, networkMode: 'host', ips: [], ...paths(id), cgroupParent: `/bulkhead-recovery-test/pod-${id.slice(0, 16)}`,
    pauseId: '', namespacePaths: {}, backendState,
  });
  const rawRuntime = (table: 'pods' | 'containers', id: string): Record<string, unknown> => {
    const db = new DatabaseSync(join(dir, 'root', 'state.db'));
    try {
      const row = db.prepare(`SELECT runtime FROM ${table} WHERE id = ?`).get(id) as { runtime: string } | undefined;
      return row ? JSON.parse(row.runtime) as Record<string, unknown> : {};
    } finally { db.close(); }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-oldrecords-'));
    new StateStore(join(dir, 'root', 'state.db')).close();
    const db = new DatabaseSync(join(dir, 'root', 'state.db'));
    const pod = db.prepare('INSERT INTO pods (id, name, namespace, uid, attempt, handler, phase, created_at, config, runtime) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)');
    const cfg = (n: string): string => JSON.stringify({ metadata: { name: n, namespace: 'old', uid: n, attempt: 0 }, linux: { securityContext: { namespaceOptions: { network: 'NODE' } } } });
    const now = Date.now() * 1e6;
    // ready, with everything the old bag held (pausePid and files included)
    pod.run(ids.a, 'a', 'old', 'a', 'mem', 'ready', now, cfg('a'), oldPodRuntime(ids.a, {
      mode: 'host', ownCgroup: false, cgroupMade: {}, ownLogDir: true, logDirMade: paths(ids.a).logDirectory, decision, pausePid: 4242,
      files: { hostname: join(paths(ids.a).podDir, 'etc', 'hostname'), hosts: join(paths(ids.a).podDir, 'etc', 'hosts'), resolvConf: join(paths(ids.a).podDir, 'etc', 'resolv.conf') },
    }));
    // being removed, from before logDirMade existed: its own default log dir goes whole
    pod.run(ids.b, 'b', 'old', 'b', 'mem', 'removing', now, cfg('b'), oldPodRuntime(ids.b, { mode: 'host', ownCgroup: false, ownLogDir: true }));
    // a bag that is not even an object: loads with the empty state (no decision: fail closed)
    pod.run(ids.c, 'c', 'old', 'c', 'mem', 'ready', now, cfg('c'), oldPodRuntime(ids.c, 'garbage'));
    const bundleDir = join(dir, 'run', 'containers', ids.a1);
    db.prepare(`INSERT INTO containers (id, pod_id, name, attempt, phase, created_at, started_at, image_ref, image_id, log_path, config, runtime)
      VALUES (?, ?, 'a1', 0, 'running', ?, ?, 'img@sha256:1', 'sha256:1', ?, ?, ?)`).run(
      ids.a1, ids.a, now, now, join(paths(ids.a).logDirectory, 'a1_0.log'), JSON.stringify({ metadata: { name: 'a1', attempt: 0 }, image: { image: 'img' } }),
      JSON.stringify({ bundleDir, rootfsDir: join(bundleDir, 'rootfs'), rootfsPrepared: false, conmonPidFile: join(bundleDir, 'conmon.pid'), exitDir: join(dir, 'exits'), pid: 4243, cgroupPath: '/x', stopSignal: 'SIGTERM', backendState: {} }));
    db.close();
    for (const id of [ids.a, ids.b, ids.c]) {
      await mkdir(join(paths(id).podDir, 'etc'), { recursive: true });
      await mkdir(paths(id).logDirectory, { recursive: true });
    }
    await mkdir(join(bundleDir, 'rootfs'), { recursive: true });
    be.put(ids.a1, 'stopped', { podId: ids.a, exitCode: 0 });
    engine = new Engine({
      root: join(dir, 'root'), runDir: join(dir, 'run'), logger: silentLogger, images: noImages,
      backends: new Map([['mem', be]]), defaultHandler: 'mem', pinNamespaces: false, diskReserveBytes: 0,
      sweepIntervalMs: 3_600_000, podLogRoots: [join(dir, 'logs')],
    });
    await engine.recover();
  });

  after(async () => {
    await engine?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('an old container record loads, its exit is applied, and it is written back without the dead fields', async () => {
    const { status } = await engine.containerStatus(ids.a1);
    assert.equal(status.state, 'CONTAINER_EXITED');
    assert.equal(status.exitCode, 0);
    const raw = rawRuntime('containers', ids.a1);
    assert.equal(raw.bundleDir, join(dir, 'run', 'containers', ids.a1));
    for (const dead of ['conmonPidFile', 'exitDir', 'backendState']) assert.equal(dead in raw, false, `${dead} is still written`);
  });

  it('an old pod\'s decision is read from backendState; the pod is written back typed, without ownNetns and pausePid', async () => {
    assert.deepEqual(engine.storedPod(ids.a).decision, decision);
    const verbose = JSON.parse((await engine.podSandboxStatus(ids.a, true)).info.info ?? '{}') as { decision: unknown };
    assert.deepEqual(verbose.decision, decision);
    await engine.stopPodSandbox(ids.a);
    const raw = rawRuntime('pods', ids.a);
    for (const dead of ['backendState', 'ownNetns']) assert.equal(dead in raw, false, `${dead} is still written`);
    const st = raw.engine as Record<string, unknown>;
    assert.equal(st.mode, 'host');
    assert.equal(st.logDirMade, paths(ids.a).logDirectory);
    assert.equal('pausePid' in st, false, 'pausePid is still written');
    assert.deepEqual(st.decision, decision);
    assert.equal((st.files as Record<string, string>).hostname, join(paths(ids.a).podDir, 'etc', 'hostname'));
  });

  it('an old pod is removed with what it made: pod dir and the log dir named by logDirMade', async () => {
    await engine.removePodSandbox(ids.a);
    await assert.rejects(engine.podSandboxStatus(ids.a), /not found/);
    assert.equal(existsSync(paths(ids.a).podDir), false);
    assert.equal(existsSync(paths(ids.a).logDirectory), false);
  });

  it('an old pod interrupted while being removed (no logDirMade: its own default log dir) is finished by recovery', async () => {
    await assert.rejects(engine.podSandboxStatus(ids.b), /not found/);
    assert.equal(existsSync(paths(ids.b).podDir), false);
    assert.equal(existsSync(paths(ids.b).logDirectory), false);
  });

  it('an old pod whose state is not an object loads with no decision (fail closed) and can be removed; its log dir, not known as made, stays', async () => {
    assert.equal(engine.storedPod(ids.c).decision, undefined);
    await engine.removePodSandbox(ids.c);
    await assert.rejects(engine.podSandboxStatus(ids.c), /not found/);
    assert.equal(existsSync(paths(ids.c).podDir), false);
    assert.equal(existsSync(paths(ids.c).logDirectory), true);
  });
});
