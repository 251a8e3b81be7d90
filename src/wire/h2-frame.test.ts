import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeFrame, F_END_HEADERS, F_END_STREAM, F_PADDED, F_PRIORITY, FrameReader, H2_ENHANCE_YOUR_CALM, H2_FRAME_SIZE_ERROR,
  H2_PROTOCOL_ERROR, H2ConnectionError, HeaderBlockCollector, headerBlockFrames, T_CONTINUATION, T_DATA, T_HEADERS,
} from './h2-frame.ts';

const h2Code = (code: number) => (e: unknown): boolean => e instanceof H2ConnectionError && e.h2Code === code;

test('FrameReader: frames split anywhere come out whole; an oversized one is refused on its header, before its payload', () => {
  const r = new FrameReader(16);
  const bytes = Buffer.concat([encodeFrame(T_DATA, 0, 1, Buffer.from('hello')), encodeFrame(T_DATA, F_END_STREAM, 1, Buffer.alloc(16))]);
  const got: string[] = [];
  for (const b of bytes) {
    r.push(Buffer.of(b));
    for (let f = r.next(); f; f = r.next()) got.push(`${f.type}/${f.flags}/${f.stream}/${f.payload.length}`);
  }
  assert.deepEqual(got, ['0/0/1/5', `0/${F_END_STREAM}/1/16`]);
  assert.equal(r.buffered, 0);

  const big = encodeFrame(T_DATA, 0, 1, Buffer.alloc(17)).subarray(0, 9); // the header alone
  r.push(big);
  assert.throws(() => r.next(), h2Code(H2_FRAME_SIZE_ERROR));
  assert.equal(r.buffered, 0, 'nothing kept after the refusal');
});

test('HeaderBlockCollector: padding and priority stripped, CONTINUATIONs joined, a block past the bound refused', () => {
  const c = new HeaderBlockCollector(10);
  const payload = Buffer.concat([Buffer.of(2), Buffer.of(0, 0, 0, 3, 16), Buffer.from('abc'), Buffer.alloc(2)]);
  const headers = { type: T_HEADERS, flags: F_PADDED | F_PRIORITY | F_END_STREAM, stream: 3, payload, raw: Buffer.alloc(0) };
  assert.equal(c.headers(headers), null);
  assert.ok(c.pending);
  const other = { type: T_CONTINUATION, flags: F_END_HEADERS, stream: 5, payload: Buffer.from('x'), raw: Buffer.alloc(0) };
  assert.equal(c.continues(other), false, 'a CONTINUATION of another stream is not this block');
  const block = c.continuation({ type: T_CONTINUATION, flags: F_END_HEADERS, stream: 3, payload: Buffer.from('de'), raw: Buffer.alloc(0) });
  assert.deepEqual(block, { stream: 3, flags: F_PRIORITY | F_END_STREAM, priority: Buffer.of(0, 0, 0, 3, 16), block: Buffer.from('abcde') });

  c.headers({ type: T_HEADERS, flags: 0, stream: 7, payload: Buffer.alloc(8), raw: Buffer.alloc(0) });
  assert.throws(() => c.continuation({ type: T_CONTINUATION, flags: 0, stream: 7, payload: Buffer.alloc(3), raw: Buffer.alloc(0) }), h2Code(H2_ENHANCE_YOUR_CALM));
  assert.equal(c.pending, false, 'the refused block is dropped');
  assert.throws(() => c.headers({ type: T_HEADERS, flags: F_PADDED, stream: 9, payload: Buffer.of(5, 1), raw: Buffer.alloc(0) }), h2Code(H2_PROTOCOL_ERROR));
});

test('headerBlockFrames splits at the frame size and the collector puts it back together', () => {
  const block = Buffer.from('x'.repeat(40)); // 11 bytes after the 5 priority bytes, then 16 and 13
  const out = headerBlockFrames(1, F_END_STREAM | F_PRIORITY, Buffer.of(0, 0, 0, 0, 1), block, 16);
  const r = new FrameReader(16);
  r.push(out);
  const c = new HeaderBlockCollector();
  const frames = [];
  let whole = null;
  for (let f = r.next(); f; f = r.next()) {
    frames.push([f.type, f.flags, f.payload.length]);
    whole = f.type === T_HEADERS ? c.headers(f) : c.continuation(f);
  }
  assert.deepEqual(frames, [[T_HEADERS, F_END_STREAM | F_PRIORITY, 16], [T_CONTINUATION, 0, 16], [T_CONTINUATION, F_END_HEADERS, 13]]);
  assert.deepEqual(whole?.block, block);
});
