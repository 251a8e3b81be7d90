import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enforcingSeccomp, namedCounts, parseAgentOutput, parseProfile, RUNC_INIT_FLOOR, trainingSeccomp, usedCapabilities, allowList, type StrictProfile } from './profile.ts';
import { ProfileStore, readProfileBeneath } from './profile-store.ts';
import { defaultSeccompProfile } from '../seccomp.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;
function profile(over: Partial<StrictProfile> = {}): StrictProfile {
  return {
    version: 1, manifestDigest: DIGEST, learnedAt: '2026-01-01T00:00:00Z', arch: 'x86_64', syscalls: ['read', 'write', 'execve', 'clone'], counts: { read: 3 },
    capabilities: ['CAP_CHOWN'], wroteRootfs: false, training: { command: ['sh'], durationMs: 1, handler: 'strict-learn' }, ...over,
  };
}

test('parseProfile refuses what a hostile profile file could carry, naming the field and never the content', () => {
  const bad: [unknown, RegExp][] = [
    ['text', /the file is not a JSON object/],
    [{ ...profile(), version: 2 }, /version must be 1/],
    [{ ...profile(), manifestDigest: 'sha256:xyz' }, /manifestDigest/],
    [{ ...profile(), syscalls: ['read', 'not_a_syscall'] }, /syscalls must be a list of at most 600 known x86_64/],
    [{ ...profile(), syscalls: Array.from({ length: 601 }, () => 'read') }, /syscalls/],
    [{ ...profile(), capabilities: ['CAP_EVERYTHING'] }, /capabilities must be a list of CAP_\* names/],
    [{ ...profile(), wroteRootfs: 'no' }, /wroteRootfs must be true or false/],
    [{ ...profile(), arch: 'i386' }, /arch must be x86_64/],
  ];
  for (const [v, re] of bad) assert.throws(() => parseProfile(v, 'p'), (e: Error) => e.name === 'InvalidArgumentError' && re.test(e.message) && !e.message.includes('not_a_syscall'), JSON.stringify(v).slice(0, 80));
  const ok = parseProfile({ ...profile(), counts: { read: 2, bogus: 5, write: -1 }, training: { command: ['x'.repeat(5000)], handler: 7 } }, 'p');
  assert.deepEqual(ok.counts, { read: 2 });
  assert.equal(ok.training.command[0]!.length, 4096);
  assert.equal(ok.training.handler, '');
});

