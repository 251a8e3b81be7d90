import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkMetadataName } from './validate.ts';
import { checkPodConfig } from './sandbox.ts';

test('metadata names: a name over the limit says it is too long, with the numbers', () => {
  assert.doesNotThrow(() => checkMetadataName('a'.repeat(253), 'x'));
  assert.throws(() => checkMetadataName('a'.repeat(300), 'pod sandbox config: metadata.name'), { code: 'InvalidArgument', message: 'pod sandbox config: metadata.name is too long (300 > 253 characters): use a shorter name' });
  assert.throws(() => checkMetadataName('a/b', 'container config: metadata.name'), /contains '\/' or a NUL byte/);
  assert.throws(() => checkPodConfig({ metadata: { name: 'n'.repeat(300), namespace: 'ns', uid: 'u', attempt: 0 } }), /metadata\.name is too long \(300 > 253 characters\)/);
  assert.throws(() => checkPodConfig({ metadata: { name: 'n', namespace: 's'.repeat(254), uid: 'u', attempt: 0 } }), /metadata\.namespace is too long \(254 > 253 characters\)/);
});
