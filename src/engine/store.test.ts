// StateStore: intent phases survive a reopen (what recover() relies on), name uniqueness, prefixes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { StateStore, NameConflict, LIST_BUDGET_BYTES, readContainerRuntime, readPodRuntime, type PodRecord, type ContainerRecord } from './store.ts';
import { DiskReserve } from '../util/disk-reserve.ts';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, writeSync } from 'node:fs';

let n = 0;
function pod(over: Partial<PodRecord> = {}): PodRecord {
  n++;
  const id = n.toString(16).padStart(2, '0').repeat(32);
  return {
    id, name: `p${n}`, namespace: 'ns', uid: `u${n}`, attempt: 0, handler: 'runc', phase: 'creating',
    createdAt: Date.now() * 1e6, config: { metadata: { name: `p${n}`, namespace: 'ns', uid: `u${n}`, attempt: 0 } },
    runtime: {
      netnsPath: '', networkMode: 'none', ips: [], podDir: `/run/x/${id}`, logDirectory: '/var/log/x',
      cgroupParent: `/bulkhead/pod-${id.slice(0, 16)}`, pauseId: '', namespacePaths: {}, engine: { mode: 'none', ownCgroup: true, cgroupMade: {}, ownLogDir: true },
    },
    ...over,
  };
}
function container(podId: string, name: string, over: Partial<ContainerRecord> = {}): ContainerRecord {
  n++;
  const id = (n + 100).toString(16).padStart(2, '0').repeat(32);
  return {
    id, podId, name, attempt: 0, phase: 'creating', createdAt: Date.now() * 1e6, startedAt: 0, finishedAt: 0,
    exitCode: 0, reason: '', message: '', imageRef: 'img@sha256:1', imageId: 'sha256:1', logPath: '/var/log/x/c.log',
    config: { metadata: { name, attempt: 0 }, image: { image: 'img' } },
    runtime: {
      bundleDir: `/run/x/c/${id}`, rootfsDir: `/run/x/c/${id}/rootfs`, rootfsPrepared: false,
      pid: 0, cgroupPath: `/bulkhead/${id}`, stopSignal: 'SIGTERM',
    },
    ...over,
  };
}

