// The one owner of cgroupfs on the real thing: this host's hierarchies (cgroup v1 hybrid here),
// as root. Every cgroup is named for this test process and removed in after().
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CGROUP_ROOT, cgroupMode, controllerDir, hierarchies, hierarchyKey } from './hierarchy.ts';
import { writeCgroupResources } from './limits.ts';
import { readCgroupStats } from './stats.ts';
import { JournalFile, makeCgroup, placePid, removeJournaled, removeMade, removeTree, topMissing } from './tree.ts';

const TOP = `bulkhead-cgtest-${process.pid}`;
const sleeper = (): ChildProcess => spawn('sleep', ['300'], { stdio: 'ignore' });
const exited = (c: ChildProcess): Promise<void> => new Promise((r) => { if (c.exitCode !== null || c.signalCode !== null) r(); else c.once('exit', () => r()); });
const v1 = cgroupMode() === 'v1';

describe('src/cgroup on this host', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
  let dir = '';
  const kids: ChildProcess[] = [];
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'bulkhead-cgtest-')); });
  after(async () => {
    for (const k of kids) k.kill('SIGKILL');
    await Promise.all(kids.map(exited));
    for (const h of hierarchies()) await removeTree(join('/', TOP));
    await rm(dir, { recursive: true, force: true });
  });

  it('makes a cgroup in every hierarchy with a journal, places a pid, writes limits, reads stats, removes it once empty', async () => {
    const rel = `${TOP}/make/leaf`;
    const journal = new JournalFile(join(dir, 'cgroups.json'));
    const seen: string[] = [];
    const made = makeCgroup(rel, hierarchies(), (d) => { assert.ok(!existsSync(d), 'journaled before the mkdir'); seen.push(d); journal.add(d); });
    assert.deepEqual(made.failed, []);
    assert.equal(made.leaves.length, hierarchies().length);
    assert.deepEqual(journal.dirs(), seen);
    assert.ok(seen.length >= 3 * made.leaves.length, 'each level of the path in each hierarchy');

    const kid = sleeper(); kids.push(kid);
    for (const leaf of made.leaves) placePid(leaf, kid.pid!);
    await writeCgroupResources(`/${rel}`, { memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 17 }, cpu: { quota: 20000, period: 100000 } });
    if (v1) {
      assert.equal(readFileSync(join(controllerDir('memory', rel)!, 'memory.limit_in_bytes'), 'utf8').trim(), String(64 * 1024 * 1024));
      assert.equal(readFileSync(join(controllerDir('pids', rel)!, 'pids.max'), 'utf8').trim(), '17');
      assert.equal(readFileSync(join(controllerDir('cpu', rel)!, 'cpu.cfs_quota_us'), 'utf8').trim(), '20000');
    } else {
      assert.equal(readFileSync(join(controllerDir('memory', rel)!, 'memory.max'), 'utf8').trim(), String(64 * 1024 * 1024));
    }
    const st = await readCgroupStats(`/${rel}`);
    assert.equal(st.pids, 1);
    assert.ok(Number.isFinite(st.memoryUsageBytes) && Number.isFinite(st.cpuUsageNs)); // a moved process's pages stay charged where they were (v1)

    // busy: the leaves stay (and nothing above them, which has children)
    const busy = await removeJournaled(journal.dirs());
    assert.ok(made.leaves.every((l) => busy.includes(l) && existsSync(l)));
    kid.kill('SIGKILL'); await exited(kid);
    assert.deepEqual(await removeJournaled(journal.dirs()), []);
    for (const d of seen) assert.ok(!existsSync(d), `${d} removed`);
    await assert.rejects(readCgroupStats(`/${rel}`), (e: Error & { code?: string }) => e.code === 'NotFound');
  });

  it('after a crash: a new process finds what the dead one made through its journal and removes it', async () => {
    const rel = `${TOP}/crash/vmm`;
    const journalFile = join(dir, 'crash.json');
    // the maker makes, places itself, says so, and is SIGKILLed without any cleanup
    const src = `import { makeCgroup, placePid, JournalFile } from ${JSON.stringify(join(import.meta.dirname, 'tree.ts'))};
      import { hierarchies } from ${JSON.stringify(join(import.meta.dirname, 'hierarchy.ts'))};
      const j = new JournalFile(${JSON.stringify(journalFile)});
      const m = makeCgroup(${JSON.stringify(rel)}, hierarchies(), (d) => j.add(d));
      for (const l of m.leaves) placePid(l, process.pid);
      process.stdout.write('ready\\n'); setInterval(() => {}, 1000);`;
    const maker = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'inherit'] }); kids.push(maker);
    await new Promise<void>((resolve, reject) => { maker.stdout!.once('data', () => resolve()); maker.once('exit', (c) => reject(new Error(`maker exited ${c}`))); });
    const leaves = hierarchies().map((h) => join(h.path, rel));
    assert.ok(leaves.every((l) => existsSync(l)));
    maker.kill('SIGKILL'); await exited(maker);
    assert.deepEqual(await removeJournaled(new JournalFile(journalFile).dirs()), []);
    assert.ok(leaves.every((l) => !existsSync(l)));
    assert.ok(hierarchies().every((h) => !existsSync(join(h.path, TOP, 'crash'))));
  });

  it('a cgroup a runtime makes: topMissing before, removeMade after removes up to what was missing and no further', async () => {
    const parent = `/${TOP}/given`;
    for (const h of hierarchies()) mkdirSync(join(h.path, parent), { recursive: true }); // exists before the pod
    const path = `${parent}/pod-a/ctr`;
    const made = topMissing(path);
    for (const h of hierarchies()) assert.equal(made[hierarchyKey(h)!], `${parent}/pod-a`);
    assert.ok(!Object.keys(made).includes('cpu,cpuacct'), 'a plain directory under /sys/fs/cgroup is no hierarchy');
    for (const h of hierarchies()) mkdirSync(join(h.path, path), { recursive: true }); // what runc does
    await removeMade(path, JSON.parse(JSON.stringify(made)));
    for (const h of hierarchies()) {
      assert.ok(!existsSync(join(h.path, parent, 'pod-a')), `${h.path}: made levels removed`);
      assert.ok(existsSync(join(h.path, parent)), `${h.path}: the given parent stays`);
    }
    // records are input: a key or top that leaves the tree is ignored
    await removeMade(path, { '../memory': parent, memory: '/', cpu: `${parent}/../..` });
    for (const h of hierarchies()) assert.ok(existsSync(join(h.path, parent)));
  });

  it('removeTree takes a cgroup and its children in every hierarchy; deep: false only an empty one; never a plain directory', async () => {
    const base = `/${TOP}/tree`;
    for (const h of hierarchies()) mkdirSync(join(h.path, base, 'child'), { recursive: true });
    await removeTree(base, { deep: false });
    assert.ok(hierarchies().every((h) => existsSync(join(h.path, base, 'child'))), 'not deep: a parent with a child stays');
    await removeTree(base);
    assert.ok(hierarchies().every((h) => !existsSync(join(h.path, base))));
    // the tmpfs under the hierarchies (cpu,cpuacct is a plain directory on this host): not ours to touch
    const plain = join(CGROUP_ROOT, 'cpu,cpuacct', TOP);
    if (existsSync(join(CGROUP_ROOT, 'cpu,cpuacct')) && !hierarchies().some((h) => h.path === join(CGROUP_ROOT, 'cpu,cpuacct'))) {
      mkdirSync(join(plain, 'x'), { recursive: true });
      try {
        await removeTree(`/${TOP}/x`);
        await removeMade(`/${TOP}/x`, { 'cpu,cpuacct': `/${TOP}` });
        assert.ok(existsSync(join(plain, 'x')));
      } finally { rmdirSync(join(plain, 'x')); rmdirSync(plain); }
    }
  });

  it('a shared parent removed while empty, between makeCgroup\'s check and its mkdir below it (another user\'s removal of an empty parent), is made again', () => {
    const parent = `${TOP}/shared`;
    const rel = `${parent}/leaf`;
    const journaled: string[] = [];
    // the parent exists (another build made it) and is removed just as this one's leaf is about to be made
    makeCgroup(parent, hierarchies(), () => undefined);
    const made = makeCgroup(rel, hierarchies(), (d) => {
      journaled.push(d);
      if (d.endsWith('/shared/leaf') && journaled.filter((j) => j === d).length === 1) rmdirSync(join(d, '..'));
    });
    assert.deepEqual(made.failed, [], 'no hierarchy failed');
    assert.equal(made.leaves.length, hierarchies().length);
    for (const leaf of made.leaves) assert.ok(existsSync(leaf), `${leaf} made`);
    assert.ok(journaled.some((d) => d.endsWith('/shared')), 'the parent made again is journaled (this maker removes it)');
  });

  it('refuses paths that climb out, and an empty path reads no stats (it would be the whole host)', async () => {
    await assert.rejects(writeCgroupResources('/../x', { pids: { limit: 1 } }), (e: Error & { code?: string }) => e.code === 'InvalidArgument');
    await assert.rejects(readCgroupStats('/a/../../x'), (e: Error & { code?: string }) => e.code === 'InvalidArgument');
    await assert.rejects(readCgroupStats(''), (e: Error & { code?: string }) => e.code === 'NotFound');
    assert.deepEqual(makeCgroup('../x', hierarchies(), () => assert.fail('nothing journaled')).leaves, []);
    assert.throws(() => placePid(dir, process.pid), /not a cgroup/);
  });
});
