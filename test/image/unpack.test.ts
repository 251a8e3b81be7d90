// The malicious-layer battery: each crafted image must fail with a clear error naming the entry,
// leave a canary outside the root untouched, and leave no snapshot or temp dir behind.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir, readFile, lstat, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedRegistry } from '../../harness/registry.ts';
import { buildLayer, buildTar, layerFromTar, pushImage, sha256, type TarEntry } from '../../harness/images.ts';
import { createImageService } from '../../src/image/image-service.ts';
import { silentLogger } from '../../src/util/log.ts';
import { run } from '../../src/util/exec.ts';

const reg = await sharedRegistry();
const root = await mkdtemp(join(tmpdir(), 'bulkhead-unpack-'));
const canaryDir = await mkdtemp(join(tmpdir(), 'bulkhead-canary-'));
const canary = join(canaryDir, 'canary');
await writeFile(canary, 'canary\n');
const svc = await createImageService({
  root, registries: { mirrors: {}, insecure: [] }, logger: silentLogger,
  limits: { maxEntries: 100, maxBytes: 1024 * 1024, maxDepth: 16, maxPathLength: 200, maxLayers: 3 },
});
after(async () => { await svc.close(); await rm(root, { recursive: true, force: true }); await rm(canaryDir, { recursive: true, force: true }); });

// from inside <root>/snapshots/tmp/<x>/fs, enough ".." to reach "/"
const up = '../'.repeat(12);
const rel = canary.slice(1);
let n = 0;

async function push(layers: TarEntry[][], extra: Parameters<typeof pushImage>[3] extends infer O ? Partial<O> : never = {}): Promise<string> {
  const repo = `test/evil-${++n}`;
  const p = await pushImage(reg, repo, 'latest', { layers: layers.map((l) => buildLayer(l)), ...extra });
  return p.ref;
}

async function assertClean(before: number): Promise<void> {
  assert.equal(await readFile(canary, 'utf8'), 'canary\n', 'canary untouched');
  assert.deepEqual(await readdir(canaryDir), ['canary'], 'nothing created beside the canary');
  assert.deepEqual(await readdir(join(root, 'snapshots/tmp')), [], 'no temp unpack left');
  await svc.gc(); // complete lower layers of a rejected image are unreferenced, and go
  assert.equal((await readdir(join(root, 'snapshots/by-chain'))).length, before, 'no new snapshot');
  assert.deepEqual((await readdir(join(root, 'content/ingest'))), [], 'no partial blob');
}

