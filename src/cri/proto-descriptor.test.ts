import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DESCRIPTOR_PATH, generateDescriptor } from './proto-descriptor.ts';

test('the committed proto descriptor matches the .proto files (regenerate: node src/cri/proto-descriptor.ts)', () => {
  assert.equal(readFileSync(DESCRIPTOR_PATH, 'utf8'), generateDescriptor());
});
