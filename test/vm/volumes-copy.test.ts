// Copied volumes (src/vm/copy-volumes.ts): a pod annotated io.bulkhead.vm.volumes=copy is a template
// clone without a virtio-fs share, and its containers still get kubelet-style volumes — a ConfigMap
// in kubelet's atomic-writer layout (kept fresh when `..data` is swapped), a single file, an emptyDir
// shared by two containers, a termination log that comes back to the host; a read-write host
// directory and a symlink out of a source are refused naming the destination. bulkhead-vm driven
// like conmon drives it, real QEMU (TCG here).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor, assertExit } from '../../harness/vm-assets.ts';
import { pidsNaming, readProc, sameProc } from '../../src/vm/procs.ts';
import { podDir } from '../../src/vm/state.ts';

const skip = skipReason();
const SB = { 'io.kubernetes.cri.container-type': 'sandbox', 'io.bulkhead.vm.volumes': 'copy', 'io.bulkhead.vm.trust-level': 'untrusted' };
const member = (sandbox: string): Record<string, string> => ({ 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': sandbox });
type Mount = { destination: string; type: string; source: string; options: string[] };
const bind = (source: string, destination: string, ro: boolean): Mount => ({ destination, type: 'bind', source, options: ['rbind', 'rprivate', ro ? 'ro' : 'rw'] });

/** kubelet's atomic writer: the files in a timestamped directory, `..data` pointing at it, each key a symlink through `..data`. */
function atomicWrite(dir: string, stamp: string, files: Record<string, string>): void {
  mkdirSync(join(dir, stamp), { recursive: true });
  for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, stamp, k), v);
  symlinkSync(stamp, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const k of Object.keys(files)) if (!existsSync(join(dir, k))) symlinkSync(`..data/${k}`, join(dir, k));
}

