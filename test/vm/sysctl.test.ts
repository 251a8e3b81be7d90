// Pod sysctls in a microVM guest: bulkhead-vm driven like conmon drives it, one real QEMU guest (TCG
// here). The sandbox's spec carries the pod's sysctls (as the engine builds it); every container of
// the pod gets them in its own namespaces in the guest: IPC ones (kernel.shm_rmid_forced,
// fs.mqueue.msg_max) in each container's IPC namespace, net.* in the VM's shared network namespace.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, assertExit } from '../../harness/vm-assets.ts';

const skip = skipReason();

function withSysctls(b: string, sysctl: Record<string, string>): string {
  const spec = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as { linux: Record<string, unknown> };
  spec.linux.sysctl = sysctl;
  writeFileSync(join(b, 'config.json'), JSON.stringify(spec));
  return b;
}

describe('microVM: pod sysctls applied in the guest', { skip, timeout: 600_000 }, () => {
  let dir: string;
  let root: string;
  let rootfs: string;
  const sbId = `ssb-${process.pid}`;
  const member = { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sbId };

  before(async () => {
    dir = tempDir('bulkhead-vm-sysctl-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
    const b = withSysctls(makeBundle(dir, 'sb', { rootfs, annotations: { 'io.kubernetes.cri.container-type': 'sandbox' }, args: ['sleep', '1000'] }),
      { 'kernel.shm_rmid_forced': '1', 'fs.mqueue.msg_max': '100', 'net.ipv4.ip_unprivileged_port_start': '80' });
    const c = await createWithPipes(root, sbId, b);
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', sbId]));
  });
  after(async () => {
    for (const id of [`s1-${process.pid}`, `s2-${process.pid}`, sbId]) await vm(root, ['delete', '--force', id]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  async function run(name: string, script: string, sysctl?: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
    const id = `${name}-${process.pid}`;
    let b = makeBundle(dir, name, { rootfs, annotations: member, args: ['sh', '-c', script] });
    if (sysctl) b = withSysctls(b, sysctl);
    const c = await createWithPipes(root, id, b);
    if (c.code !== 0) return { code: c.code, out: c.out(), err: c.err() };
    const st = await vm(root, ['start', id]);
    if (st.code === 0) await c.done;
    await vm(root, ['delete', '--force', id]);
    return { code: st.code, out: c.out(), err: `${c.err()}${st.stderr}` };
  }

  it('an app container sees the pod\'s safe (0 → 1) and unsafe (10 → 100) sysctls and the net one', async () => {
    const r = await run('s1', 'cat /proc/sys/kernel/shm_rmid_forced /proc/sys/fs/mqueue/msg_max /proc/sys/net/ipv4/ip_unprivileged_port_start');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, '1\n100\n80\n');
  });

  it('a sysctl the guest kernel does not have fails the container, naming it', async () => {
    const r = await run('s2', 'true', { 'kernel.no_such_knob': '1' });
    assert.notEqual(r.code, 0);
    assert.match(r.err, /sysctl kernel\.no_such_knob=1 in the guest: No such file or directory/);
  });
});
