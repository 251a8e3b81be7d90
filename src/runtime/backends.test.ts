import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backendKinds, catalogKinds, configuredKinds, createBackend, kindIsolation, kindTools } from './backends.ts';
import { silentLogger } from '../util/log.ts';
import { defaultConfig } from '../daemon/config.ts';
import { BACKEND_ISOLATION, DEFAULT_HANDLERS } from '../policy/handlers.ts';
import { defaultPaths } from '../daemon/paths.ts';

test('every kind of the registry builds a backend whose isolation is the one the registry lists, with a pod strategy', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulkhead-kinds-'));
  try {
    for (const kind of backendKinds()) {
      const b = createBackend(kind, { runDir: join(dir, kind), logger: silentLogger });
      assert.ok(b, kind);
      assert.equal(b.isolation, kindIsolation(kind), `${kind}: isolation`);
      assert.ok(['namespaces-joined', 'sandbox-hosted'].includes(b.podSandbox.kind), `${kind}: pod strategy`);
    }
    assert.equal(createBackend('no-such-kind', { runDir: join(dir, 'x'), logger: silentLogger }), undefined, 'a kind Bulkhead does not have');
    assert.equal(kindIsolation('no-such-kind'), undefined);
    // shims: Kata is a VM; a shim Bulkhead does not know is ranked the weakest class, whatever it is
    assert.equal(kindIsolation('kata'), 'vm');
    assert.equal(kindIsolation('shimv2'), 'process');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the default config, the policy catalog and the isolation table come from the registry', () => {
  const cfg = defaultConfig(defaultPaths({}));
  assert.deepEqual(Object.keys(cfg.runtime.handlers), configuredKinds());
  for (const [name, h] of Object.entries(cfg.runtime.handlers)) assert.equal(h.backend, name);
  assert.deepEqual(DEFAULT_HANDLERS.map((h) => h.handler), catalogKinds().map((k) => k.kind));
  assert.deepEqual(Object.keys(BACKEND_ISOLATION).sort(), backendKinds().sort());
});

test('bulkhead doctor checks each kind\'s program once', () => {
  const bins = kindTools().map((t) => t.bin);
  assert.deepEqual(bins, [...new Set(bins)]);
  for (const b of ['runc', 'runsc', 'crun', 'qemu-system-x86_64']) assert.ok(bins.includes(b), b);
});
