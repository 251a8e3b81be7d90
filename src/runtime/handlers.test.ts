// The handler registry's probes: a handler probed again reports its last result while the new probe
// runs (the policy asks at every RunPodSandbox and must not wait for the probe of a handler this host
// cannot run); a first probe is waited for; a handler named in a request is probed afresh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RuntimeHandlers } from './handlers.ts';
import type { ProbeResult } from './backend.ts';

/** A handler entry whose probes end when the test says so. */
function controlled(name: string): { entry: ConstructorParameters<typeof RuntimeHandlers>[1][number]; answer: (r: ProbeResult) => void; calls: () => number } {
  const pending: ((r: ProbeResult) => void)[] = [];
  let calls = 0;
  return {
    entry: { name, backend: name, isolation: 'process', probe: () => { calls++; return new Promise<ProbeResult>((r) => pending.push(r)); } },
    answer: (r) => pending.shift()!(r),
    calls: () => calls,
  };
}

const unavailable: ProbeResult = { available: false, reason: 'cgroup v1', details: {} };
const NOT_YET = Symbol('still waiting');
/** `p`, or NOT_YET when it has not settled once every pending callback has run. */
async function settledNow<T>(p: Promise<T>): Promise<T | typeof NOT_YET> {
  return await Promise.race([p, new Promise<typeof NOT_YET>((r) => setImmediate(() => r(NOT_YET)))]);
}

test('statuses: the first probe is waited for; a reprobe of an unavailable handler is not (its last result stands meanwhile)', async () => {
  const crun = controlled('crun');
  const h = new RuntimeHandlers('runc', [
    { name: 'runc', backend: 'runc', isolation: 'process', probe: async () => ({ available: true, details: {} }) },
    crun.entry,
  ], { reprobeMs: 0 });
  const first = h.statuses();
  assert.equal(await settledNow(first), NOT_YET, 'nothing is known of crun yet: its probe is waited for');
  crun.answer(unavailable);
  assert.deepEqual((await first).map((s) => [s.name, s.probe.available]), [['runc', true], ['crun', false]]);
  // a reprobe is due at once (reprobeMs 0): it starts, and the answer does not wait for it
  const again = await settledNow(h.statuses());
  assert.notEqual(again, NOT_YET, 'statuses waited for the reprobe of a handler known to be unavailable');
  assert.equal(crun.calls(), 2);
  assert.equal(again === NOT_YET ? undefined : again.find((s) => s.name === 'crun')?.probe.reason, 'cgroup v1');
  // once the reprobe is in, its result counts
  crun.answer({ available: true, details: {} });
  await new Promise((r) => setImmediate(r));
  assert.equal((await h.statuses()).find((s) => s.name === 'crun')?.probe.available, true);
});

test('resolve: a handler a request names is probed afresh when its last result said unavailable (waited for)', async () => {
  const crun = controlled('crun');
  const h = new RuntimeHandlers('crun', [crun.entry], { reprobeMs: 0 });
  const first = h.resolve('crun');
  crun.answer(unavailable);
  await assert.rejects(first, { reason: 'BH_HANDLER_UNAVAILABLE' });
  const second = h.resolve('');
  assert.equal(await settledNow(second), NOT_YET, 'the named handler waits for its new probe');
  crun.answer({ available: true, details: {} });
  assert.equal((await second).name, 'crun');
});

test('statuses fresh (bulkhead doctor): every handler is probed again with `fresh`, an available one too, and its new answer is waited for', async () => {
  const seen: (boolean | undefined)[] = [];
  let answer: ProbeResult = unavailable;
  const h = new RuntimeHandlers('crun', [
    { name: 'crun', backend: 'crun', isolation: 'process', probe: async (_s, o) => { seen.push(o?.fresh); return answer; } },
  ]);
  assert.equal((await h.statuses())[0]!.probe.available, false);
  assert.equal((await h.statuses())[0]!.probe.available, false, 'within the reprobe period: the cached answer');
  assert.deepEqual(seen, [undefined]);
  answer = { available: true, details: {} };
  assert.equal((await h.statuses({ fresh: true }))[0]!.probe.available, true, 'the new answer, not the cached one');
  assert.deepEqual(seen, [undefined, true]);
  await h.statuses({ fresh: true });
  assert.deepEqual(seen, [undefined, true, true], 'an available handler is probed again too');
});