const cases: { name: string; layers: TarEntry[][]; error: RegExp; code?: string }[] = [
  { name: '".." escape', layers: [[{ type: 'file', path: `${up}${rel}`, content: 'pwned' }]], error: /escapes the root/ },
  { name: '".." in the middle', layers: [[{ type: 'dir', path: 'a/' }, { type: 'file', path: 'a/../../x', content: 'x' }]], error: /escapes the root/ },
  { name: 'symlinked parent in the same layer', layers: [[{ type: 'symlink', path: 'evil', linkname: canaryDir }, { type: 'file', path: 'evil/canary', content: 'pwned' }]], error: /parent directory "evil" is a symlink in this layer/ },
  { name: 'relative symlinked parent in the same layer', layers: [[{ type: 'symlink', path: 'evil', linkname: up + canaryDir.slice(1) }, { type: 'file', path: 'evil/new', content: 'pwned' }]], error: /parent directory "evil" is a symlink/ },
  { name: 'symlinked parent in a lower layer', layers: [[{ type: 'symlink', path: 'evil', linkname: canaryDir }], [{ type: 'file', path: 'evil/canary', content: 'pwned' }]], error: /parent directory "evil" is a symlink in a lower layer/ },
  { name: 'hard link to a file outside the root', layers: [[{ type: 'link', path: 'h', linkname: `${up}${rel}` }]], error: /escapes the root/ },
  { name: 'hard link through a symlinked directory', layers: [[{ type: 'symlink', path: 'd', linkname: canaryDir }, { type: 'link', path: 'h', linkname: 'd/canary' }]], error: /not a real directory/ },
  { name: 'hard link to an escaping symlink', layers: [[{ type: 'symlink', path: 's', linkname: `${up}${rel}` }, { type: 'link', path: 'h', linkname: 's' }]], error: /symlink escaping the root/ },
  { name: 'hard link to a missing target', layers: [[{ type: 'link', path: 'h', linkname: 'nope' }]], error: /does not exist/ },
  { name: '"." replaced by a symlink', layers: [[{ type: 'symlink', path: './', linkname: canaryDir }]], error: /replaces the root/ },
  { name: '"/" replaced by a symlink', layers: [[{ type: 'symlink', path: '/', linkname: canaryDir }]], error: /replaces the root/ },
  { name: 'bare .wh.', layers: [[{ type: 'file', path: 'x/.wh.' }]], error: /bare whiteout/ },
  { name: 'unknown .wh..wh. entry', layers: [[{ type: 'file', path: '.wh..wh.plnk' }]], error: /unknown whiteout/ },
  { name: '/proc replaced by a symlink', layers: [[{ type: 'symlink', path: 'proc', linkname: canaryDir }]], error: /replaces \/proc/ },
  { name: '/dev replaced by a hard link', layers: [[{ type: 'file', path: 'f', content: 'x' }, { type: 'link', path: '/dev', linkname: 'f' }]], error: /replaces \/dev/ },
  { name: 'too many entries', layers: [Array.from({ length: 150 }, (_, i): TarEntry => ({ type: 'file', path: `f${i}`, content: '' }))], error: /more than 100 entries/ },
  { name: 'too big uncompressed (zip bomb)', layers: [[{ type: 'file', path: 'zeros', content: Buffer.alloc(3 * 1024 * 1024) }]], error: /larger than 1048576 bytes uncompressed, the cap of one layer/, code: 'ResourceExhausted' },
  { name: 'too deep', layers: [[{ type: 'file', path: 'a/'.repeat(20) + 'f', content: '' }]], error: /deeper than 16/ },
  { name: 'path too long', layers: [[{ type: 'file', path: 'x'.repeat(250), content: '' }]], error: /longer than 200 bytes/ },
  { name: 'too many layers', layers: [[{ type: 'file', path: 'a' }], [{ type: 'file', path: 'b' }], [{ type: 'file', path: 'c' }], [{ type: 'file', path: 'd' }]], error: /4 layers, more than the 3 allowed/, code: 'ResourceExhausted' },
];

