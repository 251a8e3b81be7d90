// A stop signal that reaches a microVM container's PID 1 before it has installed its handler (a slow
// start under TCG; critest's "removing stopped container" stops a pause container right after
// StartContainer) is not lost: the kernel drops a signal a namespace's init neither catches nor
// ignores, so the guest agent holds it and sends it again once the process has a handler. A PID 1
// that never installs one still ignores it (as under runc) until SIGKILL. Real QEMU guest (TCG here).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor } from '../../harness/vm-assets.ts';

const skip = skipReason();

describe('microVM: a stop signal sent before the container\'s PID 1 has its handler', { skip, timeout: 600_000 }, () => {
  let dir: string;
  let root: string;
  let rootfs: string;
  const sbId = `sig-sb-${process.pid}`;
  const member = { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sbId };
  const ids: string[] = [];

  /** `bulkhead-vm ARGS` succeeded; else the failure says what it wrote. */
  async function ok(args: string[]): Promise<string> {
    const r = await vm(root, args);
    assert.equal(r.code, 0, `bulkhead-vm ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** `bulkhead-vm create` of `id` succeeded; else the failure has its stderr (read to its end: exit can come first). */
  async function create(id: string, bundle: string): Promise<() => string> {
    const c = await createWithPipes(root, id, bundle);
    if (c.code !== 0) await Promise.race([c.done, new Promise((r) => setTimeout(r, 2000))]);
    assert.equal(c.code, 0, `bulkhead-vm create ${id} exited ${c.code}: ${c.err().trim()}`);
    return c.out;
  }

  before(async () => {
    dir = tempDir('bulkhead-vm-stopsig-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
    await create(sbId, makeBundle(dir, 'sb', { rootfs, annotations: { 'io.kubernetes.cri.container-type': 'sandbox' }, args: ['sleep', '1000'] }));
    await ok(['start', sbId]);
  });
  after(async () => {
    for (const id of [...ids, sbId]) await vm(root, ['delete', '--force', id]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  async function state(id: string): Promise<{ status: string; annotations?: Record<string, string> }> {
    return JSON.parse(await ok(['state', id])) as { status: string; annotations?: Record<string, string> };
  }

  async function started(name: string, script: string): Promise<{ id: string; out: () => string }> {
    const id = `${name}-${process.pid}`;
    ids.push(id);
    const out = await create(id, makeBundle(dir, name, { rootfs, annotations: member, args: ['sh', '-c', script] }));
    await ok(['start', id]);
    return { id, out };
  }

  it('is delivered once the handler exists: the container exits by its trap, not by SIGKILL', async () => {
    const { id, out } = await started('late-trap', 'sleep 2; trap "echo trapped; exit 7" TERM; while :; do sleep 0.2; done');
    await ok(['kill', id, 'TERM']);
    await waitFor(async () => (await state(id)).status === 'stopped', 'the container to stop on the held SIGTERM', 30_000);
    assert.equal((await state(id)).annotations?.['io.bulkhead.vm.exit-code'], '7');
    await waitFor(() => /trapped/.test(out()), 'the trap\'s output', 10_000);
  });

  it('a PID 1 that never handles it ignores it as under runc; SIGKILL ends it', async () => {
    const { id } = await started('no-trap', 'while :; do sleep 0.2; done');
    await ok(['kill', id, 'TERM']);
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await state(id)).status, 'running', 'the signal is still dropped: nothing was made up');
    await ok(['kill', id, 'KILL']);
    await waitFor(async () => (await state(id)).status === 'stopped', 'SIGKILL to end it', 30_000);
  });
});
