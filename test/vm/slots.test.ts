// A pod VM holds more than 4 containers (microvm has no hotplug: SLOT_COUNT drive slots from boot,
// vmd.ts): all of them run at once, each on its own root image, and one more than the slots is
// refused with ResourceExhausted naming the limit. Real QEMU microVM (TCG here), bin/bulkhead-vm.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { SLOT_COUNT } from '../../src/vm/vmd.ts';
import { createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor, type Created, assertExit } from '../../harness/vm-assets.ts';

const skip = skipReason();
const SB = { 'io.kubernetes.cri.container-type': 'sandbox' };

describe('bulkhead-vm: more than 4 containers in one pod VM', { skip, timeout: 600_000 }, () => {
  let dir: string;
  let root: string;
  const sb = `slots-sb-${process.pid}`;
  const ids: string[] = [];

  before(() => {
    dir = tempDir('bulkhead-vm-slots-');
    root = join(dir, 'state');
  });
  after(async () => {
    for (const id of [...ids].reverse()) await vm(root, ['delete', '--force', id]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it(`runs ${SLOT_COUNT} containers at once (sandbox included) and refuses one more, naming the limit`, async () => {
    assert.ok(SLOT_COUNT > 4, `SLOT_COUNT is ${SLOT_COUNT}`);
    const rootfs = makeRootfs(dir);
    const member = { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sb };
    const made: Created[] = [];
    for (let i = 0; i < SLOT_COUNT; i++) {
      const id = i === 0 ? sb : `slots-c${i}-${process.pid}`;
      const b = makeBundle(dir, `b${i}`, { rootfs, annotations: i === 0 ? SB : member, args: ['sh', '-c', `echo ready-${i} > /mark; echo up-${i}; exec sleep 1000`] });
      const c = await createWithPipes(root, id, b);
      assert.equal(c.code, 0, `container ${i}: ${c.err()}`);
      ids.push(id);
      made.push(c);
      const s = await vm(root, ['start', id]);
      assert.equal(s.code, 0, s.stderr);
    }
    for (let i = 0; i < SLOT_COUNT; i++) await waitFor(() => made[i]!.out().includes(`up-${i}`), `container ${i} output`);
    // each writes on its own root: the last one sees only its own mark
    const look = await vm(root, ['exec', ids[SLOT_COUNT - 1]!, 'cat', '/mark']);
    assert.equal(look.stdout.trim(), `ready-${SLOT_COUNT - 1}`);
    const extra = `slots-x-${process.pid}`;
    const over = await createWithPipes(root, extra, makeBundle(dir, 'bx', { rootfs, annotations: member, args: ['true'] }));
    assertExit(over, 1);
    assert.match(over.err(), new RegExp(`all ${SLOT_COUNT} drive slots of this VM are in use`));
    // a deleted container frees its slot
    const last = ids.pop()!;
    assertExit(await vm(root, ['delete', '--force', last]));
    const again = await createWithPipes(root, extra, makeBundle(dir, 'by', { rootfs, annotations: member, args: ['sh', '-c', 'echo again'] }));
    assert.equal(again.code, 0, again.err());
    ids.push(extra);
    assertExit(await vm(root, ['start', extra]));
    await again.done;
    assert.equal(again.out(), 'again\n');
  });
});
