// The engine answers an unknown or unusable runtime handler as the CRI layer does (one registry,
// runtime/handlers.ts): unknown = INVALID_ARGUMENT (BH_HANDLER_UNKNOWN), a handler whose backend
// cannot run on this host = FAILED_PRECONDITION (BH_HANDLER_UNAVAILABLE). The unusable backend is
// a real runc backend pointed at a runc binary that does not exist (its real probe fails).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { testEnv, podConfig, type TestEnv } from './helpers.ts';
import { createBackend } from '../../src/runtime/backends.ts';
import type { Engine } from '../../src/engine/engine.ts';

describe('engine: runtime handlers', () => {
  let env: TestEnv;
  let engine: Engine;
  before(async () => {
    env = await testEnv(['runc']);
    const backends = env.backends();
    backends.set('broken', createBackend('runc', { runDir: join(env.runDir, 'broken'), logger: env.logger, binary: join(env.dir, 'no-such-runc') })!);
    engine = await env.engine({ backends });
  });
  after(async () => { await env?.cleanup(); });

  it('an unknown handler is INVALID_ARGUMENT naming it and the configured ones', async () => {
    await assert.rejects(engine.runPodSandbox(podConfig(), 'nosuch'), (e: Error & { code?: string; reason?: string }) => {
      assert.equal(e.code, 'InvalidArgument');
      assert.equal(e.reason, 'BH_HANDLER_UNKNOWN');
      assert.match(e.message, /"nosuch"/);
      assert.match(e.message, /runc, broken/);
      return true;
    });
  });

  it('a handler whose backend cannot run here is FAILED_PRECONDITION with the probe\'s reason, as over CRI', async () => {
    await assert.rejects(engine.runPodSandbox(podConfig(), 'broken'), (e: Error & { code?: string; reason?: string }) => {
      assert.equal(e.code, 'FailedPrecondition');
      assert.equal(e.reason, 'BH_HANDLER_UNAVAILABLE');
      assert.match(e.message, /runtime handler "broken" \(backend runc\) cannot run on this host: \S/);
      return true;
    });
    assert.deepEqual(engine.listPodSandbox(), [], 'nothing was made');
  });
});
