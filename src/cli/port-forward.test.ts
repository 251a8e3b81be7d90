import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePortPair } from './port-forward.ts';

test('parsePortPair: REMOTE, LOCAL:REMOTE, :REMOTE and errors', () => {
  assert.deepEqual(parsePortPair('80'), { local: 80, remote: 80 });
  assert.deepEqual(parsePortPair('8080:80'), { local: 8080, remote: 80 });
  assert.deepEqual(parsePortPair('0:80'), { local: 0, remote: 80 });
  assert.deepEqual(parsePortPair(':80'), { local: 0, remote: 80 });
  for (const bad of ['', '0', '80:0', 'a:80', '1:2:3', '70000', '80:']) assert.throws(() => parsePortPair(bad), /invalid port mapping/, bad);
});
