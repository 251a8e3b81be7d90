import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestedNetwork, NETWORK_ANNOTATION as A } from './annotations.ts';

test('requestedNetwork reads io.bulkhead.network and refuses contradictions', () => {
  assert.equal(requestedNetwork(undefined, false), undefined);
  assert.equal(requestedNetwork({}, true), undefined);
  assert.equal(requestedNetwork({ [A]: 'none' }, false), 'none');
  assert.equal(requestedNetwork({ [A]: 'bridge' }, false), 'bridge');
  assert.equal(requestedNetwork({ [A]: 'host' }, true), 'host');
  assert.throws(() => requestedNetwork({ [A]: 'weird' }, false), /must be bridge, none or host/);
  assert.throws(() => requestedNetwork({ [A]: 'host' }, false), /needs .*NODE/);
  assert.throws(() => requestedNetwork({ [A]: 'none' }, true), /contradicts/);
});
