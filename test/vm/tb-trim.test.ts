// Idle translation trim (src/vm/tb-trim.ts): a quiet TCG pod VM's translation buffer is flushed
// through QEMU's gdbstub and its memfd punched, so an idle pod gives back what its start translated.
// Real QEMU microVMs (clones of a template, TCG here), bin/bulkhead-vm.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createWithPipes, makeBundle, makeRootfs, skipReason, tempDir, vm, waitFor } from '../../harness/vm-assets.ts';
import { VmdClient } from '../../src/vm/client.ts';
import { leaveIdleHost } from '../../src/vm/cmd/vmhost-client.ts';
import { pidsNaming } from '../../src/vm/procs.ts';
import { podDir } from '../../src/vm/state.ts';
import { Qmp } from '../../src/vm/qmp.ts';
import { trimTranslations } from '../../src/vm/tb-trim.ts';

const skip = skipReason();
const NO_VOLUMES = { 'io.kubernetes.cri.container-type': 'sandbox', 'io.bulkhead.vm.volumes': 'none', 'io.bulkhead.vm.trust-level': 'untrusted' };

/** Resident bytes of QEMU's code buffer memfd (both its mappings: the pages are the file's, counted once). */
function jitResident(pid: number): { mapped: boolean; bytes: number } {
  let rw = 0;
  let mapped = false;
  let inJit = false;
  let perms = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) /.exec(line);
    if (head) { inJit = line.includes('/memfd:tcg-jit'); perms = head[1]!; if (inJit) mapped = true; continue; }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && inJit && perms.startsWith('rw')) rw += Number(rss[1]) * 1024;
  }
  return { mapped, bytes: rw };
}