for (const c of cases) {
  test(`rejects: ${c.name}`, async () => {
    const before = (await readdir(join(root, 'snapshots/by-chain'))).length;
    const ref = await push(c.layers);
    await assert.rejects(svc.pull(ref), (e: Error & { code?: string }) => {
      assert.equal(e.code, c.code ?? 'InvalidArgument', e.message);
      assert.match(e.message, c.error);
      if (!c.code) assert.match(e.message, /entry "|layer sha256:/);
      return true;
    });
    assert.equal(await svc.get(ref), undefined);
    await assertClean(before);
  });
}

test('rejects: diffID mismatch with the config', async () => {
  const before = (await readdir(join(root, 'snapshots/by-chain'))).length;
  const ref = await push([[{ type: 'file', path: 'a', content: 'a' }]], { diffIds: [sha256('something else')] });
  await assert.rejects(svc.pull(ref), /does not match the image config's diff_id/);
  await assertClean(before);
});

test('absolute paths are normalised inside the root; a symlink is replaced, not written through', async () => {
  const ref = await push([[
    { type: 'file', path: `/${rel}`, content: 'inside\n' },
    { type: 'symlink', path: 'f', linkname: canary },
    { type: 'file', path: 'f', content: 'replaced\n' },
    { type: 'file', path: 'o', content: 'o', xattrs: { 'trusted.overlay.opaque': 'y', 'user.ok': '1' } },
    { type: 'char', path: 'dev-null', devmajor: 1, devminor: 3 },
  ]]);
  const img = await svc.pull(ref);
  const [fs] = await svc.viewRootfs(img.id);
  assert.equal(await readFile(join(fs!, rel), 'utf8'), 'inside\n');
  assert.ok((await lstat(join(fs!, 'f'))).isFile());
  assert.equal(await readFile(join(fs!, 'f'), 'utf8'), 'replaced\n');
  assert.equal(await readFile(canary, 'utf8'), 'canary\n');
  const trusted = await run('getfattr', ['-n', 'trusted.overlay.opaque', join(fs!, 'o')]);
  assert.notEqual(trusted.code, 0, 'trusted.* xattrs from an image are dropped');
  assert.equal((await run('getfattr', ['--only-values', '-n', 'user.ok', join(fs!, 'o')])).stdout, '1');
  await assert.rejects(stat(join(fs!, 'dev-null')), { code: 'ENOENT' }, 'device nodes are not created');
});

// Layers whose tar stream stops early (umoci writes such layers; containerd accepts them). The
// diffID covers exactly the published bytes, so a clean end at an entry boundary is accepted;
// an entry cut short is not completed with zeros.
const tail = (size: number): number => (512 - (size % 512)) % 512;
const lastBody = 'last file, 36 bytes, not a multiple\n';
const cutLayers: { name: string; entries: TarEntry[]; cut: (tar: Buffer) => Buffer }[] = [
  { name: 'no end-of-archive blocks', entries: [{ type: 'dir', path: 'd/' }, { type: 'file', path: 'd/last', content: lastBody }], cut: (t) => t.subarray(0, t.length - 1024) },
  { name: 'last entry not padded to 512', entries: [{ type: 'dir', path: 'd/' }, { type: 'file', path: 'd/last', content: lastBody }], cut: (t) => t.subarray(0, t.length - 1024 - tail(lastBody.length)) },
  { name: 'pax-named last entry not padded', entries: [{ type: 'file', path: 'p/' + 'n'.repeat(150), content: lastBody }], cut: (t) => t.subarray(0, t.length - 1024 - tail(lastBody.length)) },
  { name: 'end-of-archive block cut short', entries: [{ type: 'file', path: 'last', content: lastBody }], cut: (t) => t.subarray(0, t.length - 700) },
];
for (const c of cutLayers) {
  test(`accepts a layer that ends cleanly but early: ${c.name}`, async () => {
    const layer = layerFromTar(c.cut(buildTar(c.entries)));
    const ref = (await pushImage(reg, `test/cut-${++n}`, 'latest', { layers: [layer] })).ref;
    const img = await svc.pull(ref);
    const [fs] = await svc.viewRootfs(img.id);
    const last = c.entries[c.entries.length - 1]!;
    assert.equal(await readFile(join(fs!, last.path), 'utf8'), lastBody);
  });
}

// Layout: header "d/" [0,512), header "d/last" [512,1024), its 637 data bytes from 1024, padding, end blocks.
const truncated: { name: string; cut: (tar: Buffer) => Buffer; error: RegExp }[] = [
  { name: 'last entry data shorter than its header size', cut: (t) => t.subarray(0, 1024 + 632), error: /ends inside entry "d\/last": 5 bytes of its data are missing/ },
  { name: 'last entry data cut at a block boundary', cut: (t) => t.subarray(0, 1024 + 512), error: /ends inside entry "d\/last": 125 bytes of its data are missing/ },
  { name: 'stream cut inside an entry header', cut: (t) => t.subarray(0, 512 + 100), error: /ends inside an entry header/ },
];
for (const c of truncated) {
  test(`rejects: truncated layer, ${c.name}`, async () => {
    const before = (await readdir(join(root, 'snapshots/by-chain'))).length;
    const tar = c.cut(buildTar([{ type: 'dir', path: 'd/' }, { type: 'file', path: 'd/last', content: 'x'.repeat(637) }]));
    const layer = layerFromTar(tar);
    const ref = (await pushImage(reg, `test/trunc-${++n}`, 'latest', { layers: [layer] })).ref;
    await assert.rejects(svc.pull(ref), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'InvalidArgument', e.message);
      assert.match(e.message, c.error);
      assert.match(e.message, /truncated layer/);
      return true;
    });
    await assertClean(before);
  });
}
