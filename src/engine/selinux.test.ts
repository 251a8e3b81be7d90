import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FailedPreconditionError } from '../errors.ts';
import { refuseSelinuxOnEnabledNode, selinuxEnabled } from './selinux.ts';

describe('selinux_options / selinux_relabel', () => {
  it('accepted (no label, as containerd and CRI-O) where SELinux is off; refused (FailedPrecondition) where it is on, never silently dropped', () => {
    const opt = { type: 'container_t', level: 's0:c1,c2' };
    assert.doesNotThrow(() => refuseSelinuxOnEnabledNode({ options: [opt], relabel: true }, false, 'pod a/b'));
    assert.throws(() => refuseSelinuxOnEnabledNode({ options: [opt] }, true, 'pod a/b'), (e: unknown) => e instanceof FailedPreconditionError && /pod a\/b: selinux_options .* SELinux is enabled on this node/.test(e.message));
    assert.throws(() => refuseSelinuxOnEnabledNode({ options: [null], relabel: true }, true, 'container c'), FailedPreconditionError);
    // empty options (what the kubelet sends when the pod names none) are nothing to drop
    assert.doesNotThrow(() => refuseSelinuxOnEnabledNode({ options: [{ user: '', role: '', type: '', level: '' }, null, undefined] }, true, 'pod a/b'));
  });

  it('SELinux is detected from selinuxfs (this host has none)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulkhead-selinux-'));
    try {
      assert.equal(selinuxEnabled(dir), false);
      await writeFile(join(dir, 'enforce'), '1');
      assert.equal(selinuxEnabled(dir), true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