test('the training profile notifies every call the default profile allows but the floor, which it allows (never notified before runc hands over the listener)', () => {
  const t = trainingSeccomp('/run/x.sock');
  assert.equal(t.listenerPath, '/run/x.sock');
  const allow = (t.syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names);
  assert.deepEqual([...allow].sort(), [...RUNC_INIT_FLOOR].sort());
  assert.ok(allow.includes('rt_sigreturn') && allow.includes('write'));
  const notified = new Set((t.syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_NOTIFY').flatMap((r) => r.names));
  const dflt = (defaultSeccompProfile().syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names);
  assert.deepEqual([...notified].sort(), dflt.filter((n) => !RUNC_INIT_FLOOR.includes(n)).filter((n, i, a) => a.indexOf(n) === i).sort());
  assert.ok(!notified.has('mount') && !notified.has('bpf'));
  // clone keeps its namespace-flag check
  assert.ok((t.syscalls ?? []).some((r) => r.names.includes('clone') && r.action === 'SCMP_ACT_NOTIFY' && r.args?.length));
});

test('the enforcing profile allows the list and the floor, notifies (eperm) or kills everything else', () => {
  const e = enforcingSeccomp(profile(), 'eperm', '/run/d.sock');
  assert.equal(e.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(e.listenerPath, '/run/d.sock');
  assert.deepEqual(e.architectures, ['SCMP_ARCH_X86_64']);
  const allowed = new Set((e.syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args?.length).flatMap((r) => r.names));
  for (const n of ['read', 'write', 'execve', ...RUNC_INIT_FLOOR]) assert.ok(allowed.has(n), n);
  assert.ok(!allowed.has('clone'), 'clone only with the argument check');
  assert.ok((e.syscalls ?? []).some((r) => r.names.includes('clone') && r.action === 'SCMP_ACT_ALLOW' && r.args?.length));
  const notified = new Set((e.syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_NOTIFY').flatMap((r) => r.names));
  for (const n of ['mount', 'unshare', 'keyctl', 'bpf', 'ptrace', 'io_uring_setup', 'socket', 'openat']) assert.ok(notified.has(n), n);
  for (const n of ['write', 'clone3', 'read', 'clone']) assert.ok(!notified.has(n), n);
  const k = enforcingSeccomp(profile(), 'kill');
  assert.equal(k.defaultAction, 'SCMP_ACT_KILL_PROCESS');
  assert.equal(k.listenerPath, undefined);
  assert.ok(!(k.syscalls ?? []).some((r) => r.action === 'SCMP_ACT_NOTIFY'));
});

test('agent output, allow-list and capabilities', () => {
  const recs = parseAgentOutput('x86_64 0 5\nx86_64 59 1\nx32 1 2\ni386 11 1\ngarbage\nx86_64 99999 1\n');
  const { counts, foreign } = namedCounts(recs);
  assert.deepEqual(counts, { read: 5, execve: 1, write: 2 });
  assert.deepEqual(foreign, ['i386:11']);
  assert.ok(allowList(counts).includes('futex'), 'the runc init floor is always there');
  assert.deepEqual(usedCapabilities(['CAP_CHOWN', 'CAP_NET_BIND_SERVICE', 'CAP_KILL', 'CAP_SYS_PTRACE'], ['bind', 'read']), ['CAP_NET_BIND_SERVICE', 'CAP_SYS_PTRACE']);
  // write is never observed (the floor is allowed in training): FSETID, which write may use, stays
  assert.deepEqual(usedCapabilities(['CAP_FSETID'], []), ['CAP_FSETID']);
});

test('the profile store writes atomically and reads beneath its root only', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-profiles-'));
  try {
    const store = new ProfileStore(join(dir, 'profiles'));
    assert.equal(await store.get(DIGEST), undefined);
    const path = await store.put(profile());
    assert.deepEqual((await store.get(DIGEST))?.syscalls, [...profile().syscalls].sort());
    assert.deepEqual(await readdir(join(dir, 'profiles', 'sha256')), [`${'a'.repeat(64)}.json`], 'no temporary file left');
    assert.equal((await store.list()).length, 1);
    await assert.rejects(store.get('sha256:../../x'), /is not sha256/);
    // an annotation's path: under the root, no .., no symlink on the way, no symlinked file
    const root = join(dir, 'profiles');
    assert.equal((await readProfileBeneath(root, path)).manifestDigest, DIGEST);
    await assert.rejects(readProfileBeneath(root, `${root}/../profiles/sha256/x.json`), /must not contain "\.\."/);
    await assert.rejects(readProfileBeneath(root, '/etc/passwd'), /must be under/);
    await mkdir(join(dir, 'elsewhere'));
    await writeFile(join(dir, 'elsewhere', 'p.json'), JSON.stringify(profile()));
    await symlink(join(dir, 'elsewhere'), join(root, 'link'));
    await assert.rejects(readProfileBeneath(root, join(root, 'link', 'p.json')), /resolves through a symlink to a place outside/);
    await symlink(join(dir, 'elsewhere', 'p.json'), join(root, 'file-link.json'));
    await assert.rejects(readProfileBeneath(root, join(root, 'file-link.json')), /resolves through a symlink to a place outside/);
    await symlink('/etc', join(root, 'etc'));
    await assert.rejects(readProfileBeneath(root, join(root, 'etc', 'passwd')), (e: Error) => /outside/.test(e.message) && !e.message.includes('root:'));
    // a ConfigMap volume: key -> ..data/key, ..data -> ..2026_01_01; symlinks that stay inside are fine
    await mkdir(join(root, 'cm', '..2026_01_01'), { recursive: true });
    await writeFile(join(root, 'cm', '..2026_01_01', 'app.json'), JSON.stringify(profile()));
    await symlink('..2026_01_01', join(root, 'cm', '..data'));
    await symlink('..data/app.json', join(root, 'cm', 'app.json'));
    assert.equal((await readProfileBeneath(root, join(root, 'cm', 'app.json'))).manifestDigest, DIGEST);
    await assert.rejects(readProfileBeneath(root, join(root, 'missing.json')), /does not exist/);
    assert.equal(await store.remove(DIGEST), true);
    assert.equal(await store.remove(DIGEST), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
