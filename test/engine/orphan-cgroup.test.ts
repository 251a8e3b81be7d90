// Pod cgroups nobody can find again (src/cgroup/owner.ts): a daemon that made a pod's cgroup and
// died with its root deleted (a test's temporary root) left the cgroup under the node's shared
// parent for good, its processes running and its memory charged. Its owner record names the daemon
// and its root; once both are gone, any daemon's start removes what runs there and the cgroup — and
// nothing else: not one whose owner lives, not one whose root remains, not one a record forged
// for another cgroup names.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CGROUP_OWNERS_DIR, recordCgroupOwner, sweepOrphanCgroups } from '../../src/cgroup/owner.ts';
import { hierarchies } from '../../src/cgroup/hierarchy.ts';
import { cgroupPids, makeCgroup, placePid, removeTree } from '../../src/cgroup/tree.ts';
import { silentLogger, type Logger } from '../../src/util/log.ts';
import { crashChild, podConfig, testEnv, waitFor, type TestEnv } from './helpers.ts';
import type { Engine } from '../../src/engine/engine.ts';

/** The directories of cgroup `rel` in every hierarchy that has it. */
const dirsOf = (rel: string): string[] => hierarchies().map((h) => join(h.path, rel)).filter((d) => existsSync(d));

/** Every process in cgroup `rel` and below, in any hierarchy. */
function pidsUnder(rel: string): number[] {
  const out = new Set<number>();
  const walk = (d: string): void => {
    for (const p of cgroupPids(d)) out.add(p);
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
  };
  for (const d of dirsOf(rel)) walk(d);
  return [...out];
}

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };

/** The owner record naming cgroup `rel`, if any. */
function recordOf(rel: string): string | undefined {
  for (const n of readdirSync(CGROUP_OWNERS_DIR)) {
    try { if ((JSON.parse(readFileSync(join(CGROUP_OWNERS_DIR, n), 'utf8')) as { cgroup?: string }).cgroup === rel) return n; } catch { /* another's, mid-write */ }
  }
  return undefined;
}

/** A logger that keeps its warnings. */
function keepingLogger(): Logger & { warns: { msg: string; fields: Record<string, unknown> }[] } {
  const warns: { msg: string; fields: Record<string, unknown> }[] = [];
  const log = { warns, debug() {}, info() {}, error() {}, warn(msg: string, fields: Record<string, unknown> = {}) { warns.push({ msg, fields }); }, child: () => log };
  return log;
}