describe('StateStore', () => {
  let dir: string;
  let path: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'bulkhead-store-')); path = join(dir, 'sub', 'state.db'); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('keeps intent phases and runtime details across a reopen (as after a SIGKILL)', () => {
    const s1 = new StateStore(path);
    const p = pod();
    s1.insertPod(p); // intent: 'creating', nothing done outside yet
    p.runtime.netnsPath = '/run/netns/bulkhead-x';
    s1.updatePod(p); // a step recorded before it is taken
    const c = container(p.id, 'a');
    s1.insertContainer(c);
    c.runtime.rootfsPrepared = true;
    s1.updateContainer(c);
    const gone = container(p.id, 'b', { phase: 'exited' });
    s1.insertContainer(gone);
    s1.setContainerPhase(gone.id, 'removing');
    s1.close(); // no further writes: the process "died" here

    const s2 = new StateStore(path);
    const p2 = s2.getPod(p.id);
    assert.equal(p2?.phase, 'creating');
    assert.equal(p2?.runtime.netnsPath, '/run/netns/bulkhead-x');
    assert.equal(p2?.createdAt, p.createdAt, 'nanosecond timestamp round-trips');
    const c2 = s2.getContainer(c.id);
    assert.equal(c2?.phase, 'creating');
    assert.equal(c2?.runtime.rootfsPrepared, true);
    assert.equal(s2.getContainer(gone.id)?.phase, 'removing');
    assert.deepEqual(s2.listContainers(p.id).map((x) => x.id).sort(), [c.id, gone.id].sort());

    // settle: created → running → exited with the exit fields
    c2!.phase = 'exited';
    c2!.exitCode = 137;
    c2!.reason = 'OOMKilled';
    c2!.startedAt = Date.now() * 1e6;
    c2!.finishedAt = c2!.startedAt + 5e9;
    s2.updateContainer(c2!);
    s2.setPodPhase(p.id, 'ready');
    s2.deleteContainer(gone.id);
    s2.close();

    const s3 = new StateStore(path);
    const c3 = s3.getContainer(c.id)!;
    assert.deepEqual([c3.phase, c3.exitCode, c3.reason, c3.finishedAt - c3.startedAt], ['exited', 137, 'OOMKilled', 5e9]);
    assert.equal(s3.getPod(p.id)?.phase, 'ready');
    assert.equal(s3.getContainer(gone.id), undefined);
    s3.deletePod(p.id);
    s3.deleteContainer(c.id);
    assert.deepEqual(s3.listPods(), []);
    s3.close();
  });

  it('uses WAL with full sync', () => {
    const s = new StateStore(path);
    const db = new DatabaseSync(path);
    assert.equal((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal');
    db.close();
    s.close();
  });

  it('rejects a second pod or container with the same name and attempt, frees the name on delete', () => {
    const s = new StateStore(':memory:');
    const p = pod({ name: 'same' });
    s.insertPod(p);
    assert.throws(() => s.insertPod(pod({ name: 'same' })), NameConflict);
    s.insertPod(pod({ name: 'same', attempt: 1 }));
    s.insertPod(pod({ name: 'same', namespace: 'other' }));
    const c = container(p.id, 'c');
    s.insertContainer(c);
    assert.throws(() => s.insertContainer(container(p.id, 'c')), NameConflict);
    s.insertContainer(container(p.id, 'c', { attempt: 1 }));
    const q = pod();
    s.insertPod(q);
    s.insertContainer(container(q.id, 'c'));
    s.deleteContainer(c.id);
    s.insertContainer(container(p.id, 'c'));
    s.deletePod(p.id);
    s.insertPod(pod({ name: 'same' }));
    s.close();
  });

  it('finds ids by prefix', () => {
    const s = new StateStore(':memory:');
    const a = pod({ id: 'ab'.repeat(32) });
    const b = pod({ id: 'ac'.repeat(32) });
    s.insertPod(a);
    s.insertPod(b);
    assert.deepEqual(s.podIdsWithPrefix('a').sort(), [a.id, b.id].sort());
    assert.deepEqual(s.podIdsWithPrefix('abab'), [a.id]);
    assert.deepEqual(s.podIdsWithPrefix('ff'), []);
    const c = container(a.id, 'x', { id: 'cd'.repeat(32) });
    s.insertContainer(c);
    assert.deepEqual(s.containerIdsWithPrefix('cdc'), [c.id]);
    assert.deepEqual(s.containerIdsWithPrefix("' OR 1=1 --"), []);
    s.close();
  });
});

