// moveCgroup and primeMove on this host's real hierarchies (cgroup v1 hybrid here; v2 the same
// code), as root: what a warm pool's adoption relies on. Every cgroup is named for this test
// process and removed in after().
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { hierarchies } from './hierarchy.ts';
import { moveCgroup, primeMove } from './move.ts';
import { makeCgroup, placePid, removeTree } from './tree.ts';

const TOP = `bulkhead-movetest-${process.pid}`;
const exited = (c: ChildProcess): Promise<void> => new Promise((r) => { if (c.exitCode !== null || c.signalCode !== null) r(); else c.once('exit', () => r()); });
const procsIn = (dir: string): number[] => readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);

/** `pid` and its descendants now (from /proc/<pid>/task/<pid>/children). */
function tree(pid: number): number[] {
  let kids: number[] = [];
  try { kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number); } catch { return []; }
  return [pid, ...kids.flatMap(tree)];
}

/** Per hierarchy, the cgroup path of `pid` (/proc/<pid>/cgroup; v2's line as '0'), or undefined when it is gone. */
function cgroupsOf(pid: number): Map<string, string> | undefined {
  try {
    return new Map(readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter(Boolean).map((l) => {
      const [id, ctl, ...path] = l.split(':');
      return [id === '0' ? '0' : ctl!, path.join(':')] as [string, string];
    }));
  } catch { return undefined; }
}

/**
 * A process on its way out or gone: exiting (PF_EXITING, set before the kernel takes it out of its
 * v1 cgroups, which then read as '/'), a zombie, or no longer there. Read after its cgroups.
 */
function dead(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return ['Z', 'X'].includes(f[0]!) || (Number(f[6]) & 0x4) !== 0;
  } catch { return true; }
}

/** When a process started (/proc/<pid>/stat field 22), '' when gone. */
function startOf(pid: number): string {
  try { const st = readFileSync(`/proc/${pid}/stat`, 'utf8'); return st.slice(st.lastIndexOf(')') + 2).split(' ')[19] ?? ''; } catch { return ''; }
}

describe('cgroup/move.ts on this host', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
  const kids: ChildProcess[] = [];
  after(async () => {
    for (const k of kids) k.kill('SIGKILL');
    await Promise.all(kids.map(exited));
    await new Promise((r) => setTimeout(r, 100));
    await removeTree(join('/', TOP));
  });

  it('moves every process, one forking all the time included, to the target in every hierarchy, with its limits; the source and its pool parent are gone; primeMove moves nothing', async () => {
    const pool = `${TOP}/pool/pod-m`;
    const from = `${pool}/sbx`;
    const to = `${TOP}/kubepods/pod-uid/sbx`;
    const hs = hierarchies();
    const src = makeCgroup(from, hs, () => undefined);
    assert.deepEqual(src.failed, []);
    makeCgroup(`${TOP}/kubepods/pod-uid`, hs, () => undefined);
    // a limit the runtime set at start: pids.max where there is a pids controller (v1 pids, v2)
    const pidsDirs = src.leaves.filter((d) => existsSync(join(d, 'pids.max')));
    assert.ok(pidsDirs.length > 0, 'a hierarchy with pids.max');
    for (const d of pidsDirs) writeFileSync(join(d, 'pids.max'), '64');
    // four sleepers and a shell that forks without pause: processes appear while the move runs
    for (let i = 0; i < 4; i++) kids.push(spawn('sleep', ['300'], { stdio: 'ignore' }));
    kids.push(spawn('sh', ['-c', 'while :; do /bin/true; done'], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 50));
    for (const d of src.leaves) for (const k of kids) placePid(d, k.pid!);

    await primeMove(from);
    for (const d of src.leaves) assert.ok(kids.every((k) => procsIn(d).includes(k.pid!)), `primeMove left ${d} as it was`);

    const journaled: string[] = [];
    await moveCgroup(from, to, (dir) => { assert.ok(!existsSync(dir), 'journaled before its mkdir'); journaled.push(dir); }, { removeUpTo: pool, after: primeMove(from) });

    assert.equal(journaled.length, src.leaves.length, 'the target leaf, once per hierarchy');
    const pids = kids.flatMap((k) => tree(k.pid!));
    assert.ok(pids.length >= kids.length, 'the processes still run');
    const v2Moved = hs.some((x) => x.version === 2 && existsSync(join(x.path, to)));
    const misplaced = (pid: number): string[] => {
      const cgs = cgroupsOf(pid);
      // one of the shell's short-lived children, gone or on its way out
      if (!cgs || dead(pid)) return [];
      return [...cgs].filter(([h, path]) => (h !== '0' || v2Moved) && path !== `/${to}`).map(([h, path]) => `pid ${pid} in hierarchy ${h}: ${path}`);
    };
    // a child caught being born reads '/' until the kernel links it to its parent's cgroups: look
    // again at the same process (its start time: the forking shell goes through pids fast)
    const suspects = pids.filter((pid) => misplaced(pid).length > 0).map((pid) => ({ pid, start: startOf(pid) }));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(suspects.filter((x) => startOf(x.pid) === x.start).flatMap((x) => misplaced(x.pid)), [], 'every process is in the target in every hierarchy');
    for (const h of hs) {
      assert.ok(!existsSync(join(h.path, from)), `${h.path}: the source is gone`);
      assert.ok(!existsSync(join(h.path, pool)), `${h.path}: its pool parent is gone`);
      assert.ok(existsSync(join(h.path, TOP, 'pool')), `${h.path}: nothing above removeUpTo goes`);
      assert.ok(kids.every((k) => procsIn(join(h.path, to)).includes(k.pid!)), `${h.path}: every process is in the target`);
      if (existsSync(join(h.path, to, 'pids.max'))) assert.equal(readFileSync(join(h.path, to, 'pids.max'), 'utf8').trim(), '64', `${h.path}: the limit came along`);
    }
    assert.deepEqual(readdirSync(join(hs[0]!.path, TOP, 'kubepods', 'pod-uid')).filter((e) => e === 'sbx'), ['sbx']);

    // again without a prime (the first write waits in the thread pool), into a parent made on the way
    const again = `${TOP}/kubepods/pod-other/sbx`;
    await moveCgroup(to, again, () => undefined);
    for (const h of hs) {
      assert.ok(!existsSync(join(h.path, to)), `${h.path}: the first target is gone`);
      assert.ok(kids.every((k) => procsIn(join(h.path, again)).includes(k.pid!)), `${h.path}: every process moved again`);
    }
  });

  it('refuses a removeUpTo that is not an ancestor of the source, before anything is made', async () => {
    await assert.rejects(moveCgroup(`${TOP}/a/b`, `${TOP}/c/b`, () => assert.fail('nothing is made'), { removeUpTo: `${TOP}/other` }), /is not under/);
    assert.ok(hierarchies().every((h) => !existsSync(join(h.path, TOP, 'c'))));
  });
});