describe('microVM copied volumes (volumes=copy)', { skip, timeout: 900_000 }, () => {
  const dir = tempDir('bulkhead-vm-cvol-');
  const root = join(dir, 'state');
  const pod = join(dir, 'kubelet/pods/0f0e0d0c-uid');
  // the kubelet's layout of a pod's volumes: a ConfigMap, an emptyDir, the container's termination log
  const config = join(pod, 'volumes/kubernetes.io~configmap/cfg');
  const empty = join(pod, 'volumes/kubernetes.io~empty-dir/cache');
  const termLog = join(pod, 'containers/app/4f2a');
  const token = join(dir, 'token');
  const sbId = `cvsb-${process.pid}`;
  const ids: string[] = [];
  let rootfs: string;

  before(async () => {
    rootfs = makeRootfs(dir);
    mkdirSync(config, { recursive: true });
    atomicWrite(config, '..2026_01_01_00_00_00.1', { 'app.conf': 'color=blue\n' });
    mkdirSync(empty, { recursive: true });
    writeFileSync(token, 'tok-123\n');
    mkdirSync(join(pod, 'containers/app'), { recursive: true });
    writeFileSync(termLog, '');
  });
  after(async () => {
    // the pod's sandbox last (ids lists it first)
    for (const id of ids.reverse()) await vm(root, ['delete', '--force', id]).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  function bundle(name: string, args: string[], mounts: Mount[]): string {
    const b = makeBundle(dir, name, { rootfs, annotations: member(sbId), args });
    const spec = JSON.parse(readFileSync(join(b, 'config.json'), 'utf8')) as Record<string, unknown>;
    spec.mounts = mounts;
    writeFileSync(join(b, 'config.json'), JSON.stringify(spec));
    return b;
  }

  async function runIn(name: string, script: string, mounts: Mount[]): Promise<{ code: number | null; out: string; err: string }> {
    const id = `${name}-${process.pid}`;
    ids.push(id);
    const c = await createWithPipes(root, id, bundle(name, ['sh', '-c', script], mounts));
    if (c.code !== 0) return { code: c.code, out: c.out(), err: c.err() };
    const st = await vm(root, ['start', id]);
    if (st.code === 0) await c.done;
    assertExit(await vm(root, ['delete', '--force', id]));
    return { code: st.code, out: c.out(), err: `${c.err()}${st.stderr}` };
  }

  it('the pod VM is a template clone with no virtio-fs share', async () => {
    ids.push(sbId);
    const c = await createWithPipes(root, sbId, makeBundle(dir, 'sb', { rootfs, annotations: SB, args: ['sleep', '1000'] }));
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', sbId]));
    assert.ok(existsSync(join(podDir(root, sbId), 'template.json')), 'a clone');
    // of its own trust level's template: `copy` widens nothing (the same template as a `none` pod of that level)
    const key = (JSON.parse(readFileSync(join(podDir(root, sbId), 'template.json'), 'utf8')) as { key: string }).key;
    assert.equal((JSON.parse(readFileSync(join(root, 'templates', key, 'meta.json'), 'utf8')) as { inputs: { scope: string } }).inputs.scope, 'level:untrusted');
    assert.match(readFileSync(join(podDir(root, sbId), 'vmd.log'), 'utf8'), /guest up.*from="template /);
    assert.ok(!existsSync(join(root, 'shares')), 'no share made');
    assert.equal(pidsNaming(podDir(root, sbId)).filter((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('virtiofsd')).length, 0, 'no virtiofsd');
  });

  it('a ConfigMap-like directory and a file are copied read-only, an emptyDir is the guest\'s, the termination log comes back', async () => {
    const r = await runIn('c1', 'cat /etc/config/app.conf; cat /var/run/secrets/token; echo from-c1 > /data/shared.txt; '
      + 'if echo x > /etc/config/new 2>/dev/null; then echo RO-BROKEN; else echo ro-ok; fi; readlink /etc/config/..data; '
      + 'echo "bye: all done" > /dev/termination-log; grep -c virtiofs /proc/mounts',
    [bind(config, '/etc/config', true), bind(empty, '/data', false), bind(token, '/var/run/secrets/token', true), bind(termLog, '/dev/termination-log', false)]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'color=blue\ntok-123\nro-ok\n..2026_01_01_00_00_00.1\n0\n', r.err);
    assert.equal(readFileSync(termLog, 'utf8'), 'bye: all done\n', 'the termination log was copied back when the container exited');
    assert.ok(!existsSync(join(empty, 'shared.txt')), 'an emptyDir is never written back to the host');
    assert.ok(!existsSync(join(config, 'new')));
  });

  it('a second container sees the emptyDir the first wrote (one guest directory per source)', async () => {
    const r = await runIn('c2', 'cat /cache/shared.txt', [bind(empty, '/cache', false)]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'from-c1\n');
  });

  it('an emptyDir with medium Memory (its host directory a tmpfs of its sizeLimit) is a guest tmpfs of that size, shared by the pod\'s containers', async () => {
    const mem = join(pod, 'volumes/kubernetes.io~empty-dir/mem');
    mkdirSync(mem, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mem]);
    try {
      const r = await runIn('m1', 'dd if=/dev/zero of=/mem/a bs=1024 count=1024 2>/dev/null && echo one-ok; '
        + 'if dd if=/dev/zero of=/mem/b bs=1024 count=2048 2>/dev/null; then echo OVER; else echo full; fi; df -k /mem | tail -1 | awk \'{print $2}\'',
      [bind(mem, '/mem', false)]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, 'one-ok\nfull\n2048\n', r.err);
      const r2 = await runIn('m2', 'ls -s /mem/a | awk \'{print $1}\'', [bind(mem, '/mem', false)]);
      assert.equal(r2.out, '1024\n', `the second container sees the first one's file; ${r2.err}`);
      assert.deepEqual(readdirSync(mem), [], 'nothing written back to the host');
    } finally {
      execFileSync('umount', ['-l', mem]);
    }
  });

  it('a ConfigMap update (kubelet swaps ..data) reaches a running container', async () => {
    const id = `c3-${process.pid}`;
    ids.push(id);
    const c = await createWithPipes(root, id, bundle('c3', ['sleep', '600'], [bind(config, '/cfg', true)]));
    assert.equal(c.code, 0, c.err());
    assertExit(await vm(root, ['start', id]));
    const read = async (): Promise<string> => (await vm(root, ['exec', id, 'sh', '-c', 'cat /cfg/app.conf; ls -a /cfg | grep -c "^\\.\\.2026"'])).stdout;
    assert.equal(await read(), 'color=blue\n1\n');
    const old = '..2026_01_01_00_00_00.1';
    atomicWrite(config, '..2026_01_01_00_01_00.2', { 'app.conf': 'color=green\n' });
    rmSync(join(config, old), { recursive: true });
    let last = '';
    await waitFor(async () => (last = await read()) === 'color=green\n1\n', 'the new content in the guest', 90_000).catch(() => {});
    assert.equal(last, 'color=green\n1\n', 'the guest sees the new ConfigMap and the old timestamped directory is gone');
    assertExit(await vm(root, ['delete', '--force', id]));
  });

  it('refuses at create, naming the destination: a read-write host directory, a symlink out of the source, without echoing file contents', async () => {
    const rw = await runIn('r1', 'true', [bind(join(dir, 'kubelet'), '/hostdir', false)]);
    assert.notEqual(rw.code, 0);
    assert.match(rw.err, /mount \/hostdir: a read-write host directory cannot be copied.*run the pod without volumes=copy/);
    const bad = join(dir, 'bad');
    mkdirSync(bad);
    writeFileSync(join(dir, 'secret'), 'SECRET-CONTENT-42\n');
    symlinkSync('../secret', join(bad, 'leak'));
    const esc = await runIn('r2', 'true', [bind(bad, '/bad', true)]);
    assert.notEqual(esc.code, 0);
    assert.match(esc.err, /mount \/bad: the symlink "leak" in its host source points outside it/);
    assert.doesNotMatch(esc.err, /SECRET-CONTENT/);
    rmSync(join(bad, 'leak'));
    symlinkSync('/etc/passwd', join(bad, 'abs'));
    const abs = await runIn('r3', 'true', [bind(bad, '/bad', true)]);
    assert.match(abs.err, /mount \/bad: the symlink "abs" in its host source points outside it/);
  });

  it('deleting the pod leaves nothing: no VM process, no pod dir, the host files as they were', async () => {
    // its QEMU by its record too (a clone VMM started ahead names no pod on its command line)
    const vmm = readProc(podDir(root, sbId), 'vmm');
    assert.ok(sameProc(vmm), 'the pod\'s QEMU is recorded and runs');
    assertExit(await vm(root, ['delete', '--force', sbId]));
    await waitFor(() => !sameProc(vmm), 'the pod\'s QEMU gone', 20_000);
    await waitFor(() => !existsSync(podDir(root, sbId)), 'the pod dir gone', 20_000);
    assert.equal(pidsNaming(join(root, 'pods')).length, 0);
    assert.equal(readFileSync(token, 'utf8'), 'tok-123\n');
    assert.equal(readFileSync(join(config, 'app.conf'), 'utf8'), 'color=green\n');
  });
});
