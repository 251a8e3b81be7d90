import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSize, humanSize, shortId, table, stateWord } from './format.ts';

test('parseSize accepts docker-style sizes and rejects junk', () => {
  const cases: [string, number][] = [['512', 512], ['1k', 1024], ['64m', 64 * 1024 ** 2], ['1g', 1024 ** 3], ['1.5GiB', 1.5 * 1024 ** 3], ['2MB', 2 * 1024 ** 2]];
  for (const [s, n] of cases) assert.equal(parseSize(s), n, s);
  for (const bad of ['', 'm', '-1m', '1x', '1 m b']) assert.throws(() => parseSize(bad), /invalid size/, bad);
});

test('format helpers', () => {
  assert.equal(humanSize(999), '999B');
  assert.equal(humanSize(1500), '1.50kB');
  assert.equal(shortId('sha256:0123456789abcdef0123'), '0123456789abc');
  assert.equal(stateWord('CONTAINER_RUNNING'), 'running');
  assert.equal(table(['A', 'BB'], [['xyz', '1']]), 'A     BB\nxyz   1\n');
});
