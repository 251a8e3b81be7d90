// One builder per VM template (src/vm/template.ts, its lock src/image/lock.ts), without QEMU: a pod
// supervisor that finds another's build of its template under way waits for it and clones what it
// made, never building one of its own; a builder that died mid-build leaves a stale lock, which the
// next taker takes over (its half-made build removed) instead of waiting for it. The "builder" here
// is the test, holding the lock as another process would; the store's own build would fail at once
// (its QEMU is /bin/true), so a build where none belongs shows.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GuestAssets } from '../../src/vm/assets.ts';
import { qemuBinaryPath, templateKeys, templatesDir, TemplateStore } from '../../src/vm/template.ts';
import type { TemplateRequest } from '../../src/vm/vmm.ts';
import { procStat } from '../../src/util/proc.ts';

describe('VM template builds: one builder per template', () => {
  let dir: string;
  let assets: GuestAssets;
  const scope = 'level:untrusted';
  const req: TemplateRequest = { memoryMiB: 256, vcpus: 1, accel: 'tcg', nic: false };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bulkhead-tpl-lock-'));
    const vm = join(dir, 'assets', 'vm');
    mkdirSync(vm, { recursive: true });
    writeFileSync(join(vm, 'kernel'), 'k');
    writeFileSync(join(vm, 'initramfs.cpio'), 'i');
    assets = { dir: vm, kernelRelease: 'test', kernel: join(vm, 'kernel'), initramfs: join(vm, 'initramfs.cpio'), agent: '', consoleHelper: '', shim: '', imagesDir: join(vm, 'images') };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function store(root: string): TemplateStore {
    return new TemplateStore({ root, assets, scope, bootTimeoutMs: 1000, binary: '/bin/true' });
  }

  it('a start that finds another\'s build of its template under way waits for it and takes that template; it builds none', async () => {
    const root = join(dir, 'wait');
    const k = templateKeys(assets, req, scope, qemuBinaryPath('/bin/true'));
    const tdir = templatesDir(root);
    mkdirSync(tdir, { recursive: true });
    // the other builder: a live process holding the template's lock
    const builder = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      // caught between making its lock file and writing itself into it (the race two concurrent pods
      // once lost: the waiter read the empty file as stale, removed it, and both built)
      writeFileSync(join(tdir, `${k.key}.lock`), '');
      const said: string[] = [];
      let settled = false;
      const got = store(root).get(req, (l) => said.push(l)).finally(() => { settled = true; });
      got.catch(() => {});
      await new Promise((r) => setTimeout(r, 300));
      writeFileSync(join(tdir, `${k.key}.lock`), `${builder.pid} ${procStat(builder.pid!)!.startTime}\n`);
      // polled: however long the build takes, the waiter waits (up to the build's own limit)
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(settled, false, `the start waits for the build under way: ${said.join('; ')}`);
      // the build finishes: the template in place, then the lock released
      mkdirSync(join(tdir, k.key));
      writeFileSync(join(tdir, k.key, 'meta.json'), JSON.stringify({ ...k, kernelRelease: 'test', agentVersion: 1, qemuVersion: 'test', built: new Date().toISOString(), buildMs: 1 }));
      unlinkSync(join(tdir, `${k.key}.lock`));
      const t = await got;
      assert.equal(t.key, k.key, 'the other\'s template');
      assert.deepEqual(said.filter((l) => /building/.test(l)), [], 'no build of its own');
    } finally {
      builder.kill('SIGKILL');
    }
  });

  it('a builder that died mid-build leaves a stale lock: the next start takes it over and builds, its half-made build removed', async () => {
    const root = join(dir, 'stale');
    const k = templateKeys(assets, req, scope, qemuBinaryPath('/bin/true'));
    const tdir = templatesDir(root);
    mkdirSync(join(tdir, `.build-${k.key}-dead`), { recursive: true });
    const builder = spawn('sleep', ['60'], { stdio: 'ignore' });
    const start = procStat(builder.pid!)!.startTime;
    builder.kill('SIGKILL');
    await new Promise((r) => builder.once('exit', r));
    writeFileSync(join(tdir, `${k.key}.lock`), `${builder.pid} ${start}\n`);
    const said: string[] = [];
    // its own build fails (QEMU is /bin/true here): what counts is that it built, not waited
    await assert.rejects(Promise.race([store(root).get(req, (l) => said.push(l)), new Promise((_, rej) => setTimeout(() => rej(new Error('still waiting for a dead builder\'s lock')), 20_000))]), (e: Error) => !/still waiting/.test(e.message));
    assert.ok(said.some((l) => /building VM template/.test(l)), `it built: ${said.join('; ')}`);
    assert.deepEqual(readdirSync(tdir).filter((n) => n.startsWith('.build-')), [], 'the dead builder\'s half-made build is gone, and its own failed one');
    assert.equal(existsSync(join(tdir, `${k.key}.lock`)), false, 'the lock is released');
  });
});
