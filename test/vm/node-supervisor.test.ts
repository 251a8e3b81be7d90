// `--supervisor node` (BULKHEAD_VM_SUPERVISOR=node): one node-wide process (cmd/vmhost.ts) supervises
// every pod VM of a --root instead of one `_vmd` per pod. Real QEMU microVMs (TCG here), bin/bulkhead-vm.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { IDLE_EXIT_MS } from '../../src/vm/cmd/vmhost.ts';
import { alive as running, podDir } from '../../src/vm/state.ts';
import { alive, createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor } from '../../harness/vm-assets.ts';

const skip = skipReason();
const SB = { 'io.kubernetes.cri.container-type': 'sandbox' };

function ppid(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]);
}

describe('bulkhead-vm --supervisor node: one supervisor process for every pod VM', { skip, timeout: 600_000 }, () => {
  let dir: string;
  let root: string;
  const ids = [`ns-a-${process.pid}`, `ns-b-${process.pid}`];
  const saved = process.env.BULKHEAD_VM_SUPERVISOR;

  before(() => {
    dir = tempDir('bulkhead-vm-nodesup-');
    root = join(dir, 'state');
    process.env.BULKHEAD_VM_SUPERVISOR = 'node';
  });
  after(async () => {
    for (const id of ids) await vm(root, ['delete', '--force', id]).catch(() => {});
    if (saved === undefined) delete process.env.BULKHEAD_VM_SUPERVISOR; else process.env.BULKHEAD_VM_SUPERVISOR = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it('boots two pod VMs under one host process, serves each, ends one without the other, abandons a start whose creator died, and leaves when idle', async () => {
    const rootfs = makeRootfs(dir);
    for (const id of ids) {
      const c = await createWithPipes(root, id, makeBundle(dir, id, { rootfs, annotations: SB, args: ['sh', '-c', 'echo up; exec sleep 1000'] }));
      assert.equal(c.code, 0, c.err());
      assert.equal((await vm(root, ['start', id])).code, 0);
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
    assert.equal((await vm(root, ['delete', '--force', ids[0]!])).code, 0);
    // gone or a zombie not yet reaped by its parent, the host (state.ts alive() tells them apart)
    await waitFor(() => !running(vmms[0]!), 'the first VMM to end', 20_000);
    assert.ok(alive(host), 'the host lives on');
    assert.equal((await vm(root, ['exec', ids[1]!, 'true'])).code, 0, 'the other pod still serves');
    // a start whose creator is killed mid-boot is abandoned: its VM and pod dir go, the host stays
    const ab = `ns-ab-${process.pid}`;
    ids.push(ab);
    const b = makeBundle(dir, ab, { rootfs, annotations: SB, args: ['sleep', '1000'] });
    const created = createWithPipes(root, ab, b);
    const abDir = podDir(root, ab);
    await waitFor(() => existsSync(join(abDir, 'vmm.proc')), 'the third VMM to start', 60_000);
    const abVmm = (JSON.parse(readFileSync(join(abDir, 'vmm.proc'), 'utf8')) as { pid: number }).pid;
    const creators = spawnSync('pgrep', ['-f', '--', `create --bundle ${b} `], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
    assert.equal(creators.length, 1);
    process.kill(Number(creators[0]), 'SIGKILL');
    assert.notEqual((await created).code, 0);
    await waitFor(() => !running(abVmm) && !existsSync(abDir), 'the abandoned VM and its pod dir to go', 20_000);
    assert.ok(alive(host), 'the host lives on');
    assert.equal((await vm(root, ['delete', '--force', ab])).code, 0);
    assert.equal((await vm(root, ['delete', ids[1]!])).code, 1, 'a running sandbox needs --force');
    assert.equal((await vm(root, ['delete', '--force', ids[1]!])).code, 0);
    await waitFor(() => !alive(host), 'the idle host to leave', IDLE_EXIT_MS + 15_000);
    assert.ok(!existsSync(join(root, 'vmhost.sock')), 'its socket goes with it');
  });
});
