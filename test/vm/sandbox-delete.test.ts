// Deleting a sandbox container stops its pod VM at once (cmd/delete.ts asks the supervisor for
// `shutdown`, not the guest's delete of the sandbox container first): whatever still runs in the VM
// dies with it and its exit is recorded, and nothing of the pod VM is left — under a pod's own
// supervisor and the node-wide one. Real QEMU microVMs (TCG here), bin/bulkhead-vm.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { podDir } from '../../src/vm/state.ts';
import { pidsNaming } from '../../src/vm/procs.ts';
import { vmmHierarchies } from '../../src/vm/vm-cgroup.ts';
import { alive, createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor, assertExit } from '../../harness/vm-assets.ts';

const skip = skipReason();
const SB = { 'io.kubernetes.cri.container-type': 'sandbox' };
const member = (sandbox: string): Record<string, string> => ({ 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sandbox });

interface State { status: string; annotations: Record<string, string> }
async function state(root: string, id: string): Promise<State> {
  const r = await vm(root, ['state', id]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as State;
}

for (const mode of ['pod', 'node'] as const) {
  describe(`bulkhead-vm delete of a sandbox (--supervisor ${mode})`, { skip, timeout: 300_000 }, () => {
    let dir: string;
    let root: string;
    let rootfs: string;
    const sb = `sd-${mode}-${process.pid}`;
    const app = `sd-${mode}-app-${process.pid}`;
    const saved = process.env.BULKHEAD_VM_SUPERVISOR;

    before(() => {
      dir = tempDir('bulkhead-vm-sbdel-');
      root = join(dir, 'state');
      rootfs = makeRootfs(dir);
      process.env.BULKHEAD_VM_SUPERVISOR = mode;
    });
    after(async () => {
      for (const id of [app, sb]) await vm(root, ['delete', '--force', id]).catch(() => {});
      if (saved === undefined) delete process.env.BULKHEAD_VM_SUPERVISOR; else process.env.BULKHEAD_VM_SUPERVISOR = saved;
      rmSync(dir, { recursive: true, force: true });
    });

    it('stops the VM: an app container still running dies with it, its exit recorded; no process, cgroup, slot file or pod dir left', async () => {
      const s = await createWithPipes(root, sb, makeBundle(dir, sb, { rootfs, annotations: SB, args: ['sleep', '1000'] }));
      assert.equal(s.code, 0, s.err());
      assertExit(await vm(root, ['start', sb]));
      const a = await createWithPipes(root, app, makeBundle(dir, app, { rootfs, annotations: member(sb), args: ['sh', '-c', 'echo up; exec sleep 1000'] }));
      assert.equal(a.code, 0, a.err());
      assertExit(await vm(root, ['start', app]));
      await waitFor(() => a.out().includes('up'), 'the app container to run');
      const pdir = podDir(root, sb);
      const vmm = Number(readFileSync(join(pdir, 'vmm.pid'), 'utf8'));
      assert.ok(alive(vmm));
      // the CRI order: the sandbox stopped (StopPodSandbox), then deleted (RemovePodSandbox); the app
      // container is left running on purpose
      assertExit(await vm(root, ['kill', sb, 'KILL']));
      await waitFor(async () => (await state(root, sb)).status === 'stopped', 'the sandbox to stop');
      assert.equal((await state(root, app)).status, 'running', 'the app container runs on after its sandbox stopped');
      const d = await vm(root, ['delete', sb]);
      assert.equal(d.code, 0, d.stderr);
      await waitFor(() => !alive(vmm), 'the VMM to end', 10_000);
      assert.ok(!existsSync(pdir), 'pod dir (slot files, sockets) removed');
      assert.ok(!existsSync(join(root, sb)), 'the sandbox record removed');
      assert.deepEqual(pidsNaming(pdir), [], 'no process names the pod dir');
      for (const h of vmmHierarchies()) assert.ok(!existsSync(join(h.path, `bulkhead-vm/${sb}`)), `cgroup removed in ${h.path}`);
      // the app container's supervisor was told the VM went, recorded the exit and ended
      await a.done;
      const st = await state(root, app);
      assert.equal(st.status, 'stopped');
      assert.ok(st.annotations['io.bulkhead.vm.exit-code'] !== undefined, JSON.stringify(st));
      assertExit(await vm(root, ['delete', app]));
    });
  });
}
