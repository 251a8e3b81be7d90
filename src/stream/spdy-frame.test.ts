import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createDeflate, constants as zc } from 'node:zlib';
import {
  FrameType, HeaderDecoder, HeaderEncoder, SPDY_DICTIONARY, encodeControl, encodeData, encodeGoAway, parseFrame, parseHeaders,
  serializeHeaders,
} from './spdy-frame.ts';

describe('spdy-frame', () => {
  it('builds the SPDY/3 dictionary byte for byte (1423 bytes, checked against the spec listing)', () => {
    assert.equal(SPDY_DICTIONARY.length, 1423);
    assert.equal(createHash('sha256').update(SPDY_DICTIONARY).digest('hex'), '51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02');
  });

  it('round-trips control and data frames, and waits for partial ones', () => {
    const ctl = encodeGoAway(5, 1);
    assert.equal(ctl.toString('hex'), '80030007000000080000000500000001');
    const data = encodeData(3, 1, Buffer.from('hi'));
    const both = Buffer.concat([ctl, data]);
    const a = parseFrame(both, 1024)!;
    assert.deepEqual(a.frame, { control: true, type: FrameType.GoAway, flags: 0, payload: Buffer.from('0000000500000001', 'hex') });
    const b = parseFrame(a.rest, 1024)!;
    assert.deepEqual(b.frame, { control: false, streamId: 3, flags: 1, payload: Buffer.from('hi') });
    assert.equal(b.rest.length, 0);
    assert.equal(parseFrame(both.subarray(0, 12), 1024), null);
  });

  it('rejects other SPDY versions and oversized frames', () => {
    assert.throws(() => parseFrame(Buffer.from('8002000100000000', 'hex'), 1024), { code: 'InvalidArgument' });
    assert.throws(() => parseFrame(encodeControl(FrameType.Ping, 0, Buffer.alloc(2048)), 1024), { code: 'ResourceExhausted' });
  });

  const malformed: Array<[string, Buffer]> = [
    ['too short', Buffer.alloc(2)],
    ['count beyond data', Buffer.from('00000001', 'hex')],
    ['length beyond data', Buffer.from('0000000100000009616263', 'hex')],
    ['upper-case name', serializeHeadersRaw([['Port', '80']])],
    ['duplicate name', serializeHeadersRaw([['port', '80'], ['port', '81']])],
    ['empty name', serializeHeadersRaw([['', 'x']])],
  ];
  for (const [name, buf] of malformed) {
    it(`rejects a malformed header block: ${name}`, () => {
      assert.throws(() => parseHeaders(buf), { code: 'InvalidArgument' });
    });
  }

  it('encodes header blocks any zlib reader decodes, and decodes real deflate output across blocks', async () => {
    const enc = new HeaderEncoder();
    const dec = new HeaderDecoder();
    try {
      for (const v of ['stdout', 'stderr']) {
        assert.deepEqual(await dec.decode(enc.encode(new Map([['streamtype', [v]], ['multi', ['a', 'b']]]))), new Map([['streamtype', [v]], ['multi', ['a', 'b']]]));
      }
    } finally { dec.close(); }
    const deflate = createDeflate({ dictionary: SPDY_DICTIONARY });
    const dec2 = new HeaderDecoder();
    try {
      for (const port of ['80', '8080', '80']) {
        const out: Buffer[] = [];
        const onData = (b: Buffer): void => { out.push(b); };
        deflate.on('data', onData);
        deflate.write(serializeHeaders(new Map([['port', [port]], ['streamtype', ['data']]])));
        await new Promise<void>((r) => deflate.flush(zc.Z_SYNC_FLUSH, () => r()));
        deflate.off('data', onData);
        assert.deepEqual(await dec2.decode(Buffer.concat(out)), new Map([['port', [port]], ['streamtype', ['data']]]));
      }
    } finally { dec2.close(); deflate.destroy(); }
  });

  it('fails on a header block that is not zlib', async () => {
    const dec = new HeaderDecoder();
    try {
      await assert.rejects(dec.decode(Buffer.from('not zlib at all')), { code: 'InvalidArgument' });
    } finally { dec.close(); }
  });
});

function serializeHeadersRaw(pairs: Array<[string, string]>): Buffer {
  const parts = [Buffer.alloc(4)];
  parts[0]!.writeUInt32BE(pairs.length);
  for (const [k, v] of pairs) for (const s of [k, v]) { const l = Buffer.alloc(4); l.writeUInt32BE(Buffer.byteLength(s)); parts.push(l, Buffer.from(s)); }
  return Buffer.concat(parts);
}
