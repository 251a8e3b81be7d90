// The [images] settings: sizes with units, defaults, and errors naming the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_IMAGE_CONFIG, parseImageConfig, parseSize, reserveFor } from './config.ts';

test('byte sizes: numbers and units', () => {
  const cases: [unknown, number][] = [[0, 0], [1024, 1024], ['512MiB', 512 * 1024 ** 2], ['8GiB', 8 * 1024 ** 3], ['1.5GiB', 1.5 * 1024 ** 3], ['2GB', 2e9], ['10k', 10_000], [' 7 ', 7]];
  for (const [v, want] of cases) assert.equal(parseSize(v, 'x'), want, String(v));
  for (const bad of [-1, 1.5, 'lots', '8 PiB', '', null, true]) assert.throws(() => parseSize(bad, 'max_layer_bytes'), /images\.max_layer_bytes must be a byte size/, String(bad));
});

test('the [images] table: defaults, every key, unknown keys and bad values refused', () => {
  assert.deepEqual(parseImageConfig(undefined), DEFAULT_IMAGE_CONFIG);
  assert.equal(DEFAULT_IMAGE_CONFIG.maxLayerBytes, 8 * 1024 ** 3);
  assert.deepEqual(parseImageConfig({ reserve_bytes: '2GiB', reserve_percent: 10, max_layer_bytes: '1GiB', registry_timeout_ms: 5000 }),
    { reserveBytes: 2 * 1024 ** 3, reservePercent: 10, maxLayerBytes: 1024 ** 3, registryTimeoutMs: 5000 });
  assert.throws(() => parseImageConfig({ reserve: 1 }), /unknown key images\.reserve \(allowed: /);
  assert.throws(() => parseImageConfig({ reserve_percent: 100 }), /reserve_percent must be a number from 0 to 99/);
  assert.throws(() => parseImageConfig({ reserve_percent: '5' }), /reserve_percent/);
  assert.throws(() => parseImageConfig({ registry_timeout_ms: 10 }), /registry_timeout_ms must be an integer from 100 to 3600000/);
  assert.throws(() => parseImageConfig({ max_layer_bytes: 1000 }), /at least 1MiB/);
  assert.throws(() => parseImageConfig([]), /images must be a table/);
});

test('the reserve is the larger of reserve_bytes and reserve_percent of the filesystem', () => {
  const GiB = 1024 ** 3;
  assert.equal(reserveFor(DEFAULT_IMAGE_CONFIG, 10 * GiB), GiB, '5% of 10 GiB is less than 1 GiB');
  assert.equal(reserveFor(DEFAULT_IMAGE_CONFIG, 100 * GiB), 5 * GiB);
});
