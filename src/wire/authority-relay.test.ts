import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthorityRewriter, rewriteAuthority } from './authority-relay.ts';
import { FrameBoundary, H2ConnectionError as RelayLimitError } from './h2-frame.ts';

function str(s: string, huffman = false): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([Buffer.from([(huffman ? 0x80 : 0) | b.length]), b]);
}
const path = Buffer.concat([Buffer.from([0x44]), str('/runtime.v1.RuntimeService/Version')]);
const head = Buffer.from([0x83, 0x86]); // :method POST, :scheme http (static indices)

test('rewriteAuthority: table of header blocks', () => {
  const cases: { name: string; block: Buffer; want: Buffer }[] = [
    {
      name: 'socket path as literal with indexing (static name 1) → localhost',
      block: Buffer.concat([head, path, Buffer.from([0x41]), str('/run/bulkhead/cri.sock'), Buffer.from([0xbe])]),
      want: Buffer.concat([head, path, Buffer.from([0x41]), str('localhost'), Buffer.from([0xbe])]),
    },
    {
      name: 'short invalid value → "l" (never longer than the original)',
      block: Buffer.concat([Buffer.from([0x41]), str('/a/b')]),
      want: Buffer.concat([Buffer.from([0x41]), str('l')]),
    },
    {
      name: 'literal without indexing with a plain-text name',
      block: Buffer.concat([Buffer.from([0x00]), str(':authority'), str('/run/some/long/socket/path.sock')]),
      want: Buffer.concat([Buffer.from([0x00]), str(':authority'), str('localhost')]),
    },
    {
      name: 'Huffman value of 2 bytes: at least one character → "l"',
      block: Buffer.concat([Buffer.from([0x41]), str('\x12\x34', true)]),
      want: Buffer.concat([Buffer.from([0x41]), str('l')]),
    },
    {
      name: 'a valid authority is left alone',
      block: Buffer.concat([head, Buffer.from([0x41]), str('localhost:1234')]),
      want: Buffer.concat([head, Buffer.from([0x41]), str('localhost:1234')]),
    },
    {
      name: 'other headers with the same bytes are not touched',
      block: Buffer.concat([Buffer.from([0x40]), str('x-path'), str('/run/x.sock')]),
      want: Buffer.concat([Buffer.from([0x40]), str('x-path'), str('/run/x.sock')]),
    },
    {
      name: 'a truncated block passes unchanged',
      block: Buffer.from([0x41, 0x10, 0x2f]),
      want: Buffer.from([0x41, 0x10, 0x2f]),
    },
  ];
  for (const c of cases) assert.deepEqual(rewriteAuthority(c.block), c.want, c.name);
});

function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(id, 5);
  return Buffer.concat([h, payload]);
}

test('AuthorityRewriter re-frames a padded, prioritised HEADERS+CONTINUATION block, whatever the chunking', () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const settings = frame(0x4, 0, 0, Buffer.alloc(0));
  const block = Buffer.concat([head, path, Buffer.from([0x41]), str('/run/bulkhead/cri.sock')]);
  const priority = Buffer.from([0, 0, 0, 0, 15]);
  const pad = Buffer.alloc(3);
  const part1 = block.subarray(0, 10);
  const part2 = block.subarray(10);
  const headers = frame(0x1, 0x8 | 0x20 | 0x1, 1, Buffer.concat([Buffer.from([pad.length]), priority, part1, pad]));
  const cont = frame(0x9, 0x4, 1, part2);
  const data = frame(0x0, 0x1, 3, Buffer.from('hello'));
  const input = Buffer.concat([preface, settings, headers, cont, data]);

  const want = Buffer.concat([
    preface, settings,
    frame(0x1, 0x20 | 0x1 | 0x4, 1, Buffer.concat([priority, head, path, Buffer.from([0x41]), str('localhost')])),
    data,
  ]);
  const whole = new AuthorityRewriter().push(input);
  assert.deepEqual(whole, want);
  const rw = new AuthorityRewriter();
  const pieces: Buffer[] = [];
  for (let i = 0; i < input.length; i++) pieces.push(rw.push(input.subarray(i, i + 1)));
  assert.deepEqual(Buffer.concat(pieces), want);
});

test('AuthorityRewriter refuses a header block past 64 KiB and a frame past 16 KiB, and keeps nothing', () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const rw = new AuthorityRewriter();
  rw.push(Buffer.concat([preface, frame(0x4, 0, 0, Buffer.alloc(0)), frame(0x1, 0, 1, Buffer.concat([head, path]))]));
  const cont = frame(0x9, 0, 1, Buffer.alloc(16384, 0x80));
  let err: unknown;
  try {
    for (let i = 0; i < 5; i++) assert.equal(rw.push(cont).length, 0, 'a block in progress is held, not passed on');
  } catch (e) { err = e; }
  assert.ok(err instanceof RelayLimitError, `expected RelayLimitError, got ${String(err)}`);
  assert.equal(err.h2Code, 0xb);
  assert.match(err.message, /exceeds 65536 bytes/);
  assert.throws(() => rw.push(Buffer.alloc(1)), RelayLimitError, 'a refused connection stays refused');

  const big = new AuthorityRewriter();
  const h = Buffer.alloc(9); h.writeUIntBE(16385, 0, 3); h[3] = 0x0; h.writeUInt32BE(1, 5);
  assert.throws(() => big.push(Buffer.concat([preface, h])), (e: unknown) => e instanceof RelayLimitError && e.h2Code === 0x6);
});

test('FrameBoundary follows frames split anywhere', () => {
  const f = new FrameBoundary();
  const two = Buffer.concat([frame(0x4, 0, 0, Buffer.alloc(6)), frame(0x0, 0, 1, Buffer.from('abc'))]);
  for (let i = 0; i < two.length; i++) {
    f.feed(two.subarray(i, i + 1));
    assert.equal(f.atBoundary, i === 14 || i === two.length - 1, `after byte ${i}`);
  }
});
