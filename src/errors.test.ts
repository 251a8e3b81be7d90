import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BulkheadError, ERROR_REASONS, errorReason, fromWire, InvalidArgumentError, NotFoundError, reasonError, toWire, wrapError,
} from './errors.ts';
import { errorFromStatus, statusOf } from './wire/grpc-status.ts';

test('a reason carries its class; a reason of another class is dropped, the class kept', () => {
  const e = reasonError('BH_POD_NOT_FOUND', 'pod sandbox x not found');
  assert.equal(e.code, 'NotFound');
  assert.equal(e.reason, 'BH_POD_NOT_FOUND');
  assert.equal(new NotFoundError('x', { reason: 'BH_IMAGE_NOT_PRESENT' }).reason, 'BH_IMAGE_NOT_PRESENT');
  const wrong = new InvalidArgumentError('x', { reason: 'BH_POD_NOT_FOUND' });
  assert.equal(wrong.code, 'InvalidArgument');
  assert.equal(wrong.reason, undefined);
  for (const [reason, code] of Object.entries(ERROR_REASONS)) {
    assert.match(reason, /^BH_[A-Z_]+$/);
    assert.equal(reasonError(reason as keyof typeof ERROR_REASONS, 'm').code, code);
  }
});

test('wrapError keeps class and reason', () => {
  const w = wrapError(reasonError('BH_COMMAND_NOT_FOUND', 'exec: "x": executable file not found'), 'create c1');
  assert.equal(w.code, 'InvalidArgument');
  assert.equal(w.reason, 'BH_COMMAND_NOT_FOUND');
  assert.match(w.message, /^create c1: exec/);
  assert.equal(errorReason(wrapError(new Error('plain'), 'x')), undefined);
});

test('the wire form round-trips and never trusts what does not fit', () => {
  const e = fromWire(JSON.parse(JSON.stringify(toWire(reasonError('BH_CONTAINER_NOT_RUNNING', 'container c is stopped')))));
  assert.deepEqual([e.code, e.reason, e.message], ['FailedPrecondition', 'BH_CONTAINER_NOT_RUNNING', 'container c is stopped']);
  assert.deepEqual(toWire(new Error('boom')), { code: 'Internal', message: 'boom' });
  const table: [unknown, string, string | undefined, string][] = [
    [{ code: 'NotFound', reason: 'BH_POD_NOT_FOUND', message: 'm' }, 'NotFound', 'BH_POD_NOT_FOUND', 'm'],
    [{ code: 'Bogus', reason: 'BH_POD_NOT_FOUND', message: 'm' }, 'Internal', undefined, 'm'],
    [{ code: 'NotFound', reason: 'BH_NO_SUCH_REASON', message: 'm' }, 'NotFound', undefined, 'm'],
    [{ code: 'NotFound', reason: 'toString', message: 'm' }, 'NotFound', undefined, 'm'],
    [{ code: 'NotFound', reason: 'BH_COMMAND_NOT_FOUND', message: 'm' }, 'NotFound', undefined, 'm'],
    [{ code: 'NotFound' }, 'NotFound', undefined, 'fallback'],
    ['a string', 'Internal', undefined, 'fallback'],
    [null, 'Internal', undefined, 'fallback'],
    [{ code: 'Internal', message: 'x'.repeat(10_000) }, 'Internal', undefined, 'x'.repeat(8192)],
  ];
  for (const [input, code, reason, message] of table) {
    const got = fromWire(input, 'fallback');
    assert.deepEqual([got.code, got.reason, got.message], [code, reason, message], JSON.stringify(input).slice(0, 80));
  }
});

test('over gRPC the reason rides in the trailing metadata, as a record or as grpc-js Metadata', () => {
  const st = statusOf(reasonError('BH_IMAGE_NOT_PRESENT', 'image "x" is not present on this node; pull it first'));
  assert.deepEqual([st.code, st.reason], [5, 'BH_IMAGE_NOT_PRESENT']);
  assert.equal(statusOf(new Error('x')).reason, undefined);
  const fromRecord = errorFromStatus({ code: 5, details: 'd', metadata: { 'bulkhead-error-reason': 'BH_IMAGE_NOT_PRESENT' } });
  assert.deepEqual([fromRecord.code, fromRecord.reason], ['NotFound', 'BH_IMAGE_NOT_PRESENT']);
  const md = { get: (k: string) => (k === 'bulkhead-error-reason' ? ['BH_POD_NOT_FOUND'] : []) };
  const fromMetadata = errorFromStatus({ code: 5, details: 'd', metadata: md });
  assert.equal(fromMetadata.reason, 'BH_POD_NOT_FOUND');
  // a reason that does not belong to the status's class is not believed
  assert.equal(errorFromStatus({ code: 3, details: 'd', metadata: { 'bulkhead-error-reason': 'BH_POD_NOT_FOUND' } }).reason, undefined);
  assert.ok(errorFromStatus({ code: 2, details: 'd' }) instanceof BulkheadError);
});
