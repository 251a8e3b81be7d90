import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ResizeQueue, decodeChannelMessage, encodeChannelMessage } from './channels.ts';
import type { TerminalSize } from './types.ts';

async function take(q: ResizeQueue, n: number): Promise<TerminalSize[]> {
  const out: TerminalSize[] = [];
  for await (const s of q) { out.push(s); if (out.length === n) break; }
  return out;
}

describe('channels', () => {
  it('parses concatenated and split resize objects, clamping to 16 bits', async () => {
    const q = new ResizeQueue();
    assert.equal(q.feed(Buffer.from('{"Width":80,"Height":24}{"Width":1')), true);
    assert.equal(q.feed(Buffer.from('00,"Height":99999}\n {"Other":1}')), true);
    q.end();
    assert.deepEqual(await take(q, 10), [{ width: 80, height: 24 }, { width: 100, height: 65535 }]);
  });

  it('stops on input that is not JSON objects', async () => {
    const q = new ResizeQueue();
    assert.equal(q.feed(Buffer.from('[1,2]')), false);
    assert.deepEqual(await take(q, 1), []);
    const big = new ResizeQueue();
    assert.equal(big.feed(Buffer.from('{"Width":' + ' '.repeat(5000))), false);
  });

  it('keeps only the latest sizes when nobody reads them', async () => {
    const q = new ResizeQueue();
    for (let i = 1; i <= 20; i++) q.feed(Buffer.from(JSON.stringify({ Width: i, Height: i })));
    q.end();
    const got = await take(q, 100);
    assert.equal(got.length, 8);
    assert.deepEqual(got.at(-1), { width: 20, height: 20 });
  });

  it('encodes and decodes binary and base64 channel messages', () => {
    for (const codec of ['binary', 'base64'] as const) {
      const m = encodeChannelMessage(codec, 2, Buffer.from('data\x00\xff', 'latin1'));
      assert.equal(m.binary, codec === 'binary');
      assert.deepEqual(decodeChannelMessage(codec, m.data), { channel: 2, data: Buffer.from('data\x00\xff', 'latin1') });
    }
    assert.equal(decodeChannelMessage('base64', Buffer.from('0!!!')), null);
    assert.equal(decodeChannelMessage('binary', Buffer.alloc(0)), null);
  });
});
