// `--supervisor node` (BULKHEAD_VM_SUPERVISOR=node): one node-wide process (cmd/vmhost.ts) supervises
// every pod VM of a --root instead of one `_vmd` per pod. Real QEMU microVMs (TCG here), bin/bulkhead-vm.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { IDLE_EXIT_MS } from '../../src/vm/cmd/vmhost.ts';
import { alive as running, podDir } from '../../src/vm/state.ts';
import { pidsNaming, recordProc } from '../../src/vm/procs.ts';
import { placeVmm } from '../../src/vm/vm-cgroup.ts';
import { silentLogger } from '../../src/util/log.ts';
import { alive, BULKHEAD_VM, createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor, assertExit } from '../../harness/vm-assets.ts';
import { VmdClient } from '../../src/vm/client.ts';
import { hostSocket } from '../../src/vm/cmd/common.ts';
import { leaveIdleHost } from '../../src/vm/cmd/vmhost-client.ts';

const skip = skipReason();
const SB = { 'io.kubernetes.cri.container-type': 'sandbox' };

function ppid(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]);
}

describe('bulkhead-vm --supervisor node: one supervisor process for every pod VM', { skip, timeout: 600_000 }, () => {
  let dir: string;
  let root: string;
  let rootfs: string;
  const ids = [`ns-a-${process.pid}`, `ns-b-${process.pid}`];
  /** Kills the `bulkhead-vm create` of bundle `b` (as a caller's timeout would). */
  const killCreator = (b: string): void => {
    const creators = spawnSync('pgrep', ['-f', '--', `create --bundle ${b} `], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
    assert.equal(creators.length, 1);
    process.kill(Number(creators[0]), 'SIGKILL');
  };
  const saved = process.env.BULKHEAD_VM_SUPERVISOR;

  before(() => {
    dir = tempDir('bulkhead-vm-nodesup-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
    process.env.BULKHEAD_VM_SUPERVISOR = 'node';
  });
  after(async () => {
    for (const id of ids) await vm(root, ['delete', '--force', id]).catch(() => {});
    if (saved === undefined) delete process.env.BULKHEAD_VM_SUPERVISOR; else process.env.BULKHEAD_VM_SUPERVISOR = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it('boots two pod VMs under one host process, serves each, ends one without the other, abandons a start whose creator died, and leaves when idle', async () => {
    for (const id of ids) {
      const c = await createWithPipes(root, id, makeBundle(dir, id, { rootfs, annotations: SB, args: ['sh', '-c', 'echo up; exec sleep 1000'] }));
      assert.equal(c.code, 0, c.err());
      assertExit(await vm(root, ['start', id]));
      await waitFor(() => c.out().includes('up'), `${id} output`);
    }
    // each pod's dir by its id: readdir's order is the filesystem's (ext4: by name hash), not the
    // creation order — taking it for ids' order waited on the other pod's VMM half the time (the
    // "VMM left running after a forced delete" of CI at 7110aac was that pod's, rightly running)
    const pods = ids.map((id) => podDir(root, id));
    assert.deepEqual(readdirSync(join(root, 'pods')).map((k) => join(root, 'pods', k)).sort(), [...pods].sort());
    const vmms = pods.map((p) => Number(readFileSync(join(p, 'vmm.pid'), 'utf8')));
    const host = ppid(vmms[0]!);
    // QEMU runs under setpriv (exec'd), so its parent is the supervisor itself: the same for both pods
    assert.equal(ppid(vmms[1]!), host, 'both VMMs are children of one supervisor');
    assert.match(readFileSync(`/proc/${host}/cmdline`, 'utf8'), /\0_vmhost(\0|$)/);
    for (const p of pods) {
      assert.equal(Number(readFileSync(join(p, 'vmd.pid'), 'utf8')), host);
      assert.ok(!existsSync(join(p, 'vmd.proc')), 'the shared host is not recorded as a pod process (a pod\'s delete --force must not end it)');
    }
    for (const id of ids) {
      const r = await vm(root, ['exec', id, 'sh', '-c', 'echo hi; exit 4']);
      assert.equal(r.code, 4, r.stderr);
      assert.equal(r.stdout, 'hi\n');
    }
    // a forced delete of one pod ends its VM, not the host or the other pod
    assertExit(await vm(root, ['delete', '--force', ids[0]!]));
    // gone or a zombie not yet reaped by its parent, the host (state.ts alive() tells them apart)
    await waitFor(() => !running(vmms[0]!), 'the first VMM to end', 20_000);
    assert.ok(alive(host), 'the host lives on');
    assertExit(await vm(root, ['exec', ids[1]!, 'true']), 0, 'the other pod still serves');
    // a start whose creator is killed mid-boot is abandoned: its VM and pod dir go, the host stays
    const ab = `ns-ab-${process.pid}`;
    ids.push(ab);
    const b = makeBundle(dir, ab, { rootfs, annotations: SB, args: ['sleep', '1000'] });
    const created = createWithPipes(root, ab, b);
    const abDir = podDir(root, ab);
    await waitFor(() => existsSync(join(abDir, 'vmm.proc')), 'the third VMM to start', 60_000);
    const abVmm = (JSON.parse(readFileSync(join(abDir, 'vmm.proc'), 'utf8')) as { pid: number }).pid;
    killCreator(b);
    assert.notEqual((await created).code, 0);
    await waitFor(() => !running(abVmm) && !existsSync(abDir), 'the abandoned VM and its pod dir to go', 20_000);
    assert.ok(alive(host), 'the host lives on');
    assertExit(await vm(root, ['delete', '--force', ab]));
    assertExit(await vm(root, ['delete', ids[1]!]), 1, 'a running sandbox needs --force');
    assertExit(await vm(root, ['delete', '--force', ids[1]!]));
    await waitFor(() => !alive(host), 'the idle host to leave', IDLE_EXIT_MS + 15_000);
    assert.ok(!existsSync(join(root, 'vmhost.sock')), 'its socket goes with it');
  });

  it('a host that dies takes every pod VM with it, each container reporting why; the next pod starts a new host', async () => {
    // the blast radius of `--supervisor node`, as README says: no VMM outlives the host (pdeathsig),
    // no container is left "running" (each shim exits 255 with the reason), and the node recovers
    const crash = [`ns-k1-${process.pid}`, `ns-k2-${process.pid}`];
    ids.push(...crash);
    const cs = [];
    for (const id of crash) {
      const c = await createWithPipes(root, id, makeBundle(dir, id, { rootfs, annotations: SB, args: ['sleep', '1000'] }));
      assert.equal(c.code, 0, c.err());
      assertExit(await vm(root, ['start', id]));
      cs.push(c);
    }
    const vmms = crash.map((id) => Number(readFileSync(join(podDir(root, id), 'vmm.pid'), 'utf8')));
    const host = ppid(vmms[0]!);
    assert.equal(ppid(vmms[1]!), host);
    process.kill(host, 'SIGKILL');
    for (const c of cs) await c.done;
    await waitFor(() => vmms.every((p) => !running(p)), 'every VMM of the dead host to end', 20_000);
    for (const [i, id] of crash.entries()) {
      const st = JSON.parse((await vm(root, ['state', id])).stdout) as { status: string; annotations: Record<string, string> };
      assert.equal(st.status, 'stopped', `${id} is stopped`);
      assert.equal(st.annotations['io.bulkhead.vm.exit-code'], '255');
      assert.match(st.annotations['io.bulkhead.vm.exit-reason'] ?? '', /supervisor went away/);
      assert.match(cs[i]!.err(), /supervisor went away/);
    }
    // the next sandbox's create finds no host answering and starts one
    const next = `ns-k3-${process.pid}`;
    ids.push(next);
    const c = await createWithPipes(root, next, makeBundle(dir, next, { rootfs, annotations: SB, args: ['sleep', '1000'] }));
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', next]));
    const host2 = ppid(Number(readFileSync(join(podDir(root, next), 'vmm.pid'), 'utf8')));
    assert.notEqual(host2, host);
    assert.match(readFileSync(`/proc/${host2}/cmdline`, 'utf8'), /\0_vmhost(\0|$)/);
    assertExit(await vm(root, ['exec', next, 'true']), 0, 'the new host serves');
    for (const id of crash) assertExit(await vm(root, ['delete', id]), 0, `${id}: a stopped sandbox is deleted without --force`);
    for (const id of crash) assert.ok(!existsSync(podDir(root, id)));
    assertExit(await vm(root, ['delete', '--force', next]));
    // the next test needs a fresh host (its start sweeps orphans): this one leaves once idle
    await waitFor(() => !alive(host2), 'the idle host to leave', IDLE_EXIT_MS + 15_000);
  });

  it('a new host ends a pod VM that outlived its supervisor: its processes (recorded or only in its cgroup), cgroups and slots; the dir stays for delete', async () => {
    // A VMM outlives its host only when setpriv's pdeathsig missed (the host died between the fork
    // and the prctl): a fault we cannot cause, so stand-ins play the orphan — one process recorded as
    // the pod's VMM and naming the pod dir (as QEMU does), one only in the pod VM's cgroup — under a
    // recorded host that is dead.
    const orphan = `ns-orphan-${process.pid}`;
    ids.push(orphan);
    const od = podDir(root, orphan);
    mkdirSync(od, { recursive: true });
    writeFileSync(join(od, 'slot0.img'), '');
    const deadHost = spawn('sleep', ['1000'], { stdio: 'ignore' });
    recordProc(od, 'host', deadHost.pid!);
    deadHost.kill('SIGKILL');
    await waitFor(() => !running(deadHost.pid!), 'the stand-in host to die');
    const vmmStandIn = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', join(od, 'console.log')], { stdio: 'ignore' });
    const inCgroup = spawn('sleep', ['1000'], { stdio: 'ignore' });
    try {
      recordProc(od, 'vmm', vmmStandIn.pid!);
      const leaves = await placeVmm(`bulkhead-vm-test/${orphan}`, [vmmStandIn.pid!, inCgroup.pid!], { memoryBytes: 512 << 20 }, od, silentLogger);
      assert.ok(leaves.length > 0, 'the stand-ins are in a cgroup of the pod VM');
      // the next pod starts a host, which ends the orphan (and not the new pod)
      const id = `ns-c-${process.pid}`;
      ids.push(id);
      const c = await createWithPipes(root, id, makeBundle(dir, id, { rootfs, annotations: SB, args: ['sleep', '1000'] }));
      assert.equal(c.code, 0, c.err());
      assertExit(await vm(root, ['start', id]));
      await waitFor(() => !running(vmmStandIn.pid!) && !running(inCgroup.pid!), 'the orphaned pod VM\'s processes to end', 20_000);
      for (const l of leaves) assert.ok(!existsSync(l), `its cgroup ${l} is removed`);
      assert.ok(!existsSync(join(od, 'slot0.img')), 'its slot files are removed');
      assert.match(readFileSync(join(od, 'exit.json'), 'utf8'), /outlived its supervisor/);
      assertExit(await vm(root, ['exec', id, 'true']), 0, 'the new pod serves');
      assertExit(await vm(root, ['delete', '--force', orphan]));
      assert.ok(!existsSync(od), 'delete --force of its id removes the rest');
      assertExit(await vm(root, ['delete', '--force', id]));
    } finally {
      vmmStandIn.kill('SIGKILL');
      inCgroup.kill('SIGKILL');
    }
  });

  /**
   * Starts a template-path pod (no volumes) of a size no template of this root has, so its start
   * waits seconds for the build (TCG); `interrupt` ends the start meanwhile. The build goes on (other
   * pods may wait for it), but neither a clone nor a boot in the clone's place may start for the
   * pod: watched (often: such a VMM, its pod dir gone, may live a few ms) until 5 s after the build.
   */
  async function interruptDuringBuild(id: string, memoryLimit: number, interrupt: (bundle: string) => Promise<void>): Promise<void> {
    ids.push(id);
    const pd = podDir(root, id);
    const b = makeBundle(dir, id, { rootfs, annotations: { ...SB, 'io.bulkhead.vm.volumes': 'none' }, args: ['sleep', '1000'], memoryLimit });
    const created = createWithPipes(root, id, b);
    const tdir = join(root, 'templates');
    const names = (): string[] => (existsSync(tdir) ? readdirSync(tdir) : []);
    const before = new Set(names());
    const built = (): boolean => names().some((n) => /^[0-9a-f]{32}$/.test(n) && !before.has(n));
    await waitFor(() => existsSync(pd) && names().some((n) => n.startsWith('.build-')), 'the template build to start', 60_000);
    assert.ok(!built(), 'no template of this size yet');
    await interrupt(b);
    assert.notEqual((await created).code, 0, 'the create fails');
    const seen = new Map<number, string>();
    let builtAt = 0;
    for (const until = Date.now() + 240_000; (builtAt === 0 || Date.now() < builtAt + 5000) && Date.now() < until;) {
      for (const p of pidsNaming(pd)) if (!seen.has(p)) seen.set(p, (() => { try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').slice(0, 4).join(' '); } catch { return '(gone)'; } })());
      if (builtAt === 0 && !names().some((n) => n.startsWith('.build-'))) builtAt = Date.now();
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(builtAt > 0, 'the template build ended');
    assert.deepEqual([...seen.values()], [], 'no process was started for the pod after its start was ended');
    assert.ok(!existsSync(pd), 'its pod dir is gone');
    // a clone of the new template spawned for the gone pod dir failed, and its failure removed the template
    assert.ok(built(), 'the template stays');
  }

  it('a start abandoned while its VM template is built spawns no VMM after it', async () => {
    await interruptDuringBuild(`ns-tb-${process.pid}`, 256 << 20, async (b) => { killCreator(b); });
  });

  it('a forced delete during a start (the template being built) ends it in the host: no VMM after the delete', async () => {
    const id = `ns-td-${process.pid}`;
    await interruptDuringBuild(id, 320 << 20, async () => {
      const r = await vm(root, ['delete', '--force', id]);
      assert.equal(r.code, 0, r.stderr);
    });
  });
});

// The daemon closing asks its node-wide host to leave (MicrovmBackend.close → vmhost-client.ts):
// no VM needed, the host alone.
describe('bulkhead-vm --supervisor node: a host asked to leave', { timeout: 60_000 }, () => {
  it('leaves at once when it serves no pod and no other client is connected, gone when the call returns; stays while another client is', async () => {
    const dir = tempDir('bulkhead-vm-leave-');
    const root = join(dir, 'state');
    mkdirSync(root, { recursive: true });
    const readyOf = (h: ChildProcess): Promise<string> => new Promise<string>((res, rej) => {
      let line = '';
      (h.stdio[3] as NodeJS.ReadableStream).on('data', (b: Buffer) => { line += b.toString(); if (line.includes('\n')) res(line); });
      h.once('exit', () => rej(new Error(`the host exited before it was ready: ${line}`)));
    });
    const host = spawn(BULKHEAD_VM, ['--root', root, '_vmhost'], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
    const hosts = [host];
    try {
      assert.match(await readyOf(host), /^ok \d+/);
      const other = await VmdClient.connect(hostSocket(root));
      await other.request('ping'); // accepted by the host (a connection still in its backlog is not yet counted)
      assert.equal(await leaveIdleHost(root), 'idle', 'another client is connected (a create before its pod is known): it stays for now');
      assert.ok(alive(host.pid!));
      const exited = new Promise((r) => host.once('exit', r));
      other.close();
      await exited; // as soon as that client hung up, not IDLE_EXIT_MS later
      assert.ok(!existsSync(hostSocket(root)), 'its socket removed');
      // with nobody else connected: gone when the call returns
      const again = spawn(BULKHEAD_VM, ['--root', root, '_vmhost'], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
      hosts.push(again);
      assert.match(await readyOf(again), /^ok \d+/);
      assert.equal(await leaveIdleHost(root), 'now');
      assert.equal(running(again.pid!), false, 'gone when leaveIdleHost returns');
    } finally {
      for (const h of hosts) { try { h.kill('SIGKILL'); } catch { /* gone */ } }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
