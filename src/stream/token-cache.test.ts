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

describe('TokenCache per-key bound', () => {
  it('refuses a key past its share while other keys still get tokens, and reclaims expired ones', () => {
    let now = 0;
    const c = new TokenCache<number>({ ttlMs: 100, max: 10, maxPerKey: 3, now: () => now });
    for (let i = 0; i < 3; i++) c.insert(i, 'a', 'container a');
    assert.throws(() => c.insert(3, 'a', 'container a'), (e: Error & { code?: string }) =>
      e.code === 'ResourceExhausted' && /container a .*limit 3 per container\/pod/.test(e.message));
    const b = c.insert(4, 'b');
    assert.equal(c.countFor('a'), 3);
    assert.equal(c.consume(b), 4);
    assert.equal(c.countFor('b'), 0, 'a used token gives its share back');
    now = 100;
    c.insert(5, 'a'); // the three expired ones are reclaimed
    assert.equal(c.countFor('a'), 1);
    assert.equal(c.size, 1);
  });

  it('the global bound still holds across keys', () => {
    const c = new TokenCache<number>({ ttlMs: 1000, max: 4, maxPerKey: 2 });
    c.insert(0, 'a'); c.insert(1, 'a'); c.insert(2, 'b'); c.insert(3, 'b');
    assert.throws(() => c.insert(4, 'c'), { code: 'ResourceExhausted' });
  });
});
