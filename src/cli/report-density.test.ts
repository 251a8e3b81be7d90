import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { leftovers, podPids, processName, pssBytes, readProcs, type ProcInfo } from './report-density.ts';

const proc = (pid: number, ppid: number, cmdline: string, cgroups: string[] = ['/']): ProcInfo => ({ pid, ppid, comm: cmdline.split(' ')[0] ?? '', cmdline, cgroups });

test('a pod\'s processes: by cgroup or by a command line naming it, with their descendants, never the excluded ones', () => {
  const pod = 'a'.repeat(64);
  const ctr = 'b'.repeat(64);
  const procs = [
    proc(1, 0, 'init'),
    proc(10, 1, `/usr/bin/conmon --cid ${ctr} -c ${ctr}`),
    proc(11, 10, 'sleep 3600', ['/bulkhead/other']),
    proc(20, 1, 'runsc-sandbox --root x', [`/bulkhead/pod-${pod}`]),
    proc(21, 20, 'exe gofer', [`/bulkhead/pod-${pod}/sub`]),
    proc(30, 1, 'unrelated', ['/bulkhead/podx']),
    proc(40, 1, `bulkhead daemon ${pod}`),
    proc(41, 40, 'child of the daemon'),
    proc(50, 1, 'short id abc', ['/abc']),
  ];
  assert.deepEqual(podPids(procs, [pod, ctr], ['/bulkhead/pod-' + pod], new Set([40])), [10, 11, 20, 21]);
  assert.deepEqual(podPids(procs, ['abc'], ['/']), [], 'short keys and the root cgroup match nothing');
  assert.equal(processName(proc(5, 1, '/proc/self/exe --root x')), 'exe');
  assert.equal(processName({ ...proc(5, 1, ''), comm: 'kthread' }), 'kthread');
  assert.equal(processName(proc(5, 1, '/opt/node/bin/node /srv/bin/bulkhead-vm --root r')), 'bulkhead-vm');
});

test('readProcs, PSS and leftovers see a real process and a real cgroup that name an id', async () => {
  const id = randomBytes(16).toString('hex');
  const child = spawn('sh', ['-c', 'sleep 60; :', id], { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  let cg = '';
  let pids: number[] = [];
  try {
    // the shell names the id once it has exec'd, and has its sleep once it forked: waited for (a
    // fixed 200 ms was not always enough on a loaded host)
    for (let i = 0; i < 300 && pids.length < 2; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      pids = podPids(await readProcs(), [id], []);
    }
    assert.ok(pids.includes(child.pid!), 'the shell names the id');
    assert.equal(pids.length, 2, 'and its sleep child comes with it');
    assert.ok((await pssBytes(child.pid!)) > 0);
    assert.equal(await pssBytes(999_999_999), 0);
    // a cgroup directory named for the id, in the first cgroup hierarchy mounted here
    const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => / - cgroup2? /.test(l));
    if (line) {
      cg = join(line.split(' ')[4]!, `bulkhead-report-test-${id}`);
      await mkdir(cg);
    }
    const left = await leftovers([id], new Set([process.pid]));
    assert.ok(left.includes(`process ${child.pid}`), left.join(', '));
    if (cg) assert.ok(left.includes(`cgroup ${cg}`), left.join(', '));
  } finally {
    for (const pid of pids) if (pid !== child.pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    child.kill('SIGKILL');
    await exited;
    if (cg) await rmdir(cg).catch(() => {});
  }
  assert.deepEqual(await leftovers([id], new Set([process.pid])), []);
});

test('leftovers name a network namespace made for a pod: its name holds only the start of the pod id', async () => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-density-netns-'));
  try {
    const id = randomBytes(32).toString('hex');
    // as src/network names them: loopback (16 of the id) and CNI (12 of the id), and another tenant's
    await writeFile(join(dir, `bulkhead-${id.slice(0, 16)}-a1b2c3`), '');
    await writeFile(join(dir, `bulkhead-${id.slice(0, 12)}-d4e5f6`), '');
    await writeFile(join(dir, `bulkhead-${'f'.repeat(16)}-000000`), '');
    const left = await leftovers([id], new Set([process.pid]), '/proc', dir);
    assert.deepEqual(left.filter((l) => l.startsWith('netns ')).sort(), [`netns ${join(dir, `bulkhead-${id.slice(0, 12)}-d4e5f6`)}`, `netns ${join(dir, `bulkhead-${id.slice(0, 16)}-a1b2c3`)}`]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a microVM pod\'s processes are found by the pid records in its pod dir (the supervisor is started ahead and names no pod)', async () => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const runDir = await mkdtemp(join(tmpdir(), 'bulkhead-density-vm-'));
  try {
    const root = join(runDir, 'runtime', 'microvm', 'state');
    const podDir = join(root, 'pods', 'k1');
    await mkdir(podDir, { recursive: true });
    await mkdir(join(root, 'ctr-1'));
    await writeFile(join(root, 'ctr-1', 'state.json'), JSON.stringify({ id: 'ctr-1', podDir }));
    await writeFile(join(podDir, 'vmd.proc'), JSON.stringify({ pid: 4242, start: '1' }));
    await writeFile(join(podDir, 'vmm.proc'), JSON.stringify({ pid: 4243, start: '2' }));
    await writeFile(join(podDir, 'host.proc'), JSON.stringify({ pid: 4244, start: '3' }));
    // a state that points outside its root is not followed
    await mkdir(join(root, 'ctr-2'));
    await writeFile(join(root, 'ctr-2', 'state.json'), JSON.stringify({ id: 'ctr-2', podDir: '/etc' }));
    const { vmPodPids, handlerPids } = await import('./report-density.ts');
    assert.deepEqual((await vmPodPids(runDir, ['ctr-1', 'ctr-2', '../x'])).sort((a, b) => a.pid - b.pid), [{ pid: 4242, role: 'vmd' }, { pid: 4243, role: 'vmm' }, { pid: 4244, role: 'host' }]);
    assert.deepEqual(handlerPids([proc(7, 1, `/opt/node --x /srv/src/vm/cli.ts --root ${runDir}/runtime/microvm/state --assets /a _vmd --standby`), proc(8, 1, `node cli.ts --root /other/runtime/microvm/state _vmd --standby`)], runDir), [7]);
    // the node-wide host's standby clone VMM (src/vm/standby-vmm.ts) is the handler's too; a pod's QEMU is not
    const qemu = (dir: string): string => `qemu-system-x86_64 -name bulkhead-standby -drive id=slot0,file=${dir}/slot0.img,format=raw`;
    assert.deepEqual(handlerPids([proc(9, 1, qemu(`${runDir}/runtime/microvm/state/standby/0123456789ab-Xy12Zq`)), proc(10, 1, qemu(`${runDir}/runtime/microvm/state/pods/p1`)), proc(11, 1, qemu('/other/runtime/microvm/state/standby/0123456789ab-Xy12Zq'))], runDir), [9]);
  } finally {
    await rm(runDir, { recursive: true, force: true });
  }
});
