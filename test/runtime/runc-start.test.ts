// Starting runc containers with real runc and conmon, through a wrapper that records each runc call:
// a created container is started with no runc call at all (../../src/runtime/runc/runc-start.ts)
// and ends up as runc's own start leaves it: the workload runs (its output in the log, its exit
// code recorded), runc says "running" and the exec fifo is gone. A second start is refused as runc
// refuses it, and a created container whose init was killed is left to runc, which says so.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { RuncBackend } from '../../src/runtime/runc/runc-backend.ts';
import { createdContainer } from '../../src/runtime/runc/runc-start.ts';
import { resolveBinary } from '../../src/runtime/conmon/driver.ts';
import { buildSpec } from '../../src/runtime/spec.ts';
import { run } from '../../src/util/exec.ts';
import type { RootfsFixture } from '../../harness/rootfs.ts';
import { recordedRunc, type RecordedRunc } from './recorded-runc.ts';

describe('runc: starting containers', () => {
  const suffix = randomBytes(3).toString('hex');
  const cgroupParent = `/bulkhead-test-rcstart-${suffix}`;
  let r: RecordedRunc;
  let fx: RootfsFixture;
  let backend: RuncBackend;
  let stateDir: string;
  let made: string[];
  let n = 0;

  before(async () => {
    r = await recordedRunc('bulkhead-rcstart-', cgroupParent);
    ({ fx, backend, stateDir, made } = r);
  });
  after(async () => { await r.close(); });

  const runcCalls = (): Promise<string[]> => r.runcCalls();
  const runcStatus = async (id: string): Promise<string> => {
    const r = await run(resolveBinary('runc'), ['--root', stateDir, 'state', id], { timeoutMs: 30_000 });
    return (JSON.parse(r.stdout) as { status: string }).status;
  };

  async function create(command: string[]): Promise<{ id: string; log: string }> {
    const id = `rcstart-${suffix}-${++n}`;
    const log = join(fx.dir, `${id}.log`);
    const spec = await buildSpec({ rootfs: fx.path, command, cgroupParent, cgroupName: id });
    await backend.createContainer({ id, spec, pod: { podId: id, role: 'sandbox' }, logPath: log });
    made.push(id);
    return { id, log };
  }

  it('a created container is started without a runc call: the workload runs, runc sees it running, the fifo is gone', async () => {
    const { id, log } = await create(['sh', '-c', 'echo started-here; sleep 1000']);
    assert.equal(await runcStatus(id), 'created');
    const before = (await runcCalls()).length;
    await backend.start(id);
    assert.deepEqual((await runcCalls()).slice(before), [], 'no runc call for the start');
    assert.equal(existsSync(join(stateDir, id, 'exec.fifo')), false, 'the exec fifo is removed, as runc start removes it');
    assert.equal(await runcStatus(id), 'running');
    for (let i = 0; i < 200 && !(await readFile(log, 'utf8').catch(() => '')).includes('started-here'); i++) await new Promise((r) => setTimeout(r, 25));
    assert.match(await readFile(log, 'utf8'), /started-here/);
    // started once: a second start is refused (runc itself says why, as before)
    await assert.rejects(backend.start(id));
    await backend.delete(id);
  });

  it('a workload that ends at once has its exit code recorded', async () => {
    const { id } = await create(['sh', '-c', 'exit 7']);
    await backend.start(id);
    assert.equal((await backend.wait(id, AbortSignal.timeout(60_000))).exitCode, 7);
    await backend.delete(id);
  });

  it('a created container whose init process is gone is left to runc, which refuses to start it', async () => {
    const { id } = await create(['true']);
    const st = JSON.parse(await readFile(join(stateDir, id, 'state.json'), 'utf8')) as { init_process_pid: number };
    assert.ok(createdContainer(stateDir, id), 'before the kill it is one to start here');
    process.kill(st.init_process_pid, 'SIGKILL');
    for (let i = 0; i < 200 && createdContainer(stateDir, id); i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(createdContainer(stateDir, id), undefined, 'init gone: not one to start here');
    const before = (await runcCalls()).length;
    await assert.rejects(backend.start(id));
    assert.ok((await runcCalls()).slice(before).some((c) => / start /.test(` ${c} `)), 'runc was asked, and refused');
    await backend.delete(id);
  });

  it('no state, a foreign id or NOTIFY_SOCKET: not one to start here', () => {
    assert.equal(createdContainer(stateDir, 'no-such-container'), undefined);
    assert.equal(createdContainer(stateDir, '../escape'), undefined);
    assert.equal(createdContainer(stateDir, 'x', { NOTIFY_SOCKET: '/run/notify' }), undefined);
  });
});