describe('StateStore list budget', () => {
  it('refuses a pod whose labels/annotations would pass the list budget, counts deletes, and recounts after a reopen', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulkhead-store-budget-'));
    try {
      const path = join(dir, 'state.db');
      let s = new StateStore(path);
      const big = { a: 'x'.repeat(250 * 1024) };
      const ids: string[] = [];
      let refused: unknown;
      for (let i = 0; i < 100 && !refused; i++) {
        const p = pod();
        p.config.annotations = big;
        try { s.insertPod(p); ids.push(p.id); } catch (err) { refused = err; }
      }
      assert.equal((refused as { code?: string }).code, 'ResourceExhausted');
      assert.match((refused as Error).message, /12 MiB list budget/);
      assert.ok(s.budget().podBytes <= LIST_BUDGET_BYTES);
      assert.ok(ids.length >= 45 && ids.length <= Math.floor(LIST_BUDGET_BYTES / (250 * 1024)), `${ids.length} pods held`);
      s.deletePod(ids.pop()!);
      const again = pod(); again.config.annotations = big;
      s.insertPod(again);
      const before = s.budget();
      s.close();
      s = new StateStore(path);
      assert.deepEqual(s.budget(), before, 'totals rebuilt from the records on open');
      s.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('StateStore on a full disk', () => {
  it('on a full disk: inserts fail ResourceExhausted naming the filesystem; deletes and exits are recorded through the disk reserve', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulkhead-store-full-'));
    const mnt = join(dir, 'fs');
    mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt], { timeout: 10_000, encoding: 'utf8' });
    assert.equal(m.status, 0, m.stderr);
    try {
      const reserve = new DiskReserve(mnt, { bytes: 1024 * 1024 });
      reserve.ensure();
      assert.ok(reserve.held());
      const s = new StateStore(join(mnt, 'state.db'), { reserve });
      const big = { metadata: { name: 'x', namespace: 'ns', uid: 'u', attempt: 0 }, annotations: { pad: 'x'.repeat(64 * 1024) } };
      const pods = Array.from({ length: 8 }, () => pod({ config: big }));
      for (const p of pods) s.insertPod(p);
      const c = container(pods[0]!.id, 'c', { phase: 'running' });
      s.insertContainer(c);
      // fill what is left
      const fd = openSync(join(mnt, 'fill'), 'w');
      const chunk = Buffer.alloc(64 * 1024);
      try { for (;;) writeSync(fd, chunk); } catch (err) { assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC'); }
      closeSync(fd);
      assert.throws(() => { for (let i = 0; i < 20; i++) s.insertPod(pod({ config: big })); }, (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ResourceExhausted');
        assert.match(err.message, new RegExp(`the filesystem holding ${mnt} is full`));
        return true;
      });
      assert.ok(reserve.held(), 'creating something new never takes the reserve');
      s.updateContainer({ ...c, phase: 'exited', exitCode: 3 });
      for (const p of pods) s.deletePod(p.id);
      s.deleteContainer(c.id);
      assert.equal(s.listPods().length + s.listContainers().length, 0);
      s.close();
      // a store opened again on the full disk works
      const s2 = new StateStore(join(mnt, 'state.db'), { reserve });
      assert.deepEqual(s2.listPods(), []);
      s2.close();
      assert.ok(existsSync(reserve.path) && !reserve.held(), 'part of the reserve was used, part is left for a restart');
    } finally {
      spawnSync('umount', ['-l', mnt], { timeout: 10_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('reading stored runtime info (records of any version)', () => {
  it('takes the current engine state or an older backendState; wrong types read as empty, never as host network or a decision', () => {
    const old = readPodRuntime({ networkMode: 'host', backendState: { mode: 'bridge', ownCgroup: true, cgroupMade: { memory: '/kubepods/x', cpu: 7 }, ownLogDir: true, pausePid: 9 }, ownNetns: true });
    assert.deepEqual(old.engine, { mode: 'bridge', ownCgroup: true, cgroupMade: { memory: '/kubepods/x' }, ownLogDir: true });
    assert.equal(old.networkMode, 'host');
    assert.equal('ownNetns' in old, false);
    const cur = readPodRuntime({ engine: { mode: 'none', ownCgroup: false, cgroupMade: {}, ownLogDir: false, logDirMade: '' }, backendState: { mode: 'host' } });
    assert.equal(cur.engine.mode, 'none', 'the current key wins over a leftover old one');
    assert.equal(cur.engine.logDirMade, '');
    const bad = readPodRuntime({ networkMode: 'hostile', ips: ['10.0.0.1', 3], podDir: 5, backendState: { mode: 'host-ish', ownCgroup: 'yes', decision: { version: 1, level: 'privileged' }, files: { hostname: '/h' } } });
    assert.equal(bad.networkMode, 'pod');
    assert.deepEqual(bad.ips, ['10.0.0.1']);
    assert.equal(bad.podDir, '');
    assert.deepEqual(bad.engine, { mode: 'none', ownCgroup: false, cgroupMade: {}, ownLogDir: false });
    assert.deepEqual(readPodRuntime('garbage').engine, { mode: 'none', ownCgroup: false, cgroupMade: {}, ownLogDir: false });
    const c = readContainerRuntime({ bundleDir: '/b', rootfsDir: '/b/rootfs', rootfsPrepared: true, conmonPidFile: '/p', exitDir: '/e', pid: 12, cgroupPath: '/c', stopSignal: '', backendState: {} });
    assert.deepEqual(c, { bundleDir: '/b', rootfsDir: '/b/rootfs', rootfsPrepared: true, pid: 12, cgroupPath: '/c', stopSignal: 'SIGTERM' });
  });
});
