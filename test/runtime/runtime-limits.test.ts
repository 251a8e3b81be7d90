// Nested timeouts: the daemon's limit for one runtime call wraps the runtime's own limits, so it is
// derived from them (plus a margin) and a hit names the setting to change. For bulkhead-vm that is
// its VM boot timeout: a `start` may take a boot's time, and the daemon's fixed 60 s once cut a
// booted microVM pod's start short of bulkhead-vm's own 120 s. A fake bulkhead-vm (a shell script
// whose `start` sleeps) with small boot timeouts shows it, without depending on the machine's speed.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DeadlineExceededError } from '../../src/errors.ts';
import { MicrovmBackend, vmRuntimeLimits } from '../../src/runtime/microvm/microvm-backend.ts';
import { DEFAULT_RUNTIME_LIMITS } from '../../src/runtime/conmon/shared.ts';
import { silentLogger } from '../../src/util/log.ts';
import { podVmReadyMs, templateBuildMs } from '../../src/vm/limits.ts';

describe('runtime-call limits follow the runtime\'s own', () => {
  let dir: string;
  const saved = process.env.BULKHEAD_VM_IN_PROCESS;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bulkhead-limits-'));
    // a runtime binary named by the handler runs as a process (not in the daemon's)
    delete process.env.BULKHEAD_VM_IN_PROCESS;
  });
  after(() => {
    if (saved !== undefined) process.env.BULKHEAD_VM_IN_PROCESS = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  /** A microvm backend over a fake bulkhead-vm whose `start` takes `startSeconds`, with a created container `c1`. */
  function fakeVm(name: string, bootTimeoutMs: number, startSeconds: number): MicrovmBackend {
    const bin = join(dir, `${name}-bulkhead-vm`);
    writeFileSync(bin, `#!/bin/sh\nfor a in "$@"; do if [ "$a" = start ]; then exec sleep ${startSeconds}; fi; done\nexit 0\n`);
    chmodSync(bin, 0o755);
    const runDir = join(dir, name);
    const b = new MicrovmBackend({ runDir, logger: silentLogger, binary: bin, assetsRoot: dir, runtimeArgs: ['--boot-timeout', String(bootTimeoutMs)] });
    mkdirSync(join(runDir, 'containers', 'c1'), { recursive: true });
    writeFileSync(join(runDir, 'containers', 'c1', 'meta.json'), JSON.stringify({ id: 'c1', podId: 'p1', role: 'sandbox', logPath: join(dir, 'c1.log'), tty: false, stdin: false, createdAt: new Date().toISOString(), cgroupsPath: '' }));
    return b;
  }

  it('the microvm handler\'s limits are derived from bulkhead-vm\'s boot timeout: never below what bulkhead-vm itself waits', () => {
    const def = vmRuntimeLimits([], {});
    assert.ok(def.callMs > 120_000, `a start may take the default boot timeout (120 s) and more: ${def.callMs}`);
    assert.ok(def.createMs > 120_000 + 30_000 + 120_000, `a create waits for the pod VM (boot + 30 s) and its container supervisor (120 s): ${def.createMs}`);
    // a pod VM that may be a clone may first build its template (or wait for another's build):
    // boot, the sandbox container's start, the save; then the clone's restore and identity
    assert.ok(templateBuildMs(120_000) >= 2 * 120_000 + 80_000, 'a template build is allowed its steps\' limits');
    assert.ok(podVmReadyMs(120_000, true) > templateBuildMs(120_000) + 2 * 30_000, 'a templated pod VM\'s start is allowed a build and a clone\'s start');
    assert.ok(def.createMs > podVmReadyMs(120_000, true) + 120_000, 'and a create that much and its supervisor\'s start');
    const long = vmRuntimeLimits(['--root', '/x', '--boot-timeout', '600000'], {});
    assert.ok(long.callMs > 600_000 && long.createMs > 600_000 + 150_000, 'a longer boot timeout raises them');
    assert.ok(vmRuntimeLimits([], { BULKHEAD_VM_BOOT_TIMEOUT_MS: '300000' }).callMs > 300_000, 'read from the environment as bulkhead-vm reads it');
    assert.match(long.setting, /--boot-timeout/);
    assert.throws(() => vmRuntimeLimits(['--boot-timeout', 'soon'], {}), /boot-timeout/, 'a boot timeout that is no number is refused, named');
    assert.equal(DEFAULT_RUNTIME_LIMITS.callMs, 60_000, 'other runtimes keep the daemon\'s 60 s');
  });

  it('a start slower than its limit fails soon after the boot timeout, naming the boot timeout as the setting to change', async () => {
    const b = fakeVm('short', 1000, 30);
    const t0 = Date.now();
    await assert.rejects(b.start('c1'), (e: unknown) => {
      assert.ok(e instanceof DeadlineExceededError, String(e));
      assert.match(e.message, /start/);
      assert.match(e.message, /boot timeout, now 1000 ms/);
      assert.match(e.message, /--boot-timeout/);
      return true;
    });
    assert.ok(Date.now() - t0 < 25_000, `ended at the derived limit (~2 s), not at 60 s nor the fake's 30 s: ${Date.now() - t0} ms`);
  });

  it('a start that takes longer than a shorter boot timeout but within this one succeeds', async () => {
    // 2 s of start against a 20 s boot timeout: the limit (25 s) leaves the machine's speed out of it
    await fakeVm('long', 20_000, 2).start('c1');
  });
});
