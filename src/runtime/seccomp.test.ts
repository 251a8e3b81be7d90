// Which localhost seccomp profiles a pod that may not run unconfined is refused (table), and how a
// profile file is read (root, symlinks, size, file type) without a daemon.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultSeccompProfile, profileLooserThanDefault, readLocalhostProfile } from './seccomp.ts';
import type { OciSeccomp } from '../oci/spec.ts';

const dir = await mkdtemp(join(tmpdir(), 'bulkhead-seccomp-'));
after(async () => { await rm(dir, { recursive: true, force: true }); });

const base = defaultSeccompProfile();
const cloneRule = base.syscalls!.find((r) => r.names.includes('clone'))!;
const cases: { name: string; profile: OciSeccomp; looser: RegExp | undefined }[] = [
  { name: 'the built-in profile itself', profile: base, looser: undefined },
  { name: 'a stricter one (fewer syscalls)', profile: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 'write', 'exit'], action: 'SCMP_ACT_ALLOW' }] }, looser: undefined },
  { name: 'default action ALLOW', profile: { defaultAction: 'SCMP_ACT_ALLOW' }, looser: /SCMP_ACT_ALLOW/ },
  { name: 'default action LOG', profile: { defaultAction: 'SCMP_ACT_LOG' }, looser: /SCMP_ACT_LOG/ },
  { name: 'allows mount', profile: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 'mount'], action: 'SCMP_ACT_ALLOW' }] }, looser: /allows mount.*denies/ },
  { name: 'logs (allows) bpf', profile: { defaultAction: 'SCMP_ACT_KILL', syscalls: [{ names: ['bpf'], action: 'SCMP_ACT_LOG' }] }, looser: /allows bpf/ },
  { name: 'clone without the namespace-flag check', profile: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['clone'], action: 'SCMP_ACT_ALLOW' }] }, looser: /clone.*argument checks/ },
  { name: 'clone with the built-in check', profile: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [cloneRule] }, looser: undefined },
  { name: 'denying something is always fine', profile: { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['mount', 'bpf'], action: 'SCMP_ACT_ERRNO' }] }, looser: undefined },
];
for (const c of cases) {
  test(`localhost profile looser than the built-in: ${c.name}`, () => {
    const why = profileLooserThanDefault(c.profile);
    if (c.looser) assert.match(why ?? '', c.looser);
    else assert.equal(why, undefined);
  });
}

test('reading a localhost profile: under the root only, no symlink below it, regular file, capped, content never echoed', async () => {
  const root = join(dir, 'seccomp');
  await mkdir(join(root, 'sub'), { recursive: true });
  await writeFile(join(root, 'sub', 'ok.json'), JSON.stringify(base));
  await writeFile(join(dir, 'outside.json'), JSON.stringify(base));
  await symlink(join(root, 'sub'), join(root, 'linkdir'));
  await writeFile(join(root, 'secret.json'), 'root:$6$salt$hash:::');
  await writeFile(join(root, 'big.json'), Buffer.alloc(2048, 0x20));
  assert.equal((await readLocalhostProfile(join(root, 'sub', 'ok.json'), root)).defaultAction, base.defaultAction);
  await assert.rejects(readLocalhostProfile(join(dir, 'outside.json'), root), /must be under/);
  await assert.rejects(readLocalhostProfile(root, root), /must be under/);
  await assert.rejects(readLocalhostProfile(join(root, 'linkdir', 'ok.json'), root), /symlink/);
  await assert.rejects(readLocalhostProfile(join(root, 'sub'), root), /not a regular file/);
  await assert.rejects(readLocalhostProfile(join(root, 'big.json'), root, 1024), /larger than 1024 bytes/);
  await assert.rejects(readLocalhostProfile(join(root, 'secret.json'), root), (err: Error) => /not valid JSON/.test(err.message) && !/salt|root:/.test(err.message));
  await assert.rejects(readLocalhostProfile('sub/ok.json', root), /absolute/);
});
