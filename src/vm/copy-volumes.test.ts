import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  classifyCopies, copyBindKv, diffOps, encodeCopyOp, kept, MAX_COPY_FILE_BYTES, MAX_COPY_MOUNT_ENTRIES, MAX_EMPTY_DIR_BYTES, mountOrigins, parseCopies, PodCopies, readCopy, resolvesInside,
  type CopyEntry, type CopyTree,
} from './copy-volumes.ts';
import type { GuestVolume } from './share.ts';

const tree = (entries: Record<string, CopyEntry>): CopyTree => new Map(Object.entries(entries));
const d = (): CopyEntry => ({ type: 'd', mode: 0o755 });
const f = (s: string): CopyEntry => ({ type: 'f', mode: 0o644, data: Buffer.from(s) });
const l = (target: string): CopyEntry => ({ type: 'l', mode: 0o777, target });
const vol = (source: string, destination: string, readonly: boolean): GuestVolume => ({ source, destination, readonly, propagation: 'private' });

test('resolvesInside follows the tree\'s own links as the kernel would, and refuses what leaves it', () => {
  const t = tree({
    '..2026': d(), '..2026/key': f('v'), '..data': l('..2026'), key: l('..data/key'),
    sub: d(), 'sub/deep': d(), 'sub/up': l('..'), 'sub/deep/s': l('../..'),
    abs: l('/etc/passwd'), out: l('../x'), viaUp: l('sub/up/..'), loopA: l('loopB'), loopB: l('loopA'), dangling: l('nothing/here'),
    // ..data resolves to the root: climbing one more from there leaves the tree (a lexical check would say "sub/deep")
    'sub/deep/t': l('s/..'),
  });
  const cases: [string, boolean][] = [
    ['key', true], ['..data', true], ['sub/up', true], ['sub/deep/s', true], ['dangling', true],
    ['abs', false], ['out', false], ['viaUp', false], ['loopA', false], ['sub/deep/t', false],
  ];
  for (const [rel, want] of cases) assert.equal(resolvesInside(t, rel), want, rel);
});

test('diffOps: new directories, files, then links (the ..data swap after its target), removals last and deepest first', () => {
  const old = tree({ '..v1': d(), '..v1/a': f('1'), '..data': l('..v1'), a: l('..data/a') });
  const next = tree({ '..v2': d(), '..v2/a': f('2'), '..data': l('..v2'), a: l('..data/a') });
  const ops = diffOps('7/0', old, next).map((o) => Object.fromEntries(o.header));
  assert.deepEqual(ops.map((o) => `${o.op} ${o.path}${o.type ? ` ${o.type}` : ''}`), ['put ..v2 d', 'put ..v2/a f', 'put ..data l', 'del ..v1/a', 'del ..v1']);
  assert.ok(ops.every((o) => o.dir === '7/0'));
  assert.deepEqual(diffOps('7/0', next, next), [], 'nothing changed, nothing sent');
  // against what the supervisor keeps (digests, no data): the same steps
  assert.ok([...kept(old).values()].every((e) => e.data === undefined));
  assert.deepEqual(diffOps('7/0', kept(old), next), diffOps('7/0', old, next));
  assert.deepEqual(diffOps('7/0', kept(next), next), []);
  // a type change is removed first
  const retyped = diffOps('1/0', tree({ x: f('a') }), tree({ x: d() })).map((o) => Object.fromEntries(o.header));
  assert.deepEqual(retyped.map((o) => o.op), ['del', 'put']);
  // a big file goes in chunks, the last one ends it
  const big = diffOps('1/0', undefined, tree({ big: { type: 'f', mode: 0o600, data: Buffer.alloc(MAX_COPY_FILE_BYTES) } }));
  assert.equal(big.length, 2);
  assert.deepEqual(big.map((o) => Object.fromEntries(o.header).end), [undefined, '1']);
  assert.deepEqual(big.map((o) => Object.fromEntries(o.header).off), ['0', String(512 << 10)]);
  const empty = diffOps('1/0', undefined, tree({ e: f('') }));
  assert.equal(empty.length, 1, 'an empty file is one step');
  const p = encodeCopyOp(big[0]!);
  assert.ok(p.length < 1 << 20, 'a step fits an agent frame');
  assert.equal(p.readUInt32BE(0), Buffer.from(big[0]!.header.map(([k, v]) => `${k}=${v}\0`).join('')).length);
});

