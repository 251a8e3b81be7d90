// The in-process delete of an ended sandbox (./runsc-delete.ts) on runsc state files written as
// runsc 0.0~20221219 writes them, with a directory tree standing in for /sys/fs/cgroup: every
// case it does not know is left to runsc (undefined), and what it removes is what runsc would.
// With the real runsc: test/runtime/gvisor-remove.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endedSandbox, removeEndedSandbox } from './runsc-delete.ts';

describe('runsc delete of an ended sandbox, in process', () => {
  let dir: string;
  let state: string;
  let cg: string;
  let n = 0;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'bulkhead-runsc-delete-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  const CONTROLLERS = ['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'memory', 'pids', 'systemd'];
  /** A state dir holding sandbox `id`'s state (as runsc writes it, changed by `edit`), and its cgroup made in each controller. */
  async function sandbox(edit: (s: Record<string, any>) => void = () => {}): Promise<string> {
    const id = `sb${++n}`;
    state = join(dir, `state-${id}`);
    cg = join(dir, `cgroup-${id}`);
    await mkdir(state);
    const s: Record<string, any> = {
      id, spec: { ociVersion: '1.0.2' }, bundleDir: '/b', createdAt: '2026-12-06T15:16:45Z', owner: '', consoleSocket: '', status: 'running', goferPid: 0,
      sandbox: { id, pid: 2 ** 22 + 1, uid: 65534, gid: 65534, cgroup: { cgroupv1: { name: `/pods/${id}`, parents: null, own: Object.fromEntries(CONTROLLERS.map((c) => [c, true])) } }, originalOomScoreAdj: 0 },
      compatCgroup: { cgroupunknown: null },
      saver: { rootDir: state, id: { sandboxId: id, containerId: id } },
    };
    edit(s);
    await writeFile(join(state, `${id}_sandbox:${id}.state`), JSON.stringify(s));
    await writeFile(join(state, `${id}_sandbox:${id}.lock`), '');
    for (const c of CONTROLLERS) await mkdir(join(cg, c, 'pods', id), { recursive: true });
    return id;
  }

  it('finds the state, lock and cgroup directories runsc would remove, and removes them (nothing else)', async () => {
    const id = await sandbox();
    const other = join(state, 'other_sandbox:other.state');
    await writeFile(other, '{}');
    const ended = endedSandbox(state, id, `/pods/${id}`, cg);
    assert.ok(ended);
    assert.deepEqual(ended.cgroupDirs.sort(), CONTROLLERS.map((c) => join(cg, c, 'pods', id)).sort());
    assert.equal(await removeEndedSandbox(ended), true);
    assert.deepEqual(await readdir(state), ['other_sandbox:other.state']);
    for (const c of CONTROLLERS) {
      assert.equal(existsSync(join(cg, c, 'pods', id)), false, c);
      assert.equal(existsSync(join(cg, c, 'pods')), true, 'the parent is not runsc\'s to remove');
    }
    // a controller sharing another's hierarchy (cpu,cpuacct) is found gone: fine
    const again = await sandbox();
    await rm(join(cg, 'cpuacct'), { recursive: true });
    assert.equal(await removeEndedSandbox(endedSandbox(state, again, `/pods/${again}`, cg)!), true);
  });

  it('leaves to runsc every case it does not know', async () => {
    const cases: [string, (s: Record<string, any>) => void, string?][] = [
      ['another state shape', (s) => { delete s.saver; }],
      ['a sub-container\'s state', (s) => { s.saver.id.containerId = 'x'; }],
      ['a sandbox of another id', (s) => { s.sandbox.id = 'x'; }],
      ['a gofer still there', (s) => { s.goferPid = process.pid; }],
      ['cgroup v2', (s) => { s.sandbox.cgroup = { cgroupv2: { path: '/pods/x' } }; }],
      ['cgroup parents runsc made', (s) => { s.sandbox.cgroup.cgroupv1.parents = { memory: '/pods' }; }],
      ['a cgroup other than the spec\'s', (s) => { s.sandbox.cgroup.cgroupv1.name = '/elsewhere'; }],
      ['a cgroup name going up', (s) => { s.sandbox.cgroup.cgroupv1.name = '/pods/../..'; }],
      ['an odd controller name', (s) => { s.sandbox.cgroup.cgroupv1.own = { '../memory': true }; }],
      ['no cgroup in the state while the spec names one', (s) => { s.sandbox.cgroup = null; }],
    ];
    for (const [what, edit] of cases) {
      const id = await sandbox(edit);
      assert.equal(endedSandbox(state, id, `/pods/${id}`, cg), undefined, what);
    }
    // a sub-container of the sandbox still recorded
    const id = await sandbox();
    await writeFile(join(state, `sub_sandbox:${id}.state`), '{}');
    assert.equal(endedSandbox(state, id, `/pods/${id}`, cg), undefined, 'a sub-container\'s state left');
    // no state at all, a bad id
    assert.equal(endedSandbox(state, 'missing', undefined, cg), undefined);
    assert.equal(endedSandbox(state, '../x', undefined, cg), undefined);
    // a sandbox with no cgroup at all (none in the spec either) is known
    const bare = await sandbox((s) => { s.sandbox.cgroup = null; });
    assert.deepEqual(endedSandbox(state, bare, undefined, cg)?.cgroupDirs, []);
  });

  it('a cgroup that still holds a process (busy) is tried for a while, then left with the state to runsc', { skip: !existsSync('/sys/fs/cgroup/pids/cgroup.procs') ? 'no cgroup v1 pids hierarchy' : false }, async () => {
    const id = await sandbox();
    const parent = join('/sys/fs/cgroup/pids', `bulkhead-test-gvdel-${process.pid}`);
    const busy = join(parent, id);
    await mkdir(busy, { recursive: true });
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await writeFile(join(busy, 'cgroup.procs'), String(sleeper.pid));
      const ended = { ...endedSandbox(state, id, `/pods/${id}`, cg)!, cgroupDirs: [busy] };
      assert.equal(await removeEndedSandbox(ended), false);
      assert.equal(existsSync(busy), true);
      assert.equal(existsSync(ended.stateFile), true, 'the state stays for runsc');
    } finally {
      const gone = new Promise((r) => sleeper.once('exit', r));
      sleeper.kill('SIGKILL');
      await gone;
      for (let i = 0; i < 100; i++) { try { await rmdir(busy); break; } catch { await new Promise((r) => setTimeout(r, 20)); } }
      await rmdir(parent).catch(() => {});
    }
  });

  it('a cgroup directory that stays (a child cgroup in it) leaves the state in place for runsc', async () => {
    const id = await sandbox();
    await mkdir(join(cg, 'memory', 'pods', id, 'child'));
    const ended = endedSandbox(state, id, `/pods/${id}`, cg)!;
    assert.equal(await removeEndedSandbox(ended), false);
    assert.equal(existsSync(ended.stateFile), true);
    assert.equal(existsSync(ended.lockFile), true);
  });
});
