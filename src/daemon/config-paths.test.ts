// The [runtime] settings that bound what paths a pod may name, and the daemon's own protected paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from './config.ts';
import { daemonProtectedPaths, INSTALL_DIR, withRealPaths } from '../policy/protected-paths.ts';

const paths = { root: '/var/lib/bulkhead', runDir: '/run/bulkhead', socket: '/run/bulkhead/cri.sock', config: '/etc/bulkhead/config.toml' };

test('runtime path settings: defaults, overrides, and refusals naming the key', () => {
  const d = parseConfig('', paths).runtime;
  assert.equal(d.podLogRoot, '/var/log/pods');
  assert.deepEqual(d.cgroupRoots, ['/bulkhead', '/kubepods']);
  assert.equal(d.seccompProfileRoot, '');
  const o = parseConfig('[runtime]\npod_log_root = "/srv/logs"\ncgroup_roots = ["/kubepods", "/tenants"]\nseccomp_profile_root = "/etc/seccomp"\n', paths).runtime;
  assert.deepEqual([o.podLogRoot, o.cgroupRoots, o.seccompProfileRoot], ['/srv/logs', ['/kubepods', '/tenants'], '/etc/seccomp']);
  assert.throws(() => parseConfig('[runtime]\npod_log_root = "logs"\n', paths), /runtime\.pod_log_root must be an absolute path/);
  assert.throws(() => parseConfig('[runtime]\nseccomp_profile_root = "/a/../b"\n', paths), /runtime\.seccomp_profile_root/);
  assert.throws(() => parseConfig('[runtime]\ncgroup_roots = ["/"]\n', paths), /cgroup_roots must not contain \//);
});

test('the daemon\'s protected paths: root, run dir, socket, config, policy file, cache, install dir, by name and real path', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-protected-'));
  try {
    await mkdir(join(dir, 'real-root'));
    await symlink(join(dir, 'real-root'), join(dir, 'root'));
    const p = daemonProtectedPaths({ root: join(dir, 'root') + '/', runDir: join(dir, 'run'), socket: join(dir, 'run', 'cri.sock'), config: join(dir, 'c.toml'), policyFile: '' });
    for (const want of [join(dir, 'root'), join(dir, 'real-root'), join(dir, 'run'), join(dir, 'run', 'cri.sock'), join(dir, 'c.toml'), '/var/cache/bulkhead', INSTALL_DIR]) {
      assert.ok(p.includes(want), `${want} in ${p.join(', ')}`);
    }
    assert.ok(!p.includes('/') && !p.includes(''), 'never / itself (that would refuse every path)');
    // what the mount-time check compares with real paths: a symlinked kubelet root by both names
    assert.deepEqual(withRealPaths([join(dir, 'root'), join(dir, 'missing')]), [join(dir, 'root'), join(dir, 'real-root'), join(dir, 'missing')]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('registries.mirror_fallback: unset by default (the client falls back, as docker does), a boolean when set, refused otherwise', () => {
  assert.equal(parseConfig('', paths).registries.mirrorFallback, undefined);
  assert.equal(parseConfig('[registries]\nmirror_fallback = false\n', paths).registries.mirrorFallback, false);
  assert.throws(() => parseConfig('[registries]\nmirror_fallback = "no"\n', paths), /registries\.mirror_fallback must be true or false/);
});

test('a key no part reads is an unknown key, not silently ignored ([webhook] and runtime.pause_image were accepted and never read)', () => {
  assert.throws(() => parseConfig('[webhook]\nlisten = "0.0.0.0:443"\n', paths), /unknown key webhook/);
  assert.throws(() => parseConfig('[runtime]\npause_image = "registry.k8s.io/pause:3.9"\n', paths), /unknown key runtime\.pause_image/);
});
