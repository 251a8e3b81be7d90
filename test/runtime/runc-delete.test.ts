// Deleting runc containers with real runc and conmon, through a wrapper that records each runc call:
// a container that ended (conmon recorded its exit) is deleted with no runc call at all
// (../../src/runtime/runc/runc-delete.ts) and leaves nothing runc's own delete would not: no state
// directory, no cgroup, runc lists nothing. A running container, and one whose PID namespace is
// not its own, are still deleted by runc itself, with nothing of them left either.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { RuncBackend } from '../../src/runtime/runc/runc-backend.ts';
import { resolveBinary } from '../../src/runtime/conmon/driver.ts';
import { buildSpec } from '../../src/runtime/spec.ts';
import { run } from '../../src/util/exec.ts';
import type { RootfsFixture } from '../../harness/rootfs.ts';
import { recordedRunc, type RecordedRunc } from './recorded-runc.ts';

describe('runc: deleting containers', () => {
  const suffix = randomBytes(3).toString('hex');
  const cgroupParent = `/bulkhead-test-rcdel-${suffix}`;
  let r: RecordedRunc;
  let fx: RootfsFixture;
  let backend: RuncBackend;
  let stateDir: string;
  let made: string[];
  let n = 0;

  before(async () => {
    r = await recordedRunc('bulkhead-rcdel-', cgroupParent);
    ({ fx, backend, stateDir, made } = r);
  });
  after(async () => { await r.close(); });

  const cgroupLeft = (id: string): string[] => readdirSync('/sys/fs/cgroup').filter((h) => existsSync(join('/sys/fs/cgroup', h, cgroupParent, id)));
  const runcCalls = (): Promise<string[]> => r.runcCalls();

  async function make(command: string[], pidPath?: string): Promise<string> {
    const id = `rcdel-${suffix}-${++n}`;
    const spec = await buildSpec({ rootfs: fx.path, command, cgroupParent, cgroupName: id, ...(pidPath ? { namespaces: { pid: { path: pidPath } } } : {}) });
    await backend.createContainer({ id, spec, pod: { podId: id, role: 'sandbox' }, logPath: join(fx.dir, `${id}.log`) });
    made.push(id);
    await backend.start(id);
    return id;
  }

  async function nothingLeft(id: string): Promise<void> {
    assert.equal(existsSync(join(stateDir, id)), false, 'no runc state directory');
    assert.deepEqual(cgroupLeft(id), [], 'no cgroup directory');
    const listed = await run(resolveBinary('runc'), ['--root', stateDir, 'list', '-q'], { timeoutMs: 30_000 });
    assert.ok(!listed.stdout.split('\n').includes(id), 'runc lists nothing of it');
    await assert.rejects(backend.state(id), { code: 'NotFound' });
  }

  it('a container that ended is deleted without a runc call, and nothing of it is left', async () => {
    const id = await make(['true']);
    assert.equal((await backend.wait(id, AbortSignal.timeout(60_000))).exitCode, 0);
    assert.ok(cgroupLeft(id).length > 0, 'runc made the container\'s cgroup (what the delete must remove)');
    const before = (await runcCalls()).length;
    await backend.delete(id);
    assert.deepEqual((await runcCalls()).slice(before), [], 'no runc call for the delete');
    await nothingLeft(id);
    await backend.delete(id); // idempotent (runc then says it does not exist)
  });

  it('a running container, and an ended one that shares a PID namespace, are deleted by runc itself', async () => {
    const running = await make(['sleep', '1000']);
    let before = (await runcCalls()).length;
    await backend.delete(running);
    assert.ok((await runcCalls()).slice(before).some((c) => / delete --force /.test(` ${c} `)), 'runc deleted the running container');
    await nothingLeft(running);

    // a PID namespace not its own: other processes in it may outlive the container's init (runc kills them)
    const holder = await make(['sleep', '1000']);
    const shared = await make(['true'], `/proc/${(await backend.state(holder)).pid}/ns/pid`);
    assert.equal((await backend.wait(shared, AbortSignal.timeout(60_000))).exitCode, 0);
    before = (await runcCalls()).length;
    await backend.delete(shared);
    assert.ok((await runcCalls()).slice(before).some((c) => / delete --force /.test(` ${c} `)), 'runc deleted the container of a shared PID namespace');
    await nothingLeft(shared);
    await backend.delete(holder);
  });
});
