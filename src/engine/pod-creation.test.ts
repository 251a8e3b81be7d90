import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeyReservations, Slots } from './pod-creation.ts';

const never = new AbortController().signal;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Slots', () => {
  it('admits `limit` at once, the rest in arrival order; an aborted waiter takes no slot', async () => {
    const s = new Slots(2, 10, 'RunPodSandbox');
    const order: number[] = [];
    const r1 = await s.acquire(never);
    const r2 = await s.acquire(never);
    const ac = new AbortController();
    const w3 = s.acquire(never).then((r) => { order.push(3); return r; });
    const w4 = s.acquire(ac.signal).then(() => order.push(4), () => order.push(-4));
    const w5 = s.acquire(never).then((r) => { order.push(5); return r; });
    await tick();
    assert.equal(s.waiting, 3);
    ac.abort();
    await tick();
    assert.deepEqual(order, [-4]);
    r1();
    r1(); // a second release is a no-op
    await tick();
    assert.deepEqual(order, [-4, 3]);
    r2();
    await tick();
    assert.deepEqual(order, [-4, 3, 5]);
    (await w3)(); (await w5)(); await w4;
    assert.equal(s.used, 0);
  });

  it('refuses past maxWaiting with ResourceExhausted', async () => {
    const s = new Slots(1, 1, 'RunPodSandbox');
    const r = await s.acquire(never);
    const w = s.acquire(never);
    await assert.rejects(s.acquire(never), (e: Error & { code?: string }) => e.code === 'ResourceExhausted' && /limit 1/.test(e.message));
    r();
    (await w)();
  });
});

describe('KeyReservations', () => {
  it('lets one holder per key; the next waits until it lets go, or until its own signal aborts', async () => {
    const k = new KeyReservations();
    const release = await k.reserve('ns/a/0', never);
    await (await k.reserve('ns/b/0', never))(); // other keys are free
    let second = false;
    const p = k.reserve('ns/a/0', never).then((r) => { second = true; return r; });
    const ac = new AbortController();
    const third = k.reserve('ns/a/0', ac.signal);
    ac.abort();
    await assert.rejects(third);
    await tick();
    assert.equal(second, false);
    release();
    (await p)();
    assert.equal(second, true);
    assert.equal(k.has('ns/a/0'), false);
  });
});
