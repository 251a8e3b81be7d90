import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TokenCache } from './token-cache.ts';

describe('TokenCache', () => {
  it('hands out distinct url-safe tokens that can be used once', () => {
    const c = new TokenCache<string>({ ttlMs: 1000, max: 10 });
    const a = c.insert('a');
    const b = c.insert('b');
    assert.notEqual(a, b);
    assert.match(a, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(c.consume(a), 'a');
    assert.equal(c.consume(a), undefined);
    assert.equal(c.consume('nope'), undefined);
    assert.equal(c.consume(b), 'b');
  });

  it('expires tokens and bounds how many are outstanding', () => {
    let now = 0;
    const c = new TokenCache<number>({ ttlMs: 100, max: 2, now: () => now });
    const t0 = c.insert(0);
    c.insert(1);
    assert.throws(() => c.insert(2), { code: 'ResourceExhausted' });
    now = 100;
    assert.equal(c.consume(t0), undefined, 'expired');
    const t3 = c.insert(3); // expired entries make room
    assert.equal(c.size, 1);
    assert.equal(c.consume(t3), 3);
  });
});
