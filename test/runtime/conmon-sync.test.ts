// What the driver does when conmon's sync pipe says something other than a pid. conmon never
// sends a malformed line on demand, so conmon here is a stand-in script that writes one (as the
// runtime in conmon-start.test.ts is a stand-in that hangs); the driver, its pipes and the
// processes are real.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConmonDriver } from '../../src/runtime/conmon/driver.ts';
import { silentLogger } from '../../src/util/log.ts';

async function procsWith(needle: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    const cmd = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
    if (cmd.includes(needle)) out.push(Number(p));
  }
  return out;
}

describe('conmon sync pipe: messages that are not a pid', () => {
  let dir = '';
  const id = `sync-${process.pid}`;
  /** A driver whose conmon is `script` and whose runtime says the container runs. */
  const driver = async (name: string, script: string): Promise<ConmonDriver> => {
    const conmon = join(dir, name);
    await writeFile(conmon, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return new ConmonDriver({ runDir: join(dir, 'run'), conmon, runtime: { path: join(dir, 'runtime'), globalArgs: ['--root', dir] }, logger: silentLogger });
  };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulkhead-conmon-sync-'));
    await writeFile(join(dir, 'runtime'), `#!/bin/sh\nfor a; do case $a in state) echo '{"status":"running","pid":1}'; exit 0 ;; delete|kill) exit 0 ;; esac; done\nexit 1\n`, { mode: 0o755 });
    // a container record as createContainer leaves it, for exec to find
    const bundle = join(dir, 'run', 'containers', id);
    await mkdir(bundle, { recursive: true });
    await writeFile(join(bundle, 'meta.json'), JSON.stringify({ id, podId: 'p', role: 'container', logPath: join(dir, 'log'), tty: false, stdin: false, createdAt: new Date().toISOString(), cgroupsPath: '' }));
    await writeFile(join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: dir }, process: { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 }, env: [] } }));
  });
  after(async () => {
    for (const p of await procsWith(dir)) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    await rm(dir, { recursive: true, force: true });
  });

  it('an exec session whose conmon sends a malformed first message fails at once, InternalError naming why', async () => {
    const d = await driver('conmon-garbage', 'echo "pid: 42" >&3; sleep 20');
    const started = Date.now();
    await assert.rejects(d.execInteractive(id, { args: ['true'] }), (e: Error & { code?: string }) =>
      e.code === 'Internal' && /malformed message \(not JSON\)/.test(e.message));
    assert.ok(Date.now() - started < 10_000, `failed after ${Date.now() - started} ms (the session timeout is 60 s)`);
  });

  it('an exec session whose conmon exits before sending the pid fails at once with conmon\'s error', async () => {
    const d = await driver('conmon-dies', 'echo "conmon: cannot do that" >&2; exit 1');
    const started = Date.now();
    await assert.rejects(d.execInteractive(id, { args: ['true'] }), (e: Error) => /cannot do that/.test(e.message));
    assert.ok(Date.now() - started < 10_000, `failed after ${Date.now() - started} ms (the session timeout is 60 s)`);
  });

  it('an exec session whose conmon reports the runtime\'s failure fails with that message', async () => {
    const d = await driver('conmon-fails', `echo '{"data": -1, "message": "exec failed: executable file not found in $PATH"}' >&3; sleep 20`);
    await assert.rejects(d.execInteractive(id, { args: ['nope'] }), (e: Error) => /executable file not found/.test(e.message));
  });

  it('create: a malformed message from conmon is InternalError and nothing is left', async () => {
    const d = await driver('conmon-create', 'echo "{\\"data\\": \\"x\\"}" >&3; sleep 20');
    await assert.rejects(d.createContainer({
      id: `${id}-c`, spec: { ociVersion: '1.0.2', root: { path: dir } } as never, pod: { podId: 'p', role: 'sandbox' }, logPath: join(dir, 'c.log'),
    }), (e: Error & { code?: string }) => e.code === 'Internal' && /"data" is not an integer/.test(e.message));
    assert.deepEqual((await readdir(join(dir, 'run', 'containers'))).filter((n) => n !== id), []);
  });
});
