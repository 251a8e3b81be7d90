// The bundle of the `bulkhead run` path (bundle.ts, bundle-build.ts): built from a copy of the
// sources, used only while every source it was built from is unchanged, importing nothing but
// Node's builtins and the source files it leaves to load lazily. (test/cli/run-path.test.ts runs
// a real `run` through a bundle.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { appendFile } from 'node:fs/promises';
import { buildBundle, VM_SUPERVISOR_BUNDLE } from './bundle-build.ts';
import { BUNDLE_DIR, MANIFEST, freshBundle } from './bundle.ts';

const REPO = join(import.meta.dirname, '..', '..');

test('a bundle is used only while each of its sources is as it was built from: an edit that keeps size and mtime, a removed source, a broken manifest all send the CLI to the sources', { timeout: 120_000 }, async () => {
  const root = await mkdtemp(join(tmpdir(), 'bulkhead-bundle-'));
  try {
    await cp(join(REPO, 'src'), join(root, 'src'), { recursive: true });
    for (const f of ['tsconfig.json', 'package.json']) await cp(join(REPO, f), join(root, f));
    // a whole-second mtime, so that it can be put back exactly after the edit below
    const file = join(root, 'src', 'cli', 'format.ts');
    await utimes(file, 1_700_000_000, 1_700_000_000);
    const r = await buildBundle(root);
    assert.ok(r.built, `not built: ${r.built ? '' : r.reason}`);
    const dir = join(root, BUNDLE_DIR);
    assert.equal(freshBundle(dir, root), 'run.mjs');
    const manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as { inputs: [string][] };
    const inputs = manifest.inputs.map((s) => s[0]);
    assert.ok(inputs.includes('src/cli/run.ts') && inputs.includes('src/cri/client.ts') && inputs.includes('src/cli/main.ts'), inputs.join(' '));
    assert.ok(!inputs.some((p) => /^src\/(engine|runtime|image|daemon\/run)/.test(p)), `daemon modules in the bundle: ${inputs.join(' ')}`);

    // one character changed, then size and mtime put back as they were: the ctime still tells
    const before = await stat(file);
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace(/\bthe\b/, 'thE'));
    await utimes(file, 1_700_000_000, 1_700_000_000);
    const after = await stat(file);
    assert.equal(after.size, before.size);
    assert.equal(after.mtimeMs, before.mtimeMs);
    assert.equal(freshBundle(dir, root), undefined, 'an edited source keeps a stale bundle in use');

    assert.ok((await buildBundle(root)).built);
    assert.equal(freshBundle(dir, root), 'run.mjs', 'rebuilt');
    await rm(join(root, 'src', 'cli', 'log-reader.ts'));
    assert.equal(freshBundle(dir, root), undefined, 'a removed source');

    await writeFile(join(dir, MANIFEST), '{"version":1,"bundle":"../../x.mjs","inputs":[]}');
    assert.equal(freshBundle(dir, root), undefined, 'a manifest that names no inputs or a path elsewhere');
    await writeFile(join(dir, MANIFEST), '{');
    assert.equal(freshBundle(dir, root), undefined, 'an unreadable manifest');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('the bundle imports only Node builtins, and as dynamic imports the source files it leaves lazy (the other commands, the daemon lock reader); each of those exists', { timeout: 120_000 }, async () => {
  const out = await mkdtemp(join(tmpdir(), 'bulkhead-bundle-out-'));
  try {
    const r = await buildBundle(REPO, out);
    assert.ok(r.built, `not built: ${r.built ? '' : r.reason}`);
    const text = await readFile(join(out, 'run.mjs'), 'utf8');
    const statics = [...text.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]!);
    assert.ok(statics.length > 0);
    assert.deepEqual(statics.filter((s) => !s.startsWith('node:')), [], 'static imports of the bundle');
    const dynamics = [...text.matchAll(/\bimport\("([^"]+)"\)/g)].map((m) => m[1]!).filter((s) => !s.startsWith('node:'));
    assert.ok(dynamics.some((s) => s.endsWith('/src/daemon/lock.ts')) && dynamics.some((s) => s.endsWith('/src/cli/ps.ts')), dynamics.join(' '));
    for (const s of dynamics) {
      assert.match(s, /\/src\/(cli\/[\w-]+|daemon\/(run|lock)|util\/log)\.ts$/);
      assert.notEqual(s, '../../src/cli/run.ts');
      assert.ok(existsSync(resolve(out, s)), `${s} from the bundle's directory`);
    }
    // the run path's lazy modules are in it, not loaded a second time from the sources
    assert.match(text, /^\/\/ src\/cli\/stream-client\.ts$/m);
    assert.match(text, /^\/\/ src\/cli\/run\.ts$/m);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test("the microVM supervisors' bundle: the host and _vmd with what they load inlined, the other commands and the asset builder left to the sources; a supervisor is started from it only while it matches the sources", { timeout: 120_000 }, async () => {
  const root = await mkdtemp(join(tmpdir(), 'bulkhead-bundle-vm-'));
  try {
    await cp(join(REPO, 'src'), join(root, 'src'), { recursive: true });
    for (const f of ['tsconfig.json', 'package.json']) await cp(join(REPO, f), join(root, f));
    const r = await buildBundle(root, undefined, VM_SUPERVISOR_BUNDLE);
    assert.ok(r.built, `not built: ${r.built ? '' : r.reason}`);
    const bundle = join(root, 'dist', 'vm', 'supervisor.mjs');
    const text = await readFile(bundle, 'utf8');
    // nothing for Node to strip types from when a supervisor starts (the stripper stays out of it)
    const statics = [...text.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]!);
    assert.deepEqual(statics.filter((s) => !s.startsWith('node:')), [], 'static imports of the bundle');
    const dynamics = [...text.matchAll(/\bimport\("([^"]+)"\)/g)].map((m) => m[1]!).filter((s) => !s.startsWith('node:'));
    for (const s of dynamics) {
      assert.match(s, /\/src\/(vm\/cmd\/(create|start|state|kill|delete|exec|stats|update|features|setup|version)|vm\/cpio|util\/cc)\.ts$/);
      assert.ok(existsSync(resolve(join(root, 'dist', 'vm'), s)), `${s} from the bundle's directory`);
    }
    for (const m of ['src/vm/cmd/vmhost.ts', 'src/vm/cmd/vmd.ts', 'src/vm/vmd.ts', 'src/vm/firecracker.ts', 'src/vm/standby-vmm.ts']) assert.ok(text.includes(`\n// ${m}\n`), `${m} inlined`);
    const run = spawnSync(process.execPath, [bundle, '_vmhost', '--help'], { encoding: 'utf8', env: { ...process.env, NODE_COMPILE_CACHE: '' } });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /^Usage: bulkhead-vm _vmhost/);

    // create starts a supervisor from the module supervisorEntry names
    const { supervisorEntry } = await import(join(root, 'src', 'vm', 'cmd', 'common.ts')) as typeof import('../vm/cmd/common.ts');
    assert.equal(supervisorEntry({}), bundle);
    assert.equal(supervisorEntry({ BULKHEAD_CLI_BUNDLE: '0' }), join(root, 'src', 'vm', 'cli.ts'));
    await appendFile(join(root, 'src', 'vm', 'vmd.ts'), '// edited\n');
    assert.equal(supervisorEntry({}), join(root, 'src', 'vm', 'cli.ts'), 'an edited source keeps a stale bundle in use');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
