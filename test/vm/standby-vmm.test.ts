// Standby clone VMMs (src/vm/standby-vmm.ts): the node-wide host keeps, per template recently
// cloned, one QEMU spawned ahead as that template's clone; the next clone of that template adopts it.
// Real QEMU microVMs (TCG here), bin/bulkhead-vm under --supervisor node (the default).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { alive, createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor, assertExit } from '../../harness/vm-assets.ts';
import { VmdClient } from '../../src/vm/client.ts';
import { hostSocket } from '../../src/vm/cmd/common.ts';
import { leaveIdleHost } from '../../src/vm/cmd/vmhost-client.ts';
import { pidsNaming, recordProc } from '../../src/vm/procs.ts';
import { alive as running, podDir } from '../../src/vm/state.ts';
import { standbyDir } from '../../src/vm/standby-vmm.ts';

const skip = skipReason();
const NO_VOLUMES = { 'io.kubernetes.cri.container-type': 'sandbox', 'io.bulkhead.vm.volumes': 'none', 'io.bulkhead.vm.trust-level': 'untrusted' };

interface Ping { pid: number; pods: number; standbys: { ready: number; spawning: number; pids: number[] } }

describe('standby clone VMMs of the node-wide host', { skip, timeout: 900_000 }, () => {
  let dir: string;
  let root: string;
  let rootfs: string;
  const started: string[] = [];
  const saved = { sup: process.env.BULKHEAD_VM_SUPERVISOR, standby: process.env.BULKHEAD_VM_STANDBY_VMM };

  const ping = async (): Promise<Ping> => {
    const c = await VmdClient.connect(hostSocket(root), undefined, 5000);
    try { return await c.request<Ping>('ping', {}, 5000); } finally { c.close(); }
  };
  const vmmPid = (id: string): number => (JSON.parse(readFileSync(join(podDir(root, id), 'vmm.proc'), 'utf8')) as { pid: number }).pid;
  const vmdLog = (id: string): string => readFileSync(join(podDir(root, id), 'vmd.log'), 'utf8');
  const standbyDirs = (): string[] => (existsSync(standbyDir(root)) ? readdirSync(standbyDir(root)) : []);
  /** The one standby VMM ready, once there is one. */
  const readyStandby = async (): Promise<number> => {
    let pids: number[] = [];
    await waitFor(async () => { pids = (await ping()).standbys.pids; return pids.length === 1; }, 'a standby VMM to be ready', 60_000);
    return pids[0]!;
  };

  async function sandbox(id: string, memoryLimit?: number): Promise<void> {
    const c = await createWithPipes(root, id, makeBundle(dir, id, { rootfs, annotations: NO_VOLUMES, args: ['sleep', '1000'], ...(memoryLimit ? { memoryLimit } : {}) }));
    started.push(id);
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', id]));
  }

  before(() => {
    dir = tempDir('bulkhead-vm-standby-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
    process.env.BULKHEAD_VM_SUPERVISOR = 'node';
    delete process.env.BULKHEAD_VM_STANDBY_VMM;
  });
  after(async () => {
    for (const id of started.reverse()) await vm(root, ['delete', '--force', id]).catch(() => {});
    await leaveIdleHost(root);
    for (const [k, v] of [['BULKHEAD_VM_SUPERVISOR', saved.sup], ['BULKHEAD_VM_STANDBY_VMM', saved.standby]] as const) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
    assert.equal(pidsNaming(root).length, 0, 'no QEMU or supervisor of this root left');
    assert.deepEqual(standbyDirs(), [], 'no standby directory left');
    rmSync(dir, { recursive: true, force: true });
  });

  it('the next clone of a template adopts the QEMU the host spawned ahead for it (spawned before the pod\'s create); clones stay unique; a pod with standbys off, or of another template, never gets it', async () => {
    const a = `sba-${process.pid}`;
    await sandbox(a);
    assert.match(vmdLog(a), /clone restored.*vmm=spawned/, 'the first clone spawns its QEMU');
    // spawned after a's start, from the template's inputs only: in a directory of its own, not a's
    const standby = await readyStandby();
    assert.notEqual(standby, vmmPid(a));
    const [sdir] = standbyDirs();
    assert.ok(sdir, 'the standby has a directory of its own');
    // restored and warmed up ahead (the template holds the sandbox container): its guest ran a first
    // identity and one throwaway container, whose slot is sparse zeros again; slot 0 holds the sandbox's image
    await waitFor(() => /msg="standby VMM ready".*warmedUpMs=\d+/.test(readFileSync(join(root, 'vmhost.log'), 'utf8')), 'the standby warmed up');
    const st = (f: string): { size: number; blocks: number } => { const x = statSync(join(standbyDir(root), sdir, f)); return { size: x.size, blocks: x.blocks }; };
    assert.equal(st('slot7.img').blocks, 0, 'the warm-up\'s slot holds nothing');
    assert.ok(st('slot0.img').blocks > 0, 'slot 0 holds the sandbox\'s image');

    // a pod whose handler turned standbys off spawns its own, and leaves the standby alone
    const off = `sboff-${process.pid}`;
    process.env.BULKHEAD_VM_STANDBY_VMM = '0';
    try { await sandbox(off); } finally { delete process.env.BULKHEAD_VM_STANDBY_VMM; }
    assert.notEqual(vmmPid(off), standby);
    assert.match(vmdLog(off), /clone restored.*vmm=spawned/);
    assert.deepEqual((await ping()).standbys.pids, [standby], 'the standby is still there for the next pod');

    // the next pod of the template: its VMM is the standby spawned before its create
    const b = `sbb-${process.pid}`;
    await sandbox(b);
    assert.equal(vmmPid(b), standby, 'the second clone\'s VMM is the standby QEMU');
    assert.match(vmdLog(b), /clone restored.*vmm=standby/);
    assert.match(readFileSync(`/proc/${standby}/cgroup`, 'utf8'), new RegExp(`bulkhead-vm/${b}`), 'the adopted QEMU is in the pod\'s cgroup');
    for (const f of ['slot0.img', 'console.log', 'qmp.sock']) assert.ok(existsSync(join(podDir(root, b), f)), `its ${f} is in the pod dir`);
    assert.ok(!existsSync(join(standbyDir(root), sdir)), 'the standby directory is gone');
    // unique: each clone's first random bytes after its reseed, and its hostname
    const first = (id: string): string | null => (JSON.parse(readFileSync(join(podDir(root, id), 'template.json'), 'utf8')) as { firstRandom: string | null }).firstRandom;
    for (const id of [a, b]) await waitFor(() => first(id) !== null, `${id}'s identity answered`);
    assert.notEqual(first(a), first(b));
    const h = await vm(root, ['exec', b, 'sh', '-c', 'hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"']);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, new RegExp(`^${b}\n[0-9a-f]{32}$`));
    // its first app container: the first free slot, on a guest whose translation cache the warm-up filled
    const app = `sbapp-${process.pid}`;
    const ac = await createWithPipes(root, app, makeBundle(dir, app, { rootfs, annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': b }, args: ['sh', '-c', 'echo app-ran'] }));
    started.push(app);
    assert.equal(ac.code, 0, ac.err());
    assertExit(await vm(root, ['start', app]));
    await waitFor(() => ac.out().includes('app-ran'), 'the app container ran');

    // a new standby for the template (after b's start), which a pod of another template (another size) never gets
    const next = await readyStandby();
    assert.notEqual(next, standby);
    const other = `sbo-${process.pid}`;
    await sandbox(other, 256 << 20);
    assert.notEqual(vmmPid(other), next);
    assert.match(vmdLog(other), /guest up.*from="template /);
    assert.ok((await ping()).standbys.pids.includes(next), 'the first template\'s standby is still there');
    assertExit(await vm(root, ['exec', other, 'true']));
  });

  it('a killed host leaves no standby QEMU or directory after the next host\'s sweep', async () => {
    // standbys of two templates now (the other's spawned after its start)
    await waitFor(async () => (await ping()).standbys.pids.length === 2, 'a standby for each template', 60_000);
    const { pid: host, standbys } = await ping();
    const dirs = standbyDirs();
    assert.equal(dirs.length, 2);
    process.kill(host, 'SIGKILL');
    await waitFor(() => standbys.pids.every((p) => !running(p)), 'the standby QEMUs to die with their host', 20_000);
    // a QEMU that outlived its host (pdeathsig missed: a fault we cannot cause) played by a stand-in recorded in a dead host's dir
    const orphanDir = join(standbyDir(root), 'deadbeefdead-xxxxxx');
    mkdirSync(orphanDir);
    const deadHost = spawn('sleep', ['1000'], { stdio: 'ignore' });
    recordProc(orphanDir, 'host', deadHost.pid!);
    deadHost.kill('SIGKILL');
    await waitFor(() => !running(deadHost.pid!), 'the stand-in host to die');
    const standIn = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', join(orphanDir, 'console.log')], { stdio: 'ignore' });
    try {
      recordProc(orphanDir, 'vmm', standIn.pid!);
      for (const id of started) await vm(root, ['delete', '--force', id]);
      // the next pod starts a host, whose sweep ends what the dead one left
      const c = `sbc-${process.pid}`;
      await sandbox(c);
      const host2 = (await ping()).pid;
      assert.notEqual(host2, host);
      await waitFor(() => !running(standIn.pid!), 'the stand-in QEMU to be ended', 20_000);
      await waitFor(() => standbyDirs().every((d) => !dirs.includes(d) && d !== 'deadbeefdead-xxxxxx'), 'the dead host\'s standby directories to go', 20_000);
      assert.ok(alive(host2));
      for (const d of [...dirs, 'deadbeefdead-xxxxxx']) assert.deepEqual(pidsNaming(join(standbyDir(root), d)), [], `no process names ${d}`);
    } finally {
      standIn.kill('SIGKILL');
    }
  });

  it('a standby ends when its template is removed (as a rebuild or a refused state removes it)', async () => {
    const pid = await readyStandby();
    const [sdir] = standbyDirs();
    const key = readdirSync(join(root, 'templates')).find((n) => n.startsWith(sdir!.slice(0, 12)) && !n.endsWith('.lock'));
    assert.ok(key, `the standby's template (${sdir})`);
    rmSync(join(root, 'templates', key), { recursive: true, force: true });
    // its QEMU is gone (reaped) a moment before the host removes its directory: both waited for
    await waitFor(async () => !running(pid) && (await ping()).standbys.ready === 0 && !existsSync(join(standbyDir(root), sdir!)), 'the standby to end and its directory to go', 30_000);
  });
});
