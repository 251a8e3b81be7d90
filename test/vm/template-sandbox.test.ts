// Templates with the sandbox container (src/vm/template-sandbox.ts, template.ts): the key and the
// request's split, and which template a pod gets — from template directories laid out as a build
// leaves them (meta.json), so no VM boots here. The real build and clone: test/vm/template.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GuestAssets } from '../../src/vm/assets.ts';
import { MAX_SANDBOX_TEMPLATES, qemuBinaryPath, templateKeys, templatesDir, TemplateStore } from '../../src/vm/template.ts';
import { genericSandboxKv, podSandboxKv, sandboxHash } from '../../src/vm/template-sandbox.ts';

const skip = (() => { try { qemuBinaryPath(); return undefined; } catch { return 'qemu-system-x86_64 is not installed'; } })();

describe('VM templates with the sandbox container', { skip }, () => {
  let dir: string;
  let image: string;
  let assets: GuestAssets;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bh-tplsb-'));
    image = join(dir, 'image.ext4');
    writeFileSync(image, Buffer.alloc(8192, 7));
    for (const f of ['k', 'i']) writeFileSync(join(dir, f), f);
    assets = { dir: join(dir, 'vm'), kernelRelease: 'k', kernel: join(dir, 'k'), initramfs: join(dir, 'i'), agent: '/a', consoleHelper: '/c', shim: '/s', imagesDir: dir };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const kv: [string, string][] = [['arg', '/pause'], ['env', 'PATH=/bin'], ['env', 'HOSTNAME=a'], ['hostname', 'a'], ['hostname_file', 'a'], ['resolv', 'nameserver 10.0.0.1\n'], ['hosts', '10.0.0.2 a\n'], ['memory', '1048576']];
  const size = { memoryMiB: 640, vcpus: 1, accel: 'tcg' as const, nic: false };

  it('splits a sandbox request into its generic part (keyed) and the pod\'s names and files (applied after the restore)', () => {
    assert.deepEqual(genericSandboxKv(kv), [['arg', '/pause'], ['env', 'PATH=/bin'], ['memory', '1048576']]);
    assert.deepEqual(podSandboxKv(kv), [['sb_hostname', 'a'], ['sb_hostname_file', 'a'], ['sb_resolv', 'nameserver 10.0.0.1\n'], ['sb_hosts', '10.0.0.2 a\n']]);
    const other: [string, string][] = kv.map(([k, v]) => [k, k.startsWith('host') || k === 'resolv' || v.startsWith('HOSTNAME=') ? `${v}-b` : v]);
    assert.equal(sandboxHash({ image, kv: other }), sandboxHash({ image, kv }), 'another pod\'s names and files: the same template');
    assert.notEqual(sandboxHash({ image, kv: [...kv, ['env', 'X=1']] }), sandboxHash({ image, kv }), 'another environment: another template');
    assert.notEqual(sandboxHash({ image, kv: kv.map(([k, v]) => [k, k === 'memory' ? '2097152' : v]) }), sandboxHash({ image, kv }), 'other limits: another template');
    const rebuilt = join(dir, 'rebuilt.ext4');
    writeFileSync(rebuilt, Buffer.alloc(8192, 8));
    assert.notEqual(sandboxHash({ image: rebuilt, kv }), sandboxHash({ image, kv }), 'another image: another template');
    const s = { hash: sandboxHash({ image, kv }) };
    const k = templateKeys(assets, { ...size, sandbox: s }, 'level:untrusted', qemuBinaryPath());
    const plain = templateKeys(assets, size, 'level:untrusted', qemuBinaryPath());
    assert.notEqual(k.key, plain.key);
    assert.notEqual(k.family, plain.family, 'not of one family: neither build removes the other');
    assert.equal(k.base, plain.base);
    assert.notEqual(templateKeys(assets, { ...size, sandbox: s }, 'level:trusted', qemuBinaryPath()).key, k.key, 'never across trust levels');
  });

  /** A template directory as a build leaves it (meta.json is what find/get read). */
  function fakeTemplate(scope: string, hash: string | undefined): string {
    const k = templateKeys(assets, { ...size, ...(hash ? { sandbox: { hash } } : {}) }, scope, qemuBinaryPath());
    const d = join(templatesDir(join(dir, 'root')), k.key);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'meta.json'), JSON.stringify({ ...k, kernelRelease: 'k', agentVersion: 7, qemuVersion: 'q', built: '', buildMs: 0, ...(hash ? { sandbox: { hash, gid: 1, pid: 9 } } : {}) }));
    return k.key;
  }

  it(`takes the template with the pod's sandbox container when there is one; with ${MAX_SANDBOX_TEMPLATES} of other requests already, the template without one (no build)`, async () => {
    const store = new TemplateStore({ root: join(dir, 'root'), assets, scope: 'level:untrusted', bootTimeoutMs: 1000 });
    const req = { image, kv: genericSandboxKv(kv) };
    const hash = sandboxHash({ image, kv });
    const mine = fakeTemplate('level:untrusted', hash);
    const lines: string[] = [];
    const t = await store.get({ ...size, sandbox: { hash, ...req } }, (l) => lines.push(l));
    assert.equal(t.key, mine);
    assert.deepEqual(t.sandbox, { hash, gid: 1, pid: 9 });
    // other requests fill the room; a new request then clones the template without a sandbox container
    rmSync(join(templatesDir(join(dir, 'root')), mine), { recursive: true });
    for (let i = 0; i < MAX_SANDBOX_TEMPLATES; i++) fakeTemplate('level:untrusted', `${i}`.repeat(32));
    fakeTemplate('level:trusted', 'f'.repeat(32)); // another scope's does not count
    const plain = fakeTemplate('level:untrusted', undefined);
    const t2 = await store.get({ ...size, sandbox: { hash, ...req } }, (l) => lines.push(l));
    assert.equal(t2.key, plain);
    assert.equal(t2.sandbox, undefined);
    assert.deepEqual(lines.filter((l) => /building/.test(l)), [], 'nothing was built');
  });
});
