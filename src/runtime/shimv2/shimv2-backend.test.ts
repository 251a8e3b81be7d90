// Naming a shim (runtime_type → binary), and what the kata handler's probe says on a host without
// Kata (this one: no containerd-shim-kata-v2, no usable /dev/kvm, no Kata configuration).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeStaleSocket, resolveShim, shimBinaryName } from './shimv2-backend.ts';
import { createBackend } from '../backends.ts';
import { parseConfig } from '../../daemon/config.ts';
import { defaultPaths } from '../../daemon/paths.ts';
import { silentLogger } from '../../util/log.ts';

test('a runtime type names its shim as containerd does; paths and shim names stay; anything else is refused', () => {
  assert.equal(shimBinaryName('io.containerd.runc.v2'), 'containerd-shim-runc-v2');
  assert.equal(shimBinaryName('io.containerd.kata.v2'), 'containerd-shim-kata-v2');
  assert.equal(shimBinaryName('io.containerd.runsc.v1'), 'containerd-shim-runsc-v1');
  assert.equal(shimBinaryName('/opt/kata/bin/containerd-shim-kata-v2'), '/opt/kata/bin/containerd-shim-kata-v2');
  assert.equal(shimBinaryName('containerd-shim-runc-v2'), 'containerd-shim-runc-v2');
  for (const bad of ['../../bin/sh', 'io.containerd.runc', 'sh', 'io.containerd.a/b.v2', '']) assert.throws(() => shimBinaryName(bad), { code: 'InvalidArgument' }, bad);
  assert.equal(resolveShim('io.containerd.runc.v2'), '/usr/bin/containerd-shim-runc-v2');
});

test('config: a handler names its shim with runtime_type (or binary), not both', () => {
  const cfg = parseConfig('[runtime.handlers.kata]\nbackend = "kata"\nruntime_type = "io.containerd.kata.v2"\n', defaultPaths({}));
  assert.deepEqual(cfg.runtime.handlers.kata, { backend: 'kata', binary: 'io.containerd.kata.v2' });
  assert.throws(() => parseConfig('[runtime.handlers.k]\nbackend = "shimv2"\nbinary = "/x"\nruntime_type = "io.containerd.kata.v2"\n', defaultPaths({})), /both binary and runtime_type/);
});

test('the kata probe names exactly what is missing here', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bh-kata-'));
  try {
    const b = createBackend('kata', { runDir: join(dir, 'run'), logger: silentLogger })!;
    assert.equal(b.isolation, 'vm');
    assert.equal(b.podSandbox.kind, 'sandbox-hosted');
    const p = await b.probe();
    assert.equal(p.available, false);
    assert.match(p.reason!, /containerd-shim-kata-v2 \(not found/);
    assert.match(p.reason!, /Kata configuration file/);
    // this host has no KVM a guest can use (TCG only); where it has, the probe does not name it
    assert.match(p.reason!, /\/dev\/kvm/);
    await assert.rejects(b.createContainer({ id: 'x', spec: {} as never, pod: { podId: 'p', role: 'sandbox' }, logPath: join(dir, 'x.log') }), { code: 'Unavailable' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('bulkhead k8s manifests: a RuntimeClass per available shim handler, with its measured overhead; kata is labelled vm', async () => {
  const { generateManifests } = await import('../../k8s/manifests.ts');
  const { parseHandlerList } = await import('../../policy/handlers.ts');
  const m = generateManifests({
    handlers: parseHandlerList('runc-shim,kata'), image: 'bulkhead/bulkhead:test', namespace: 'bulkhead-system',
    overhead: { version: 1, measuredAt: '2026-12-06T08:07:00Z', handlers: { 'runc-shim': { memoryBytes: 6_800_000, cpuMillicores: 0 } } },
  });
  const rc = (name: string) => m.objects.find((o) => o.kind === 'RuntimeClass' && (o.metadata as { name: string }).name === name) as { handler: string; overhead?: { podFixed: { memory: string } }; metadata: { labels: Record<string, string> } } | undefined;
  assert.equal(rc('runc-shim')?.handler, 'runc-shim');
  assert.equal(rc('runc-shim')?.overhead?.podFixed.memory, '7Mi');
  assert.equal(rc('kata')?.metadata.labels['bulkhead.io/isolation'], 'vm');
  assert.equal(rc('kata')?.overhead, undefined, 'no measurement, no guessed overhead');
});

test('a dead shim\'s socket file is removed; a live socket, a regular file and a relative path are left alone', async () => {
  const { createServer } = await import('node:net');
  const { existsSync, writeFileSync } = await import('node:fs');
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-shimsock-'));
  try {
    const live = join(dir, 'live.sock');
    const srv = createServer((c) => c.end());
    await new Promise<void>((resolve) => srv.listen(live, resolve));
    // a SIGKILLed server leaves its socket file behind, with nothing answering on it
    const dead = join(dir, 'dead.sock');
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(dead)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    child.kill('SIGKILL');
    await new Promise<void>((resolve) => child.once('exit', () => resolve()));
    assert.equal(existsSync(dead), true, 'the killed server left its socket');
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    assert.equal(await removeStaleSocket(`unix://${dead}`), true);
    assert.equal(existsSync(dead), false, 'the dead socket is gone');
    assert.equal(await removeStaleSocket(live), false);
    assert.equal(existsSync(live), true, 'a socket someone answers on stays');
    assert.equal(await removeStaleSocket(file), false);
    assert.equal(existsSync(file), true, 'a regular file stays');
    assert.equal(await removeStaleSocket('relative.sock'), false);
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
