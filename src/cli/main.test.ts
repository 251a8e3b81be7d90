import { test } from 'node:test';
import assert from 'node:assert/strict';
import { globalOptions } from './main.ts';

test('global options: defaults, BULKHEAD_* variables, flags; --run-dir carries the default socket along', () => {
  assert.deepEqual(globalOptions({}, {}), {
    root: '/var/lib/bulkhead', runDir: '/run/bulkhead', socket: '/run/bulkhead/cri.sock', config: '/etc/bulkhead/config.toml', json: false, debug: false,
  });
  // a private run dir must not talk to (or fight over) the node's default socket
  const priv = globalOptions({ root: '/tmp/r', 'run-dir': '/tmp/run' }, {});
  assert.equal(priv.runDir, '/tmp/run');
  assert.equal(priv.socket, '/tmp/run/cri.sock');
  assert.equal(globalOptions({ 'run-dir': '/tmp/run', socket: '/tmp/s.sock' }, {}).socket, '/tmp/s.sock');
  assert.equal(globalOptions({ 'run-dir': '/tmp/run' }, { BULKHEAD_SOCKET: '/env/s.sock' }).socket, '/env/s.sock');
  assert.equal(globalOptions({}, { BULKHEAD_RUN_DIR: '/env/run' }).socket, '/env/run/cri.sock');
  assert.equal(globalOptions({ 'run-dir': '/flag/run' }, { BULKHEAD_RUN_DIR: '/env/run' }).runDir, '/flag/run');
  assert.equal(globalOptions({ json: true }, {}).json, true);
});