describe('orphaned pod cgroups', () => {
  let env: TestEnv;
  let engine: Engine | undefined;
  const sleepers: number[] = [];
  const extra: string[] = [];
  before(async () => { env = await testEnv(['runc']); });
  after(async () => {
    for (const p of sleepers) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    for (const rel of extra) await removeTree(rel).catch(() => undefined);
    await env?.cleanup();
  });

  it('a daemon killed with its root deleted: the next sweep kills what runs in its pod cgroup and removes it, with its record; not while the root remains', async () => {
    const a = await crashChild(env, 'runc', 'run');
    const { podId } = a.out;
    assert.ok(podId);
    await a.kill(); // the daemon dies; conmon keeps the pod's containers running
    const rel = `bulkhead-test-${process.pid}/pod-${podId.slice(0, 16)}`;
    const pids = pidsUnder(rel);
    assert.ok(pids.length > 0, 'the pod\'s containers run on in its cgroup');
    assert.ok(recordOf(rel), 'the pod cgroup has an owner record');

    // its root still there: a restart of that daemon would find the pod, so nothing is touched
    assert.deepEqual((await sweepOrphanCgroups(silentLogger)).filter((r) => r === rel), []);
    assert.ok(dirsOf(rel).length > 0);
    assert.ok(pids.every(alive), 'its processes still run');

    // its root gone: nobody would ever find this cgroup again
    await rename(env.root, `${env.root}.gone`);
    try {
      await sweepOrphanCgroups(silentLogger); // (another test's daemon start may sweep it first)
    } finally {
      await rename(`${env.root}.gone`, env.root);
    }
    assert.deepEqual(dirsOf(rel), [], 'the cgroup is gone in every hierarchy');
    for (let i = 0; i < 100 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(pids.filter(alive), [], 'what ran in it was killed');
    assert.equal(recordOf(rel), undefined, 'and its record went');

    // the daemon coming back after all (its root restored) copes: the pod's exits are seen and it is removed
    engine ??= await env.engine();
    await engine.removePodSandbox(podId);
    assert.equal(engine.listPodSandbox().length, 0);
  });

  it('a pod removed while its cgroup is busy keeps its owner record (released); once its daemon is gone the next sweep removes the cgroup, root or no root — for its own cgroup and for what it made of a given parent, never a parent it was given', async () => {
    const base = `bulkhead-test-${process.pid}`;
    engine ??= await env.engine();
    const kube = `${base}/kubepods-${process.pid}`;
    extra.push(kube);
    // a kubelet's parent that exists: the pod makes its pod-level cgroup below it
    makeCgroup(kube, hierarchies(), () => undefined);
    const given = `/${kube}/pod-given`;
    const ownId = await engine.runPodSandbox(podConfig(), 'runc');
    const givenId = await engine.runPodSandbox(podConfig({ linux: { cgroupParent: given } }), 'runc');
    const cases = [{ id: ownId, rel: `${base}/pod-${ownId.slice(0, 16)}` }, { id: givenId, rel: given.slice(1) }];
    // something the pod's removal does not know runs in a cgroup below each (one hierarchy)
    const h = hierarchies()[0]!;
    const intruders: number[] = [];
    for (const c of cases) {
      assert.ok(recordOf(c.rel), `the pod cgroup ${c.rel} has an owner record`);
      const made = makeCgroup(`${c.rel}/intruder`, [h], () => undefined);
      const s = spawn('sleep', ['600'], { stdio: 'ignore' });
      sleepers.push(s.pid!);
      intruders.push(s.pid!);
      placePid(made.leaves[0]!, s.pid!);
    }
    for (const c of cases) {
      // (each checked before the next removal, which retries what the earlier one left: see the last test)
      await engine.removePodSandbox(c.id);
      assert.ok(existsSync(join(h.path, c.rel)), `${c.rel} stays: busy`);
      const name = recordOf(c.rel);
      assert.ok(name, `${c.rel}: its owner record stays, for the next sweep`);
      const rec = JSON.parse(await readFile(join(CGROUP_OWNERS_DIR, name), 'utf8')) as { released?: boolean; pid: number };
      assert.equal(rec.released, true);
      // the daemon that removed the pod is gone (a dead pid), its root stays: the next start's sweep
      const dead = spawn('sleep', ['0'], { stdio: 'ignore' });
      await new Promise((r) => dead.once('exit', r));
      await writeFile(join(CGROUP_OWNERS_DIR, name), JSON.stringify({ ...rec, pid: dead.pid, start: undefined }));
    }
    // the intruder of the given parent's pod cgroup is not the sweep's to kill (not its own cgroup)
    process.kill(intruders[1]!, 'SIGKILL');
    for (let i = 0; i < 100 && alive(intruders[1]!); i++) await new Promise((r) => setTimeout(r, 50));
    await sweepOrphanCgroups(silentLogger);
    for (const c of cases) {
      assert.deepEqual(dirsOf(c.rel), [], `${c.rel} is gone in every hierarchy`);
      assert.equal(recordOf(c.rel), undefined, `${c.rel}: and its record`);
    }
    for (let i = 0; i < 100 && alive(intruders[0]!); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!alive(intruders[0]!), 'what ran in the pod\'s own cgroup was killed');
    assert.equal(dirsOf(kube).length, hierarchies().length, 'the parent the pod was given stays');
  });

  it('a record whose owner lives is left even with its anchor gone, and a record forged for another cgroup than its name is ignored', async () => {
    const base = `bulkhead-test-${process.pid}`;
    // a cgroup with a live process, recorded by this (living) process with an anchor that does not exist
    const liveRel = `${base}/live-${process.pid}`;
    extra.push(liveRel);
    const made = makeCgroup(liveRel, hierarchies(), () => undefined);
    const s = spawn('sleep', ['600'], { stdio: 'ignore' });
    sleepers.push(s.pid!);
    for (const leaf of made.leaves) placePid(leaf, s.pid!);
    await recordCgroupOwner(liveRel, '/nonexistent/bulkhead-anchor', { own: true });
    // a record under another cgroup's name, of a dead owner with a gone anchor
    const victimRel = `${base}/victim-${process.pid}`;
    extra.push(victimRel);
    const victim = makeCgroup(victimRel, hierarchies(), () => undefined);
    const v = spawn('sleep', ['600'], { stdio: 'ignore' });
    sleepers.push(v.pid!);
    for (const leaf of victim.leaves) placePid(leaf, v.pid!);
    const dead = spawn('sleep', ['0'], { stdio: 'ignore' });
    await new Promise((r) => dead.once('exit', r));
    const forged = liveRel.length.toString(16).padStart(24, '0');
    mkdirSync(CGROUP_OWNERS_DIR, { recursive: true });
    writeFileSync(join(CGROUP_OWNERS_DIR, forged), JSON.stringify({ pid: dead.pid, anchor: '/nonexistent/bulkhead-anchor', cgroup: victimRel, own: true }));
    try {
      await sweepOrphanCgroups(silentLogger);
      assert.ok(dirsOf(liveRel).length > 0 && alive(s.pid!), 'the living owner\'s cgroup and process stay');
      assert.ok(dirsOf(victimRel).length > 0 && alive(v.pid!), 'the forged record\'s cgroup and process stay');
    } finally {
      await rm(join(CGROUP_OWNERS_DIR, forged), { force: true });
      const name = recordOf(liveRel);
      if (name) await rm(join(CGROUP_OWNERS_DIR, name), { force: true });
    }
  });
  it('the running daemon retries a released pod cgroup: at a later pod removal and on its timer (what runs in its own cgroup is killed, a given parent\'s is not), and logs what stays after its last try', async () => {
    const base = `bulkhead-test-${process.pid}`;
    const kube = `${base}/kubepods-rt-${process.pid}`;
    extra.push(kube);
    makeCgroup(kube, hierarchies(), () => undefined);
    const h = hierarchies()[0]!;
    /** A sleep placed in a cgroup below pod cgroup `rel` (one hierarchy): the removal does not know it. */
    const intrude = (rel: string): number => {
      const made = makeCgroup(`${rel}/intruder`, [h], () => undefined);
      const s = spawn('sleep', ['600'], { stdio: 'ignore' });
      sleepers.push(s.pid!);
      placePid(made.leaves[0]!, s.pid!);
      return s.pid!;
    };
    const gone = (rel: string): boolean => dirsOf(rel).length === 0 && recordOf(rel) === undefined;
    const killed = async (pid: number): Promise<void> => { process.kill(pid, 'SIGKILL'); await waitFor(() => !alive(pid), 5000, `pid ${pid} to exit`); };
    // a restart with no timed retry for the coming hour: only later removals retry
    await engine?.close();
    engine = undefined;
    const e1 = await env.engine({ releasedCgroupRetry: { firstMs: 3_600_000 } });
    const ownId = await e1.runPodSandbox(podConfig(), 'runc');
    const ownRel = `${base}/pod-${ownId.slice(0, 16)}`;
    const ownIntruder = intrude(ownRel);
    await e1.removePodSandbox(ownId);
    assert.ok(existsSync(join(h.path, ownRel)) && alive(ownIntruder), 'busy at its removal: it stays');
    const given = `/${kube}/pod-given-rt`;
    const givenId = await e1.runPodSandbox(podConfig({ linux: { cgroupParent: given } }), 'runc');
    const givenIntruder = intrude(given.slice(1));
    // this removal retries the first pod's cgroup: its own, so what runs there is killed
    await e1.removePodSandbox(givenId);
    await waitFor(() => gone(ownRel), 20_000, `${ownRel} and its record to go at the next removal`);
    assert.ok(!alive(ownIntruder), 'what ran in the pod\'s own cgroup was killed');
    assert.ok(existsSync(join(h.path, given.slice(1))), 'the given parent\'s pod cgroup stays busy: its intruder is not the daemon\'s to kill');
    await killed(givenIntruder);
    const thirdId = await e1.runPodSandbox(podConfig(), 'runc');
    await e1.removePodSandbox(thirdId);
    await waitFor(() => gone(given.slice(1)), 20_000, `${given} and its record to go at the next removal once idle`);
    assert.equal(dirsOf(kube).length, hierarchies().length, 'the parent the pod was given stays');
    await e1.close();

    // a restart whose timer retries every 20 ms, twice
    const log = keepingLogger();
    const e2 = await env.engine({ logger: log, releasedCgroupRetry: { firstMs: 20, attempts: 2 } });
    const timedId = await e2.runPodSandbox(podConfig(), 'runc');
    const timedRel = `${base}/pod-${timedId.slice(0, 16)}`;
    const timedIntruder = intrude(timedRel);
    const stuck = `/${kube}/pod-given-stuck`;
    const stuckId = await e2.runPodSandbox(podConfig({ linux: { cgroupParent: stuck } }), 'runc');
    const stuckIntruder = intrude(stuck.slice(1));
    await e2.removePodSandbox(timedId);
    await waitFor(() => gone(timedRel), 20_000, `${timedRel} and its record to go on the timer`);
    assert.ok(!alive(timedIntruder), 'what ran in the pod\'s own cgroup was killed');
    await e2.removePodSandbox(stuckId);
    const warned = await waitFor(() => log.warns.find((w) => w.msg.includes('still busy') && w.fields.cgroup === stuck), 20_000, 'the log of what stays');
    assert.deepEqual(warned.fields.pids, [stuckIntruder], 'the log names what still runs there');
    const name = recordOf(stuck.slice(1));
    assert.ok(name && existsSync(join(h.path, stuck.slice(1))), 'left, with its record, for the next start\'s sweep');
    assert.equal((JSON.parse(await readFile(join(CGROUP_OWNERS_DIR, name), 'utf8')) as { released?: boolean }).released, true);
    await e2.close();
    // that next start: its daemon gone (a dead pid), its intruder too
    await killed(stuckIntruder);
    const dead = spawn('sleep', ['0'], { stdio: 'ignore' });
    await new Promise((r) => dead.once('exit', r));
    const rec = JSON.parse(await readFile(join(CGROUP_OWNERS_DIR, name), 'utf8')) as Record<string, unknown>;
    await writeFile(join(CGROUP_OWNERS_DIR, name), JSON.stringify({ ...rec, pid: dead.pid, start: undefined }));
    await sweepOrphanCgroups(silentLogger);
    assert.ok(gone(stuck.slice(1)));
  });
});
