// [metrics]: off unless an address is set; loopback only unless the operator allows more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLoopback, parseMetricsConfig } from './config.ts';
import { defaultConfig, parseConfig } from '../daemon/config.ts';

const PATHS = { root: '/r', runDir: '/run/b', socket: '/run/b/s', config: '/etc/b.toml' };

test('metrics are off by default (the CLI\'s embedded daemon has no [metrics] table)', () => {
  assert.equal(defaultConfig(PATHS).sections.metrics, undefined);
  assert.equal(parseMetricsConfig(undefined).host, '');
  assert.equal(parseMetricsConfig({ address: '' }).host, '');
});

test('a loopback address is taken as is; the daemon config passes the table through', () => {
  const cfg = parseConfig('[metrics]\naddress = "127.0.0.1:9464"\n', PATHS);
  assert.deepEqual(parseMetricsConfig(cfg.sections.metrics), { host: '127.0.0.1', port: 9464, allowNonLoopback: false });
  assert.deepEqual(parseMetricsConfig({ address: '[::1]:9' }), { host: '::1', port: 9, allowNonLoopback: false });
  assert.deepEqual(parseMetricsConfig({ address: 'localhost:0' }), { host: '127.0.0.1', port: 0, allowNonLoopback: false });
});

test('a non-loopback address is refused unless allow_non_loopback = true', () => {
  for (const address of ['0.0.0.0:9464', '[::]:9464', '10.1.2.3:9464', '[::ffff:10.0.0.1]:1']) {
    assert.throws(() => parseMetricsConfig({ address }), /not a loopback address.*allow_non_loopback = true/, address);
    assert.equal(parseMetricsConfig({ address, allow_non_loopback: true }).allowNonLoopback, true);
  }
});

test('malformed tables are errors naming the key', () => {
  const cases: [unknown, RegExp][] = [
    [{ address: 'node1:9464' }, /metrics\.address .* must name an IP address/],
    [{ address: '127.0.0.1' }, /metrics\.address .* is not HOST:PORT/],
    [{ address: '127.0.0.1:99999' }, /port above 65535/],
    [{ address: 9464 }, /metrics\.address must be a string/],
    [{ allow_non_loopback: 'yes' }, /metrics\.allow_non_loopback must be true or false/],
    [{ adress: '127.0.0.1:1' }, /unknown key metrics\.adress/],
    ['on', /metrics must be a table/],
  ];
  for (const [raw, re] of cases) assert.throws(() => parseMetricsConfig(raw), re, JSON.stringify(raw));
});

test('isLoopback: 127/8, ::1 in any spelling, IPv4-mapped 127.x; nothing else', () => {
  for (const a of ['127.0.0.1', '127.9.8.7', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) assert.equal(isLoopback(a), true, a);
  for (const a of ['0.0.0.0', '::', '128.0.0.1', '10.0.0.1', '::ffff:10.0.0.1', 'localhost', '']) assert.equal(isLoopback(a), false, a);
});
