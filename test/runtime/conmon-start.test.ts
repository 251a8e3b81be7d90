// A container start that times out or is aborted kills what it started (issue #12): conmon (the
// process spawned and the one it daemonizes into) and the runtime it runs. The runtime here is a
// stand-in that hangs in `create` (a hung runtime is a fault that cannot be caused on demand with
// runc); conmon is the real one.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConmonDriver } from '../../src/runtime/conmon/driver.ts';
import { silentLogger } from '../../src/util/log.ts';

async function procsWith(needle: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    const cmd = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
    const stat = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    if (cmd.includes(needle) && !/\) Z /.test(stat)) out.push(`${p} ${cmd}`);
  }
  return out;
}

describe('conmon start that does not finish', () => {
  let dir = '';
  after(async () => {
    for (const p of await procsWith(dir)) { try { process.kill(Number(p.split(' ')[0]), 'SIGKILL'); } catch { /* gone */ } }
    await rm(dir, { recursive: true, force: true });
  });

  it('aborted while the runtime hangs in create: conmon and the runtime are killed, the bundle removed', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-conmon-start-'));
    const runtime = join(dir, 'hung-runtime');
    // every call names the run dir in its arguments (--root), so its processes can be found
    await writeFile(runtime, '#!/bin/sh\nfor a; do case $a in create) while :; do sleep 1; done ;; delete|kill) exit 0 ;; esac; done\nexit 1\n', { mode: 0o755 });
    const driver = new ConmonDriver({ runDir: join(dir, 'run'), conmon: 'conmon', runtime: { path: runtime, globalArgs: ['--root', join(dir, 'state')] }, logger: silentLogger });
    const id = `hung-${process.pid}`;
    const started = Date.now();
    await assert.rejects(driver.createContainer({
      id, spec: { ociVersion: '1.0.2', root: { path: dir } } as never, pod: { podId: 'p', role: 'sandbox' },
      logPath: join(dir, 'ctr.log'), signal: AbortSignal.timeout(1500),
    }), { code: 'Aborted' });
    assert.ok(Date.now() - started < 30_000);
    assert.deepEqual(await procsWith(dir), [], 'nothing the start began is left running');
    assert.deepEqual(await readdir(join(dir, 'run', 'containers')), []);
  });
});
