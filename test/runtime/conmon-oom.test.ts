// OOMKilled under conmon when conmon missed the OOM event: conmon sends the container's pid (the
// create returns, the start may follow at once) before it watches the cgroup v1 OOM event, so a
// container that hits its memory limit within that window (a loaded host) leaves no `oom` marker.
// The marker is removed here after the exit to stand for that miss (a scheduling window a test cannot
// open at will); the state must still say OOMKilled, from the kills its memory cgroup counted.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RuncBackend } from '../../src/runtime/runc/runc-backend.ts';
import { buildSpec } from '../../src/runtime/spec.ts';
import { silentLogger } from '../../src/util/log.ts';
import { removeTree } from '../../src/cgroup/tree.ts';
import { makeBusyboxRootfs, type RootfsFixture } from '../../harness/rootfs.ts';

describe('conmon: OOMKilled without conmon\'s oom marker', () => {
  let fx: RootfsFixture;
  let backend: RuncBackend;
  let unavailable: string | undefined;
  const suffix = randomBytes(3).toString('hex');
  const cgroupParent = `/bulkhead-test-oom-${suffix}`;
  const id = `t${suffix}-oom`;

  before(async () => {
    fx = await makeBusyboxRootfs('bulkhead-conmon-oom-');
    backend = new RuncBackend({ runDir: join(fx.dir, 'run'), logger: silentLogger });
    const p = await backend.probe();
    if (!p.available) unavailable = p.reason ?? 'unavailable';
  });
  after(async () => {
    await backend?.delete(id).catch(() => {});
    await backend?.close();
    await removeTree(cgroupParent).catch(() => {});
    await fx?.cleanup();
  });

  it('reports oomKilled from the container\'s memory cgroup when conmon wrote no marker', async (t) => {
    if (unavailable) { t.skip(`runc unavailable: ${unavailable}`); return; }
    const spec = await buildSpec({ rootfs: fx.path, cgroupParent, cgroupName: id, command: ['sh', '-c', 'x=a; while true; do x="$x$x"; done'], resources: { memoryLimitBytes: 32 * 1024 * 1024 } });
    await backend.createContainer({ id, spec, pod: { podId: `pod-${id}`, role: 'sandbox' }, logPath: join(fx.dir, `${id}.log`) });
    await backend.start(id);
    const st = await backend.wait(id, AbortSignal.timeout(120_000));
    assert.equal(st.exitCode, 137, JSON.stringify(st));
    const marker = join(fx.dir, 'run', 'containers', id, 'oom');
    rmSync(marker, { force: true });
    assert.ok(!existsSync(marker));
    const again = await backend.state(id);
    assert.equal(again.status, 'stopped');
    assert.equal(again.oomKilled, true, `state without the marker: ${JSON.stringify(again)}`);
  });
});
