// The driver's in-process runtime calls (ConmonDriverOptions.inProcess): done here, not its call,
// or tried here and left to the runtime, which then runs. A real runtime binary: a shell script
// that records its argv.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../util/log.ts';
import { ConmonDriver, type InProcessRuntime } from './driver.ts';

describe('conmon driver: runtime calls in the daemon\'s process', () => {
  let dir: string;
  let runtime: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-driver-'));
    runtime = join(dir, 'fake-runtime');
    await writeFile(runtime, `#!/bin/sh\necho "$*" >> ${join(dir, 'calls')}\necho spawned\n`);
    await chmod(runtime, 0o755);
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });
  const calls = async (): Promise<string[]> => (await readFile(join(dir, 'calls'), 'utf8').catch(() => '')).split('\n').filter(Boolean);

  it('a call done in-process spawns nothing; one it does not take, and one it tried and left (undefined), spawn the runtime with its global flags', async () => {
    const inProcess: InProcessRuntime = (args) => {
      if (args[0] === 'start') return Promise.resolve('');
      if (args[0] === 'delete') return Promise.resolve(undefined);
      return undefined;
    };
    const d = new ConmonDriver({ runDir: join(dir, 'run'), conmon: 'conmon', runtime: { path: runtime, globalArgs: ['--root', '/r'] }, logger: silentLogger, inProcess });
    assert.equal(await d.runtimeCmd(['start', 'c1']), '', 'done in-process: its (empty) output');
    assert.deepEqual(await calls(), []);
    assert.equal(await d.runtimeCmd(['delete', '--force', 'c1']), 'spawned\n');
    assert.equal(await d.runtimeCmd(['kill', 'c1', 'KILL']), 'spawned\n');
    assert.deepEqual(await calls(), ['--root /r delete --force c1', '--root /r kill c1 KILL']);
  });
});