describe('idle translation trim of TCG pod VMs', { skip, timeout: 900_000 }, () => {
  let dir: string;
  let root: string;
  let rootfs: string;
  const started: string[] = [];
  const saved = { sup: process.env.BULKHEAD_VM_SUPERVISOR, idle: process.env.BULKHEAD_VM_TB_TRIM_IDLE_MS };
  const vmmPid = (id: string): number => (JSON.parse(readFileSync(join(podDir(root, id), 'vmm.proc'), 'utf8')) as { pid: number }).pid;
  const vmdLog = (id: string): string => readFileSync(join(podDir(root, id), 'vmd.log'), 'utf8');
  const info = async (id: string): Promise<{ trim: { idleMs: number; trims: number; punchedBytes: number } | null; accel: string }> => {
    const c = await VmdClient.connect(join(podDir(root, id), 'vmd.sock'), undefined, 5000);
    try { return await c.request('info', {}, 5000); } finally { c.close(); }
  };
  async function sandbox(id: string, env: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(env)) process.env[k] = v;
    const c = await createWithPipes(root, id, makeBundle(dir, id, { rootfs, annotations: NO_VOLUMES, args: ['sleep', '1000'] }));
    started.push(id);
    assert.equal(c.code, 0, c.err());
    const s = await vm(root, ['start', id]);
    assert.equal(s.code, 0, s.stderr);
  }

  before(() => {
    dir = tempDir('bulkhead-vm-tbtrim-');
    root = join(dir, 'state');
    rootfs = makeRootfs(dir);
  });
  after(async () => {
    for (const id of started.reverse()) await vm(root, ['delete', '--force', id]).catch(() => {});
    await leaveIdleHost(root);
    for (const [k, v] of [['BULKHEAD_VM_SUPERVISOR', saved.sup], ['BULKHEAD_VM_TB_TRIM_IDLE_MS', saved.idle]] as const) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
    assert.equal(pidsNaming(root).length, 0, 'no QEMU or supervisor of this root left');
    rmSync(dir, { recursive: true, force: true });
  });

  it('a quiet pod VM gives back its translations by itself, and works after (node-wide host)', async (t) => {
    await sandbox(`tba-${process.pid}`, { BULKHEAD_VM_SUPERVISOR: 'node', BULKHEAD_VM_TB_TRIM_IDLE_MS: '2000' });
    const id = started.at(-1)!;
    if ((await info(id)).accel !== 'tcg') { t.skip('the VM runs under KVM: no translation buffer'); return; }
    const pid = vmmPid(id);
    await waitFor(() => /msg="translations trimmed"/.test(vmdLog(id)), 'the idle trim', 60_000);
    const i = await info(id);
    assert.ok(i.trim && i.trim.trims >= 1 && i.trim.punchedBytes > 8 << 20, `trim stats: ${JSON.stringify(i.trim)}`);
    const m = /usedMiB=([\d.]+)/.exec(vmdLog(id));
    assert.ok(m && Number(m[1]) >= 4, `the buffer held the start's translations: ${m?.[0]}`);
    assert.ok(jitResident(pid).bytes < 6 << 20, `after the trim QEMU's buffer holds ${jitResident(pid).bytes} bytes`);
    // the guest runs on: an exec (new translations in punched pages) and its output
    const e = await vm(root, ['exec', id, 'sh', '-c', 'echo $((6*7)); head -c 32 /dev/urandom | od -An -tx1 | wc -w']);
    assert.equal(e.code, 0, e.stderr);
    assert.deepEqual(e.stdout.trim().split(/\s+/), ['42', '32']);
  });

  it('with the trim off the buffer is QEMU\'s own (no memfd), and the VM says so', async (t) => {
    await sandbox(`tbb-${process.pid}`, { BULKHEAD_VM_SUPERVISOR: 'pod', BULKHEAD_VM_TB_TRIM_IDLE_MS: '0' });
    const id = started.at(-1)!;
    const i = await info(id);
    if (i.accel !== 'tcg') { t.skip('the VM runs under KVM'); return; }
    assert.equal(i.trim, null);
    assert.equal(jitResident(vmmPid(id)).mapped, false, 'no memfd code buffer without the trim');
    const r = await trimTranslations({ pid: vmmPid(id), qmpPath: join(podDir(root, id), 'qmp.sock'), gdbPath: join(podDir(root, id), 'gdb.sock') }).catch((e: Error) => ({ trimmed: false, reason: e.message }));
    assert.equal(r.trimmed, false);
  });

  it('a trim asked for directly: little in use is left, a stopped VM stays stopped, a running one is trimmed and runs on', async (t) => {
    // the scheduler never fires here (an hour of quiet): the test drives every trim
    await sandbox(`tbc-${process.pid}`, { BULKHEAD_VM_SUPERVISOR: 'pod', BULKHEAD_VM_TB_TRIM_IDLE_MS: '3600000' });
    const id = started.at(-1)!;
    if ((await info(id)).accel !== 'tcg') { t.skip('the VM runs under KVM'); return; }
    const pid = vmmPid(id);
    // 1 MiB in use is enough to trim here (the scheduler waits for 4)
    const target = { pid, qmpPath: join(podDir(root, id), 'qmp.sock'), gdbPath: join(podDir(root, id), 'gdb.sock'), minBytes: 1 << 20 };
    const warm = await vm(root, ['exec', id, 'sh', '-c', 'ls -lR /proc/self/ > /dev/null; echo warm']);
    assert.equal(warm.stdout.trim(), 'warm', warm.stderr);
    const before = jitResident(pid).bytes;
    assert.ok(before > 2 << 20, `a clone that ran an exec holds its translations: ${before}`);
    // stopped by someone else: not trimmed, and not resumed
    const q = await Qmp.connect(target.qmpPath, 5000);
    try {
      await q.cmd('stop');
      q.close();
      const r = await trimTranslations(target);
      assert.equal(r.trimmed, false);
      assert.match(r.reason ?? '', /paused, not running/);
    } finally { q.close(); }
    const q2 = await Qmp.connect(target.qmpPath, 5000);
    try {
      assert.equal((await q2.cmd('query-status') as { status: string }).status, 'paused', 'the trim left the stopped VM stopped');
      await q2.cmd('cont');
    } finally { q2.close(); }
    const r = await trimTranslations(target);
    assert.equal(r.trimmed, true, r.reason);
    assert.ok((r.punchedBytes ?? 0) > 16 << 20 && r.usedBytes > 1 << 20, JSON.stringify(r));
    assert.ok(jitResident(pid).bytes < before / 2, `resident after ${jitResident(pid).bytes}, before ${before}`);
    const q3 = await Qmp.connect(target.qmpPath, 5000);
    try { assert.equal((await q3.cmd('query-status') as { status: string }).status, 'running'); } finally { q3.close(); }
    // right after: little in use, nothing done; no gdbstub socket left in the pod dir
    const again = await trimTranslations(target);
    assert.equal(again.trimmed, false);
    assert.equal(again.reason, 'little in use');
    assert.throws(() => readFileSync(target.gdbPath), /ENOENT/);
    const e = await vm(root, ['exec', id, 'echo', 'after-trim']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.stdout.trim(), 'after-trim');
  });
});
