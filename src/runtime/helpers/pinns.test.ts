import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../util/exec.ts';
import { checkPinnableSysctls, ensurePinns } from './pinns.ts';

const all = { ipc: true, uts: true, net: true };

test('sysctls are allowed only where they land in one of the pod\'s own namespaces', () => {
  // IPC namespace
  for (const k of ['kernel.shmmax', 'kernel.shmall', 'kernel.shmmni', 'kernel.shm_rmid_forced', 'kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'fs.mqueue.msg_max', 'kernel/shmmax']) {
    assert.doesNotThrow(() => checkPinnableSysctls({ [k]: '1' }, all), k);
    assert.throws(() => checkPinnableSysctls({ [k]: '1' }, { ...all, ipc: false }), { code: 'InvalidArgument' }, `${k} with the host IPC namespace`);
  }
  // network namespace
  assert.doesNotThrow(() => checkPinnableSysctls({ 'net.ipv4.ip_unprivileged_port_start': '80', 'net/core/somaxconn': '1024' }, all));
  assert.throws(() => checkPinnableSysctls({ 'net.ipv4.ip_forward': '1' }, { ...all, net: false }), { code: 'InvalidArgument' });
  // UTS namespace
  assert.doesNotThrow(() => checkPinnableSysctls({ 'kernel.hostname': 'x', 'kernel.domainname': 'y' }, all));
  assert.throws(() => checkPinnableSysctls({ 'kernel.hostname': 'x' }, { ...all, uts: false }), { code: 'InvalidArgument' });
  // node-wide, whatever the pod's namespaces
  for (const k of ['vm.swappiness', 'vm/overcommit_memory', 'kernel.core_pattern', 'kernel.shmmax_not', 'fs.file-max', 'kernel.modprobe', 'net']) {
    assert.throws(() => checkPinnableSysctls({ [k]: '1' }, all), { code: 'InvalidArgument' }, k);
  }
  assert.doesNotThrow(() => checkPinnableSysctls({}, { ipc: false, uts: false, net: false }));
});

test('the helper itself refuses sysctl keys that could leave /proc/sys, and leaves no file behind', async () => {
  const bin = await ensurePinns();
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-pinns-'));
  try {
    for (const key of ['net/../../../tmp/x', '../x', '/etc/x', 'kernel..shmmax', 'net.ipv4.$(id)', '']) {
      // a private IPC namespace is asked for, so even a key that slipped through lands in it
      const r = await run(bin, ['--ipc', join(dir, 'ipc'), '--sysctl', `${key}=1`], { timeoutMs: 10_000 });
      assert.equal(r.code, 1, key);
      assert.match(r.stderr, /invalid sysctl/, key);
      assert.deepEqual(await readdir(dir), [], `${key}: the namespace file was removed again`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