test('classifyCopies: how each mount is copied, and what is refused naming the destination (never the content)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bh-copyvol-'));
  try {
    const cm = join(dir, 'cm');
    mkdirSync(join(cm, '..2026'), { recursive: true });
    writeFileSync(join(cm, '..2026/k'), 'SECRET-VALUE');
    symlinkSync('..2026', join(cm, '..data'));
    symlinkSync('..data/k', join(cm, 'k'));
    writeFileSync(join(dir, 'file'), 'x');
    const stage = join(dir, 'mounts');
    mkdirSync(join(stage, '2'), { recursive: true });
    writeFileSync(join(dir, 'log'), '');
    const origins = { [join(stage, '2')]: '/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/cache', [join(dir, 'log')]: '/var/lib/kubelet/pods/u/containers/app/1a2b' };
    const got = await classifyCopies([vol(cm, '/etc/cm', true), vol(join(dir, 'file'), '/f', true), vol(join(stage, '2'), '/cache', false), vol(join(dir, 'log'), '/dev/term', false), vol(join(dir, 'file'), '/etc/rw', false)], origins);
    assert.deepEqual(got.map((c) => [c.n, c.kind, c.writeBack ?? false]), [[0, 'ro-dir', false], [1, 'ro-file', false], [2, 'empty-dir', false], [3, 'rw-file', true], [4, 'rw-file', false]]);
    assert.match(got[2]!.emptyKey ?? '', /^[0-9a-f]{32}$/);
    assert.deepEqual(copyBindKv(9, got[0]!), ['cvol', '9/0\x1f/etc/cm\x1fro\x1fd\x1fprivate']);
    assert.deepEqual(copyBindKv(9, got[1]!), ['cvol', '9/1/f\x1f/f\x1fro\x1ff\x1fprivate']);
    assert.equal(copyBindKv(9, got[2]!)[1].split('\x1f')[0], `ed/${got[2]!.emptyKey}`);
    const t = await readCopy(got[0]!);
    assert.deepEqual([...t.keys()], ['..2026', '..2026/k', '..data', 'k']);
    assert.equal(t.get('k')?.target, '..data/k');

    const refused = async (source: string, dest: string, ro: boolean, why: RegExp): Promise<void> => {
      await assert.rejects(classifyCopies([vol(source, dest, ro)], {}), (e: Error & { code?: string }) => {
        assert.match(e.message, new RegExp(`^mount ${dest}: `));
        assert.match(e.message, why);
        assert.match(e.message, /run the pod without volumes=copy/);
        assert.doesNotMatch(e.message, /SECRET-VALUE/);
        assert.equal(e.constructor.name, 'FailedPreconditionError');
        return true;
      });
    };
    await refused(dir, '/rw', false, /a read-write host directory cannot be copied/);
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    await refused(join(dir, 'fifo'), '/fifo', true, /neither a regular file nor a directory/);
    const special = join(dir, 'special');
    mkdirSync(special);
    execFileSync('mkfifo', [join(special, 'p')]);
    await refused(special, '/special', true, /special file/);
    const big = join(dir, 'big');
    mkdirSync(big);
    writeFileSync(join(big, 'b'), Buffer.alloc(MAX_COPY_FILE_BYTES + 1));
    await refused(big, '/big', true, /a file of its host source is over 1 MiB/);
    const many = join(dir, 'many');
    mkdirSync(many);
    for (let i = 0; i <= MAX_COPY_MOUNT_ENTRIES; i++) writeFileSync(join(many, String(i)), '');
    await refused(many, '/many', true, /over 1024 entries/);
    const esc = join(dir, 'esc');
    mkdirSync(esc);
    symlinkSync('../cm/..2026/k', join(esc, 'leak'));
    await refused(esc, '/esc', true, /the symlink "leak" in its host source points outside it/);
    await refused(join(dir, 'gone'), '/gone', true, /cannot be read \(ENOENT\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mountOrigins and parseCopies take only well-formed input', () => {
  assert.deepEqual(mountOrigins({ ociVersion: '1', annotations: { 'io.bulkhead.mount-origins': '{"/s/0":"/var/x","/s/1":3}' } } as never), { '/s/0': '/var/x' });
  assert.deepEqual(mountOrigins({ ociVersion: '1', annotations: { 'io.bulkhead.mount-origins': 'not json' } } as never), {});
  assert.deepEqual(parseCopies(undefined), []);
  const ok = { n: 0, kind: 'ro-dir', source: '/s', destination: '/d', readonly: true };
  assert.equal(parseCopies([ok]).length, 1);
  const ed = { n: 0, kind: 'empty-dir', source: '/s', destination: '/d', readonly: false, emptyKey: 'a'.repeat(32) };
  assert.equal(parseCopies([{ ...ed, sizeBytes: 1 << 20 }])[0]!.sizeBytes, 1 << 20);
  for (const bad of [[{ ...ok, n: 1 }], [{ ...ok, kind: 'all' }], [{ ...ok, destination: 'rel' }], [{ ...ok, destination: '/a\x1fb' }], [{ ...ok, kind: 'empty-dir' }], 'x',
    [{ ...ed, sizeBytes: 100 }], [{ ...ed, sizeBytes: MAX_EMPTY_DIR_BYTES + 1 }], [{ ...ed, sizeBytes: 4096.5 }], [{ ...ok, sizeBytes: 1 << 20 }]]) {
    assert.throws(() => parseCopies(bad), /copied volume 0 is malformed|copies must be a list/);
  }
});

test('a container\'s files are read once: create looks at their metadata only, the supervisor reads, checks and sends what it read; an emptyDir on a host tmpfs of its own gets a guest tmpfs of that size (agent protocol 9, else refused naming the fix)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bh-copyvol-once-'));
  const mounts: string[] = [];
  const tmpfs = (at: string, opts: string): void => { mkdirSync(at, { recursive: true }); execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', at]); mounts.push(at); };
  try {
    // every read of a file moves its access time here
    const strict = join(dir, 'strict');
    tmpfs(strict, 'strictatime,size=4m');
    const cm = join(strict, 'cm');
    mkdirSync(cm);
    writeFileSync(join(cm, 'k'), 'v1');
    const past = new Date(Date.now() - 3_600_000);
    utimesSync(join(cm, 'k'), past, past);
    const got = await classifyCopies([vol(cm, '/etc/cm', true)], {});
    assert.equal(statSync(join(cm, 'k')).atimeMs, past.getTime(), 'create read no file');
    // the file outgrows the bound between create's look and the copy: refused when read, nothing sent
    writeFileSync(join(cm, 'k'), Buffer.alloc(MAX_COPY_FILE_BYTES + 1));
    const sent: Record<string, string>[] = [];
    const decode = (p: Buffer): Record<string, string> => Object.fromEntries(p.subarray(4, 4 + p.readUInt32BE(0)).toString().split('\0').filter(Boolean).map((kv) => kv.split('=', 2) as [string, string]));
    const copies = new PodCopies(async (_gid, payload) => { sent.push(decode(payload)); }, () => {});
    await assert.rejects(copies.add(1, got, 9), /mount \/etc\/cm: a file of its host source is over 1 MiB/);
    assert.deepEqual(sent, []);

    const vols = join(dir, 'pods/u/volumes/kubernetes.io~empty-dir');
    tmpfs(join(vols, 'mem'), 'size=3m');
    mkdirSync(join(vols, 'disk'));
    mkdirSync(join(strict, 'volumes/kubernetes.io~empty-dir/in-tmpfs'), { recursive: true });
    const [mem, disk, inTmpfs] = await classifyCopies([vol(join(vols, 'mem'), '/mem', false), vol(join(vols, 'disk'), '/disk', false), vol(join(strict, 'volumes/kubernetes.io~empty-dir/in-tmpfs'), '/t', false)], {});
    assert.equal(mem!.sizeBytes, 3 << 20, 'medium Memory: its host tmpfs\'s size');
    assert.equal(disk!.sizeBytes, undefined, 'a disk emptyDir: no size in the CRI');
    assert.equal(inTmpfs!.sizeBytes, undefined, 'a directory on some tmpfs is not a tmpfs of its own');
    await assert.rejects(copies.add(2, [mem!], 8), (e: Error) => {
      assert.equal(e.constructor.name, 'FailedPreconditionError');
      assert.match(e.message, /^mount \/mem: its emptyDir is a 3 MiB tmpfs on the host .*protocol 8.*bulkhead-vm setup/);
      return true;
    });
    assert.deepEqual(sent, []);
    await copies.add(3, [mem!, { ...mem!, n: 1, destination: '/mem2' }, disk!], 9);
    assert.deepEqual(sent, [{ op: 'ed', dir: mem!.emptyKey!, size: String(3 << 20) }], 'one sized guest tmpfs, before the create');
    copies.close();
  } finally {
    for (const m of mounts.reverse()) execFileSync('umount', ['-l', m]);
    rmSync(dir, { recursive: true, force: true });
  }
});
