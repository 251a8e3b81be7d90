// buildSpec details that a runtime may not normalise itself (gVisor keeps what the spec says).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSpec } from './spec.ts';

const root = await mkdtemp(join(tmpdir(), 'bulkhead-spec-'));
after(async () => { await rm(root, { recursive: true, force: true }); });
await mkdir(join(root, 'etc'));
await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
await writeFile(join(root, 'etc/group'), 'root:x:0:\napp:x:1000:\nextra:x:50000:app\n');

test('additional gids are sorted (image groups and supplementalGroups), like setgroups() keeps them', async () => {
  const spec = await buildSpec({ rootfs: root, image: { User: '1000' }, command: ['true'], supplementalGroups: [1234], cgroupParent: '/bulkhead-test', cgroupName: 'x' });
  assert.deepEqual(spec.process?.user, { uid: 1000, gid: 1000, additionalGids: [1234, 50000] });
});

test('rootfs propagation follows the mounts: rshared for a bidirectional mount, rslave for host-to-container', async () => {
  const base = { rootfs: root, command: ['true'], cgroupParent: '/bulkhead-test', cgroupName: 'x' };
  assert.equal((await buildSpec(base)).linux?.rootfsPropagation, undefined);
  const slave = await buildSpec({ ...base, mounts: [{ containerPath: '/a', hostPath: '/tmp', propagation: 'rslave' }] });
  assert.equal(slave.linux?.rootfsPropagation, 'rslave');
  const shared = await buildSpec({ ...base, mounts: [{ containerPath: '/a', hostPath: '/tmp', propagation: 'rslave' }, { containerPath: '/b', hostPath: '/tmp', propagation: 'rshared' }] });
  assert.equal(shared.linux?.rootfsPropagation, 'rshared');
  assert.ok(shared.mounts?.find((m) => m.destination === '/b')?.options?.includes('rshared'));
});

test('container paths of mounts and devices are absolute and normalized: ".." cannot climb above the container root; "/" itself is refused', async () => {
  const base = { rootfs: root, command: ['true'], cgroupParent: '/bulkhead-test', cgroupName: 'x' };
  const spec = await buildSpec({ ...base, mounts: [{ containerPath: '/../../../etc/x', hostPath: '/tmp', propagation: 'private' }], devices: [{ containerPath: '/dev/../../../dev/null2', hostPath: '/dev/null', permissions: 'rw' }] });
  assert.ok(spec.mounts?.some((m) => m.destination === '/etc/x'));
  assert.equal(spec.linux?.devices?.[0]?.path, '/dev/null2');
  await assert.rejects(buildSpec({ ...base, mounts: [{ containerPath: '/..', hostPath: '/tmp', propagation: 'private' }] }), /container root/);
  await assert.rejects(buildSpec({ ...base, mounts: [{ containerPath: 'etc/x', hostPath: '/tmp', propagation: 'private' }] }), /absolute/);
  await assert.rejects(buildSpec({ ...base, devices: [{ containerPath: 'dev/x', hostPath: '/dev/null', permissions: 'rw' }] }), /absolute/);
});
