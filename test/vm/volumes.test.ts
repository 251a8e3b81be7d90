// Volumes into a microVM pod (virtio-fs, src/vm/share.ts): bulkhead-vm driven like conmon drives it,
// one real QEMU guest (TCG here) for the whole file. A ConfigMap-like read-only directory, an
// emptyDir shared by two containers, a single-file volume; refusals at create; nothing left after.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor, assertExit } from '../../harness/vm-assets.ts';
import { mountsUnder } from '../../src/vm/share.ts';
import { pidsNaming } from '../../src/vm/procs.ts';

const skip = skipReason();
const SB = { 'io.kubernetes.cri.container-type': 'sandbox' };
const member = (sandbox: string): Record<string, string> => ({ 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sandbox });
type Mount = { destination: string; type: string; source: string; options: string[] };

/** A bundle with bind mounts (makeBundle's spec plus `mounts`). */
function bundleWithMounts(dir: string, name: string, rootfs: string, sandbox: string, args: string[], mounts: Mount[], readonlyRoot = false): string {
  const b = makeBundle(dir, name, { rootfs, annotations: member(sandbox), args });
  const spec = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as Record<string, unknown>;
  spec.mounts = mounts;
  if (readonlyRoot) (spec.root as Record<string, unknown>).readonly = true;
  writeFileSync(join(b, 'config.json'), JSON.stringify(spec));
  return b;
}
const bind = (source: string, destination: string, ro: boolean, prop = 'rprivate'): Mount => ({ destination, type: 'bind', source, options: ['rbind', prop, ro ? 'ro' : 'rw'] });

describe('microVM volumes over virtio-fs', { skip, timeout: 900_000 }, () => {
  let dir: string;
  let root: string;
  let rootfs: string;
  let config: string;
  let empty: string;
  let single: string;
  const sbId = `vsb-${process.pid}`;
  const ids: string[] = [];

  before(async () => {
    dir = tempDir('bulkhead-vm-vol-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
    config = join(dir, 'configmap');
    mkdirSync(config);
    writeFileSync(join(config, 'app.conf'), 'color=blue\n');
    empty = join(dir, 'emptydir');
    mkdirSync(empty);
    single = join(dir, 'token');
    writeFileSync(single, 'tok-123\n');
    const b = makeBundle(dir, 'sb', { rootfs, annotations: SB, args: ['sleep', '1000'] });
    const c = await createWithPipes(root, sbId, b);
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', sbId]));
  });
  after(async () => {
    for (const id of [...ids, sbId]) await vm(root, ['delete', '--force', id]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  async function runIn(name: string, script: string, mounts: Mount[], readonlyRoot = false): Promise<{ code: number | null; out: string; err: string }> {
    const id = `${name}-${process.pid}`;
    ids.push(id);
    const b = bundleWithMounts(dir, name, rootfs, sbId, ['sh', '-c', script], mounts, readonlyRoot);
    const c = await createWithPipes(root, id, b);
    if (c.code !== 0) return { code: c.code, out: c.out(), err: c.err() };
    const st = await vm(root, ['start', id]);
    if (st.code === 0) await c.done;
    // microvm has 4 drive slots: a finished container gives its slot back
    assertExit(await vm(root, ['delete', '--force', id]));
    return { code: st.code, out: c.out(), err: `${c.err()}${st.stderr}` };
  }

  it('a read-only ConfigMap-like directory, an emptyDir and a single file reach the container', async () => {
    const r = await runIn('c1', 'cat /etc/config/app.conf; cat /var/run/secrets/token; echo from-c1 > /data/shared.txt; '
      + 'if echo x > /etc/config/new 2>/dev/null; then echo RO-BROKEN; else echo ro-ok; fi ; grep -q " /data virtiofs" /proc/mounts && echo virtiofs',
    [bind(config, '/etc/config', true), bind(empty, '/data', false), bind(single, '/var/run/secrets/token', true)]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /color=blue\ntok-123\nro-ok\nvirtiofs\n/, r.err);
    await waitFor(() => readFileSync(join(empty, 'shared.txt'), 'utf8') === 'from-c1\n', 'the guest write on the host', 30_000).catch(() => {});
    assert.equal(readFileSync(join(empty, 'shared.txt'), 'utf8'), 'from-c1\n', 'the container\'s write reached the host emptyDir');
    assert.ok(!existsSync(join(config, 'new')), 'nothing was written into the read-only volume');
  });

  it('two containers of the pod share the emptyDir both ways, and a host change is seen in the guest', async () => {
    writeFileSync(join(config, 'app.conf'), 'color=green\n');
    const r = await runIn('c2', 'cat /data/shared.txt; echo from-c2 >> /data/shared.txt; cat /cfg/app.conf',
      [bind(empty, '/data', false), bind(config, '/cfg', true)]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'from-c1\ncolor=green\n', r.err);
    const c1 = await runIn('c3', 'cat /data/shared.txt', [bind(empty, '/data', false)]);
    assert.equal(c1.code, 0, c1.err);
    assert.equal(c1.out, 'from-c1\nfrom-c2\n');
    assert.equal(readFileSync(join(empty, 'shared.txt'), 'utf8'), 'from-c1\nfrom-c2\n');
  });

  it('refuses at create, never drops: a missing source, Bidirectional propagation, a symlink in the destination, a read-only root without the mount point', async () => {
    const gone = await runIn('r1', 'true', [bind(join(dir, 'no-such-dir'), '/x', false)]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.err, /cannot be shared with the guest/);
    const shared = await runIn('r2', 'true', [bind(empty, '/x', false, 'rshared')]);
    assert.notEqual(shared.code, 0);
    assert.match(shared.err, /Bidirectional \(rshared\) propagation cannot reach the host from a microVM guest/);
    // a symlink in the image pointing at the agent's own tree
    rmSync(join(rootfs, 'escape'), { force: true });
    symlinkSync('/run', join(rootfs, 'escape'));
    const link = await runIn('r3', 'true', [bind(empty, '/escape/c', false)]);
    assert.notEqual(link.code, 0);
    assert.match(link.err, /crosses a symlink/);
    const ro = await runIn('r4', 'true', [bind(empty, '/not-in-image', false)], true);
    assert.notEqual(ro.code, 0);
    assert.match(ro.err, /volume \/not-in-image/);
  });

  it('deleting each container and then the pod undoes every share mount and leaves the host files', async () => {
    const shares = join(root, 'shares');
    const share = join(shares, readdirSync(shares)[0]!);
    assert.deepEqual(mountsUnder(share), [share], 'only the share itself is left mounted while the pod runs');
    assertExit(await vm(root, ['delete', '--force', sbId]));
    await waitFor(() => mountsUnder(share).length === 0 && !existsSync(share), 'the share gone', 20_000);
    assert.equal(pidsNaming(join(root, 'pods')).length, 0);
    assert.equal(readFileSync(join(config, 'app.conf'), 'utf8'), 'color=green\n');
    assert.equal(readFileSync(single, 'utf8'), 'tok-123\n');
    assert.equal(readFileSync(join(empty, 'shared.txt'), 'utf8'), 'from-c1\nfrom-c2\n');
  });
});
